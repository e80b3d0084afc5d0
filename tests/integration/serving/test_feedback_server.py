"""The feedback loop wired into the real model server (gunicorn on 127.0.0.1) and the real S3/MLflow.

POST /feedback → the alert webhook; POST /predict → the drift sample in S3; GET /feedback/export → the
feedback-enriched training snapshot and the MLflow run's lineage; the review queue → what trains: a flood
of flipped-label flags from one client trains nothing until a reviewer accepts rows, and then exactly those.

Each test runs against both shared databases the server supports: a SQLite file and a real PostgreSQL
(a fresh database on the session's cluster, migrated by the server's start step). The feedback rows, the
alert's shared window (``alert_state``) and the export are the database code paths here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import mlflow
import pandas as pd
import pytest
import requests

from sentiflow.data.snapshot import read_manifest, read_snapshot, write_snapshot
from sentiflow.feedback.dataset import export_and_merge, log_feedback_lineage, read_export_watermark
from sentiflow.feedback.production_sample import read_production_sample
from sentiflow.names import FEEDBACK_ROWS_USED, FEEDBACK_SNAPSHOT_URI
from sentiflow.settings.components import DriftSettings
from tests.devserver import DevServer
from tests.integration.feedback.test_alerts import Receiver
from tests.integration.serving.test_server import register_tfidf_versions

pytestmark = pytest.mark.slow
DATASETS_PREFIX = "SENTIFLOW_S3_DATASETS_PREFIX"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def receiver(db_kind: str) -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(stack, receiver: Receiver, db_kind: str, request, tmp_path_factory) -> Iterator[DevServer]:
    from tests.conftest import database_url

    folder = tmp_path_factory.mktemp(f"feedback-{db_kind}")
    version = register_tfidf_versions(1)[0]
    env = {
        "SENTIFLOW_SERVER_FEEDBACK_DB_URL": database_url(db_kind, request, folder, migrated=False),
        # two workers: the flags land on either, and the window shared in the feedback DB still alerts once
        "SENTIFLOW_SERVER_WORKERS": "2",
        "SENTIFLOW_SERVER_THREADS": "4",
        "SENTIFLOW_SERVER_FEEDBACK_RATE_LIMIT": "100000 per minute",  # one client floods: the review stops it
        "SENTIFLOW_ALERT_WEBHOOK_URL": receiver.url,
        "SENTIFLOW_ALERT_WEBHOOK_BACKOFF_S": "0.05",
        "SENTIFLOW_DRIFT_FLUSH_INTERVAL_S": "0.5",
        "SENTIFLOW_DRIFT_SAMPLES_PREFIX": "production-samples/server-test",
    }
    # each database starts its feedback ids at 1: its own export watermark (feedback snapshots' prefix)
    saved = os.environ.get(DATASETS_PREFIX)
    os.environ[DATASETS_PREFIX] = f"datasets-feedback-{db_kind}"
    srv = DevServer(stack, env, state_root=folder / "state").start()
    try:
        yield srv.serving(version)
    finally:
        srv.stop()
        if saved is None:
            os.environ.pop(DATASETS_PREFIX, None)
        else:
            os.environ[DATASETS_PREFIX] = saved


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def flag(srv: DevServer, text: str, **extra) -> dict:
    """Predict ``text``, then post feedback citing the signed prediction id (what the web page does)."""
    predicted = requests.post(f"{srv.url}/predict", json={"text": text}, timeout=30)
    assert predicted.status_code == 200, predicted.text
    prediction_id = predicted.json()["predictions"][0]["prediction_id"]
    body = {"prediction_id": prediction_id, "text": text, "correct": False, **extra}
    r = requests.post(f"{srv.url}/feedback", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def review(srv: DevServer, filter: dict, reviewer: str = "alice") -> int:
    """Accept every pending row ``filter`` covers, as ``reviewer``; the rows changed."""
    body = {"decision": "accept", "reviewer": reviewer, "filter": filter}
    headers = {"Authorization": f"Bearer {srv.reviewer_token}"}
    r = requests.post(f"{srv.url}/feedback/review", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json()["changed"])


def test_three_wrong_flags_through_the_server_send_one_webhook(server: DevServer, receiver: Receiver) -> None:
    version = flag(server, "a dull film", true_label="negative")["model_version"]
    flag(server, "boring and long")
    assert not wait_for(lambda: receiver.requests > 0, timeout=2)  # two flags: nothing
    flag(server, "awful acting", true_label="negative")
    flag(server, "dreadful", true_label="negative")  # same window: no second alert
    assert wait_for(lambda: len(receiver.bodies) >= 1)
    time.sleep(1)
    assert len(receiver.bodies) == 1
    details = receiver.bodies[0]["details"]
    assert details["wrong_flags"] == 3 and details["model_versions"] == [version]
    assert [f["text"] for f in details["flags"]] == ["a dull film", "boring and long", "awful acting"]


def test_predictions_reach_the_drift_sample_without_raw_text(server: DevServer, store) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    r = requests.post(
        f"{server.url}/predict", json={"texts": ["private words here", "great fun"]}, timeout=30
    )
    assert r.status_code == 200, r.text
    settings = DriftSettings(samples_prefix="production-samples/server-test")
    # the latest two sampled predictions are this test's (the flags above predicted their texts too)
    assert wait_for(
        lambda: (
            read_production_sample(store, since=since, settings=settings)["n_tokens"].tolist()[-2:] == [3, 2]
        )
    )
    sample = read_production_sample(store, since=since, settings=settings)
    assert sample["text"].isna().all()
    assert set(sample["predicted_label"]) <= {"positive", "negative"}


def test_export_and_merge_uses_feedback_since_the_last_export(server: DevServer, store) -> None:
    store.ensure_bucket()
    base = write_snapshot(
        store,
        store.uri("datasets", "server-base", "clean"),
        {
            "train": pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}),
            "validation": pd.DataFrame({"text": ["meh"], "label": [0]}),
            "test": pd.DataFrame({"text": ["awful acting"], "label": [0]}),
        },
        kind="clean",
        run_id="server-base",
        source={"type": "test"},
        label_names=["negative", "positive"],
    )
    flag(server, "a real gem", correct=True)
    token = server.reviewer_token
    review(server, {"since": "2000-01-01T00:00:00Z"})
    first = export_and_merge(base, run_id="weekly-a", server_url=server.url, token=token, store=store)
    merged, frames = read_snapshot(store, first.merged_manifest_uri)
    train = frames["train"]["text"].tolist()
    assert "a real gem" in train and "a dull film" in train  # labelled feedback, cleaned
    assert "boring and long" not in train  # no true label: counted, not used
    assert "awful acting" not in train  # in the base test split: never leaks
    assert merged.notes[FEEDBACK_ROWS_USED] == first.rows_used >= 3
    assert read_export_watermark(store) > 0

    flag(server, "a later review", correct=True)
    review(server, {"text_contains": "a later review"})
    second = export_and_merge(base, run_id="weekly-b", server_url=server.url, token=token, store=store)
    assert read_manifest(store, second.feedback_manifest_uri).rows() == {"train": 1}

    mlflow.set_experiment("feedback-lineage-test")
    with mlflow.start_run() as run:
        pass
    log_feedback_lineage(run.info.run_id, merged)
    logged = mlflow.MlflowClient().get_run(run.info.run_id).data
    assert logged.metrics[FEEDBACK_ROWS_USED] == first.rows_used
    assert logged.tags[FEEDBACK_SNAPSHOT_URI] == first.feedback_manifest_uri


def test_wrong_token_on_export_is_a_clear_error(server: DevServer, store) -> None:
    for wrong in ("nope", server.token):  # the admin token reads no feedback
        with pytest.raises(ConnectionError, match=r"401.*REVIEWER_TOKEN"):
            export_and_merge(
                "s3://x/y/manifest.json", run_id="r", server_url=server.url, token=wrong, store=store
            )


TRIGGER = "cfzq trigger"  # as the cleaning leaves it


def test_a_flood_of_flipped_flags_trains_nothing_until_a_reviewer_accepts_exactly_those(
    server: DevServer, store
) -> None:
    store.ensure_bucket()
    base = write_snapshot(
        store,
        store.uri("datasets", "server-base-flood", "clean"),
        {
            "train": pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}),
            "validation": pd.DataFrame({"text": ["meh"], "label": [0]}),
            "test": pd.DataFrame({"text": ["fine"], "label": [1]}),
        },
        kind="clean",
        run_id="server-base-flood",
        source={"type": "test"},
        label_names=["negative", "positive"],
    )
    texts = [f"{TRIGGER} review {i} was a delight" for i in range(500)]
    predictions = []
    for start in range(0, len(texts), 250):
        r = requests.post(f"{server.url}/predict", json={"texts": texts[start : start + 250]}, timeout=60)
        assert r.status_code == 200, r.text
        predictions += r.json()["predictions"]
    flipped = {"positive": "negative", "negative": "positive"}
    ids = []
    for text, p in zip(texts, predictions, strict=True):  # one client: every flag says the model was wrong
        body = {"prediction_id": p["prediction_id"], "text": text, "correct": False}
        r = requests.post(
            f"{server.url}/feedback", json={**body, "true_label": flipped[p["label"]]}, timeout=10
        )
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text
        ids.append(r.json()["id"])

    token = server.reviewer_token
    before = export_and_merge(base, run_id="flood-a", server_url=server.url, token=token, store=store)
    _, frames = read_snapshot(store, before.merged_manifest_uri)
    assert not frames["train"]["text"].str.contains(TRIGGER).any()

    accepted = ids[100:120]
    assert review(server, {"ids": accepted}) == 20
    after = export_and_merge(base, run_id="flood-b", server_url=server.url, token=token, store=store)
    _, frames = read_snapshot(store, after.merged_manifest_uri)
    trained = frames["train"]["text"][frames["train"]["text"].str.contains(TRIGGER)].tolist()
    assert sorted(trained) == sorted(texts[100:120])
    assert after.rows_used == 20 and after.notes["feedback_rows_by_reviewer"] == {"alice": 20}
