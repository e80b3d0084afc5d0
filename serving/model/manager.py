"""Which model this worker serves, and how a new one replaces it without dropping a request.

The registry alias (``champion`` by default) is the one record of what is served: every worker of every
replica follows it (``serving.model.follower``, which calls ``swap_in`` and ``mark_unready`` here). On a
change the worker loads the version, runs a warm-up prediction and swaps one reference: requests keep using
the old model until that assignment, and a failed load or warm-up leaves it in place (and is retried with
backoff). The server keeps no record of its own. The manager knows nothing of the follower: the app
(``serving.extension``) builds both.

Before a release moves the alias, it names the version it is about to promote with the ``candidate``
alias; ``stage`` loads that version ahead (download, signature verification, deserialization, runtime
preparation and warm-up) and holds it without serving it: no approval exists yet. When the alias then
names it, ``swap_in`` checks the approval the release signed meanwhile (one registry request) and swaps the
staged model in, so the move costs no download and no load. One staged model per worker at most.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace

import numpy as np

from sentiflow.families.catalogue import family
from sentiflow.settings.cpu_quota import threads_per_worker
from sentiflow.settings.server import ServerSettings
from serving import metrics
from serving.model.batcher import MicroBatcher
from serving.model.loaded import LoadedModel, now_iso
from serving.model.registry_reader import RegistryReader

log = logging.getLogger(__name__)

WARMUP_TEXTS = ["A warm-up sentence to check the model answers.", "Short one."]


def warm_up(model: LoadedModel) -> None:
    """One real prediction: a model that cannot answer must never be swapped in."""
    probs = np.asarray(model.classifier.predict_proba(WARMUP_TEXTS))
    expected = (len(WARMUP_TEXTS), len(model.label_names))
    if probs.shape != expected or not np.all(np.isfinite(probs)):
        raise RuntimeError(f"warm-up returned shape {probs.shape} (expected {expected}) or non-finite values")


def _inference_threads(settings: ServerSettings) -> int:
    return settings.torch_threads or threads_per_worker(settings.workers)  # the pod's CPU quota


def _set_torch_threads(settings: ServerSettings) -> None:
    import sys

    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(_inference_threads(settings))


def for_serving(model: LoadedModel, settings: ServerSettings) -> LoadedModel:
    """The model as this replica serves it, readied by its family (``ModelFamily.serve``); PyTorch, and why,
    when ``settings.runtime`` cannot serve it.

    A transformer on CPU gets its forward batches capped at ``batch_max_tokens`` padded tokens, and its
    forward pass on the ONNX file the version shipped (built and verified by the pipeline when it logged
    the version, and verified with the version's other files), served as it is; a version without one gets
    it built here, cached per version and run under the state folder (shared by the workers). Either must
    agree with PyTorch on the family's check texts. ``GET /model`` shows where the file came from
    (``runtime_source``) or why PyTorch serves instead (``runtime_fallback``).
    """
    cache = settings.state_dir / "onnx" / f"{model.name}-v{model.version}-{model.run_id or 'norun'}"
    try:
        classifier = family(model.family).serve(
            model.classifier,
            settings.runtime,
            cache,
            threads=_inference_threads(settings),
            max_prob_diff=settings.runtime_max_prob_diff,
            max_batch_tokens=settings.batch_max_tokens,
        )
    except Exception as exc:
        log.warning(
            "runtime %s unavailable for version %s, serving PyTorch: %s", settings.runtime, model.version, exc
        )
        return replace(model, runtime_fallback=f"{settings.runtime} unavailable: {exc}")
    if classifier is model.classifier:
        return model
    return replace(
        model,
        classifier=classifier,
        runtime=settings.runtime,
        runtime_source=getattr(classifier, "origin", None),
    )


class ModelManager:
    """Owns this worker's current model and the one way it changes: load, warm up, swap.

    What to load is decided by whoever follows the alias (``serving.model.follower.AliasFollower``);
    ``swap_in`` is the only writer of the current model, ``mark_unready`` says why there is none yet.
    """

    def __init__(self, settings: ServerSettings, registry: RegistryReader) -> None:
        self.settings = settings
        self.registry = registry
        self._current: LoadedModel | None = None
        self._staged: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self.unready_reason = "starting: reading the followed alias from the registry"
        self.batcher = MicroBatcher(
            lambda: self._current,
            max_texts=settings.batch_max_texts,
            wait_s=settings.batch_wait_ms / 1000.0,
            max_chars=settings.batch_max_chars,
            max_queued_texts=settings.batch_queue_max_texts,
            max_client_texts=settings.batch_queue_max_client_texts,
            # the worker's other request threads never wait on a prediction: /health and /ready answer
            max_waiting=max(1, settings.threads - settings.health_threads),
        )

    # --- public --------------------------------------------------------------------------------------
    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def mark_unready(self, reason: str) -> None:
        """Why no model answers yet (``/ready``'s 503 reason); ignored once a model is loaded."""
        if self._current is None:
            self.unready_reason = reason

    def predict(self, texts: list[str], client: str | None = None) -> tuple[LoadedModel, np.ndarray]:
        """``client`` (the rate limit's key) bounds one client's share of the batch queue."""
        return self.batcher.predict(texts, timeout_s=self.settings.predict_timeout_s, client=client)

    @property
    def staged(self) -> LoadedModel | None:
        """The version loaded ahead of its approval, ready to swap in; never served as it is."""
        return self._staged

    def _prepare(self, model: LoadedModel) -> LoadedModel:
        """Threads, batch caps, the runtime and a warm-up prediction: what a model needs before it serves."""
        _set_torch_threads(self.settings)
        model = for_serving(model, self.settings)
        warm_up(model)
        return model

    def stage(self, version: str) -> LoadedModel:
        """Load ``version`` ahead of its approval and hold it unserved; raises (holding nothing) on any
        failure. A staged model of another version is dropped first: one staged model per worker."""
        with self._swap_lock:
            if self._staged is not None and self._staged.version == version:
                return self._staged
            self._staged = None
            model = self._prepare(self.registry.load_unapproved(version))
            self._staged = model
            log.info("worker %s staged %s version %s (not served)", os.getpid(), model.name, model.version)
            return model

    def drop_staged(self) -> None:
        """Forget the staged model (the candidate alias moved away or was removed)."""
        self._staged = None

    def swap_in(self, version: str) -> LoadedModel:
        """Load, warm up and swap; raises (and keeps the old model) on any failure.

        A staged model of ``version`` swaps in once its approval verifies, without loading again. Requests in
        flight finish on the old model: they hold their own reference to it.
        """
        with self._swap_lock:
            try:
                staged = self._staged
                if staged is not None and staged.version == version:
                    self.registry.approval_of(
                        staged
                    )  # approved since it was staged, and still the same model
                    model = replace(staged, loaded_at=now_iso())
                    self._staged = None
                else:
                    model = self._prepare(self.registry.load(version))
            except Exception:
                metrics.DEPLOYS.labels(result="failure").inc()
                raise
            self._current = model  # the atomic swap: one reference assignment
            metrics.DEPLOYS.labels(result="success").inc()
            metrics.MODEL_VERSION.set(float(model.version) if model.version.isdigit() else 0)
            metrics.MODEL_RUNTIME.clear()  # one runtime per worker: the previous model's goes
            metrics.MODEL_RUNTIME.labels(runtime=model.runtime, configured=self.settings.runtime).set(1)
            self.unready_reason = ""
            log.info(
                "worker %s now serves %s version %s (%s%s)",
                os.getpid(),
                model.name,
                model.version,
                model.runtime,
                ", staged" if staged is not None and staged.version == version else "",
            )
            return model
