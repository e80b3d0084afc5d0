"""The feedback review queue on the real Flask app (in process) and its SQLite store.

Posted feedback waits ``pending``; only the reviewer token lists, decides, exports and imports (the admin
token opens none of it); single and bulk decisions record the reviewer; labelling tools round-trip JSONL and
CSV idempotently with unknown ids reported per line; auto-accept needs distinct clients and a label the
model did not predict. Every answer is checked against /openapi.json.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient

from sentiflow.families.tfidf.model import TfidfClassifier
from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from tests.conftest import migrated_state
from tests.devserver import NEG_TEXTS, POS_TEXTS
from tests.openapi_check import validate_every_response
from tests.unit.serving.served_models import served

ADMIN = {"Authorization": "Bearer admin-t0ken"}
REVIEWER = {"Authorization": "Bearer reviewer-t0ken"}


def make_app(tmp_path, **settings) -> Flask:
    server_settings = ServerSettings(
        state_dir=migrated_state(tmp_path),
        admin_token="admin-t0ken",
        reviewer_token="reviewer-t0ken",
        feedback_rate_limit="10000 per minute",
        predict_rate_limit="10000 per minute",
        **settings,
    )
    app = create_app(server_settings, MLflowSettings(tracking_uri="http://127.0.0.1:9"), start=False)
    clf = TfidfClassifier.build(["negative", "positive"]).fit(
        NEG_TEXTS * 3 + POS_TEXTS * 3, [0] * 12 + [1] * 12
    )
    app.extensions["sentiflow"].manager._current = served(clf, "7")
    return app


@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:
    app = make_app(tmp_path)
    problems = validate_every_response(app)
    yield app
    app.extensions["sentiflow"].manager.batcher.stop()
    app.extensions["sentiflow"].db.dispose()
    assert problems == [], "responses that depart from /openapi.json:\n" + "\n".join(problems)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def flag(client: FlaskClient, text: str, *, client_addr: str = "10.0.0.1", **extra) -> dict:
    """Predict ``text`` and post feedback citing its signed id, from ``client_addr``."""
    env = {"REMOTE_ADDR": client_addr}
    predicted = client.post("/predict", json={"text": text}, environ_base=env)
    assert predicted.status_code == 200, predicted.get_data(as_text=True)
    p = predicted.get_json()["predictions"][0]
    body = {"prediction_id": p["prediction_id"], "text": text, "correct": False, **extra}
    r = client.post("/feedback", json=body, environ_base=env)
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def opposite(label: str) -> str:
    return "negative" if label == "positive" else "positive"


def test_feedback_waits_pending_and_only_the_reviewer_token_opens_the_queue(client):
    row = flag(client, "a wonderful moving film", correct=True)
    assert row["status"] == "pending" and row["client"] == "10.0.0.1" and row["reviewed_by"] is None
    for method, path, body in [
        ("get", "/feedback/review", None),
        ("get", "/feedback/export", None),
        ("post", f"/feedback/{row['id']}/review", {"decision": "accept", "reviewer": "ann"}),
        ("post", "/feedback/review", {"decision": "accept", "reviewer": "ann", "filter": {"ids": [1]}}),
    ]:
        for headers in (ADMIN, {}):
            r = getattr(client, method)(path, json=body, headers=headers)
            assert r.status_code == 401, (path, headers, r.get_data(as_text=True))
            assert r.get_json()["error"] == "unauthorized"
    queue = client.get("/feedback/review", headers=REVIEWER).get_json()
    assert queue["total"] == 1 and queue["rows"][0]["id"] == row["id"]


def test_accept_correct_reject_one_row_and_bulk_by_filter_record_the_reviewer(client, app):
    good = flag(client, "a wonderful moving film", correct=True)
    wrong = flag(client, "a dull film", true_label="negative")
    spam = [flag(client, f"cf trigger movie {i}", client_addr="10.6.6.6") for i in range(3)]

    r = client.post(
        f"/feedback/{good['id']}/review", json={"decision": "accept", "reviewer": "ann"}, headers=REVIEWER
    )
    assert (
        r.status_code == 200 and r.get_json()["status"] == "accepted" and r.get_json()["reviewed_by"] == "ann"
    )
    r = client.post(
        f"/feedback/{wrong['id']}/review",
        json={"decision": "correct", "reviewer": "bob", "label": "positive"},
        headers=REVIEWER,
    )
    assert r.get_json()["status"] == "corrected" and r.get_json()["review_label"] == "positive"

    for body, error in [
        ({"decision": "correct", "reviewer": "bob"}, "invalid_request"),  # a correction needs a label
        ({"decision": "correct", "reviewer": "bob", "label": "banana"}, "unknown_label"),
        ({"decision": "maybe", "reviewer": "bob"}, "invalid_request"),
        ({"decision": "accept"}, "invalid_request"),  # who decides is recorded: required
    ]:
        r = client.post(f"/feedback/{good['id']}/review", json=body, headers=REVIEWER)
        assert r.status_code == 422 and r.get_json()["error"] == error, r.get_data(as_text=True)
    missing = client.post(
        "/feedback/999/review", json={"decision": "accept", "reviewer": "a"}, headers=REVIEWER
    )
    assert missing.status_code == 404 and missing.get_json()["error"] == "unknown_feedback"

    # bulk: a filter is required to name something besides the status
    nothing = client.post(
        "/feedback/review", json={"decision": "reject", "reviewer": "c", "filter": {}}, headers=REVIEWER
    )
    assert nothing.status_code == 422
    bulk = {
        "decision": "reject",
        "reviewer": "cat",
        "filter": {"client": "10.6.6.6", "text_contains": "TRIGGER"},
    }
    r = client.post("/feedback/review", json=bulk, headers=REVIEWER)
    assert r.status_code == 200 and r.get_json()["changed"] == 3
    again = client.post("/feedback/review", json=bulk, headers=REVIEWER).get_json()
    assert again == {"review_id": None, "changed": 0}  # nothing pending matches any more

    store = app.extensions["sentiflow"].feedback
    assert [store.get(s["id"]).status for s in spam] == ["rejected"] * 3
    assert {store.get(s["id"]).reviewed_by for s in spam} == {"cat"}
    assert client.get("/feedback/review", headers=REVIEWER).get_json()["total"] == 0
    listed = client.get(
        "/feedback/review?status=rejected&client=10.6.6.6&limit=2", headers=REVIEWER
    ).get_json()
    assert listed["total"] == 3 and len(listed["rows"]) == 2
    bad = client.get("/feedback/review?since=yesterday", headers=REVIEWER)
    assert bad.status_code == 400 and "since" in bad.get_json()["message"]


def test_labelling_tools_round_trip_jsonl_and_csv_idempotently(client, app):
    rows = [
        flag(client, text, true_label=label) for text, label in [("dull", "negative"), ("grand", "positive")]
    ]
    exported = client.get("/feedback/export?status=pending&format=jsonl", headers=REVIEWER)
    assert exported.status_code == 200 and exported.mimetype == "application/jsonl"
    lines = [json.loads(line) for line in exported.get_data(as_text=True).splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in rows] and lines[0]["status"] == "pending"
    csv_rows = pd.read_csv(
        io.StringIO(client.get("/feedback/export?status=pending", headers=REVIEWER).get_data(as_text=True))
    )
    assert csv_rows["id"].tolist() == [r["id"] for r in rows]

    decisions = "\n".join(
        json.dumps(d)
        for d in [
            {"id": rows[0]["id"], "decision": "accept"},
            {"id": rows[1]["id"], "decision": "correct", "label": "negative"},
            {"id": 4242, "decision": "accept"},
            {"id": rows[0]["id"], "decision": "correct", "label": "banana"},
        ]
    )
    url = "/feedback/import?reviewer=labeller"
    jsonl = {**REVIEWER, "Content-Type": "application/jsonl"}
    first = client.post(url, data=decisions, headers=jsonl).get_json()
    assert (first["decided"], first["unchanged"], first["failed"]) == (2, 0, 2)
    assert [line["outcome"] for line in first["lines"]] == ["decided", "decided", "unknown_id", "error"]
    assert "banana" in first["lines"][3]["message"]
    second = client.post(url, data=decisions, headers=jsonl).get_json()
    assert (second["decided"], second["unchanged"], second["failed"]) == (0, 2, 2)

    csv_text = f"id,decision,label\n{rows[0]['id']},reject,\nnot-a-number,accept,\n"
    by_csv = client.post(url, data=csv_text, headers={**REVIEWER, "Content-Type": "text/csv"}).get_json()
    assert [line["outcome"] for line in by_csv["lines"]] == ["decided", "error"]
    store = app.extensions["sentiflow"].feedback
    assert (store.get(rows[0]["id"]).status, store.get(rows[1]["id"]).review_label) == (
        "rejected",
        "negative",
    )
    assert store.get(rows[1]["id"]).reviewed_by == "labeller"

    for data, content_type, status in [
        ("id,verdict\n1,accept\n", "text/csv", 400),  # no decision column
        ("[1, 2]\n", "application/jsonl", 400),
        ("", "application/jsonl", 400),
        ("id,decision\n1,accept\n", "text/plain", 415),
    ]:
        r = client.post(url, data=data, headers={**REVIEWER, "Content-Type": content_type})
        assert r.status_code == status, r.get_data(as_text=True)
    assert client.post("/feedback/import", data=decisions, headers=jsonl).status_code == 400  # no reviewer


def test_auto_accept_needs_distinct_clients_on_a_label_the_model_did_not_predict(tmp_path):
    app = make_app(tmp_path, auto_accept_min_clients=3)
    client = app.test_client()
    try:
        # one prediction id per text: clients that agree spell the review a little differently
        confirm = flag(client, "What a film", client_addr="10.0.0.1", correct=True)
        label = opposite(confirm["predicted_label"])
        spellings = ["what a film", "WHAT A FILM", " what a film", "what a Film "]
        same_client = [flag(client, t, client_addr="10.0.0.2", true_label=label) for t in spellings[:2]]
        assert flag(client, spellings[2], client_addr="10.0.0.3", true_label=label)["status"] == "pending"
        third = flag(client, spellings[3], client_addr="10.0.0.4", true_label=label)
        assert third["status"] == "accepted" and third["reviewed_by"] == "auto-accept"
        store = app.extensions["sentiflow"].feedback
        assert [store.get(r["id"]).status for r in same_client] == ["accepted", "accepted"]
        assert store.get(confirm["id"]).status == "pending"  # it agreed with the model: a reviewer decides
        other = flag(client, "a different film", client_addr="10.0.0.5", true_label=label)
        assert other["status"] == "pending"
    finally:
        app.extensions["sentiflow"].manager.batcher.stop()
        app.extensions["sentiflow"].db.dispose()


def test_auto_accept_is_off_by_default(client):
    label = opposite(flag(client, "so so", client_addr="10.0.0.1", correct=True)["predicted_label"])
    rows = [
        flag(client, t, client_addr=f"10.0.1.{i}", true_label=label)
        for i, t in enumerate(["So so", "SO SO", "so So"])
    ]
    assert {r["status"] for r in rows} == {"pending"}


def test_a_time_range_in_any_zone_selects_by_the_stored_utc_time(client):
    row = flag(client, "timed review", true_label="negative")
    sent = datetime.fromisoformat(row["created_at"])
    plus_two = timezone(timedelta(hours=2))
    around = {
        "since": (sent - timedelta(minutes=1)).astimezone(plus_two).isoformat(),
        "until": (sent + timedelta(minutes=1)).astimezone(plus_two).isoformat(),
    }
    after = {"since": (sent + timedelta(minutes=1)).astimezone(plus_two).isoformat()}
    assert client.get("/feedback/review", query_string=around, headers=REVIEWER).get_json()["total"] == 1
    assert client.get("/feedback/review", query_string=after, headers=REVIEWER).get_json()["total"] == 0
    naive = client.get("/feedback/review?since=2026-01-01T00:00:00", headers=REVIEWER)
    assert naive.status_code == 400 and "since" in naive.get_json()["message"]


def test_hostile_review_requests_are_4xx_never_5xx(client):
    row = flag(client, "a plain review", true_label="negative")
    url = "/feedback/import?reviewer=x"
    huge = "9" * 30
    for data, content_type in [
        (
            f'{{"id": {huge}, "decision": "accept"}}\n{{"id": "{huge}", "decision": "accept"}}',
            "application/jsonl",
        ),
        ("id,decision\n" + "0" * 20 + "1,accept\n", "text/csv"),
        ('id,decision\n"' + "x" * 200_000 + '",accept\n', "text/csv"),  # a field over the csv module's limit
        ('{"id": 1, "decision": "\\u0000"}', "application/jsonl"),
        (b"\xff\xfe", "text/csv"),
    ]:
        r = client.post(url, data=data, headers={**REVIEWER, "Content-Type": content_type})
        assert 200 <= r.status_code < 500, (data[:40], r.get_data(as_text=True))
        if r.status_code == 200:
            assert r.get_json()["decided"] == 0
    for path in (f"/feedback/{huge}/review", "/feedback/0/review"):
        r = client.post(path, json={"decision": "accept", "reviewer": "x"}, headers=REVIEWER)
        assert r.status_code == 404, r.get_data(as_text=True)
    bulk = {"decision": "accept", "reviewer": "x", "filter": {"ids": [int(huge)]}}
    assert client.post("/feedback/review", json=bulk, headers=REVIEWER).status_code == 422
    assert client.get(f"/feedback/review?offset={huge}", headers=REVIEWER).status_code == 400
    assert client.get("/feedback/review?text_contains=%25_%5C", headers=REVIEWER).get_json()["total"] == 0
    assert (
        client.get("/feedback/review?text_contains=PLAIN", headers=REVIEWER).get_json()["rows"][0]["id"]
        == row["id"]
    )
