"""Micro-batching: concurrent requests share one forward pass on one inference thread.

A transformer on CPU costs nearly the same for 1 text as for a dozen of similar length, so the thread
takes the first waiting piece of work, then gathers more for up to ``wait_s`` or until ``max_texts`` texts
(and ``max_chars`` characters), and runs them as one batch. Each request gets back the model object that
produced its rows, so its response names the exact version even while a deploy swaps models between batches.

A request larger than one batch is cut into pieces of at most ``max_texts`` texts and ``max_chars``
characters, and the queue hands out the smallest piece first: a single review waits for the piece in the
forward pass, never behind a client's whole 256-text request. A request's pieces all run on the model its
first piece ran on.

The queue is bounded, so a flood is refused in microseconds instead of piling up: at most
``max_queued_texts`` texts wait for the inference thread, at most ``max_client_texts`` of them from one
client (one client cannot fill the queue for the others), and at most ``max_waiting`` request threads wait
on it at once (the worker's other threads stay free for ``/health``, ``/ready`` and the rest of the API).
A request beyond a bound gets ``QueueFullError`` (a 503 with ``Retry-After``). A request that stops
waiting (its timeout) abandons its job: its pieces still queued are dropped, never run.

One bad text never fails another request: the API validates texts before they join a batch, and if a batch
still fails, its pieces are re-run one by one so only the culprit's request gets the error
(``PredictionFailedError``; ``isolated`` says the others of its batch were fine, i.e. its input is at fault).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter
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


@dataclass(eq=False)
class _Job:
    """One request's texts; done when every piece has its probabilities."""

    texts: Sequence[str]
    future: Future = field(default_factory=Future)
    #: Who asked (the rate limit's key): its queued texts count against ``max_client_texts``.
    client: str | None = None
    #: The model the first piece ran on: the others run on it too (one version per answer).
    model: Any = None
    #: The request stopped waiting: its queued pieces are dropped.
    abandoned: bool = False
    results: dict[int, np.ndarray] = field(default_factory=dict)
    pieces: int = 0

    def finished(self) -> bool:
        return self.abandoned or self.future.done()

    def piece_done(self, start: int, probs: np.ndarray, model: Any) -> None:
        self.results[start] = probs
        if len(self.results) == self.pieces and not self.future.done():
            rows = np.concatenate([self.results[k] for k in sorted(self.results)])
            self.future.set_result((model, rows))

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(order=True)
class _Piece:
    """Texts ``start:end`` of a job; the queue orders pieces by size, then by arrival."""

    size: int
    seq: int
    job: _Job = field(compare=False)
    start: int = field(compare=False)
    end: int = field(compare=False)
    #: Its texts' characters, counted once when the job is cut (``max_chars`` bounds a batch by them).
    chars: int = field(compare=False, default=0)

    @property
    def texts(self) -> Sequence[str]:
        return self.job.texts[self.start : self.end]


_STOP = _Piece(-1, -1, _Job(()), 0, 0)  # sorts first: stop() ends the thread at once


class MicroBatcher:
    def __init__(
        self,
        current_model: Callable[[], Any],
        *,
        max_texts: int = 64,
        wait_s: float = 0.002,
        max_chars: int | None = None,
        max_queued_texts: int | None = None,
        max_client_texts: int | None = None,
        max_waiting: int | None = None,
    ) -> None:
        self._current_model = current_model
        self.max_texts = max(1, max_texts)
        self.wait_s = max(0.0, wait_s)
        #: None: unbounded (a batcher built outside the server).
        self.max_chars = max_chars
        self.max_queued_texts = max_queued_texts
        self.max_client_texts = max_client_texts
        self.max_waiting = max_waiting
        self._client_texts: Counter[str] = Counter()  # queued texts per client
        self._admission = threading.Lock()
        self._queued_texts = 0  # texts submitted and not yet taken by the inference thread
        self._waiting = 0  # request threads inside ``predict``
        self._seq = itertools.count()
        self._queue: queue.PriorityQueue[_Piece] = queue.PriorityQueue()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def _cut(self, job: _Job) -> list[_Piece]:
        """``job``'s texts as pieces of at most ``max_texts`` texts and ``max_chars`` characters."""
        pieces, start, chars = [], 0, 0
        for i, text in enumerate(job.texts):
            full = i - start >= self.max_texts
            too_long = self.max_chars is not None and i > start and chars + len(text) > self.max_chars
            if full or too_long:
                pieces.append(_Piece(i - start, next(self._seq), job, start, i, chars))
                start, chars = i, 0
            chars += len(text)
        pieces.append(_Piece(len(job.texts) - start, next(self._seq), job, start, len(job.texts), chars))
        job.pieces = len(pieces)
        return pieces

    def submit(self, texts: Sequence[str], client: str | None = None) -> Future:
        """Future of ``(model, probabilities)`` for ``texts``; ``QueueFullError`` when the queue is full.

        A job larger than a bound is still taken when nothing counts against that bound yet, so a request
        within the API's limits is never refused forever."""
        return self._submit(texts, client).future

    def _submit(self, texts: Sequence[str], client: str | None) -> _Job:
        job = _Job(texts, client=client)
        n = len(texts)
        with self._admission:
            queued = self._queued_texts
            if self.max_queued_texts is not None and queued and queued + n > self.max_queued_texts:
                metrics.QUEUE_REFUSED.labels(reason="texts").inc()
                raise QueueFullError(
                    f"the batch queue holds {queued} texts; {n} more would pass its limit of "
                    f"{self.max_queued_texts}"
                )
            own = self._client_texts[client] if client is not None else 0
            if self.max_client_texts is not None and own and own + n > self.max_client_texts:
                metrics.QUEUE_REFUSED.labels(reason="client").inc()
                raise QueueFullError(
                    f"the batch queue holds {own} texts of this client; {n} more would pass the limit of "
                    f"{self.max_client_texts} per client"
                )
            self._queued_texts = queued + n
            if client is not None:
                self._client_texts[client] = own + n
        for piece in self._cut(job):
            self._queue.put(piece)
        return job

    def predict(
        self, texts: Sequence[str], timeout_s: float | None = None, client: str | None = None
    ) -> tuple[Any, np.ndarray]:
        """Wait for ``texts``' result; on timeout the job is abandoned (its queued pieces are dropped)."""
        with self._admission:
            if self.max_waiting is not None and self._waiting >= self.max_waiting:
                metrics.QUEUE_REFUSED.labels(reason="threads").inc()
                raise QueueFullError(
                    f"{self._waiting} requests already wait for predictions in this worker (the limit)"
                )
            self._waiting += 1
        try:
            job = self._submit(texts, client)
            try:
                result: tuple[Any, np.ndarray] = job.future.result(timeout=timeout_s)
                return result
            except TimeoutError:
                job.abandoned = True  # its pieces still queued are dropped when the thread takes them
                job.future.cancel()
                raise
        finally:
            with self._admission:
                self._waiting -= 1

    def stop(self) -> None:
        self._queue.put(_STOP)

    def _take(self, piece: _Piece) -> bool:
        """The inference thread took ``piece`` off the queue: it no longer counts; False if its request
        gave up (the piece is dropped) or already failed."""
        job = piece.job
        with self._admission:
            self._queued_texts -= piece.size
            if job.client is not None:
                self._client_texts[job.client] -= piece.size
                if self._client_texts[job.client] <= 0:
                    del self._client_texts[job.client]
        if job.abandoned:
            metrics.QUEUE_REFUSED.labels(reason="timeout_dropped").inc(piece.size)
        if job.finished():
            return False
        if job.model is None and not job.future.running():
            return job.future.set_running_or_notify_cancel()
        return True

    def _gather(self, first: _Piece) -> tuple[list[_Piece], _Piece | None]:
        """``first`` plus waiting pieces up to ``max_texts`` (and ``max_chars``); one that does not fit is
        carried over."""
        batch, count, chars = [first], first.size, first.chars
        deadline = time.monotonic() + self.wait_s
        while count < self.max_texts:
            remaining = deadline - time.monotonic()
            try:
                piece = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if piece is _STOP:
                self._queue.put(_STOP)
                break
            if not self._take(piece):
                continue
            if count + piece.size > self.max_texts or (
                self.max_chars is not None and chars + piece.chars > self.max_chars
            ):
                return batch, piece
            batch.append(piece)
            count, chars = count + piece.size, chars + piece.chars
        return batch, None

    def _run(self) -> None:
        carry: _Piece | None = None
        while True:
            first = carry
            if first is None:
                first = self._queue.get()
                if first is _STOP:
                    return
                if not self._take(first):
                    continue  # its request gave up waiting: dropped
            batch, carry = self._gather(first)
            batch = [piece for piece in batch if not piece.job.finished()]
            if not batch:
                continue
            current = self._current_model()
            groups: dict[int, tuple[Any, list[_Piece]]] = {}
            for piece in batch:
                model = piece.job.model if piece.job.model is not None else current
                groups.setdefault(id(model), (model, []))[1].append(piece)
            for model, pieces in groups.values():
                try:
                    self._run_batch(model, pieces)
                except Exception as exc:  # a bug here must fail these requests, not stop the thread
                    log.exception("the inference thread failed on a batch of %d pieces", len(pieces))
                    for piece in pieces:
                        piece.job.fail(exc)

    def _run_batch(self, model: Any, batch: list[_Piece]) -> None:
        if model is None:
            for piece in batch:
                piece.job.fail(NotReadyError("no model is loaded yet"))
            return
        for piece in batch:
            piece.job.model = model
        texts = [t for piece in batch for t in piece.texts]
        try:
            probs = np.asarray(model.classifier.predict_proba(texts))
        except Exception:
            log.exception(
                "prediction failed for a batch of %d texts (version %s); re-running its %d pieces one by one",
                len(texts),
                model.version,
                len(batch),
            )
            self._run_one_by_one(model, batch)
            return
        metrics.BATCH_TEXTS.observe(len(texts))
        start = 0
        for piece in batch:
            piece.job.piece_done(piece.start, probs[start : start + piece.size], model)
            start += piece.size

    def _run_one_by_one(self, model: Any, batch: list[_Piece]) -> None:
        """After a failed batch: each piece alone, so only the culprit(s)' requests get an error."""
        outcomes: list[np.ndarray | BaseException] = []
        for piece in batch:
            try:
                outcomes.append(np.asarray(model.classifier.predict_proba(list(piece.texts))))
            except Exception as exc:
                outcomes.append(exc)
        some_fine = any(not isinstance(o, BaseException) for o in outcomes)
        for piece, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error(
                    "prediction failed for %d texts of a request (version %s)",
                    piece.size,
                    model.version,
                    exc_info=outcome,
                )
                error = PredictionFailedError(f"{type(outcome).__name__}", isolated=some_fine)
                error.__cause__ = outcome
                piece.job.fail(error)
            else:
                metrics.BATCH_TEXTS.observe(piece.size)
                piece.job.piece_done(piece.start, outcome, model)
