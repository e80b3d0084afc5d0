"""A worker stages the release's candidate ahead of its promotion, and serves it only once it is approved.

Real parts: the session's MLflow registry and S3 (TF-IDF versions of this module's own model, signed by the
pipeline's ``log_classifier``), the shared database on a SQLite file, and one worker as the app builds it:
``ModelManager`` driven by the ``AliasFollower``'s own threads. What a release does to the registry is done
with the pipeline's calls (``devserver.promote``: the approval signed, then the alias moved).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY

from sentiflow import registry
from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.model.follower import AliasFollower
from serving.model.manager import ModelManager
from serving.model.registry_reader import RegistryReader
from serving.store.db import Database
from serving.store.replicas import ReplicaStore, WorkerRow
from tests.conftest import database_url
from tests.devserver import make_champion, own_registered_model, promote, register_tfidf_versions

POLL_S = 0.1
REPLICA = "r1"
CANDIDATE = MLflowSettings.model_fields["candidate_alias"].default


@pytest.fixture(scope="module")
def versions(stack) -> Iterator[list[str]]:
    with own_registered_model("staging"):
        yield register_tfidf_versions(3)


@pytest.fixture
def worker(versions, request, tmp_path) -> Iterator[AliasFollower]:
    """One worker following ``champion`` (version 1, approved) and staging ``candidate``."""
    settings = MLflowSettings()
    client = registry.mlflow_client(settings)
    make_champion(versions[0])
    registry.set_alias(client, settings, CANDIDATE, None)
    server = ServerSettings(state_dir=tmp_path / "state", reload_poll_s=POLL_S, load_retry_max_s=1.0)
    store = ReplicaStore(Database(database_url("sqlite", request, tmp_path)))
    reg = RegistryReader(settings, server)
    f = AliasFollower(
        ModelManager(server, reg),
        reg,
        store,
        server,
        alias=settings.champion_alias,
        replica_id=REPLICA,
        candidate_alias=CANDIDATE,
    )
    f.start()
    try:
        wait_for(lambda: served(f) == versions[0], "version 1 served")
        yield f
    finally:
        f.stop()
        registry.set_alias(client, settings, CANDIDATE, None)
        store.db.dispose()


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:g}s: {what}"
        time.sleep(POLL_S / 2)


def served(f: AliasFollower) -> str | None:
    current = f.model.current
    return current.version if current else None


def staged(f: AliasFollower) -> str | None:
    model = f.model.staged
    return model.version if model else None


def row(f: AliasFollower) -> WorkerRow:
    assert f.replicas is not None
    (replica,) = f.replicas.live(60.0)
    (worker_row,) = replica.workers
    return worker_row


def downloads() -> float:
    return REGISTRY.get_sample_value("sentiflow_server_registry_requests_total", {"call": "load"}) or 0.0


def name_candidate(version: str | None) -> None:
    """What the release's ``stage`` does to the registry: the candidate alias names ``version``."""
    settings = MLflowSettings()
    registry.set_alias(registry.mlflow_client(settings), settings, CANDIDATE, version)


def test_a_candidate_is_staged_unserved_and_its_promotion_swaps_it_in_without_a_download(worker, versions):
    name_candidate(versions[1])
    wait_for(lambda: staged(worker) == versions[1] and row(worker).staged_version == versions[1], "staged")
    assert served(worker) == versions[0]  # staged, not served: no approval yet
    ready = worker.model.staged
    fetched = downloads()
    promote(versions[1])  # the approval signed, then champion moved
    wait_for(lambda: served(worker) == versions[1], "the promoted version served")
    current = worker.model.current
    assert current is not None and ready is not None
    assert current.classifier is ready.classifier  # the staged model itself, not a second load
    assert downloads() == fetched
    assert worker.model.staged is None  # at most one extra model in memory, and none once served
    wait_for(lambda: row(worker).version == versions[1] and row(worker).staged_version is None, "reported")


def test_a_staged_version_without_approval_is_never_served(worker, versions):
    name_candidate(versions[2])
    wait_for(lambda: staged(worker) == versions[2], "staged")
    # champion moved to the staged version by someone who cannot sign an approval
    settings = MLflowSettings()
    client = registry.mlflow_client(settings)
    registry.set_alias(client, settings, settings.champion_alias, versions[2])
    try:
        wait_for(
            lambda: row(worker).error_version == versions[2] and "approval" in (row(worker).load_error or ""),
            "the move refused",
        )
        time.sleep(10 * POLL_S)  # and a retry later, still refused
        assert served(worker) == versions[0]
        assert staged(worker) == versions[2]
    finally:
        registry.set_alias(client, settings, settings.champion_alias, versions[0])


def test_a_candidate_that_fails_verification_is_reported_and_never_staged(worker, versions):
    from tests.tamper import tampered_version

    name = MLflowSettings().registered_model_name
    with tampered_version(name, versions[2]):  # before any download of it by this worker's replica
        name_candidate(versions[2])
        wait_for(lambda: row(worker).staging_error_version == versions[2], "the staging failure reported")
        error = row(worker).staging_error or ""
        assert "SignatureError" in error, error
        assert staged(worker) is None and served(worker) == versions[0]
        name_candidate(None)  # the release removes the alias: the report is history
        wait_for(lambda: row(worker).staging_error is None, "the report cleared")
