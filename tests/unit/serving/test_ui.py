"""The web page blueprint through Flask's test client: page, prefix-safe URLs, no token in the source,
the feedback-per-day endpoint against a real SQLite feedback store, and clear 4xx/503 JSON errors.

The registry-backed parts (versions table, deploy) run against the real stack in ``test_ui_browser.py``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client
from werkzeug.wrappers import Response

from sentiflow import names
from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from serving.http.ui import RANKING_METRICS, TABLE_METRICS
from serving.store.db import feedback_table
from tests.conftest import migrated_state

TOKEN = "ui-test-secret-token"


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    settings = ServerSettings(
        state_dir=migrated_state(tmp_path / "state"), admin_token=TOKEN, max_text_chars=500
    )
    # Nothing listens on port 9: the registry is "down" for these tests.
    app = create_app(settings, MLflowSettings(tracking_uri="http://127.0.0.1:9"), start=False)
    yield app
    app.extensions["sentiflow"].db.dispose()


def test_page_renders_with_limits_and_without_the_token(app):
    r = app.test_client().get("/ui/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert TOKEN not in html
    assert 'data-max-text-chars="500"' in html
    for metric in RANKING_METRICS:
        assert f'<option value="{metric}">' in html
    assert "/ui/static/ui/app.js" in html and "/ui/static/ui/ui.css" in html
    assert "http://" not in html.replace('xmlns="http://', "") and "https://" not in html  # no CDN assets


def test_static_assets_are_served_and_use_relative_urls(app):
    client = app.test_client()
    js = client.get("/ui/static/ui/app.js")
    css = client.get("/ui/static/ui/ui.css")
    assert js.status_code == 200 and css.status_code == 200
    source = js.get_data(as_text=True)
    # Every fetch goes through api(BASE + path): no absolute URL to another host, no token literal.
    assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", source) == []
    assert "sessionStorage" in source and TOKEN not in source
    js.close()
    css.close()


def test_root_redirects_to_the_page(app):
    r = app.test_client().get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/ui/")


def test_page_works_behind_a_path_prefix(app):
    """Mounted at /prefix (what a reverse proxy + SCRIPT_NAME gives): every URL on the page carries it."""
    mounted = DispatcherMiddleware(Response("outside the app", status=404), {"/prefix": app.wsgi_app})
    client = Client(mounted, Response)
    r = client.get("/prefix/ui/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'data-base="/prefix"' in html
    assert 'src="/prefix/ui/static/ui/app.js"' in html
    assert 'href="/prefix/ui/static/ui/ui.css"' in html
    assert 'href="/prefix/openapi.json"' in html
    assert client.get("/prefix/ui/static/ui/app.js").status_code == 200
    redirect = client.get("/prefix/")
    assert redirect.status_code == 302 and redirect.headers["Location"].endswith("/prefix/ui/")
    daily = client.get("/prefix/ui/api/feedback/daily")
    assert daily.status_code == 200 and daily.json["window"]["total"] == 0


def _insert(app, created_at: datetime, correct: bool) -> None:
    with app.extensions["sentiflow"].feedback.db.engine.begin() as conn:
        conn.execute(
            feedback_table.insert().values(
                created_at=created_at, text="t", predicted_label="positive", correct=correct
            )
        )


def test_feedback_daily_counts_correct_and_wrong_per_day(app):
    store = app.extensions["sentiflow"].feedback
    now = datetime.now(UTC)
    store.add(text="great", predicted_label="positive", correct=True)
    store.add(text="awful", predicted_label="positive", correct=False, true_label="negative")
    store.add(text="fine", predicted_label="positive", correct=True)
    _insert(app, now - timedelta(days=2), False)
    _insert(app, now - timedelta(days=40), True)  # outside the 14-day window, inside all time

    body = app.test_client().get("/ui/api/feedback/daily?days=14").json
    assert len(body["days"]) == 14
    assert body["days"][-1] == {"date": now.date().isoformat(), "correct": 2, "wrong": 1}
    two_days_ago = (now - timedelta(days=2)).date().isoformat()
    assert {"date": two_days_ago, "correct": 0, "wrong": 1} in body["days"]
    assert sum(d["correct"] + d["wrong"] for d in body["days"]) == 4
    assert body["window"] == {"days": 14, "total": 4, "correct": 2, "accuracy": 0.5}
    assert body["all_time"] == {"total": 5, "correct": 3, "accuracy": 0.6}


def test_feedback_daily_with_no_rows_has_no_accuracy(app):
    body = app.test_client().get("/ui/api/feedback/daily?days=3").json
    assert [d["correct"] + d["wrong"] for d in body["days"]] == [0, 0, 0]
    assert body["window"]["accuracy"] is None and body["all_time"]["accuracy"] is None


@pytest.mark.parametrize("days", ["0", "abc", "9999", "-3"])
def test_feedback_daily_rejects_bad_days(app, days):
    r = app.test_client().get(f"/ui/api/feedback/daily?days={days}")
    assert r.status_code == 400
    assert "days" in r.json["message"]


def test_versions_rejects_an_unknown_metric(app):
    r = app.test_client().get("/ui/api/versions?metric=val_vibes")
    assert r.status_code == 400
    assert r.json["error"] == "unknown_metric" and "val_vibes" in r.json["message"]


def test_versions_says_when_the_registry_is_down(app):
    r = app.test_client().get(f"/ui/api/versions?metric={names.VAL_ACCURACY}")
    assert r.status_code == 503
    assert r.json["error"] == "registry_unavailable"
    # an anonymous caller learns what failed, not where the registry is nor its error (in the log)
    assert "127.0.0.1:9" not in r.json["message"] and "Error" not in r.json["message"]
    assert r.json["request_id"] == r.headers["X-Request-ID"]


def test_table_shows_best_val_f1_accuracy_and_auc():
    assert TABLE_METRICS == (names.BEST_VAL_F1, names.VAL_ACCURACY, names.VAL_AUC)
    assert RANKING_METRICS[0] == names.BEST_VAL_F1
    assert len(set(RANKING_METRICS)) == len(RANKING_METRICS)


def test_feedback_daily_sql_runs_on_the_store_engine(app):
    """Guard for the SQL ``date()`` grouping: SQLite returns strings, which the view parses."""
    with app.extensions["sentiflow"].feedback.db.engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.date(sa.literal("2024-05-01 10:00:00")))).scalar_one()
    assert str(value)[:10] == "2024-05-01"


def test_models_says_when_the_registry_is_down(app):
    r = app.test_client().get("/ui/api/models")
    assert r.status_code == 503 and r.json["error"] == "registry_unavailable"
    assert "127.0.0.1:9" not in r.json["message"] and "request_id" in r.json


def test_versions_rejects_a_malformed_model_name(app):
    r = app.test_client().get("/ui/api/versions?model=x' or name != '")
    assert r.status_code == 400 and r.json["error"] == "bad_model_name"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("/work/shared/data/imdb", "imdb"),
        ("../shared/data/imdb/", "imdb"),
        ("imdb", "imdb"),
        ("cardiffnlp/tweet_eval", "cardiffnlp/tweet_eval"),
        ("s3://sentiflow/inputs/tweets", "tweets"),
        ("s3://sentiflow/datasets/manual__2026/clean/manifest.json", "snapshot manual__2026"),
        (None, None),
    ],
)
def test_dataset_column_shows_the_source_name(source, shown):
    from serving.http.ui import dataset_label

    assert dataset_label(source) == shown
