"""Three replicas on one shared real PostgreSQL: releases, a version that cannot load, feedback.

The fleet: three gunicorn servers (2 workers each, own state folders), the session's MLflow + S3, nginx
round robin in front, and one fresh database on the session's Postgres (as compose and k8s run it),
migrated by each server's start step (several at once, as init containers do: the migration lock makes
the later ones no-ops). A release is the pipeline's alias move and its wait (``tests.devserver.release``):
the replicas only follow. ``test_replicas.py`` walks the same releases and feedback (and the rest of a
fleet's life: transformer promotions under load, a replica killed during a swap, the DAG) on a shared SQLite
file. The fleet runs here on Postgres only: a second SQLite fleet cost the suite three minutes and found
nothing the row tests miss.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from sentiflow import registry
from sentiflow.localstack import stack as localstack
from sentiflow.serving_client import ModelServerClient, ReplicaLoadError
from sentiflow.settings.components import MLflowSettings
from tests.conftest import database_url
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

BOUND_S = 180.0
SERVER_ENV = {
    "SENTIFLOW_SERVER_WORKERS": "2",
    "SENTIFLOW_SERVER_THREADS": "8",
    "SENTIFLOW_SERVER_RELOAD_POLL_S": "0.5",
    "SENTIFLOW_SERVER_REPLICA_TTL_S": "6",
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


@pytest.fixture(scope="module", params=["postgres"])
def fleet(request, stack, tmp_path_factory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp(f"fleet-{request.param}")
    db_url = database_url(request.param, request, folder, migrated=False)  # each server's start migrates
    with own_registered_model(f"replicas-{request.param}"):
        versions = register_tfidf_versions(2)
        make_champion(versions[0])
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


def test_a_release_through_the_proxy_reaches_every_replica_and_they_agree(fleet):
    v1, v2 = fleet.versions
    answer = release(fleet.proxy.url, v2, token=fleet.stack.server_token, timeout_s=BOUND_S)
    assert len(answer["replicas"]) == 3
    assert (fleet.alias("champion"), fleet.alias("previous")) == (v2, v1)
    for srv in fleet.servers.values():
        replicas = requests.get(f"{srv.url}/replicas", timeout=10).json()
        assert replicas["alias_version"] == v2 and {r["version"] for r in replicas["replicas"]} == {v2}
        assert len(replicas["replicas"]) == 3


def test_a_version_that_cannot_load_fails_and_the_old_one_keeps_serving(fleet):
    before = fleet.alias("champion")
    broken = register_unfitted_version()
    with pytest.raises(ReplicaLoadError, match=f"could not load version {broken}"):
        release(fleet.proxy.url, broken, token=fleet.stack.server_token, timeout_s=BOUND_S)
    assert fleet.alias("champion") == before  # the release's rollback
    assert {r["version"] for r in fleet.client.replicas()["replicas"]} == {before}


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
    export = ModelServerClient(fleet.proxy.url, fleet.stack.reviewer_token, timeout_s=60).feedback_frame()
    assert sorted(export[export["text"].str.startswith(f"probe {marker}")]["id"]) == sorted(ids)
