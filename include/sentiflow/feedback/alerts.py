"""Alerts on bad predictions: a sliding window over "wrong" flags, a structured log line, a webhook.

Why here and not in the server: the window is pure logic that must be testable without Flask, and the
same alert path serves the drift report (an Airflow task). gunicorn threads call :meth:`FeedbackAlerter.
on_feedback` concurrently, so the window is guarded by a lock; the webhook is delivered by a background
thread so that a slow or dead receiver never delays ``POST /feedback`` (or a prediction).

``WrongFlagWindow`` keeps the window in memory (one process). The model server uses
``SharedWrongFlagWindow`` instead, which reads the flags from the feedback database and claims each alert
with a compare-and-set there, so several gunicorn workers (or replicas on one database) raise exactly one
alert per window between them. The Prometheus rule in ``serving/alert_rules.yml`` watches the same condition.

Both count distinct predictions: a flag citing a prediction already flagged in the window adds nothing, so one
replayed ``prediction_id`` cannot raise "3 wrong in 5 minutes" alone (the server also stores one feedback per
prediction; the rule holds for any flag source). Flags without a prediction id count one each.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sentiflow.settings.components import AlertSettings

logger = logging.getLogger("sentiflow.alerts")

ALERT_WRONG_PREDICTIONS = "wrong_predictions"
ALERT_DRIFT = "drift"


@dataclass(frozen=True)
class WrongFlag:
    """One user flag saying a prediction was wrong."""

    text: str
    predicted_label: str
    model_version: str | None = None
    true_label: str | None = None
    at: float = field(default_factory=time.time)
    #: The prediction the flag judges; flags sharing one count once.
    prediction_id: str | None = None


def distinct_predictions(flags: Sequence[WrongFlag]) -> list[WrongFlag]:
    """The first flag of each prediction, in order; flags without a prediction id are all kept."""
    seen: set[str] = set()
    kept = []
    for flag in flags:
        if flag.prediction_id is not None:
            if flag.prediction_id in seen:
                continue
            seen.add(flag.prediction_id)
        kept.append(flag)
    return kept


@dataclass(frozen=True)
class Alert:
    kind: str
    summary: str
    details: dict[str, Any]
    raised_at: float = field(default_factory=time.time)

    def payload(self) -> dict[str, Any]:
        """The JSON body the webhook receives (and the log line carries)."""
        return {
            "source": "sentiflow",
            "kind": self.kind,
            "summary": self.summary,
            "raised_at": datetime.fromtimestamp(self.raised_at, UTC).isoformat(timespec="seconds"),
            "details": self.details,
        }


def _check_window(threshold: int, window_s: float) -> None:
    """The one rule both windows share: at least one flag, over a positive span of time."""
    if threshold < 1 or window_s <= 0:
        raise ValueError(f"threshold must be >= 1 and window_s > 0, got {threshold} and {window_s}")


class WrongFlagWindow:
    """At least ``threshold`` flags within ``window_s`` seconds trigger once; then quiet for ``window_s``.

    Flags that arrive while quiet still count towards the next window, so a sustained problem alerts once
    per window rather than once per flag, and a burst that ends never alerts twice.
    """

    def __init__(self, threshold: int, window_s: float) -> None:
        _check_window(threshold, window_s)
        self.threshold = threshold
        self.window_s = window_s
        self._flags: deque[WrongFlag] = deque()
        self._quiet_until = float("-inf")
        self._lock = threading.Lock()

    def observe(self, flag: WrongFlag) -> list[WrongFlag] | None:
        """Add one flag; return the flags of the window when this one completes an alert, else None."""
        with self._lock:
            now = flag.at
            self._flags.append(flag)
            while self._flags and self._flags[0].at <= now - self.window_s:
                self._flags.popleft()
            if now < self._quiet_until:
                return None
            in_window = distinct_predictions([f for f in self._flags if now - self.window_s < f.at <= now])
            if len(in_window) < self.threshold:
                return None
            self._quiet_until = now + self.window_s
            self._flags.clear()
            return in_window


class FlagStore(Protocol):
    """What the shared window needs from the feedback database (``serving.store.feedback.FeedbackStore``)."""

    def wrong_flags_between(self, start: float, end: float) -> Sequence[Any]: ...

    def alert_state(self, kind: str) -> tuple[float, float]: ...

    def claim_alert(
        self, kind: str, *, expected_quiet_until: float, quiet_until: float, at: float
    ) -> bool: ...


class SharedWrongFlagWindow:
    """``WrongFlagWindow``'s rule, with the flags and the quiet period kept in the feedback database.

    Each flag is already stored when ``observe`` runs, so any worker sees every worker's flags; the alert is
    claimed with a compare-and-set on the quiet period, so two workers completing the same window at once
    raise it once. Flags from before the last alert never count again.
    """

    kind = ALERT_WRONG_PREDICTIONS

    def __init__(self, store: FlagStore, threshold: int, window_s: float) -> None:
        _check_window(threshold, window_s)
        self.store = store
        self.threshold = threshold
        self.window_s = window_s

    def observe(self, flag: WrongFlag) -> list[WrongFlag] | None:
        quiet_until, last_alert_at = self.store.alert_state(self.kind)
        if flag.at < quiet_until:
            return None
        rows = self.store.wrong_flags_between(max(flag.at - self.window_s, last_alert_at), flag.at)
        flags = distinct_predictions(
            [
                WrongFlag(
                    text=row.text,
                    predicted_label=row.predicted_label,
                    model_version=row.model_version,
                    true_label=row.true_label,
                    at=row.created_at.timestamp(),
                    prediction_id=getattr(row, "prediction_id", None),
                )
                for row in rows
            ]
        )
        if len(flags) < self.threshold:
            return None
        claimed = self.store.claim_alert(
            self.kind, expected_quiet_until=quiet_until, quiet_until=flag.at + self.window_s, at=flag.at
        )
        return flags if claimed else None


class WebhookSender:
    """POSTs alert payloads as JSON from one background thread, retrying with exponential backoff.

    :meth:`send` never blocks: it queues (bounded) and returns. Retries are urllib3's ``Retry`` (connection
    errors, 429 and 5xx), so the backoff is the well-tested one rather than a hand-written loop.
    """

    def __init__(self, url: str, settings: AlertSettings | None = None) -> None:
        self.url = url
        self.settings = settings or AlertSettings()
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=self.settings.webhook_queue_size)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._session: Any = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def _make_session(self) -> Any:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        retry = Retry(
            total=self.settings.webhook_max_attempts - 1,  # connection errors, timeouts and statuses alike
            backoff_factor=self.settings.webhook_backoff_s,
            backoff_jitter=self.settings.webhook_backoff_s / 4,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"POST"}),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sentiflow-webhook", daemon=True)
                self._thread.start()

    def send(self, payload: dict[str, Any]) -> bool:
        """Queue one payload; False (and a log line) when the queue is full."""
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
            logger.error("alert webhook queue full (%d); alert dropped: %s", self._queue.maxsize, payload)
            return False
        self._ensure_thread()
        return True

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            try:
                self._deliver(payload)
            finally:
                self._queue.task_done()

    def _deliver(self, payload: dict[str, Any]) -> None:
        if self._session is None:
            self._session = self._make_session()
        try:
            response = self._session.post(self.url, json=payload, timeout=self.settings.webhook_timeout_s)
        except Exception as exc:  # any failure of the receiver must stay in this thread
            self.failed += 1
            logger.error(
                "alert webhook %s failed after %d attempts: %s",
                self.url,
                self.settings.webhook_max_attempts,
                exc,
            )
            return
        if 200 <= response.status_code < 300:
            self.delivered += 1
        else:
            self.failed += 1
            logger.error(
                "alert webhook %s answered HTTP %d: %s", self.url, response.status_code, response.text[:200]
            )

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued alert was delivered or given up on; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class FeedbackAlerter:
    """The alert path: the wrong-flag window, the WARNING log line and the webhook, in one object."""

    def __init__(
        self,
        settings: AlertSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sender: WebhookSender | None = None,
        flag_store: FlagStore | None = None,
    ) -> None:
        self.settings = settings or AlertSettings()
        self.clock = clock
        self.window: WrongFlagWindow | SharedWrongFlagWindow = (
            SharedWrongFlagWindow(flag_store, self.settings.wrong_threshold, self.settings.window_s)
            if flag_store is not None
            else WrongFlagWindow(self.settings.wrong_threshold, self.settings.window_s)
        )
        if sender is None and self.settings.webhook_url:
            sender = WebhookSender(self.settings.webhook_url, self.settings)
        self.sender = sender

    def on_feedback(
        self,
        *,
        text: str,
        predicted_label: str,
        correct: bool,
        true_label: str | None = None,
        model_version: str | None = None,
        at: float | None = None,
        prediction_id: str | None = None,
    ) -> Alert | None:
        """Record one feedback; raise and return the alert when it completes a window, else None."""
        if correct:
            return None
        flag = WrongFlag(
            text=text,
            predicted_label=predicted_label,
            model_version=model_version,
            true_label=true_label,
            at=self.clock() if at is None else at,
            prediction_id=prediction_id,
        )
        flags = self.window.observe(flag)
        if flags is None:
            return None
        return self.raise_alert(self.wrong_predictions_alert(flags))

    def on_record(self, record: Any) -> Alert | None:
        """The model server's listener for a stored feedback row (``serving.store.feedback.FeedbackRecord``).

        It never raises: a broken alert path must not fail ``POST /feedback``, whose row is already safe.
        """
        try:
            created_at = getattr(record, "created_at", None)
            return self.on_feedback(
                text=record.text,
                predicted_label=record.predicted_label,
                correct=record.correct,
                true_label=getattr(record, "true_label", None),
                model_version=getattr(record, "model_version", None),
                at=created_at.timestamp() if isinstance(created_at, datetime) else None,
                prediction_id=getattr(record, "prediction_id", None),
            )
        except Exception:
            logger.exception("feedback alert hook failed; the feedback itself was stored")
            return None

    def wrong_predictions_alert(self, flags: Sequence[WrongFlag]) -> Alert:
        s = self.settings
        versions = sorted({f.model_version for f in flags if f.model_version})
        quoted = (
            [
                {
                    "text": _cut(f.text, s.max_text_chars_in_alert),
                    "predicted_label": f.predicted_label,
                    "true_label": f.true_label,
                    "model_version": f.model_version,
                    "flagged_at": datetime.fromtimestamp(f.at, UTC).isoformat(timespec="seconds"),
                }
                for f in list(flags)[-s.max_texts_in_alert :]
            ]
            if s.max_texts_in_alert
            else []
        )
        return Alert(
            kind=ALERT_WRONG_PREDICTIONS,
            summary=(
                f"{len(flags)} predictions flagged wrong within {s.window_s:g} s "
                f"(threshold {s.wrong_threshold}); model version(s) {', '.join(versions) or 'unknown'}"
            ),
            details={
                "wrong_flags": len(flags),
                "threshold": s.wrong_threshold,
                "window_s": s.window_s,
                "model_versions": versions,
                "flags": quoted,
            },
            raised_at=max(f.at for f in flags),
        )

    def raise_alert(self, alert: Alert) -> Alert:
        """Log the alert as one structured WARNING line and hand it to the webhook (never blocks)."""
        payload = alert.payload()
        logger.warning(
            "sentiflow alert %s", json.dumps(payload, ensure_ascii=False), extra={"alert": payload}
        )
        if self.sender is not None:
            self.sender.send(payload)
        return alert
