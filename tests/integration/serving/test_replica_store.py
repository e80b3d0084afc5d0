"""The replica and worker rows in the shared database: a real SQLite file and a real Postgres.

What the multi-replica tests (``test_replicas.py``) rely on, checked directly: one registry read per
interval per replica whatever the worker count, liveness by heartbeat age (no PID probing), what a replica
is said to serve while its workers disagree.
"""

from __future__ import annotations

import threading
import time

import pytest

from serving.store.db import Database
from serving.store.replicas import ReplicaStore
from tests.conftest import database_url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh, migrated shared database: a SQLite file, or a new database on the session's Postgres."""
    return database_url(request.param, request, tmp_path)


@pytest.fixture
def store(db_url):
    s = ReplicaStore(Database(db_url))
    yield s
    s.db.dispose()


def test_one_alias_read_per_interval_per_replica_whatever_the_worker_count(store):
    store.register_replica("r1", "host-a", "champion")
    store.register_replica("r1", "host-a", "champion")  # a second worker of the same replica: no-op
    store.register_replica("r2", "host-b", "champion")
    now = 1_000_000.0
    wins = []
    for tick in range(10):  # 8 workers of r1 all ask at each tick, 1 s apart
        results = [store.claim_alias_poll("r1", 1.0, now=now + tick) for _ in range(8)]
        wins.append(sum(r is not None for r in results))
    assert wins == [1] * 10
    assert store.claim_alias_poll("r2", 1.0, now=now) == now  # replicas poll independently
    assert store.claim_alias_poll("r1", 1.0, now=now + 9.5) is None  # within the interval: no
    assert store.alias_polls() == {"r1": 10, "r2": 1}


def test_claims_race_safely_across_threads(store, db_url):
    stores = [ReplicaStore(Database(db_url)) for _ in range(4)]  # four workers, four engines, one database
    stores[0].register_replica("r1", "h", "champion")
    won = []
    barrier = threading.Barrier(4)

    def worker(s: ReplicaStore) -> None:
        barrier.wait()
        won.append(s.claim_alias_poll("r1", 60.0) is not None)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False, False, False, True]
    for s in stores:
        s.db.dispose()


def test_alias_reading_is_shared_by_the_replicas_workers(store):
    store.register_replica("r1", "h", "champion")
    assert store.replica_alias("r1") == (False, None, None, None)
    store.record_alias("r1", "7", None)
    assert store.replica_alias("r1") == (True, "7", None, None)
    store.record_alias("r1", None, "cannot reach registry")
    assert store.replica_alias("r1") == (True, None, "cannot reach registry", None)


def test_a_read_begun_before_a_stored_one_never_overwrites_it(store):
    """A slow registry read that began before an alias move must not overwrite a sibling's later reading;
    one whose later sibling is still in flight is stored (so a slow registry still gets readings through)."""
    store.register_replica("r1", "h", "champion")
    slow = store.claim_alias_poll("r1", 1.0, now=1_000_000.0)
    fresh = store.claim_alias_poll("r1", 1.0, now=1_000_001.5)
    assert slow is not None and fresh is not None
    assert store.record_alias("r1", "1", None, fresh) is True
    assert store.record_alias("r1", "3", None, slow) is False  # read before the move, finished after
    assert store.replica_alias("r1") == (True, "1", None, None)

    store.register_replica("r2", "h", "champion")
    first = store.claim_alias_poll("r2", 1.0, now=1_000_000.0)
    second = store.claim_alias_poll("r2", 1.0, now=1_000_001.5)  # still reading when the first ends
    assert first is not None and second is not None
    assert store.record_alias("r2", None, "registry timed out", first) is True
    assert store.replica_alias("r2") == (True, None, "registry timed out", None)


def test_live_replicas_by_heartbeat_age_and_agreement_of_their_workers(store):
    for rid in ("r1", "r2", "gone"):
        store.register_replica(rid, f"host-{rid}", "champion")
    store.heartbeat("r1", "11", version="3", target_version="3", runtime="scikit-learn")
    store.heartbeat("r1", "12", version="2", target_version="3")  # still loading 3
    store.heartbeat("r2", "21", version="3", target_version="3")
    store.heartbeat("gone", "31", version="1", target_version="1")
    with store.db.engine.begin() as conn:  # a replica killed a minute ago stopped beating
        from serving.store.db import workers_table

        conn.execute(
            workers_table.update()
            .where(workers_table.c.replica_id == "gone")
            .values(last_seen=time.time() - 60)
        )
    live = {r.replica_id: r for r in store.live(ttl_s=10)}
    assert set(live) == {"r1", "r2"}
    assert live["r1"].version is None and live["r1"].state == "loading"
    assert live["r2"].version == "3" and live["r2"].state == "serving"
    store.heartbeat("r1", "12", version="3", target_version="3")
    assert all(r.version == "3" for r in store.live(ttl_s=10))
    store.remove_worker("r1", "11")
    store.remove_worker("r1", "12")
    assert [r.replica_id for r in store.live(ttl_s=10)] == ["r2"]
