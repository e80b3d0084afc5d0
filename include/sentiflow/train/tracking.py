"""One MLflow run per training, and a registry version only when everything before it succeeded.

``training_run`` checks the tracking server first (an unreachable server fails in seconds, not after an
hour of training), opens the run, and on any exception tags the error and lets ``mlflow.start_run`` end
the run FAILED. ``register`` is the last step: it logs the model with a new registry version, tags it with
its metrics and family, and deletes the version again if tagging fails, so a failed run leaves none.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sentiflow.modeling.base import TextClassifier
from sentiflow.names import TAG_DATASET, TAG_DATASET_MANIFEST, TAG_ERROR, TAG_GIT_COMMIT, TAG_MODEL_FAMILY
from sentiflow.settings.components import (
    MLflowSettings,
    S3Settings,
    TrainingSettings,
    export_s3_env_for_mlflow,
)
from sentiflow.train import TrainingError

log = logging.getLogger(__name__)


def git_commit(settings: TrainingSettings | None = None) -> str:
    settings = settings or TrainingSettings()
    if settings.git_commit:
        return settings.git_commit
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_tracking_server(uri: str, timeout_s: float) -> None:
    """Fail fast with a message naming the server; MLflow's own retries would take minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise TrainingError(
            f"MLflow tracking server {uri} is unreachable ({exc.__class__.__name__}: {exc}). Is it running "
            "(`make up`) and SENTIFLOW_MLFLOW_TRACKING_URI right?"
        ) from exc


def configure_mlflow() -> None:
    import mlflow

    settings = MLflowSettings()
    for key, value in export_s3_env_for_mlflow(S3Settings()).items():
        os.environ.setdefault(key, value)
    check_tracking_server(settings.tracking_uri, TrainingSettings().tracking_timeout_s)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment(settings.experiment_name)


@contextmanager
def training_run(family: str, run_name: str, params: dict[str, Any], manifest_uri: str) -> Iterator[Any]:
    """An active MLflow run with our tags and params; FAILED (with an ``error`` tag) if the body raises."""
    import mlflow

    configure_mlflow()
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags(
            {TAG_MODEL_FAMILY: family, TAG_DATASET_MANIFEST: manifest_uri, TAG_GIT_COMMIT: git_commit()}
        )
        mlflow.log_params({k: ("" if v is None else v) for k, v in params.items()})
        try:
            yield run
        except BaseException as exc:
            try:
                mlflow.set_tag(TAG_ERROR, f"{exc.__class__.__name__}: {exc}"[:4000])
            except Exception:  # the server may be the thing that failed; the run still ends FAILED
                log.warning("could not tag the failed run %s", run.info.run_id)
            raise


def tag_dataset(manifest: Any, manifest_uri: str) -> None:
    """Tags the run with the dataset's source (Hub name, path or URI the user gave collect), else the
    manifest URI."""
    import mlflow

    source = manifest.source or {}
    name = source.get("dataset") or source.get("source") or source.get("name") or manifest_uri
    mlflow.set_tag(TAG_DATASET, str(name))


def register(
    classifier: TextClassifier, metrics: dict[str, float], registered_model_name: str | None = None
) -> tuple[str, str]:
    """Log ``classifier`` as a new registry version tagged with ``metrics``; returns (version, model URI)."""
    from mlflow import MlflowClient

    from sentiflow.modeling.pyfunc import log_classifier

    name = registered_model_name or MLflowSettings().registered_model_name
    info = log_classifier(classifier, registered_model_name=name)
    version = str(info.registered_model_version)
    client = MlflowClient()
    try:
        client.set_model_version_tag(name, version, TAG_MODEL_FAMILY, classifier.family)
        for key, value in metrics.items():
            client.set_model_version_tag(name, version, key, f"{value:.6g}")
    except Exception:
        client.delete_model_version(name, version)
        raise
    return version, f"models:/{name}/{version}"
