"""Three replicas on one shared real PostgreSQL: deploys, rollback, feedback, and deployments that finish
when the pod that accepted them is killed.

The fleet: three gunicorn servers (2 workers each, own state folders), the session's MLflow + S3, nginx
round robin in front, and one fresh database on the session's Postgres (as compose and k8s run it),
migrated by each server's start step (several at once, as init containers do: the migration lock makes
the later ones no-ops). ``test_replicas.py`` walks the same deploys, rollback and feedback (and the rest
of a fleet's life: transformer promotions under load, the DAG) on a shared SQLite file; the lease
take-over is tested on both databases at the row level in ``test_replica_store.py``. The fleet runs here
on Postgres only: a second SQLite fleet cost the suite three minutes and found nothing the row tests miss.

The kill tests ``kill -9`` the whole process group (gunicorn master and workers) of the replica that
answered ``POST /deploy`` right after its 202: no graceful exit, its watcher thread dies with it. The
deployment must still end, because another replica takes the expired lease over.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa

from sentiflow import localstack, registry
from sentiflow.config import MLflowSettings
from sentiflow.serving_client import ModelServerClient
from serving.store.db import Database, deployments_table
from tests.conftest import database_url
from tests.devproxy import RoundRobinProxy
from tests.devserver import (
    DevServer,
    own_registered_model,
    register_tfidf_versions,
    register_unfitted_version,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("nginx"),  # fails, never skips, without nginx
]

BOUND_S = 180.0
LEASE_S = 3.0
SERVER_ENV = {
    "SENTIFLOW_SERVER_WORKERS": "2",
    "SENTIFLOW_SERVER_THREADS": "8",
    "SENTIFLOW_SERVER_RELOAD_POLL_S": "0.5",
    "SENTIFLOW_SERVER_REPLICA_TTL_S": "6",
    "SENTIFLOW_SERVER_DEPLOY_LEASE_S": str(LEASE_S),
    "SENTIFLOW_SERVER_LOAD_RETRY_MAX_S": "4",
    "SENTIFLOW_SERVER_PREDICTION_SECRET": "replica-db-fleet-prediction-secret",
}


@dataclass
class Fleet:
    stack: localstack.StackSettings
    servers: dict[str, DevServer]
    proxy: RoundRobinProxy
    versions: list[str]
    db_url: str

    @property
    def client(self) -> ModelServerClient:
        return ModelServerClient(self.proxy.url, self.stack.server_token, timeout_s=60)

    def alias(self, name: str) -> str | None:
        s = MLflowSettings()
        return registry.version_for_alias(registry.mlflow_client(s), s, name)

    def deployment_row(self, deployment_id: str) -> dict:
        db = Database(self.db_url)
        try:
            with db.engine.connect() as conn:
                t = deployments_table
                return dict(conn.execute(sa.select(t).where(t.c.id == deployment_id)).one()._mapping)
        finally:
            db.dispose()


@pytest.fixture(scope="module", params=["postgres"])
def fleet(request, stack, tmp_path_factory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp(f"fleet-{request.param}")
    db_url = database_url(request.param, request, folder, migrated=False)  # each server's start migrates
    with own_registered_model(f"replicas-{request.param}"):
        versions = register_tfidf_versions(2)
        s = MLflowSettings()
        registry.promote(registry.mlflow_client(s), s, versions[0])
        servers = {
            n: DevServer(
                stack,
                {**SERVER_ENV, "SENTIFLOW_SERVER_FEEDBACK_DB_URL": db_url},
                state_root=folder / f"state-{n}",
                name=f"db-{request.param}-{n}",
                port=localstack.free_port(),
            )
            for n in ("a", "b", "c")
        }
        proxy = RoundRobinProxy(
            stack, [f"127.0.0.1:{s.port}" for s in servers.values()], localstack.free_port()
        )
        try:
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda srv: srv.start(), servers.values()))
            proxy.start()
            fleet = Fleet(stack, servers, proxy, versions, db_url)
            fleet.client.wait_for_replicas(versions[0], timeout_s=BOUND_S, poll_s=0.5)
            yield fleet
        finally:
            proxy.stop()
            for srv in servers.values():
                srv.stop()


def deploy(url: str, token: str, version: str, wait: bool) -> requests.Response:
    return requests.post(
        f"{url}/deploy{'?wait=true' if wait else ''}",
        json={"version": version},
        headers={"Authorization": f"Bearer {token}"},
        timeout=BOUND_S + 60,
    )


def test_deploy_through_the_proxy_succeeds_and_every_replica_agrees(fleet):
    v1, v2 = fleet.versions
    r = deploy(fleet.proxy.url, fleet.stack.server_token, v2, wait=True)
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["status"] == "succeeded" and len(record["replicas"]) == 3
    assert (fleet.alias("champion"), fleet.alias("previous")) == (v2, v1)
    for srv in fleet.servers.values():
        answer = requests.get(f"{srv.url}/deploy/status", params={"id": record["id"]}, timeout=10).json()
        assert (answer["status"], answer["version"]) == ("succeeded", v2)
    assert fleet.deployment_row(record["id"])["lease_owner"] is not None


def test_a_version_that_cannot_load_fails_and_the_alias_moves_back(fleet):
    before = fleet.alias("champion")
    broken = register_unfitted_version()
    r = deploy(fleet.proxy.url, fleet.stack.server_token, broken, wait=True)
    assert r.status_code == 422, r.text
    assert f"moved back to version {before}" in r.json()["error"]
    assert fleet.alias("champion") == before


def test_feedback_through_the_proxy_lands_in_one_store(fleet):
    marker, ids, replicas = uuid.uuid4().hex[:8], [], set()
    for i in range(6):
        text = f"probe {marker} {i}"
        predicted = requests.post(f"{fleet.proxy.url}/predict", json={"text": text}, timeout=60)
        assert predicted.status_code == 200, predicted.text
        body = {"text": text, "prediction_id": predicted.json()["predictions"][0]["prediction_id"]}
        r = requests.post(f"{fleet.proxy.url}/feedback", json={**body, "correct": i % 2 == 0}, timeout=30)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        replicas.add(r.headers["X-Sentiflow-Replica"])
    assert len(replicas) >= 2
    export = fleet.client.feedback_frame()
    assert sorted(export[export["text"].str.startswith(f"probe {marker}")]["id"]) == sorted(ids)


def _deploy_then_kill(fleet: Fleet, name: str, version: str) -> tuple[str, str]:
    """``POST /deploy`` (no wait) to replica ``name``, then ``kill -9`` its whole process group at once."""
    victim = fleet.servers[name]
    victim_id = requests.get(f"{victim.url}/health", timeout=10).headers["X-Sentiflow-Replica"]
    r = deploy(victim.url, fleet.stack.server_token, version, wait=False)
    assert r.status_code == 202, r.text
    victim.kill()
    return r.json()["id"], victim_id


def _final(fleet: Fleet, deployment_id: str) -> dict:
    """The deployment as the surviving replicas report it, once its row is final."""
    survivor = next(s for s in fleet.servers.values() if s.pid is not None)
    deadline, answer = time.monotonic() + BOUND_S, {}
    while time.monotonic() < deadline:
        answer = requests.get(
            f"{survivor.url}/deploy/status", params={"id": deployment_id}, timeout=10
        ).json()
        # finished_at: the row itself is final (the live view says "failed" before the alias moved back)
        if answer["finished_at"] is not None:
            return answer
        time.sleep(0.5)
    raise AssertionError(f"deployment {deployment_id} never ended: {answer}")


def test_a_deploy_whose_replica_is_killed_still_succeeds(fleet):
    current = fleet.alias("champion")
    target = next(v for v in fleet.versions if v != current)
    deployment_id, victim_id = _deploy_then_kill(fleet, "a", target)
    try:
        answer = _final(fleet, deployment_id)
        assert answer["status"] == "succeeded", answer
        assert fleet.alias("champion") == target
        owner = fleet.deployment_row(deployment_id)["lease_owner"]
        assert not owner.startswith(f"{victim_id}/"), owner  # a surviving replica finished it
    finally:
        fleet.servers["a"].start()
    fleet.client.wait_for_replicas(target, timeout_s=BOUND_S, poll_s=0.5)


def test_a_failing_deploy_whose_replica_is_killed_still_rolls_back(fleet):
    before = fleet.alias("champion")
    broken = register_unfitted_version()
    deployment_id, victim_id = _deploy_then_kill(fleet, "b", broken)
    try:
        answer = _final(fleet, deployment_id)
        assert answer["status"] == "failed", answer
        assert f"moved back to version {before}" in answer["error"], answer["error"]
        assert fleet.alias("champion") == before
        owner = fleet.deployment_row(deployment_id)["lease_owner"]
        assert not owner.startswith(f"{victim_id}/"), owner
    finally:
        fleet.servers["b"].start()
    fleet.client.wait_for_replicas(before, timeout_s=BOUND_S, poll_s=0.5)
    assert len(fleet.client.replicas()["replicas"]) == 3
