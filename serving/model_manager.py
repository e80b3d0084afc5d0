"""Which model this worker serves, and how a new one replaces it without dropping a request.

A deploy resolves the version in the registry first (an unknown version fails at once, nothing changes),
then loads it on a background thread, runs a warm-up prediction, and swaps one reference: requests keep
using the old model until that assignment, and a failed load or warm-up leaves it in place. The worker that
deploys then persists the version (``StateDir.write_deployed``); every other worker's watcher thread sees
the change within ``reload_poll_s`` and does the same load, warm-up and swap. On start a worker loads the
persisted version, else the champion alias, else stays unready and says why.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sentiflow import names
from sentiflow.config import MLflowSettings, ServerSettings
from serving import metrics
from serving.batcher import MicroBatcher
from serving.state import StateDir

log = logging.getLogger(__name__)

WARMUP_TEXTS = ["A warm-up sentence to check the model answers.", "Short one."]
#: Texts on which an ONNX Runtime twin must agree with the PyTorch model before it serves: short and long
#: (past any max_length, so truncation is exercised), clear and mixed sentiment.
RUNTIME_CHECK_TEXTS = [
    *WARMUP_TEXTS,
    "This film was a masterpiece: moving, funny and beautifully shot. I loved every minute of it.",
    "Dreadful. The plot made no sense, the acting was wooden and I walked out after an hour.",
    "Some good moments, some dull ones; the second half drags but the ending almost saves it.",
    " ".join(["The cast is great but the script is a mess and the pacing is slow."] * 60),
]
KEY_METRICS = (
    names.VAL_F1,
    names.VAL_ACCURACY,
    names.VAL_AUC,
    names.BEST_VAL_F1,
    names.split_metric("test", "f1"),
    names.split_metric("test", "accuracy"),
    names.PREDICT_TIME_MS_PER_1K,
)


class ModelNotFoundError(LookupError):
    """The registry has no such version or alias."""


class RegistryUnavailableError(RuntimeError):
    """The MLflow registry could not be reached."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    name: str
    run_id: str | None
    family: str
    label_names: list[str]
    metrics: dict[str, float]
    loaded_at: str
    source: str
    classifier: Any = field(repr=False)
    runtime: str = "torch"

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "family": self.family,
            "label_names": self.label_names,
            "metrics": self.metrics,
            "loaded_at": self.loaded_at,
            "source": self.source,
            "runtime": self.runtime,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "") or ""
    return "RESOURCE_DOES_NOT_EXIST" in code or "INVALID_PARAMETER_VALUE" in code


class Registry:
    """The few MLflow registry calls the server makes, with errors that name the registry."""

    def __init__(self, settings: MLflowSettings) -> None:
        self.settings = settings
        self.name = settings.registered_model_name

    def _client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.settings.tracking_uri, registry_uri=self.settings.tracking_uri)

    def resolve(self, *, version: str | None = None, alias: str | None = None) -> Any:
        """The registry's ``ModelVersion`` for a version or an alias."""
        from mlflow.exceptions import MlflowException

        where = f"model {self.name!r} in registry {self.settings.tracking_uri}"
        try:
            if alias is not None:
                return self._client().get_model_version_by_alias(self.name, alias)
            return self._client().get_model_version(self.name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                what = f"alias {alias!r}" if alias is not None else f"version {version}"
                raise ModelNotFoundError(f"{what} of {where} not found") from exc
            raise RegistryUnavailableError(f"registry error for {where}: {exc}") from exc
        except Exception as exc:  # connection errors and the like
            raise RegistryUnavailableError(f"cannot reach {where}: {exc}") from exc

    def load(self, version: str) -> LoadedModel:
        import mlflow.pyfunc

        mv = self.resolve(version=version)
        uri = f"models:/{self.name}/{mv.version}"
        pyfunc = mlflow.pyfunc.load_model(uri)
        classifier = pyfunc.unwrap_python_model().classifier
        run_metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                data = self._client().get_run(mv.run_id).data
                run_metrics = {k: float(v) for k, v in data.metrics.items() if k in KEY_METRICS}
            except Exception:
                log.warning("could not read metrics of run %s", mv.run_id, exc_info=True)
        return LoadedModel(
            version=str(mv.version),
            name=self.name,
            run_id=mv.run_id,
            family=getattr(classifier, "family", "unknown"),
            label_names=list(classifier.label_names),
            metrics=run_metrics,
            loaded_at=_now(),
            source=uri,
            classifier=classifier,
            runtime="torch" if classifier.family == names.FAMILY_TRANSFORMER else "scikit-learn",
        )


def warm_up(model: LoadedModel) -> None:
    """One real prediction: a model that cannot answer must never be swapped in."""
    probs = np.asarray(model.classifier.predict_proba(WARMUP_TEXTS))
    expected = (len(WARMUP_TEXTS), len(model.label_names))
    if probs.shape != expected or not np.all(np.isfinite(probs)):
        raise RuntimeError(f"warm-up returned shape {probs.shape} (expected {expected}) or non-finite values")


def _inference_threads(settings: ServerSettings) -> int:
    return settings.torch_threads or max(1, (os.cpu_count() or 1) // max(1, settings.workers))


def _set_torch_threads(settings: ServerSettings) -> None:
    import sys

    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(_inference_threads(settings))


def cap_batch_tokens(model: LoadedModel, settings: ServerSettings) -> None:
    """On CPU, a transformer's forward batches hold at most ``batch_max_tokens`` padded tokens.

    The micro-batcher gathers concurrent requests; this splits a gathered batch by length, so long
    reviews run one or two at a time and short texts many at a time (on 2 CPU cores: 17% more IMDb
    reviews/s and 50% more tweet-sized texts/s than fixed batches of 32; ``docs/serving.md``).
    """
    from sentiflow.modeling.transformer import TransformerClassifier

    classifier = model.classifier
    if isinstance(classifier, TransformerClassifier) and classifier.device == "cpu":
        classifier.max_batch_tokens = settings.batch_max_tokens


def with_runtime(model: LoadedModel, settings: ServerSettings) -> LoadedModel:
    """The model with its forward pass on ``settings.runtime``; PyTorch when that cannot be built.

    The ONNX file is derived from the registry version, cached per version and run under the state
    folder (shared by the workers), and must agree with PyTorch on ``RUNTIME_CHECK_TEXTS``.
    """
    if settings.runtime == "torch" or model.family != names.FAMILY_TRANSFORMER:
        return model
    try:
        from sentiflow.modeling.onnx_runtime import to_runtime

        cache = settings.state_dir / "onnx" / f"{model.name}-v{model.version}-{model.run_id or 'norun'}"
        classifier = to_runtime(
            model.classifier,
            settings.runtime,
            cache,
            threads=_inference_threads(settings),
            check_texts=RUNTIME_CHECK_TEXTS,
            max_prob_diff=settings.runtime_max_prob_diff,
        )
    except Exception as exc:
        log.warning(
            "runtime %s unavailable for version %s, serving PyTorch: %s", settings.runtime, model.version, exc
        )
        return model
    if classifier is model.classifier:
        return model
    return replace(model, classifier=classifier, runtime=settings.runtime)


class ModelManager:
    """Owns the current model of this worker, the deploy thread and the watcher thread."""

    def __init__(
        self,
        settings: ServerSettings,
        mlflow_settings: MLflowSettings | None = None,
        *,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.mlflow = mlflow_settings or MLflowSettings()
        self.registry = registry or Registry(self.mlflow)
        self.state = StateDir(settings.state_dir)
        self._current: LoadedModel | None = None
        self._deploy_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Event()
        self.unready_reason = "starting: loading the deployed model"
        self._watched_id: str | None = None  # deployment id of deployed.json this worker last acted on
        self.batcher = MicroBatcher(
            lambda: self._current,
            max_texts=settings.batch_max_texts,
            wait_s=settings.batch_wait_ms / 1000.0,
        )
        self._watcher = threading.Thread(target=self._watch, name="model-watcher", daemon=True)

    # --- public --------------------------------------------------------------------------------------
    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def start(self) -> ModelManager:
        self._watcher.start()
        return self

    def wait_started(self, timeout_s: float) -> bool:
        """Block until the startup load finished (loaded or gave up); gunicorn then lets requests in."""
        return self._started.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        self.batcher.stop()

    def predict(self, texts: list[str], timeout_s: float = 120.0) -> tuple[LoadedModel, np.ndarray]:
        return self.batcher.predict(texts, timeout_s=timeout_s)

    def deploy(self, *, version: str | None = None, alias: str | None = None) -> dict[str, Any]:
        """Resolve now (``ModelNotFoundError`` for an unknown one), load and swap in the background."""
        mv = self.registry.resolve(version=version, alias=alias)
        record = {
            "id": uuid.uuid4().hex,
            "status": "pending",
            "requested": {"version": version, "alias": alias},
            "version": str(mv.version),
            "model_name": self.registry.name,
            "requested_at": _now(),
            "finished_at": None,
            "error": None,
            "worker_pid": os.getpid(),
        }
        self.state.write_deployment(record)
        answer = dict(record)  # the thread mutates ``record``; the caller gets the state at acceptance
        threading.Thread(
            target=self._deploy, args=(record,), name=f"deploy-{record['id'][:8]}", daemon=True
        ).start()
        return answer

    def wait(self, deployment_id: str, timeout_s: float) -> dict[str, Any]:
        """Wait until the deployment ends and, if it succeeded, every live worker serves its version."""
        deadline = time.monotonic() + timeout_s
        record = self.state.read_deployment(deployment_id) or {}
        while time.monotonic() < deadline:
            record = self.state.read_deployment(deployment_id) or record
            if record.get("status") == "failed":
                return record
            if record.get("status") == "succeeded":
                workers = self.state.live_worker_versions()
                record["workers"] = {str(pid): v for pid, v in workers.items()}
                if all(v == record["version"] for v in workers.values()):
                    record["all_workers_serving"] = True
                    return record
            time.sleep(0.05)
        record["all_workers_serving"] = False
        record["timed_out"] = True
        return record

    # --- internals -----------------------------------------------------------------------------------
    def _swap_in(self, version: str) -> LoadedModel:
        """Load, warm up and swap; raises (and keeps the old model) on any failure."""
        with self._swap_lock:
            try:
                model = self.registry.load(version)
                _set_torch_threads(self.settings)
                cap_batch_tokens(model, self.settings)
                model = with_runtime(model, self.settings)
                warm_up(model)
            except Exception:
                metrics.DEPLOYS.labels(result="failure").inc()
                raise
            self._current = model  # the atomic swap: one reference assignment
            metrics.DEPLOYS.labels(result="success").inc()
            metrics.MODEL_VERSION.set(float(model.version) if model.version.isdigit() else 0)
            self.unready_reason = ""
            self.state.heartbeat(model.version)
            log.info(
                "worker %s now serves %s version %s (%s)",
                os.getpid(),
                model.name,
                model.version,
                model.runtime,
            )
            return model

    def _deploy(self, record: dict[str, Any]) -> None:
        with self._deploy_lock:
            record.update(status="loading", started_at=_now())
            self.state.write_deployment(record)
            try:
                current = self._current
                if current is None or current.version != record["version"]:
                    self._swap_in(record["version"])
            except Exception as exc:
                log.exception("deployment %s of version %s failed", record["id"], record["version"])
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=_now())
                self.state.write_deployment(record)
                return
            self._watched_id = record["id"]
            self.state.write_deployed(
                {
                    "version": record["version"],
                    "deployment_id": record["id"],
                    "alias": record["requested"]["alias"],
                    "deployed_at": _now(),
                }
            )
            record.update(status="succeeded", finished_at=_now())
            self.state.write_deployment(record)

    def _startup(self) -> None:
        deployed = self.state.read_deployed()
        if deployed:
            self._watched_id = deployed.get("deployment_id")
            try:
                self._swap_in(str(deployed["version"]))
            except Exception as exc:
                self.unready_reason = f"could not load persisted version {deployed['version']}: {exc}"
                log.exception("startup load of persisted version failed")
            return
        alias = self.settings.startup_alias or self.mlflow.champion_alias
        try:
            mv = self.registry.resolve(alias=alias)
            self._swap_in(str(mv.version))
        except ModelNotFoundError:
            self.unready_reason = (
                f"nothing deployed yet and alias {alias!r} of model {self.registry.name!r} does not exist; "
                "POST /deploy a version"
            )
            log.warning(self.unready_reason)
        except Exception as exc:
            self.unready_reason = f"could not load alias {alias!r}: {exc}"
            log.exception("startup load of alias %s failed", alias)

    def _watch(self) -> None:
        try:
            self._startup()
        finally:
            self._started.set()
        last_alias_try = time.monotonic()
        while not self._stop.wait(self.settings.reload_poll_s):
            current = self._current
            self.state.heartbeat(current.version if current else None)
            deployed = self.state.read_deployed()
            if deployed and deployed.get("deployment_id") != self._watched_id:
                self._watched_id = deployed.get("deployment_id")
                if current is None or current.version != str(deployed["version"]):
                    try:
                        self._swap_in(str(deployed["version"]))
                    except Exception as exc:
                        self.unready_reason = self.unready_reason or ""
                        log.exception("reload of deployed version %s failed: %s", deployed["version"], exc)
            elif deployed is None and current is None and time.monotonic() - last_alias_try > 15:
                last_alias_try = time.monotonic()
                self._startup()
