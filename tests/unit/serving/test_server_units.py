"""In-process parts of the model server: micro-batcher, feedback store and listeners, auth."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from sentiflow.families.tfidf.model import TfidfClassifier
from sentiflow.registry import RegistryUnavailableError
from sentiflow.settings.server import ServerSettings
from serving.app import create_app
from serving.extension import server
from serving.model.batcher import MicroBatcher, NotReadyError
from serving.process import mlflow_environment
from serving.store import feedback
from serving.store.db import Database
from tests.conftest import migrated_state, migrated_url
from tests.devserver import NEG_TEXTS, POS_TEXTS


@dataclass
class _Model:
    version: str
    classifier: Any


class _CountingClassifier:
    """A real TF-IDF classifier that records the size of each forward pass."""

    def __init__(self) -> None:
        self.inner = TfidfClassifier.build(["negative", "positive"]).fit(
            NEG_TEXTS * 3 + POS_TEXTS * 3, [0] * 12 + [1] * 12
        )
        self.label_names = self.inner.label_names
        self.calls: list[int] = []
        self.gate = threading.Event()

    def predict_proba(self, texts):
        self.gate.wait(5)
        self.calls.append(len(texts))
        return self.inner.predict_proba(texts)


def test_batcher_merges_concurrent_requests_and_keeps_rows_in_order():
    clf = _CountingClassifier()
    model = _Model("3", clf)
    batcher = MicroBatcher(lambda: model, max_texts=16, wait_s=0.05)
    texts = [[f"great fun {i}"] if i % 2 else [f"boring {i}", f"dull {i}"] for i in range(12)]
    futures = [batcher.submit(t) for t in texts]  # the first blocks on the gate; the rest queue up
    clf.gate.set()
    for t, f in zip(texts, futures, strict=True):
        got_model, probs = f.result(timeout=10)
        assert got_model is model
        np.testing.assert_allclose(probs, clf.inner.predict_proba(t))
    assert sum(clf.calls) == sum(len(t) for t in texts)
    assert len(clf.calls) < len(texts)  # some requests shared a forward pass
    assert max(clf.calls) <= 16
    batcher.stop()


def test_batcher_without_model_is_not_ready():
    batcher = MicroBatcher(lambda: None)
    with pytest.raises(NotReadyError):
        batcher.predict(["x"], timeout_s=5)
    batcher.stop()


def test_feedback_store_commits_and_notifies_the_apps_listeners(tmp_path):
    settings = ServerSettings(state_dir=migrated_state(tmp_path))
    ext = server(create_app(settings, start=False))
    seen = []
    ext.on_feedback_stored(seen.append)

    @ext.on_feedback_stored
    def broken(_record):
        raise RuntimeError("listener bug")

    try:
        record = ext.feedback.add(
            text="meh", predicted_label="positive", correct=False, true_label="negative"
        )
        ext.notify_feedback_stored(record)  # the broken listener must not stop the good one
        assert [r.id for r in seen] == [record.id]
    finally:
        ext.close()
    reopened = feedback.FeedbackStore(Database(settings.resolved_feedback_db_url))
    frame = reopened.frame()
    assert frame.astype(object).where(frame.notna(), None).to_dict("records")[0] | {"created_at": None} == {
        "id": record.id,
        "created_at": None,
        "text": "meh",
        "predicted_label": "positive",
        "correct": False,
        "true_label": "negative",
        "model_version": None,
        "verified": False,
        "client": None,
        "status": "pending",
        "review_label": None,
        "review_seq": None,
        "reviewed_by": None,
        "reviewed_at": None,
    }
    assert len(reopened.frame(since_id=record.id)) == 0
    with pytest.raises(ValueError, match="unknown export format"):
        reopened.export("xlsx")


def test_a_feedback_db_from_before_verified_keeps_its_rows_as_unverified(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as servers before signed prediction ids made it
        conn.execute(
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at DATETIME NOT NULL, "
            "text TEXT NOT NULL, predicted_label VARCHAR(128) NOT NULL, correct BOOLEAN NOT NULL, "
            "true_label VARCHAR(128), model_version VARCHAR(64))"
        )
        conn.execute(
            "INSERT INTO feedback (created_at, text, predicted_label, correct) "
            "VALUES ('2025-01-01 00:00:00', 'old row', 'banana', 0)"
        )
    store = feedback.FeedbackStore(Database(migrated_url(f"sqlite:///{path}")))
    store.add(text="new", predicted_label="positive", correct=True, verified=True)
    frame = store.frame()
    assert frame["text"].tolist() == ["old row", "new"]
    assert frame["verified"].tolist() == [False, True]
    store.db.dispose()


def test_an_unset_token_disables_its_endpoints(tmp_path):
    settings = ServerSettings(state_dir=migrated_state(tmp_path), admin_token=None, reviewer_token=None)
    app = create_app(settings, start=False)
    for path, setting in [
        ("/deploy/status?id=r", "SENTIFLOW_SERVER_ADMIN_TOKEN"),
        ("/feedback/export", "SENTIFLOW_SERVER_REVIEWER_TOKEN"),
    ]:
        response = app.test_client().get(path, headers={"Authorization": "Bearer x"})
        assert response.status_code == 401
        assert setting in response.get_json()["message"]


def test_a_registry_call_with_the_registry_down_answers_503_in_seconds(tmp_path, monkeypatch):
    """MLflow's default retries back off for minutes; the server caps them so the caller hears at once."""
    import time

    from sentiflow.settings.components import MLflowSettings

    settings = ServerSettings(state_dir=migrated_state(tmp_path))  # the shipped retry defaults
    for name, value in mlflow_environment(settings).items():  # what gunicorn.conf.py sets for the workers
        monkeypatch.setenv(name, value)
    # nothing listens on port 9: the registry is down
    app = create_app(settings, MLflowSettings(tracking_uri="http://127.0.0.1:9"), start=False)
    try:
        started = time.monotonic()
        r = app.test_client().get("/ui/api/versions")
        elapsed = time.monotonic() - started
    finally:
        server(app).close()
    assert r.status_code == 503 and r.get_json()["error"] == "registry_unavailable"
    assert "registry is unavailable" in r.get_json()["message"]  # the public page names no address
    # Not a speed target: MLflow's own retries would back off for minutes (over 120 s); the capped ones
    # answer in seconds. 60 s leaves a loaded CI machine room and still tells the two apart.
    assert elapsed < 60


def test_two_apps_share_no_collaborators_and_leave_the_process_alone(tmp_path, monkeypatch):
    """Everything lives on the app: nothing to reset between tests, no environment or logging changes."""
    import logging
    import os

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    environ, root_handlers = dict(os.environ), list(logging.getLogger().handlers)
    first, second = (
        server(create_app(ServerSettings(state_dir=migrated_state(tmp_path / name)), start=False))
        for name in ("a", "b")
    )
    try:
        assert os.environ == environ and logging.getLogger().handlers == root_handlers
        for attribute in ("registry", "manager", "feedback", "alerter", "sampler"):
            assert getattr(first, attribute) is not getattr(second, attribute), attribute
        assert first.alerter.on_record in first.feedback_listeners  # wired by create_app
        seen = []
        first.on_feedback_stored(seen.append)
        second.notify_feedback_stored(second.feedback.add(text="x", predicted_label="positive", correct=True))
        assert seen == [] and seen.append not in second.feedback_listeners
    finally:
        first.close()
        second.close()


def test_the_model_schema_documents_every_field_of_the_loaded_model() -> None:
    """``GET /model`` is ``LoadedModel.info()`` plus ``deployed``; its documented schema must not drift."""
    from dataclasses import fields

    from serving.http.schemas import ModelInfo
    from serving.model.loaded import LoadedModel

    served = {f.name for f in fields(LoadedModel)} - {"classifier"}
    assert set(ModelInfo.model_fields) == served | {"deployed"}


def test_every_registry_call_of_the_server_is_counted(tmp_path, monkeypatch):
    """One registry path: the web page's lists and the follower's reads go through ``Registry`` and its
    metric."""
    from prometheus_client import REGISTRY

    from sentiflow.settings.components import MLflowSettings

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    # nothing listens on port 9: every call fails, and is still counted
    app = create_app(
        ServerSettings(state_dir=migrated_state(tmp_path)),
        MLflowSettings(tracking_uri="http://127.0.0.1:9"),
        start=False,
    )

    def counted(call: str) -> float:
        return REGISTRY.get_sample_value("sentiflow_server_registry_requests_total", {"call": call}) or 0.0

    calls = ("models", "versions", "version", "alias")
    before = {call: counted(call) for call in calls}
    client, registry = app.test_client(), server(app).registry
    try:
        assert client.get("/ui/api/models").status_code == 503
        assert client.get("/ui/api/versions").status_code == 503
        for read in (lambda: registry.resolve(version="1"), lambda: registry.resolve(alias="champion")):
            with pytest.raises(RegistryUnavailableError):
                read()
    finally:
        server(app).close()
    assert {call: counted(call) - before[call] for call in calls} == dict.fromkeys(calls, 1.0)


def test_only_the_registry_object_builds_an_mlflow_client():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "serving"
    for path in root.rglob("*.py"):
        if path.relative_to(root).as_posix() == "model/registry_reader.py":
            continue
        text = path.read_text()
        assert "mlflow_client" not in text and "MlflowClient" not in text, path


def test_query_strings_are_parsed_by_their_documented_models(tmp_path):
    app = create_app(ServerSettings(state_dir=migrated_state(tmp_path), reviewer_token="t0ken"), start=False)
    client, admin = app.test_client(), {"Authorization": "Bearer t0ken"}
    try:
        server(app).feedback.add(text="a", predicted_label="positive", correct=True)
        server(app).feedback.add(text="b", predicted_label="positive", correct=False)
        csv = client.get("/feedback/export?format=csv&since_id=1&limit=5", headers=admin)
        assert csv.status_code == 200 and csv.get_data(as_text=True).splitlines()[1].startswith("2,")
        # exactly what the document says: an empty value is not "absent", a flag is true/false,
        # numbers stop below 2**31, the format is one of the enum's spellings
        for query, name in (
            ("since_id=abc", "since_id"),
            ("limit=-1", "limit"),
            ("limit=", "limit"),
            ("limit=2147483648", "limit"),
            ("format=xlsx", "format"),
            ("format=CSV", "format"),
        ):
            bad = client.get(f"/feedback/export?{query}", headers=admin)
            assert bad.status_code == 400 and f"query parameter '{name}'" in bad.get_json()["message"], query
    finally:
        server(app).close()


def test_the_server_package_has_no_import_circles():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    modules = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (root / "serving").rglob("*.py")
        if p.name != "gunicorn.conf.py"
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    deps.add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for dep in graph[start]:
            if dep == goal or (dep not in seen and (seen.add(dep) or reaches(dep, goal, seen))):
                return True
        return False

    assert [m for m in graph if reaches(m, m, set())] == []
