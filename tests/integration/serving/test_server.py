"""The model server under a real gunicorn (2 workers) on 127.0.0.1, with the real MLflow registry.

Covers the server's reliability: bad input → 4xx JSON, 401 on bad tokens, releases (the pipeline's
alias move, ``tests.devserver.release``) during sustained load with zero failures and every response naming
its version, an alias moved to a version that cannot load leaves the old model serving, and kill + restart
serves the alias's version with every feedback row.
Several replicas behind a proxy: ``test_replicas.py``.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest
import requests

from sentiflow import registry
from sentiflow.serving_client import ReplicaLoadError
from sentiflow.settings.components import MLflowSettings
from tests.devserver import (
    DevServer,
    make_champion,
    register_tfidf_versions,
    register_unfitted_version,
    threads_for_clients,
)
from tests.devserver import own_registered_model as own_model

LOAD_CLIENTS = 8  # concurrent clients of the deploy-under-load test
SERVER_ENV = {
    "SENTIFLOW_SERVER_WORKERS": "2",
    "SENTIFLOW_SERVER_THREADS": threads_for_clients(LOAD_CLIENTS),
    "SENTIFLOW_SERVER_RELOAD_POLL_S": "0.2",
    "SENTIFLOW_SERVER_MAX_TEXTS": "256",
    "SENTIFLOW_SERVER_METRICS_TOKEN": "server-test-metrics-token",
}


@pytest.fixture(scope="module", autouse=True)
def own_registered_model(stack) -> Iterator[str]:
    """This module's own registered model: other test files share the session's MLflow and set aliases
    (a ``champion``) on the default name, while these tests need a registry they alone control."""
    with own_model("server-test") as name:
        yield name


@pytest.fixture(scope="module")
def versions(stack) -> list[str]:
    return register_tfidf_versions(2)


@pytest.fixture(scope="module")
def server(stack, versions, tmp_path_factory) -> Iterator[DevServer]:
    # its own state folder: another module's server may have persisted a deployed version in the stack's
    srv = DevServer(stack, SERVER_ENV, state_root=tmp_path_factory.mktemp("server-state")).start()
    try:
        yield srv
    finally:
        srv.stop()


def auth(srv: DevServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.token}"}


def reviewer_auth(srv: DevServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.reviewer_token}"}


def wait_ready(srv: DevServer, timeout_s: float = 120.0) -> dict:
    """Poll /ready until a worker has finished its startup load (ready, or unready with a reason)."""
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        body = requests.get(f"{srv.url}/ready", timeout=5).json()
        if body.get("ready") or not body.get("reason", "").startswith("starting"):
            return body
        time.sleep(0.2)
    return body


def wait_all_workers(srv: DevServer, version: str, workers: int = 2, timeout_s: float = 120.0) -> None:
    """Every live worker of the one replica names ``version`` in ``/replicas`` (the shared database)."""
    deadline = time.monotonic() + timeout_s
    live: list = []
    while time.monotonic() < deadline:
        replicas = requests.get(f"{srv.url}/replicas", timeout=10).json()["replicas"]
        live = [w["version"] for r in replicas for w in r["workers"]]
        if len(live) == workers and set(live) == {version}:
            return
        time.sleep(0.2)
    raise AssertionError(f"workers did not all serve {version}: {live}")


def champion() -> str | None:
    s = MLflowSettings()
    return registry.version_for_alias(registry.mlflow_client(s), s, s.champion_alias)


def previous() -> str | None:
    s = MLflowSettings()
    return registry.version_for_alias(registry.mlflow_client(s), s, s.previous_alias)


def predict_version(srv: DevServer, text: str = "a great film") -> str:
    r = requests.post(f"{srv.url}/predict", json={"text": text}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


# --- order matters inside this module: it walks one server through its life ---------------------------
def test_starts_unready_without_deployed_version_or_champion(server):
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    wait_ready(server)
    r = requests.get(f"{server.url}/ready", timeout=5)
    assert r.status_code == 503
    reason = r.json()["reason"]
    assert "champion" in reason and "no version" in reason
    r = requests.post(f"{server.url}/predict", json={"text": "hello"}, timeout=5)
    assert r.status_code == 503 and r.json()["error"] == "not_ready"
    # where the registry is goes only to the admin token, never to an anonymous caller
    tracking = server.stack.mlflow_uri
    assert tracking not in reason and tracking not in r.json()["message"]
    assert tracking not in requests.get(f"{server.url}/model", timeout=5).json()["message"]
    admin = requests.get(f"{server.url}/ready", headers=auth(server), timeout=5).json()["reason"]
    assert "champion" in admin and tracking in admin


def test_a_release_is_served_by_every_worker(server, versions):
    answer = server.release(versions[0])
    assert answer["alias_version"] == versions[0]
    assert [len(r["workers"]) for r in answer["replicas"]] == [2]
    assert {w["version"] for r in answer["replicas"] for w in r["workers"]} == {versions[0]}
    assert all(r["host"] for r in answer["replicas"])  # the release's client sends the admin token
    anonymous = requests.get(f"{server.url}/replicas", timeout=10).json()["replicas"]
    assert {w["version"] for r in anonymous for w in r["workers"]} == {versions[0]}
    assert not any({"host", "load_error", "alias_error"} & r.keys() for r in anonymous)
    assert champion() == versions[0]  # the registry says what is served
    assert {predict_version(server) for _ in range(20)} == {versions[0]}
    model = requests.get(f"{server.url}/model", headers=auth(server), timeout=5).json()
    assert model["version"] == versions[0] and model["family"] == "tfidf-logreg" and model["run_id"]
    assert model["deployed"]["version"] == versions[0] and model["source"]
    anonymous = requests.get(f"{server.url}/model", timeout=5).json()
    assert anonymous["version"] == versions[0] and anonymous["deployed"]["version"] == versions[0]
    assert not {"run_id", "source"} & anonymous.keys()
    assert not {"replica_id", "load_error"} & anonymous["deployed"].keys()


def test_the_versions_table_shows_run_ids_and_dataset_uris_only_to_the_admin_token(server, versions):
    url = f"{server.url}/ui/api/versions"
    anonymous = requests.get(url, timeout=30).json()["versions"]
    admin = requests.get(url, headers=auth(server), timeout=30).json()["versions"]
    assert {r["version"] for r in anonymous} == {r["version"] for r in admin} >= set(versions)
    assert all(r["run_id"] for r in admin)
    assert not any({"run_id", "dataset_source", "dataset_uri"} & r.keys() for r in anonymous)
    hidden = {"dag_run_id", "candidate_run_id", "champion_scored_on"}
    assert not any(hidden & (r.get("decision") or {}).keys() for r in anonymous)


def test_predict_batch_answers_per_text_with_scores(server, versions):
    texts = ["wonderful, great acting", "boring and dull", "great story"]
    r = requests.post(f"{server.url}/predict", json={"texts": texts}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == versions[0]
    assert [p["label"] for p in body["predictions"]] == ["positive", "negative", "positive"]
    for p in body["predictions"]:
        assert set(p["scores"]) == {"negative", "positive"}
        assert abs(sum(p["scores"].values()) - 1) < 1e-6
        assert p["label_id"] == ["negative", "positive"].index(p["label"])


BAD_REQUESTS = [
    ("malformed json", "/predict", b'{"text": "unterminated', 400),
    ("not an object", "/predict", b'["a", "b"]', 400),
    ("empty body", "/predict", b"", 400),
    ("wrong type text", "/predict", b'{"text": 42}', 422),
    ("wrong type texts", "/predict", b'{"texts": "not a list"}', 422),
    ("wrong item type", "/predict", b'{"texts": ["ok", null]}', 422),
    ("empty text", "/predict", b'{"text": "   "}', 422),
    ("empty list", "/predict", b'{"texts": []}', 422),
    ("missing field", "/predict", b"{}", 422),
    ("both fields", "/predict", b'{"text": "a", "texts": ["b"]}', 422),
    ("unknown field", "/predict", b'{"txt": "a"}', 422),
    ("too many texts", "/predict", json.dumps({"texts": ["good"] * 257}).encode(), 422),
    ("text too long", "/predict", json.dumps({"text": "a" * 10_001}).encode(), 422),
    ("oversize body", "/predict", json.dumps({"text": "a" * (1024 * 1024 + 10)}).encode(), 413),
    ("feedback missing correct", "/feedback", b'{"text": "a", "predicted_label": "positive"}', 422),
    (
        "feedback correct not bool",
        "/feedback",
        b'{"text": "a", "predicted_label": "p", "correct": "yes"}',
        422,
    ),
    ("unknown route", "/nope", b"{}", 404),
]


@pytest.mark.parametrize(("case", "path", "body", "status"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_4xx_json(server, case, path, body, status):
    r = requests.post(
        f"{server.url}{path}", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["status"] == status and payload["message"]


def test_server_survives_bad_input(server, versions):
    assert predict_version(server) == versions[0]
    assert requests.get(f"{server.url}/predict", timeout=5).status_code == 405


@pytest.mark.parametrize("method,path", [("get", "/feedback/export")])
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
def test_token_endpoints_need_their_token(server, method, path, header):
    headers = {"Authorization": header} if header else {}
    r = requests.request(method, f"{server.url}{path}", json={"version": "1"}, headers=headers, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"


def test_broken_version_fails_and_old_model_keeps_serving(server, versions):
    """The alias names a version no worker can load: every worker keeps the old one and reports the failed
    load (what the release waits on), and the release's rollback puts both aliases back."""
    broken = register_unfitted_version()
    previous_before = previous()
    with pytest.raises(ReplicaLoadError) as failed:
        server.release(broken)
    assert broken in str(failed.value) and "could not load" in str(failed.value)
    assert (champion(), previous()) == (versions[0], previous_before)  # both aliases as before the release
    assert {predict_version(server) for _ in range(10)} == {versions[0]}
    assert requests.get(f"{server.url}/model", timeout=5).json()["version"] == versions[0]


@pytest.mark.slow
def test_deploy_during_sustained_load_drops_nothing(server, versions):
    old, new = versions
    results: list[tuple[int, str | None, bool]] = []  # (status, version, sent after the swap)
    failures: list[str] = []  # what each failed request answered
    lock = threading.Lock()
    swapped = threading.Event()
    stop = threading.Event()

    def hammer() -> None:
        session = requests.Session()
        # until the test says stop, however long the release takes: a count would let the clients run
        # out before a slow release completes and leave nothing sent after the swap
        while not stop.is_set():
            after = swapped.is_set()
            try:
                r = session.post(
                    f"{server.url}/predict", json={"texts": ["a great film", "dull"]}, timeout=30
                )
                version = r.json().get("model_version") if r.status_code == 200 else None
                status = r.status_code
                failure = None if status == 200 else f"{status}: {r.text[:200]}"
            except requests.RequestException as exc:
                status, version, failure = -1, None, repr(exc)
            with lock:
                results.append((status, version, after))
                if failure is not None:
                    failures.append(failure)

    def count(after: bool) -> int:
        with lock:
            return sum(1 for *_, a in results if a == after)

    threads = [threading.Thread(target=hammer) for _ in range(LOAD_CLIENTS)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while count(False) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        release_started = time.monotonic()
        server.release(new)
        swapped.set()
        release_s = time.monotonic() - release_started
        deadline = time.monotonic() + 60
        while count(True) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(60)

    assert len(results) >= 200
    assert failures == []
    assert {v for _, v, _ in results} <= {old, new}
    assert old in {v for _, v, a in results if not a}
    after = [v for _, v, a in results if a]
    assert len(after) >= 100 and set(after) == {new}, f"{len(after)} sent after a {release_s:.0f} s release"


def test_feedback_is_stored_and_exported(server):
    texts = ["great film", "not great at all"]
    predicted = requests.post(f"{server.url}/predict", json={"texts": texts}, timeout=10).json()
    ids = [p["prediction_id"] for p in predicted["predictions"]]
    rows = [
        {"prediction_id": ids[0], "text": texts[0], "correct": True},
        {"prediction_id": ids[1], "text": texts[1], "correct": False, "true_label": "negative"},
    ]
    for row in rows:
        r = requests.post(f"{server.url}/feedback", json=row, timeout=10)
        assert r.status_code == 201, r.text
        assert r.json()["id"] >= 1 and r.json()["verified"] is True
    csv = requests.get(f"{server.url}/feedback/export", headers=reviewer_auth(server), timeout=10)
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert list(frame["text"][-2:]) == ["great film", "not great at all"]
    pq = requests.get(
        f"{server.url}/feedback/export?format=parquet", headers=reviewer_auth(server), timeout=10
    )
    assert pq.status_code == 200
    assert len(pd.read_parquet(io.BytesIO(pq.content))) == len(frame)
    bad = requests.get(f"{server.url}/feedback/export?format=xml", headers=reviewer_auth(server), timeout=10)
    assert bad.status_code == 400


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc"])
def test_metrics_need_the_metrics_token(server, header):
    headers = {"Authorization": header} if header else {}
    r = requests.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_metrics_cover_requests_predictions_feedback_and_deploys(server, versions):
    prometheus = {"Authorization": f"Bearer {SERVER_ENV['SENTIFLOW_SERVER_METRICS_TOKEN']}"}
    text = requests.get(f"{server.url}/metrics", headers=prometheus, timeout=10).text
    assert 'sentiflow_server_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert "sentiflow_server_request_latency_seconds_bucket" in text
    assert 'sentiflow_server_predictions_total{label="positive"}' in text
    assert 'sentiflow_server_feedback_total{outcome="wrong"}' in text
    assert 'sentiflow_server_deploys_total{result="success"}' in text
    assert 'sentiflow_server_deploys_total{result="failure"}' in text
    assert "sentiflow_server_model_version{pid=" in text and f"}} {float(versions[1])}" in text
    # which runtime answers, beside the configured one (a TF-IDF version never runs through ONNX)
    runtimes = re.findall(r"sentiflow_server_model_runtime\{([^}]*)\} 1\.0", text)
    assert runtimes and all('configured="onnx-int8"' in r and 'runtime="scikit-learn"' in r for r in runtimes)


@pytest.mark.slow
def test_kill_and_restart_keeps_version_and_feedback(server, versions):
    before = pd.read_csv(
        io.StringIO(
            requests.get(f"{server.url}/feedback/export", headers=reviewer_auth(server), timeout=10).text
        )
    )
    predicted = requests.post(f"{server.url}/predict", json={"text": "last words"}, timeout=10).json()
    prediction_id = predicted["predictions"][0]["prediction_id"]
    r = requests.post(
        f"{server.url}/feedback",
        json={"prediction_id": prediction_id, "text": "last words", "correct": True},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    server.kill()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/health", timeout=2)
    server.start()
    wait_all_workers(server, versions[1])
    assert {predict_version(server) for _ in range(10)} == {versions[1]}
    after = pd.read_csv(
        io.StringIO(
            requests.get(f"{server.url}/feedback/export", headers=reviewer_auth(server), timeout=10).text
        )
    )
    assert list(after["id"]) == [*before["id"], r.json()["id"]]


@pytest.mark.slow
def test_a_stopped_server_starts_on_the_aliases_version(server, versions):
    """No record of its own: an alias moved while the server was down is what it serves on start."""

    server.stop()
    make_champion(versions[0])  # a release while it was down
    server.start()
    wait_all_workers(server, versions[0])
    assert {predict_version(server) for _ in range(10)} == {versions[0]}
    assert not (server.state_dir / "deployed.json").exists()


def test_only_the_pipelines_newest_approval_is_served(server, versions):
    """The alias moved without a release (here by the pipeline's own MLflow identity, which may move it, but
    without the release's signed approval): to a version never approved, or back to one a later release
    superseded. Every worker refuses to load it, keeps serving, and ``/replicas`` says why."""
    served, superseded = versions  # the previous test released versions[0] again, after versions[1]
    s = MLflowSettings()
    client = registry.mlflow_client(s)
    (unapproved,) = register_tfidf_versions(1)
    for version, why in [
        (unapproved, "has no signed approval"),
        (superseded, "is not the pipeline's latest approval"),
    ]:
        client.set_registered_model_alias(s.registered_model_name, s.champion_alias, version)
        deadline, errors = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            replicas = requests.get(f"{server.url}/replicas", headers=auth(server), timeout=10).json()
            workers = [w for r in replicas["replicas"] for w in r["workers"]]
            errors = [w["load_error"] or "" for w in workers if w["error_version"] == version]
            if len(errors) == 2 and all(why in e for e in errors):
                break
            time.sleep(0.2)
        assert len(errors) == 2 and all(why in e for e in errors), errors
        assert all(r["host"] for r in replicas["replicas"])
        # an anonymous caller sees that the load failed, not why nor on which host
        anonymous = requests.get(f"{server.url}/replicas", timeout=10).json()["replicas"]
        assert [w["error_version"] for r in anonymous for w in r["workers"]] == [version, version]
        assert not any({"host", "load_error", "alias_error"} & r.keys() for r in anonymous)
        assert not any("load_error" in w for r in anonymous for w in r["workers"])
        assert {predict_version(server) for _ in range(10)} == {served}
    client.set_registered_model_alias(s.registered_model_name, s.champion_alias, served)
