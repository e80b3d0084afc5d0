"""One feedback per prediction: a second post citing the same signed ``prediction_id`` is a 409
and never adds a row, also when two posts race; alerts count distinct predictions; the rate-limit key is
the peer unless trusted proxy hops are configured.

In process (the real Flask app on a SQLite file, as a replica's workers share it); the same behaviour
against real gunicorn replicas behind nginx with Redis is ``tests/integration/serving/test_rate_limit.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from sentiflow.feedback.alerts import FeedbackAlerter, WrongFlag, WrongFlagWindow
from sentiflow.settings.components import AlertSettings, MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from serving.store.db import Database, feedback_table
from serving.store.feedback import DuplicateFeedback, FeedbackStore
from tests.conftest import migrated_state, migrated_url
from tests.unit.serving.test_hostile_input import _loaded


def _app(tmp_path, **settings) -> Flask:
    server_settings = ServerSettings(state_dir=migrated_state(tmp_path), admin_token="t0ken", **settings)
    # nothing listens on port 9: the registry is down (no test may reach the local stack's fixed ports)
    app = create_app(server_settings, MLflowSettings(tracking_uri="http://127.0.0.1:9"), start=False)
    app.extensions["sentiflow"].manager._current = _loaded()
    return app


@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:
    app = _app(tmp_path)
    yield app
    app.extensions["sentiflow"].close()


def _prediction(client: FlaskClient, text: str) -> dict:
    r = client.post("/predict", json={"text": text})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()["predictions"][0]


def _feedback(client: FlaskClient, prediction_id: str, text: str, correct: bool = False):
    return client.post("/feedback", json={"prediction_id": prediction_id, "text": text, "correct": correct})


def test_a_second_post_of_one_prediction_is_409_and_adds_no_row(app: Flask) -> None:
    client = app.test_client()
    p = _prediction(client, "great fun")
    first = _feedback(client, p["prediction_id"], "great fun")
    assert first.status_code == 201 and first.get_json()["prediction_id"] == p["prediction_id"]
    again = _feedback(client, p["prediction_id"], "great fun", correct=True)
    assert again.status_code == 409
    assert again.get_json()["error"] == "duplicate_feedback"
    assert f"row {first.get_json()['id']}" in again.get_json()["message"]
    assert app.extensions["sentiflow"].feedback.count() == 1
    other = _prediction(client, "dull and too long")  # another prediction is still welcome
    assert _feedback(client, other["prediction_id"], "dull and too long").status_code == 201


def test_another_spelling_of_the_same_signed_id_is_the_same_prediction(app: Flask) -> None:
    """base64 forgives spare bits and padding: those spellings verify, and must not count as new ids."""
    client = app.test_client()
    p = _prediction(client, "great fun")
    signer = app.extensions["sentiflow"].signer
    spellings = {p["prediction_id"] + "=", p["prediction_id"] + "=="}
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        candidate = p["prediction_id"][:-1] + c
        try:
            signer.verify(candidate, "great fun")
        except Exception:
            continue
        spellings.add(candidate)
    spellings.discard(p["prediction_id"])
    assert spellings, "no alternative spelling verifies: nothing to test"
    assert _feedback(client, p["prediction_id"], "great fun").status_code == 201
    for spelling in spellings:
        assert _feedback(client, spelling, "great fun").status_code == 409, spelling
    assert app.extensions["sentiflow"].feedback.count() == 1


def test_two_concurrent_posts_of_one_prediction_one_201_one_409(tmp_path) -> None:
    """Two apps (two workers) on one SQLite file post the same id at the same instant, many rounds."""
    apps = [_app(tmp_path), _app(tmp_path)]
    try:
        clients = [a.test_client() for a in apps]
        for round_ in range(20):
            text = f"great fun, round {round_}"
            p = _prediction(clients[0], text)
            barrier = threading.Barrier(2)
            codes: list[int] = []

            def post(
                client: FlaskClient, pid: str, text: str, barrier: threading.Barrier, codes: list
            ) -> None:
                barrier.wait()
                codes.append(_feedback(client, pid, text).status_code)

            args = (p["prediction_id"], text, barrier, codes)
            threads = [threading.Thread(target=post, args=(c, *args)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(codes) == [201, 409], (round_, codes)
        assert apps[0].extensions["sentiflow"].feedback.count() == 20
    finally:
        for a in apps:
            a.extensions["sentiflow"].close()


def test_the_race_past_the_look_is_caught_by_the_constraint(tmp_path, monkeypatch) -> None:
    """Both posts pass the look-up before either commits: the unique constraint refuses the second."""
    store = FeedbackStore(Database(migrated_url(f"sqlite:///{tmp_path / 'f.db'}")))
    store.add(text="a", predicted_label="positive", correct=False, prediction_id="p1", verified=True)
    monkeypatch.setattr(store, "id_for_prediction", lambda _pid: None)  # the look saw nothing yet
    with pytest.raises(DuplicateFeedback):
        store.add(text="a", predicted_label="positive", correct=False, prediction_id="p1", verified=True)
    assert store.count() == 1
    # rows without a prediction id (stored before the column) never collide
    store.add(text="b", predicted_label="negative", correct=True)
    store.add(text="b", predicted_label="negative", correct=True)
    assert store.count() == 3
    store.db.dispose()


def test_the_table_carries_the_named_unique_constraint(tmp_path) -> None:
    """``uq_feedback_prediction_id``: the name the schema migration creates (one name in both places)."""
    db = Database(migrated_url(f"sqlite:///{tmp_path / 'f.db'}"))
    uniques = sa.inspect(db.engine).get_unique_constraints("feedback")
    assert {"name": "uq_feedback_prediction_id", "column_names": ["prediction_id"]} in [
        {"name": u["name"], "column_names": u["column_names"]} for u in uniques
    ]
    assert "prediction_id" in [c.name for c in feedback_table.columns]
    db.dispose()


def test_alert_windows_count_distinct_predictions() -> None:
    window = WrongFlagWindow(threshold=3, window_s=300)
    for at in (1.0, 2.0, 3.0, 4.0):  # one prediction flagged four times: never 3 wrong predictions
        assert (
            window.observe(WrongFlag(text="x", predicted_label="positive", at=at, prediction_id="p1")) is None
        )
    assert window.observe(WrongFlag(text="y", predicted_label="positive", at=5.0, prediction_id="p2")) is None
    flags = window.observe(WrongFlag(text="z", predicted_label="positive", at=6.0, prediction_id="p3"))
    assert flags is not None and [f.prediction_id for f in flags] == ["p1", "p2", "p3"]

    # the server's shared window reads the rows: repeats of one prediction (a database from before the
    # constraint) count once, rows without an id one each
    now = datetime.now(UTC)
    rows = [
        SimpleNamespace(
            text="x",
            predicted_label="positive",
            correct=False,
            model_version="7",
            true_label=None,
            created_at=now,
            prediction_id=pid,
        )
        for pid in ("p1", "p1", "p1", "p2")
    ]
    store = _Rows(rows)
    alerter = FeedbackAlerter(AlertSettings(wrong_threshold=3, window_s=300), flag_store=store)
    assert alerter.on_record(rows[-1]) is None  # 2 distinct predictions
    rows.append(SimpleNamespace(**{**vars(rows[0]), "prediction_id": None}))
    alert = alerter.on_record(rows[-1])
    assert alert is not None and alert.details["wrong_flags"] == 3


class _Rows:
    """The shared window's view of the feedback table, holding whatever rows a test gives it."""

    def __init__(self, rows: list) -> None:
        self.rows = rows
        self.quiet_until = float("-inf")

    def wrong_flags_between(self, start: float, end: float) -> list:
        return list(self.rows)

    def alert_state(self, kind: str) -> tuple[float, float]:
        return self.quiet_until, float("-inf")

    def claim_alert(self, kind: str, *, expected_quiet_until: float, quiet_until: float, at: float) -> bool:
        self.quiet_until = quiet_until
        return True


def test_the_rate_limit_key_is_the_peer_unless_proxies_are_trusted(tmp_path) -> None:
    """X-Forwarded-For is ignored with 0 trusted hops; with 1, only the value the proxy appended counts."""

    def codes(app: Flask, forwarded: list[str], peer: str = "10.0.0.1") -> list[int]:
        client = app.test_client()
        out = []
        for i, value in enumerate(forwarded):
            r = client.post(
                "/feedback",
                data=json.dumps({"prediction_id": f"forged-{i}", "text": "x", "correct": True}),
                content_type="application/json",
                headers={"X-Forwarded-For": value},
                environ_base={"REMOTE_ADDR": peer},
            )
            out.append(r.status_code)
        return out

    direct = _app(tmp_path / "direct", feedback_rate_limit="2 per minute")
    proxied = _app(tmp_path / "proxied", feedback_rate_limit="2 per minute", trusted_proxy_hops=1)
    try:
        # no trusted proxy: a client rotating the header is still one peer
        assert codes(direct, ["1.1.1.1", "2.2.2.2", "3.3.3.3"]) == [422, 422, 429]
        # one trusted proxy: its appended address is the key, whatever the client put before it
        assert codes(proxied, ["9.9.9.9, 5.5.5.5", "8.8.8.8, 5.5.5.5", "7.7.7.7, 5.5.5.5"]) == [422, 422, 429]
        assert codes(proxied, ["6.6.6.6"]) == [422]  # another client behind the same proxy: its own count
    finally:
        direct.extensions["sentiflow"].close()
        proxied.extensions["sentiflow"].close()
