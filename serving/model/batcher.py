"""Micro-batching: concurrent requests share one forward pass on one inference thread.

A transformer on CPU costs nearly the same for 1 text as for a dozen of similar length, so the thread
takes the first waiting request, then gathers more for up to ``wait_s`` or until ``max_texts`` texts, and
runs them as one batch. Each request gets back the model object that produced its rows, so its response
names the exact version even while a deploy swaps models between batches.

One bad text never fails another request: the API validates texts before they join a batch, and if a batch
still fails, its requests are re-run one by one so only the culprit gets the error
(``PredictionFailedError``; ``isolated`` says the others of its batch were fine, i.e. its input is at fault).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving import metrics

log = logging.getLogger(__name__)


class NotReadyError(RuntimeError):
    """No model is loaded yet."""


class PredictionFailedError(RuntimeError):
    """The model raised on this request's texts (the cause is chained; it is logged, never sent)."""

    def __init__(self, message: str, *, isolated: bool) -> None:
        super().__init__(message)
        self.isolated = isolated


@dataclass
class _Job:
    texts: Sequence[str]
    future: Future = field(default_factory=Future)


class MicroBatcher:
    def __init__(
        self, current_model: Callable[[], Any], *, max_texts: int = 64, wait_s: float = 0.002
    ) -> None:
        self._current_model = current_model
        self.max_texts = max(1, max_texts)
        self.wait_s = max(0.0, wait_s)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def submit(self, texts: Sequence[str]) -> Future:
        """Future of ``(model, probabilities)`` for ``texts``."""
        job = _Job(texts)
        self._queue.put(job)
        return job.future

    def predict(self, texts: Sequence[str], timeout_s: float | None = None) -> tuple[Any, np.ndarray]:
        return self.submit(texts).result(timeout=timeout_s)

    def stop(self) -> None:
        self._queue.put(None)

    def _gather(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """``first`` plus waiting jobs up to ``max_texts``; a job that does not fit is carried over."""
        batch, count = [first], len(first.texts)
        deadline = time.monotonic() + self.wait_s
        while count < self.max_texts:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            if count + len(job.texts) > self.max_texts:
                return batch, job
            batch.append(job)
            count += len(job.texts)
        return batch, None

    def _run(self) -> None:
        carry: _Job | None = None
        while True:
            first = carry or self._queue.get()
            if first is None:
                return
            batch, carry = self._gather(first)
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            model = self._current_model()
            if model is None:
                for job in batch:
                    job.future.set_exception(NotReadyError("no model is loaded yet"))
                continue
            texts = [t for job in batch for t in job.texts]
            try:
                probs = np.asarray(model.classifier.predict_proba(texts))
            except Exception:
                log.exception(
                    "prediction failed for a batch of %d texts (version %s); re-running its %d requests "
                    "one by one",
                    len(texts),
                    model.version,
                    len(batch),
                )
                self._run_one_by_one(model, batch)
                continue
            metrics.BATCH_TEXTS.observe(len(texts))
            start = 0
            for job in batch:
                job.future.set_result((model, probs[start : start + len(job.texts)]))
                start += len(job.texts)

    def _run_one_by_one(self, model: Any, batch: list[_Job]) -> None:
        """After a failed batch: each request alone, so only the culprit(s) get an error."""
        outcomes: list[np.ndarray | BaseException] = []
        for job in batch:
            try:
                outcomes.append(np.asarray(model.classifier.predict_proba(list(job.texts))))
            except Exception as exc:
                outcomes.append(exc)
        some_fine = any(not isinstance(o, BaseException) for o in outcomes)
        for job, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error(
                    "prediction failed for a request of %d texts (version %s)",
                    len(job.texts),
                    model.version,
                    exc_info=outcome,
                )
                error = PredictionFailedError(f"{type(outcome).__name__}", isolated=some_fine)
                error.__cause__ = outcome
                job.future.set_exception(error)
            else:
                metrics.BATCH_TEXTS.observe(len(job.texts))
                job.future.set_result((model, outcome))
