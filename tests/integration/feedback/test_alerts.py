"""The wrong-flag alert: window logic as pure code, the webhook against a real HTTP receiver on 127.0.0.1, and
the window shared through the feedback database (one alert per window across workers)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sentiflow.feedback.alerts import (
    ALERT_WRONG_PREDICTIONS,
    FeedbackAlerter,
    WebhookSender,
    WrongFlag,
    WrongFlagWindow,
)
from sentiflow.settings.components import AlertSettings
from serving.store.db import Database
from serving.store.feedback import FeedbackStore
from tests.conftest import migrated_url


class Receiver:
    """A real webhook receiver: records JSON bodies; the first ``fail_first`` requests get a 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict] = []
        self.requests = 0
        self.fail_first = fail_first
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests += 1
                    fail = receiver.requests <= receiver.fail_first
                    if not fail:
                        receiver.bodies.append(json.loads(body))
                self.send_response(503 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def settings(url: str | None, **kw: object) -> AlertSettings:
    base = {"wrong_threshold": 3, "window_s": 300, "webhook_url": url, "webhook_backoff_s": 0.05}
    return AlertSettings(**{**base, **kw})


def flag_times(alerter: FeedbackAlerter, times: list[float], version: str = "7") -> list[object]:
    return [
        alerter.on_feedback(
            text=f"text {i}", predicted_label="positive", correct=False, model_version=version, at=t
        )
        for i, t in enumerate(times)
    ]


# --- pure window logic ---------------------------------------------------------------------------------
def test_window_is_half_open() -> None:
    w = WrongFlagWindow(threshold=3, window_s=300)
    assert all(w.observe(WrongFlag("t", "pos", at=t)) is None for t in (0, 150, 300))  # at 300, 0 is out
    assert [f.at for f in w.observe(WrongFlag("t", "pos", at=301)) or []] == [150, 300, 301]


def test_window_three_flags_alert_once_then_quiet_for_the_window() -> None:
    w = WrongFlagWindow(threshold=3, window_s=300)
    results = [w.observe(WrongFlag("t", "pos", at=t)) for t in (0, 10, 20, 30, 40, 50, 299)]
    assert [r is not None for r in results] == [False, False, True, False, False, False, False]
    assert [f.at for f in results[2]] == [0, 10, 20]
    # after the quiet period, the flags still inside the sliding window count: one alert per window
    assert w.observe(WrongFlag("t", "pos", at=321)) is not None


def test_window_two_flags_or_spread_out_flags_never_alert() -> None:
    w = WrongFlagWindow(threshold=3, window_s=300)
    assert all(w.observe(WrongFlag("t", "pos", at=t)) is None for t in (0, 100))
    w = WrongFlagWindow(threshold=3, window_s=300)
    assert all(w.observe(WrongFlag("t", "pos", at=t)) is None for t in (0, 200, 400, 600, 800))


def test_window_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="threshold"):
        WrongFlagWindow(threshold=0, window_s=10)


def test_window_is_thread_safe_one_alert_for_a_concurrent_burst() -> None:
    w = WrongFlagWindow(threshold=3, window_s=300)
    fired: list[object] = []
    barrier = threading.Barrier(16)

    def flag() -> None:
        barrier.wait()
        for _ in range(50):
            r = w.observe(WrongFlag("t", "pos", at=100.0))
            if r is not None:
                fired.append(r)

    threads = [threading.Thread(target=flag) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fired) == 1


def test_correct_flags_never_count() -> None:
    alerter = FeedbackAlerter(settings(None))
    for t in range(10):
        assert alerter.on_feedback(text="x", predicted_label="p", correct=True, at=float(t)) is None


# --- the webhook path, against a real receiver -------------------------------------------------------
def test_three_flags_in_window_send_exactly_one_alert(receiver: Receiver, caplog) -> None:
    alerter = FeedbackAlerter(settings(receiver.url))
    caplog.set_level(logging.WARNING, logger="sentiflow.alerts")
    results = flag_times(alerter, [1000.0, 1060.0, 1120.0, 1130.0, 1200.0])
    assert [r is not None for r in results] == [False, False, True, False, False]
    assert alerter.sender.flush(timeout=30)
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["kind"] == ALERT_WRONG_PREDICTIONS
    assert body["details"]["wrong_flags"] == 3
    assert body["details"]["model_versions"] == ["7"]
    assert [f["text"] for f in body["details"]["flags"]] == ["text 0", "text 1", "text 2"]
    assert [f["predicted_label"] for f in body["details"]["flags"]] == ["positive"] * 3
    # the structured WARNING line carries the same payload
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and hasattr(r, "alert")]
    assert len(warnings) == 1 and warnings[0].alert == body


def test_two_flags_send_nothing(receiver: Receiver) -> None:
    alerter = FeedbackAlerter(settings(receiver.url))
    assert flag_times(alerter, [1000.0, 1100.0]) == [None, None]
    assert alerter.sender.flush(timeout=5)
    assert receiver.requests == 0


def test_flags_outside_the_window_send_nothing(receiver: Receiver) -> None:
    alerter = FeedbackAlerter(settings(receiver.url))
    assert flag_times(alerter, [0.0, 200.0, 400.0, 600.0]) == [None] * 4
    assert alerter.sender.flush(timeout=5)
    assert receiver.requests == 0


def test_window_settings_come_from_the_environment(monkeypatch, receiver: Receiver) -> None:
    monkeypatch.setenv("SENTIFLOW_ALERT_WRONG_THRESHOLD", "2")
    monkeypatch.setenv("SENTIFLOW_ALERT_WINDOW_S", "10")
    monkeypatch.setenv("SENTIFLOW_ALERT_WEBHOOK_URL", receiver.url)
    alerter = FeedbackAlerter()
    assert flag_times(alerter, [0.0, 11.0, 15.0])[-1] is not None
    assert alerter.sender.flush(timeout=30)
    assert len(receiver.bodies) == 1


def test_webhook_retries_with_backoff_until_delivered() -> None:
    r = Receiver(fail_first=2)
    try:
        sender = WebhookSender(r.url, settings(r.url, webhook_max_attempts=4))
        assert sender.send({"kind": "test"})
        assert sender.flush(timeout=30)
        assert r.requests == 3 and r.bodies == [{"kind": "test"}]
        assert (sender.delivered, sender.failed) == (1, 0)
    finally:
        r.close()


def test_hanging_webhook_never_blocks_the_caller() -> None:
    release = threading.Event()
    hanging = Receiver()
    original = hanging.server.RequestHandlerClass.do_POST

    def slow_post(handler: BaseHTTPRequestHandler) -> None:
        release.wait(30)
        original(handler)

    hanging.server.RequestHandlerClass.do_POST = slow_post
    try:
        alerter = FeedbackAlerter(settings(hanging.url, webhook_timeout_s=60))
        results = flag_times(alerter, [0.0, 1.0, 2.0])
        # the alert came back while the receiver still holds the POST: delivery happens elsewhere
        assert results[-1] is not None
        assert alerter.sender.delivered == 0 and not alerter.sender.flush(timeout=0.2)
        release.set()
        assert alerter.sender.flush(timeout=30)
        assert alerter.sender.delivered == 1 and len(hanging.bodies) == 1
    finally:
        release.set()
        hanging.close()


def test_dead_webhook_gives_up_after_its_attempts() -> None:
    dead = Receiver()
    url = dead.url
    dead.close()  # nothing listens on that port any more
    alerter = FeedbackAlerter(settings(url, webhook_max_attempts=3))
    assert flag_times(alerter, [0.0, 1.0, 2.0])[-1] is not None
    assert alerter.sender.flush(timeout=30)
    assert (alerter.sender.delivered, alerter.sender.failed) == (0, 1)


def test_server_hook_never_raises_and_reads_the_stored_record(receiver: Receiver) -> None:
    from datetime import UTC, datetime
    from types import SimpleNamespace

    alerter = FeedbackAlerter(settings(receiver.url, wrong_threshold=1))
    record = SimpleNamespace(
        id=12,
        text="bad",
        predicted_label="negative",
        correct=False,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )  # a FeedbackRecord's fields; true_label and model_version may be missing
    alert = alerter.on_record(record)
    assert alert is not None and alert.raised_at == record.created_at.timestamp()
    assert alerter.on_record(SimpleNamespace(text="no label or flag")) is None  # logged, not raised


def _db_alerter(store: FeedbackStore, window_s: float = 300.0) -> FeedbackAlerter:
    return FeedbackAlerter(AlertSettings(wrong_threshold=3, window_s=window_s), flag_store=store)


def _flag(store: FeedbackStore, alerter: FeedbackAlerter, text: str, correct: bool = False):
    record = store.add(text=text, predicted_label="positive", correct=correct, model_version="7")
    return alerter.on_feedback(
        text=record.text, predicted_label=record.predicted_label, correct=record.correct,
        model_version=record.model_version, at=record.created_at.timestamp(),
    )  # fmt: skip


def test_three_flags_from_two_workers_raise_exactly_one_alert(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    worker_a, worker_b = (
        FeedbackStore(Database(migrated_url(url))),
        FeedbackStore(Database(migrated_url(url))),
    )  # two processes' views
    alerter_a, alerter_b = _db_alerter(worker_a), _db_alerter(worker_b)
    assert _flag(worker_a, alerter_a, "one") is None
    assert _flag(worker_b, alerter_b, "fine", correct=True) is None  # a correct flag never counts
    assert _flag(worker_b, alerter_b, "two") is None
    alert = _flag(worker_a, alerter_a, "three")
    assert alert is not None and alert.details["wrong_flags"] == 3
    assert [f["text"] for f in alert.details["flags"]] == ["one", "two", "three"]
    # the next flags are inside the quiet period: no second alert from either worker
    assert _flag(worker_b, alerter_b, "four") is None
    assert _flag(worker_a, alerter_a, "five") is None
    assert _flag(worker_b, alerter_b, "six") is None


def test_two_flags_raise_nothing_and_flags_outside_the_window_do_not_add_up(tmp_path: Path):
    store = FeedbackStore(Database(migrated_url(f"sqlite:///{tmp_path / 'feedback.db'}")))
    alerter = _db_alerter(store, window_s=0.5)
    assert _flag(store, alerter, "a") is None
    assert _flag(store, alerter, "b") is None
    time.sleep(0.7)  # "a" and "b" fall out of the 0.5 s window
    assert _flag(store, alerter, "c") is None
    assert _flag(store, alerter, "d") is None


def test_racing_workers_claim_the_alert_once(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    stores = [FeedbackStore(Database(migrated_url(url))) for _ in range(4)]
    alerters = [_db_alerter(s) for s in stores]
    alerts: list = []
    barrier = threading.Barrier(12)

    def flag(i: int) -> None:
        barrier.wait()
        alert = _flag(stores[i % 4], alerters[i % 4], f"text {i}")
        if alert is not None:
            alerts.append(alert)

    threads = [threading.Thread(target=flag, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(alerts) == 1
