"""The wrong-flag window shared through the feedback database: one alert per window across workers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sentiflow.feedback.alerts import FeedbackAlerter
from sentiflow.settings.components import AlertSettings
from serving.store.db import Database
from serving.store.feedback import FeedbackStore
from tests.conftest import migrated_url


def _alerter(store: FeedbackStore, window_s: float = 300.0) -> FeedbackAlerter:
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
    alerter_a, alerter_b = _alerter(worker_a), _alerter(worker_b)
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
    alerter = _alerter(store, window_s=0.5)
    assert _flag(store, alerter, "a") is None
    assert _flag(store, alerter, "b") is None
    time.sleep(0.7)  # "a" and "b" fall out of the 0.5 s window
    assert _flag(store, alerter, "c") is None
    assert _flag(store, alerter, "d") is None


def test_racing_workers_claim_the_alert_once(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    stores = [FeedbackStore(Database(migrated_url(url))) for _ in range(4)]
    alerters = [_alerter(s) for s in stores]
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
