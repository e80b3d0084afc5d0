"""Micro-batching: concurrent requests share one forward pass on one inference thread.

A transformer on CPU costs nearly the same for 1 text as for a dozen of similar length, so the thread
takes the first waiting request, then gathers more for up to ``wait_s`` or until ``max_texts`` texts, and
runs them as one batch. Each request gets back the model object that produced its rows, so its response
names the exact version even while a deploy swaps models between batches.

The queue is bounded twice, so a flood is refused in microseconds instead of piling up: at most
``max_queued_texts`` texts wait for the inference thread, and at most ``max_waiting`` request threads wait
on it at once (the worker's other threads stay free for ``/health``, ``/ready`` and the rest of the API).
A request beyond either bound gets ``QueueFullError`` (a 503 with ``Retry-After``). A request that stops
waiting (its timeout) cancels its job: a job still queued is dropped, never run.

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


class QueueFullError(RuntimeError):
    """The batch queue is full: the request is refused before it joins it (nothing of it runs)."""


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
        self,
        current_model: Callable[[], Any],
        *,
        max_texts: int = 64,
        wait_s: float = 0.002,
        max_queued_texts: int | None = None,
        max_waiting: int | None = None,
    ) -> None:
        self._current_model = current_model
        self.max_texts = max(1, max_texts)
        self.wait_s = max(0.0, wait_s)
        #: None: unbounded (a batcher built outside the server).
        self.max_queued_texts = max_queued_texts
        self.max_waiting = max_waiting
        self._admission = threading.Lock()
        self._queued_texts = 0  # texts submitted and not yet taken by the inference thread
        self._waiting = 0  # request threads inside ``predict``
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def submit(self, texts: Sequence[str]) -> Future:
        """Future of ``(model, probabilities)`` for ``texts``; ``QueueFullError`` when the queue is full.

        A job larger than the whole bound is still taken into an empty queue, so a request within the API's
        limits is never refused forever."""
        job = _Job(texts)
        with self._admission:
            queued = self._queued_texts
            if self.max_queued_texts is not None and queued and queued + len(texts) > self.max_queued_texts:
                metrics.QUEUE_REFUSED.labels(reason="texts").inc()
                raise QueueFullError(
                    f"the batch queue holds {queued} texts; {len(texts)} more would pass its limit of "
                    f"{self.max_queued_texts}"
                )
            self._queued_texts = queued + len(texts)
        self._queue.put(job)
        return job.future

    def predict(self, texts: Sequence[str], timeout_s: float | None = None) -> tuple[Any, np.ndarray]:
        """Wait for ``texts``' result; on timeout the job is cancelled (dropped if it has not started)."""
        with self._admission:
            if self.max_waiting is not None and self._waiting >= self.max_waiting:
                metrics.QUEUE_REFUSED.labels(reason="threads").inc()
                raise QueueFullError(
                    f"{self._waiting} requests already wait for predictions in this worker (the limit)"
                )
            self._waiting += 1
        try:
            future = self.submit(texts)
            try:
                return future.result(timeout=timeout_s)
            except TimeoutError:
                if future.cancel():  # still queued: the inference thread skips it
                    metrics.QUEUE_REFUSED.labels(reason="timeout_dropped").inc()
                raise
        finally:
            with self._admission:
                self._waiting -= 1

    def stop(self) -> None:
        self._queue.put(None)

    def _take(self, job: _Job) -> bool:
        """The inference thread took ``job`` off the queue: it no longer counts; False if it was cancelled."""
        with self._admission:
            self._queued_texts -= len(job.texts)
        return not job.future.cancelled()

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
            if not self._take(job):
                continue  # its request gave up waiting: dropped
            if count + len(job.texts) > self.max_texts:
                return batch, job
            batch.append(job)
            count += len(job.texts)
        return batch, None

    def _run(self) -> None:
        carry: _Job | None = None
        while True:
            first = carry
            if first is None:
                first = self._queue.get()
                if first is None:
                    return
                if not self._take(first):
                    continue  # its request gave up waiting: dropped
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
