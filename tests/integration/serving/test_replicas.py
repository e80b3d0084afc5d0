"""Three model-server replicas follow one registry alias, behind a round-robin proxy.

Real processes only: three gunicorn servers (2 workers each), each with its own state folder (three pods),
one MLflow + S3 (the ``stack`` fixture), one shared SQLite database, and nginx on 127.0.0.1 playing the
Kubernetes Service. The module walks one fleet through its life, so the order of the tests matters:

1. at start every replica serves the champion; ``GET /replicas`` lists all three from any of them;
2. promotions (TF-IDF, then a transformer) under continuous load through the proxy: no non-2xx, every
   answer names the old or the new version, all three serve the new one within the bound;
3. a release (the pipeline's alias move, then its wait) through the proxy reaches all three, and every
   replica reports the same fleet; a version that cannot load: section 7;
4. feedback posted through the proxy lands on different replicas and in one store;
5. ``kill -9`` of one replica during a swap, then a restart: it serves the alias's version;
6. a replica started while MLflow is down is unready with a reason, and ready when MLflow returns;
7. the DAG's release tasks (deploy, inference check) on a registered version, against the proxy; a version
   that cannot load fails the deploy step naming the replica, and the alias moves back.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from sentiflow import names, registry
from sentiflow.localstack import stack as localstack
from sentiflow.localstack import supervisor
from sentiflow.serving_client import ModelServerClient, ReplicaLoadError
from sentiflow.settings.components import MLflowSettings
from tests.dagrun import run_dag
from tests.devproxy import RoundRobinProxy
from tests.devserver import (
    DevServer,
    make_champion,
    own_registered_model,
    register_tfidf_versions,
    register_unfitted_version,
    release,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("nginx"),  # fails, never skips, without nginx
]

DAGS = Path(__file__).resolve().parents[2] / "e2e" / "dags"
POLL_S = 0.5
BOUND_S = 180.0  # generous: five helpers share two cores; speed is measured in benchmarks/
SERVER_ENV = {
    "SENTIFLOW_SERVER_WORKERS": "2",
    "SENTIFLOW_SERVER_THREADS": "8",
    "SENTIFLOW_SERVER_RELOAD_POLL_S": str(POLL_S),
    "SENTIFLOW_SERVER_REPLICA_TTL_S": "8",
    "SENTIFLOW_SERVER_RUNTIME": "torch",
    # the shipped default (tests/devserver.py turns it off): the fleet's transformer promotions run with the
    # model libraries imported in each master before the fork
    "SENTIFLOW_SERVER_PRELOAD_LIBRARIES": "true",
    "SENTIFLOW_SERVER_LOAD_RETRY_MAX_S": "4",
    # One prediction-id secret for the whole fleet (compose and k8s pass one Secret to every replica), so
    # feedback citing a prediction verifies on whichever replica the Service sends it to.
    "SENTIFLOW_SERVER_PREDICTION_SECRET": "replica-fleet-prediction-secret",
}


@dataclass
class Fleet:
    stack: localstack.StackSettings
    servers: dict[str, DevServer]
    proxy: RoundRobinProxy
    versions: list[str]
    db_url: str
    extra: list[DevServer] = field(default_factory=list)

    @property
    def client(self) -> ModelServerClient:
        return ModelServerClient(self.proxy.url, self.stack.server_token, timeout_s=60)

    @property
    def settings(self) -> MLflowSettings:
        return MLflowSettings()

    def champion(self) -> str | None:
        s = self.settings
        return registry.version_for_alias(registry.mlflow_client(s), s, s.champion_alias)

    def promote(self, version: str) -> None:
        """What the DAG's promote task does: the signed approval, the alias move; nothing else."""
        make_champion(version)


def _server(stack, name: str, tmp_path_factory, db_url: str) -> DevServer:
    return DevServer(
        stack,
        {**SERVER_ENV, "SENTIFLOW_SERVER_FEEDBACK_DB_URL": db_url},
        state_root=tmp_path_factory.mktemp(f"state-{name}"),
        name=f"replica-{name}",
        port=localstack.free_port(),
    )


@pytest.fixture(scope="module")
def fleet(stack, tmp_path_factory) -> Iterator[Fleet]:
    with own_registered_model("replicas-test"):
        yield from _fleet(stack, tmp_path_factory)


def _fleet(stack, tmp_path_factory) -> Iterator[Fleet]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('shared-db') / 'server.db'}"
    versions = register_tfidf_versions(2)
    make_champion(versions[0])
    servers = {n: _server(stack, n, tmp_path_factory, db_url) for n in ("a", "b", "c")}
    proxy = RoundRobinProxy(
        stack, [f"127.0.0.1:{srv.port}" for srv in servers.values()], localstack.free_port()
    )
    fleet = Fleet(stack, servers, proxy, versions, db_url)
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda srv: srv.start(), servers.values()))
        proxy.start()
        yield fleet
    finally:
        proxy.stop()
        for srv in [*servers.values(), *fleet.extra]:
            srv.stop()


def register_transformer_version(model_dir) -> str:
    import mlflow

    from sentiflow.families.transformer.model import TransformerClassifier
    from sentiflow.modeling.pyfunc import log_classifier

    clf = TransformerClassifier.from_pretrained(str(model_dir), ["negative", "positive"], max_length=64)
    with mlflow.start_run():
        info = log_classifier(clf, registered_model_name=MLflowSettings().registered_model_name)
    return str(info.registered_model_version)


def replica_versions(fleet: Fleet) -> dict[str, str | None]:
    return {r["replica_id"]: r["version"] for r in fleet.client.replicas()["replicas"]}


class Load:
    """Continuous /predict load through the proxy; every answer's status and version, tagged by phase."""

    def __init__(self, url: str, threads: int = 6) -> None:
        self.url = url
        self.results: list[tuple[str, int, str | None]] = []
        self.phase = "before"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            phase = self.phase
            try:
                r = session.post(f"{self.url}/predict", json={"texts": ["a great film", "dull"]}, timeout=60)
                status, version = r.status_code, (r.json().get("model_version") if r.ok else r.text[:200])
            except requests.RequestException as exc:
                status, version = -1, str(exc)
            with self._lock:
                self.results.append((phase, status, version))

    def count(self, phase: str) -> int:
        with self._lock:
            return sum(1 for p, *_ in self.results if p == phase)

    def wait_for(self, phase: str, n: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(phase) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)


# --- 1. start ---------------------------------------------------------------------------------------
def test_each_master_imported_the_model_libraries_before_forking(fleet: Fleet) -> None:
    """``SENTIFLOW_SERVER_PRELOAD_LIBRARIES``: torch and ONNX Runtime are mapped in every gunicorn master (the
    processes the workers fork from), though the fleet serves a TF-IDF version so far."""
    for srv in fleet.servers.values():
        maps = Path(f"/proc/{srv.pid}/maps").read_text()
        assert "libtorch_cpu" in maps and "onnxruntime" in maps, srv.name


def test_every_replica_serves_the_champion_and_lists_the_others(fleet):
    v1 = fleet.versions[0]
    answer = fleet.client.wait_for_replicas(v1, timeout_s=BOUND_S, poll_s=0.5)
    assert len(answer["replicas"]) == 3
    assert answer["alias"] == "champion" and answer["alias_version"] == v1
    for replica in answer["replicas"]:
        assert replica["state"] == "serving" and len(replica["workers"]) == 2
    ids = {r["replica_id"] for r in answer["replicas"]}
    for srv in fleet.servers.values():  # any pod answers the same list
        direct = requests.get(f"{srv.url}/replicas", timeout=10).json()
        assert {r["replica_id"] for r in direct["replicas"]} == ids
    assert {predict(fleet.proxy.url) for _ in range(9)} == {v1}
    model = requests.get(f"{fleet.proxy.url}/model", timeout=10).json()
    assert model["deployed"]["alias"] == "champion" and model["deployed"]["version"] == v1


def predict(url: str) -> str:
    r = requests.post(f"{url}/predict", json={"text": "a great film"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


# --- 2. promotions under load ----------------------------------------------------------------------
def test_promotions_under_load_drop_nothing_and_reach_every_replica(fleet, tiny_model_dir):
    v1, v2 = fleet.versions
    v3 = register_transformer_version(tiny_model_dir)
    fleet.versions.append(v3)
    with Load(fleet.proxy.url) as load:
        load.wait_for("before", 60)
        load.phase = "tfidf"
        fleet.promote(v2)  # what the DAG's promote task does: nothing else
        fleet.client.wait_for_replicas(v2, timeout_s=BOUND_S, poll_s=0.5)
        load.phase = "after-tfidf"
        load.wait_for("after-tfidf", 60)
        load.phase = "transformer"
        fleet.promote(v3)
        fleet.client.wait_for_replicas(v3, timeout_s=BOUND_S, poll_s=0.5)
        load.phase = "after-transformer"
        load.wait_for("after-transformer", 30)
    by_phase: dict[str, set] = {}
    failures = [r for r in load.results if r[1] != 200]
    for phase, _, version in load.results:
        by_phase.setdefault(phase, set()).add(version)
    assert failures == [], failures[:5]
    assert by_phase["before"] == {v1}
    assert by_phase["tfidf"] <= {v1, v2}
    assert by_phase["after-tfidf"] == {v2}
    assert by_phase["transformer"] <= {v2, v3}
    assert by_phase["after-transformer"] == {v3}
    assert set(replica_versions(fleet).values()) == {v3}


# --- 3. a release through the proxy ------------------------------------------------------------------
def test_a_release_through_the_proxy_reaches_every_replica_and_they_agree(fleet):
    """The pipeline's alias move, then its wait through the Service (``tests.devserver.release``): all three
    serve the version, and every replica answers ``GET /replicas`` the same (one shared database)."""
    v1, v3 = fleet.versions[0], fleet.versions[2]
    answer = release(fleet.proxy.url, v1, token=fleet.stack.server_token, timeout_s=BOUND_S)
    assert len(answer["replicas"]) == 3 and {x["version"] for x in answer["replicas"]} == {v1}
    assert fleet.champion() == v1
    s = fleet.settings
    assert registry.version_for_alias(registry.mlflow_client(s), s, s.previous_alias) == v3
    views = []
    for srv in fleet.servers.values():
        replicas = requests.get(f"{srv.url}/replicas", timeout=10).json()
        views.append(
            (
                replicas["alias_version"],
                tuple(sorted((r["replica_id"], r["version"]) for r in replicas["replicas"])),
            )
        )
    assert len(set(views)) == 1 and views[0][0] == v1, views
    assert {predict(fleet.proxy.url) for _ in range(9)} == {v1}


# --- 4. feedback ------------------------------------------------------------------------------------
def test_feedback_through_the_proxy_lands_in_one_store(fleet):
    marker = uuid.uuid4().hex[:8]
    replicas, ids = set(), []
    for i in range(12):
        text = f"probe {marker} {i}"
        predicted = requests.post(f"{fleet.proxy.url}/predict", json={"text": text}, timeout=60)
        assert predicted.status_code == 200, predicted.text
        prediction = predicted.json()["predictions"][0]
        r = requests.post(  # round robin: usually another replica than the one that signed the prediction
            f"{fleet.proxy.url}/feedback",
            json={"text": text, "prediction_id": prediction["prediction_id"], "correct": i % 2 == 0},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        replicas.add(r.headers["X-Sentiflow-Replica"])
        ids.append(r.json()["id"])
    assert len(replicas) >= 2  # round robin: several pods took the rows
    export = ModelServerClient(fleet.proxy.url, fleet.stack.reviewer_token, timeout_s=60).feedback_frame()
    mine = export[export["text"].str.startswith(f"probe {marker}")]
    assert sorted(mine["id"]) == sorted(ids)


# --- 5. kill -9 during a swap -----------------------------------------------------------------------
def victim_replica_id(fleet: Fleet, server: DevServer) -> str:
    return requests.get(f"{server.url}/health", timeout=10).headers["X-Sentiflow-Replica"]


def test_a_replica_killed_during_a_swap_serves_the_alias_after_restart(fleet):
    v3 = fleet.versions[2]
    victim = fleet.servers["b"]
    fleet.promote(v3)  # the transformer: a swap that takes a while
    time.sleep(POLL_S * 2)  # the replicas have seen the move and are loading
    killed_id = victim_replica_id(fleet, victim)
    victim.kill()
    # The dead replica drops out of /replicas once its heartbeat is older than the TTL (8 s); it may have
    # reported v3 before it died, so "all on v3" alone does not show that it is gone.
    deadline = time.monotonic() + BOUND_S
    while killed_id in replica_versions(fleet) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert killed_id not in replica_versions(fleet)
    fleet.client.wait_for_replicas(v3, timeout_s=BOUND_S, poll_s=0.5)
    assert len(fleet.client.replicas()["replicas"]) == 2
    victim.start()
    fleet.client.wait_for_replicas(v3, timeout_s=BOUND_S, poll_s=0.5)
    assert predict(victim.url) == v3
    assert len(fleet.client.replicas()["replicas"]) == 3


# --- 6. MLflow down at start ------------------------------------------------------------------------
def test_a_replica_started_while_mlflow_is_down_becomes_ready_when_it_returns(fleet, tmp_path_factory):
    stack = fleet.stack
    late = _server(stack, "late", tmp_path_factory, fleet.db_url)
    fleet.extra.append(late)
    supervisor.stop(stack, "mlflow")
    try:
        late.start()
        r = requests.get(f"{late.url}/ready", timeout=10)
        assert r.status_code == 503
        reason = r.json()["reason"]
        assert "champion" in reason and ("registry" in reason or "cannot" in reason), reason
        assert requests.post(f"{late.url}/predict", json={"text": "x"}, timeout=10).status_code == 503
        assert predict(fleet.proxy.url) == fleet.versions[2]  # the running replicas keep serving
    finally:
        supervisor.start(stack, localstack.services(stack)["mlflow"])
    deadline = time.monotonic() + BOUND_S
    body: dict = {}
    while time.monotonic() < deadline:
        r = requests.get(f"{late.url}/ready", timeout=10)
        body = r.json()
        if r.status_code == 200:
            break
        time.sleep(1)
    assert body.get("ready") is True and body["model_version"] == fleet.versions[2], body
    late.stop()
    fleet.extra.remove(late)


# --- 7. the DAG's release tasks against the proxy ----------------------------------------------------
def test_the_dags_deploy_and_inference_check_wait_for_every_replica(fleet):
    """The pipeline's release tasks (``tests/e2e/dags/release_registered_version.py``: the real
    select_best → promote → deploy → inference_check) on a version registered just before, as a training
    task hands it over: the deploy waits for all three replicas and the check's texts go through the proxy."""
    from tests.devserver import NEG_TEXTS, POS_TEXTS

    localstack.airflow_init(fleet.stack)
    # the gate reads the selection metric from the version's run, as a training task logs it
    (version,) = register_tfidf_versions(1, C_values=(2.0,), metrics=[{names.VAL_F1: 0.9}])
    client = registry.mlflow_client(fleet.settings)
    conn = {"conn_type": "http", "host": fleet.proxy.url, "password": fleet.stack.server_token}
    cases = [{"text": t, "label": "positive"} for t in POS_TEXTS] + [
        {"text": t, "label": "negative"} for t in NEG_TEXTS
    ]
    conf = {
        "registered_version": version,
        "registered_run_id": client.get_model_version(fleet.settings.registered_model_name, version).run_id,
        "selection_metric": names.VAL_F1,
        "force_promote": True,
        "check_cases_per_class": 0,  # the version names no snapshot: the check sends these texts alone
        "check_texts": cases,
        "check_min_accuracy": 0.75,
    }
    env = {"AIRFLOW_CONN_SENTIFLOW_MODEL_SERVER": json.dumps(conn), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    result = run_dag("release_registered_version", conf, env=env, timeout_s=1200)
    assert result["state"] == "success", result["tasks"]
    check = result["xcom"]["inference_check"]
    assert check["passed"] and check["cases"] == len(cases) and check["model_version"] == version
    assert fleet.champion() == version
    assert set(replica_versions(fleet).values()) == {version}
    assert {predict(fleet.proxy.url) for _ in range(9)} == {version}


def test_the_deploy_step_fails_on_a_replica_load_error_and_rolls_back(fleet):
    from sentiflow.release import flow as release
    from sentiflow.release.deploy import DeployError

    before = fleet.champion()
    broken = register_unfitted_version()
    s = fleet.settings
    client = registry.mlflow_client(s)
    prior = release.promote(client, s, broken)  # what the DAG's promote task does
    with pytest.raises(release.ReleaseError) as info:
        release.deploy(client, s, fleet.client, prior, timeout_s=BOUND_S)
    assert isinstance(info.value.__cause__, DeployError)
    assert isinstance(info.value.__cause__.__cause__, ReplicaLoadError)
    load_error = str(info.value.__cause__.__cause__)
    assert load_error.startswith("replica ") and f"could not load version {broken}" in load_error
    assert fleet.champion() == before, str(info.value)
    assert set(replica_versions(fleet).values()) == {before}
