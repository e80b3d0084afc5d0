"""A deployment's status from the replicas' rows: only a registry reading begun after the alias moved can
call it superseded (a slow reading begun before the move still names the old version)."""

from __future__ import annotations

from serving.model.deploy import evaluate
from serving.store.replicas import ReplicaView, WorkerRow

MOVED_AT = 1_000_000.0


def replica(alias_version: str, read_began_at: float, serving: str) -> ReplicaView:
    worker = WorkerRow(
        replica_id="r1", worker_id="1", version=serving, runtime="scikit-learn", family="tfidf-logreg",
        loaded_at=None, target_version=serving, load_error=None, error_version=None, error_at=None,
        last_seen=MOVED_AT + 5,
    )  # fmt: skip
    return ReplicaView(
        replica_id="r1", host="h", started_at=0.0, alias="champion", alias_version=alias_version,
        alias_error=None, alias_read_at=read_began_at, workers=[worker],
    )  # fmt: skip


def record(version: str) -> dict:
    return {"status": "pending", "version": version, "requested_at": MOVED_AT, "alias": "champion"}


def test_a_reading_begun_before_the_move_leaves_the_deployment_loading() -> None:
    assert evaluate(record("1"), [replica("3", MOVED_AT - 0.5, serving="3")]) == ("loading", None)


def test_a_reading_begun_after_the_move_that_names_another_version_supersedes_it() -> None:
    status, error = evaluate(record("1"), [replica("3", MOVED_AT + 1, serving="3")])
    assert status == "superseded" and error == "alias 'champion' now names version 3"


def test_every_replica_serving_the_version_succeeds() -> None:
    assert evaluate(record("1"), [replica("1", MOVED_AT + 1, serving="1")]) == ("succeeded", None)
