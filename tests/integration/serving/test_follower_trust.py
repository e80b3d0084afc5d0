"""The replicas table is a report, never a decision: a worker follows the alias as it reads it itself.

Real parts: the session's MLflow registry (two registered TF-IDF versions of this module's own model) and
the shared database on a SQLite file, with the follower exactly as a worker runs it; only the model it
drives is a recorder (what it would load), since loading is not what these tests ask about. Someone who can
write the server's database (the rows below) must neither change what a worker serves nor hold a release
back for longer than ``OWN_READ_EVERY_POLLS`` poll intervals.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sentiflow import registry
from sentiflow.settings.components import MLflowSettings
from sentiflow.settings.server import ServerSettings
from serving.model.follower import OWN_READ_EVERY_POLLS, AliasFollower
from serving.model.loaded import LoadedModel
from serving.model.registry_reader import RegistryReader
from serving.store.db import Database, replicas_table
from serving.store.replicas import ReplicaStore
from tests.conftest import database_url
from tests.devserver import own_registered_model, register_tfidf_versions

POLL_S = 0.05
REPLICA = "r1"


class Recorder:
    """The follower's ``ServedModel``: records the versions it is told to load."""

    def __init__(self) -> None:
        self.current: LoadedModel | None = None
        self.unready: list[str] = []

    def swap_in(self, version: str) -> LoadedModel:
        raise AssertionError("the tests drive poll_once only; nothing loads")

    def mark_unready(self, reason: str) -> None:
        self.unready.append(reason)


@pytest.fixture(scope="module")
def versions(stack) -> Iterator[list[str]]:
    with own_registered_model("follower-trust"):
        yield register_tfidf_versions(2)


@pytest.fixture
def follower(versions, request, tmp_path) -> Iterator[AliasFollower]:
    settings = MLflowSettings()
    client = registry.mlflow_client(settings)
    client.set_registered_model_alias(settings.registered_model_name, "champion", versions[0])
    server = ServerSettings(state_dir=tmp_path / "state", reload_poll_s=POLL_S)
    store = ReplicaStore(Database(database_url("sqlite", request, tmp_path)))
    store.register_replica(REPLICA, "host", "champion")
    f = AliasFollower(
        Recorder(), RegistryReader(settings, server), store, server, alias="champion", replica_id=REPLICA
    )
    yield f
    store.db.dispose()


def forge(store: ReplicaStore, **values: object) -> None:
    """Write the replica's row as anyone holding the database's credential could."""
    with store.db.engine.begin() as conn:
        conn.execute(replicas_table.update().where(replicas_table.c.replica_id == REPLICA).values(**values))


def test_a_forged_row_naming_another_version_changes_nothing(follower, versions):
    champion, other = versions
    store = follower.replicas
    assert store is not None
    follower.poll_once()
    assert follower.target == champion
    # the stored reading names another version, read "later" than any real read, and the poll slot is
    # stamped far ahead so no worker would win a registry read through the table
    future = time.time() + 1e6
    forge(store, alias_version=other, alias_error=None, alias_read_at=future, alias_checked_at=future)
    for _ in range(3 * OWN_READ_EVERY_POLLS):
        follower.poll_once()
        assert follower.target == champion
        time.sleep(POLL_S / 5)


def test_a_frozen_row_holds_a_move_back_for_a_few_polls_at_most(follower, versions):
    champion, new = versions
    store = follower.replicas
    assert store is not None
    follower.poll_once()
    assert follower.target == champion
    settings = MLflowSettings()
    registry.mlflow_client(settings).set_registered_model_alias(
        settings.registered_model_name, "champion", new
    )
    # the row keeps naming the old version and its slot looks just taken: nothing prompts a read
    frozen = time.time() + 1e6
    forge(store, alias_version=champion, alias_error=None, alias_read_at=frozen, alias_checked_at=time.time())
    deadline = time.monotonic() + 2 * OWN_READ_EVERY_POLLS * POLL_S + 5.0
    while follower.target != new and time.monotonic() < deadline:
        forge(store, alias_checked_at=time.time())  # kept "just taken" on every poll
        follower.poll_once()
        time.sleep(POLL_S)
    assert follower.target == new
    with store.db.engine.connect() as conn:  # the worker's own reading, not the row, decided
        assert conn.execute(sa.select(replicas_table.c.alias_version)).scalar_one() == champion
