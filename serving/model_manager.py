"""Which model this worker serves, and how a new one replaces it without dropping a request.

The registry alias (``champion`` by default) is the one record of what is served: every worker of every
replica follows it (``serving.follower``). On a change the worker loads the version, runs a warm-up
prediction and swaps one reference: requests keep using the old model until that assignment, and a failed
load or warm-up leaves it in place (and is retried with backoff). The server keeps no record of its own.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sentiflow import names, registry
from sentiflow.config import MLflowSettings, ServerSettings
from sentiflow.registry import ModelNotFoundError, RegistryUnavailableError
from serving import metrics
from serving.batcher import MicroBatcher

__all__ = ["LoadedModel", "ModelManager", "ModelNotFoundError", "Registry", "RegistryUnavailableError"]

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
        """Every field but the classifier: the body of ``GET /model`` (``schemas.ModelInfo`` documents it)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "classifier"}


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Registry:
    """The server's use of the one registry module: read an alias, load a version with its run metrics."""

    def __init__(self, settings: MLflowSettings) -> None:
        self.settings = settings
        self.name = settings.registered_model_name

    def client(self) -> Any:
        return registry.mlflow_client(self.settings)

    def resolve(self, *, version: str | None = None, alias: str | None = None) -> Any:
        """The registry's ``ModelVersion`` for a version or an alias (errors name the registry)."""
        metrics.REGISTRY_REQUESTS.labels(call="alias" if alias is not None else "version").inc()
        return registry.get_version(self.client(), self.settings, version=version, alias=alias)

    def alias_version(self, alias: str) -> str | None:
        """The version ``alias`` names; None when the alias (or the model) does not exist."""
        try:
            return str(self.resolve(alias=alias).version)
        except ModelNotFoundError:
            return None

    def load(self, version: str) -> LoadedModel:
        from sentiflow.signing import load_for_serving

        mv = self.resolve(version=version)
        uri = f"models:/{self.name}/{mv.version}"
        metrics.REGISTRY_REQUESTS.labels(call="load").inc()
        pyfunc = load_for_serving(uri, mv)  # verifies the version's signature first (issue 20)
        classifier = pyfunc.unwrap_python_model().classifier
        return LoadedModel(
            version=str(mv.version),
            name=self.name,
            run_id=mv.run_id,
            family=getattr(classifier, "family", "unknown"),
            label_names=list(classifier.label_names),
            metrics=registry.run_metrics(self.client(), mv.run_id, KEY_METRICS),
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
    """Owns this worker's current model and the one way it changes: load, warm up, swap.

    What to load is decided by ``serving.follower.AliasFollower`` (the registry alias); ``swap_in`` is
    the only writer of the current model.
    """

    def __init__(
        self,
        settings: ServerSettings,
        mlflow_settings: MLflowSettings | None = None,
        *,
        registry: Registry | None = None,
        replicas: Any = None,
    ) -> None:
        from serving.follower import AliasFollower

        self.settings = settings
        self.mlflow = mlflow_settings or MLflowSettings()
        self.registry = registry or Registry(self.mlflow)
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self.unready_reason = "starting: reading the followed alias from the registry"
        self.batcher = MicroBatcher(
            lambda: self._current,
            max_texts=settings.batch_max_texts,
            wait_s=settings.batch_wait_ms / 1000.0,
        )
        self.follower = AliasFollower(self, replicas)

    # --- public --------------------------------------------------------------------------------------
    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def alias(self) -> str:
        """The alias every worker of every replica follows (``SENTIFLOW_SERVER_FOLLOW_ALIAS``)."""
        return self.settings.follow_alias or self.mlflow.champion_alias

    def start(self) -> ModelManager:
        self.follower.start()
        return self

    def wait_started(self, timeout_s: float) -> bool:
        """Block until the first load attempt ended (loaded, or failed for now); then requests come in."""
        return self.follower.started.wait(timeout_s)

    def stop(self) -> None:
        self.follower.stop()
        self.batcher.stop()

    def predict(self, texts: list[str], timeout_s: float = 120.0) -> tuple[LoadedModel, np.ndarray]:
        return self.batcher.predict(texts, timeout_s=timeout_s)

    def swap_in(self, version: str) -> LoadedModel:
        """Load, warm up and swap; raises (and keeps the old model) on any failure.

        Requests in flight finish on the old model: they hold their own reference to it.
        """
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
            log.info(
                "worker %s now serves %s version %s (%s)",
                os.getpid(),
                model.name,
                model.version,
                model.runtime,
            )
            return model
