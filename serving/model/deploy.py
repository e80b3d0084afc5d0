"""``POST /deploy`` as a release: move the followed alias, then watch the replicas until they all serve it.

The move is ``sentiflow.registry.promote`` (old champion → ``previous``), the same function the
DAG's promote task calls; a failure is ``registry.restore_aliases``, the same function the DAG's rollback
calls: both aliases go back to where they were before the move. Both go through the app's one registry
object (``serving.model.registry.Registry``), which counts them. The deployment's row in the shared
database (``serving.store.deployments``) says how it ended, so ``/deploy/status`` answers the same on every
pod. The worker that accepted the request watches it on a background thread, holding the row's lease and
renewing it while it watches. If that worker dies (its pod killed mid-deploy), the lease runs out
(``SENTIFLOW_SERVER_DEPLOY_LEASE_S``) and any live worker's ``DeploymentKeeper`` takes it over and watches
on from the row alone, so every deployment still ends, and a failed one still moves the alias back:

- ``succeeded``: every live replica (every live worker of it) serves the version;
- ``failed``: a live replica reported a failed load of the version (or the watch timed out); the alias is
  moved back and the error names the replica;
- ``superseded``: the alias moved on (another deploy, a promotion) before this one finished.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sentiflow.registry import PriorAliases, RegistryUnavailableError
from serving.store.deployments import FINAL_STATUSES
from serving.store.replicas import ReplicaView

if TYPE_CHECKING:  # the extension builds everything this module reads; it never imports this module
    from serving.extension import ServerExtension

log = logging.getLogger(__name__)

WATCH_POLL_S = 0.25


def lease_owner(server: ServerExtension) -> str:
    """This worker's name on a lease: its replica and process."""
    return f"{server.replica_id}/{os.getpid()}"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def live_replicas(server: ServerExtension) -> list[ReplicaView]:
    return server.replicas.live(server.settings.replica_ttl_s)


def alias_version(replicas: list[ReplicaView]) -> str | None:
    """The followed alias's version as the most recent replica read found it."""
    read = [r for r in replicas if r.alias_read_at is not None and r.alias_error is None]
    return max(read, key=lambda r: r.alias_read_at or 0.0).alias_version if read else None


def replicas_json(server: ServerExtension, replicas: list[ReplicaView] | None = None) -> dict[str, Any]:
    replicas = live_replicas(server) if replicas is None else replicas
    return {
        "alias": server.alias,
        "alias_version": alias_version(replicas),
        "live_window_s": server.settings.replica_ttl_s,
        "replicas": [r.as_json() for r in replicas],
    }


def evaluate(record: dict[str, Any], replicas: list[ReplicaView]) -> tuple[str, str | None]:
    """``(status, error)`` of a deployment from the live replicas' rows (the stored status if final)."""
    if record["status"] in FINAL_STATUSES:
        return record["status"], record.get("error")
    version = record["version"]
    requested_at = record.get("requested_at")
    since = float(requested_at or 0.0) - 1.0
    for replica in replicas:
        for worker in replica.workers:
            if worker.error_version == version and worker.load_error and (worker.error_at or 0) >= since:
                return "failed", (
                    f"replica {replica.replica_id} (host {replica.host}, worker {worker.worker_id}) "
                    f"could not load version {version}: {worker.load_error}"
                )
    for replica in replicas:
        moved_on = (  # a reading begun after the move (``alias_read_at``: when it began) names another
            requested_at is not None
            and replica.alias_error is None
            and (replica.alias_read_at or 0.0) > float(requested_at)
            and replica.alias_version != version
        )
        if moved_on:
            return "superseded", f"alias {record['alias']!r} now names version {replica.alias_version}"
    if replicas and all(r.serves(version) for r in replicas):
        return "succeeded", None
    return ("loading" if replicas else "pending"), None


def view(
    server: ServerExtension, record: dict[str, Any], replicas: list[ReplicaView] | None = None
) -> dict[str, Any]:
    """A deployment as the API shows it: its row, its live status and every live replica."""
    replicas = live_replicas(server) if replicas is None else replicas
    status, error = evaluate(record, replicas)
    return {
        "id": record["id"],
        "status": status,
        "model_name": server.registry.name,
        "alias": record["alias"],
        "version": record["version"],
        "previous": record.get("previous"),
        "requested_at": _iso(record.get("requested_at")),
        "finished_at": _iso(record.get("finished_at")),
        "error": error,
        "all_replicas_serving": bool(replicas) and all(r.serves(record["version"]) for r in replicas),
        "replicas": [r.as_json() for r in replicas],
    }


def current(server: ServerExtension) -> dict[str, Any] | None:
    """``/deploy/status`` without an id: the alias's current version across the replicas.

    The latest ``POST /deploy`` when it targets that version; else (a promotion by the DAG, a manual alias
    move) a record without an id. None before any replica has read an alias.
    """
    replicas = live_replicas(server)
    version = alias_version(replicas)
    latest = server.deployments.latest()
    if latest is not None and (version is None or latest["version"] == version):
        return view(server, latest, replicas)
    if version is None:
        return None
    record = {"id": None, "alias": server.alias, "version": version, "status": "pending"}
    return view(server, record, replicas)


def release(
    server: ServerExtension, *, version: str | None = None, alias: str | None = None
) -> dict[str, Any]:
    """Move the followed alias to ``version`` (or to the version ``alias`` names) and start watching.

    Raises ``ModelNotFoundError`` (unknown version or alias: nothing moved) or ``RegistryUnavailableError``.
    """
    server.registry.deployer()  # its own identity; without one: DeployNotAllowedError, a 403
    mv = server.registry.resolve(version=version, alias=alias)
    try:
        move = server.registry.promote(str(mv.version), alias=server.alias)
    except Exception as exc:
        raise RegistryUnavailableError(
            f"could not move alias {server.alias!r} to version {mv.version}: {exc}"
        ) from exc
    record: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "alias": server.alias,
        "version": move.candidate,
        "previous": move.champion,
        "prior_previous": move.previous,
        "requested_at": time.time(),
        "requested_by": server.replica_id,
        "status": "pending",
        "error": None,
        "finished_at": None,
        "lease_owner": lease_owner(server),
        "lease_until": time.time() + server.settings.deploy_lease_s,
    }
    server.deployments.add(record)
    log.info("deployment %s: alias %s → version %s", record["id"], record["alias"], record["version"])
    _watch_in_background(server, record)
    return record


def _watch_in_background(server: ServerExtension, record: dict[str, Any]) -> None:
    threading.Thread(
        target=watch, args=(server, record), name=f"deploy-{record['id'][:8]}", daemon=True
    ).start()


def watch(server: ServerExtension, record: dict[str, Any]) -> None:
    """Follow one deployment to its end while holding its lease; on failure or timeout move the aliases
    back (``_move_back``). Stops when the lease is lost (another worker took it over: this one stalled)."""
    # wall clock from the request: a worker that takes the watch over keeps the first watcher's deadline
    deadline = float(record["requested_at"]) + server.settings.deploy_timeout_s
    store, owner, lease_s = server.deployments, lease_owner(server), server.settings.deploy_lease_s
    renewed_at = 0.0
    while True:
        if time.monotonic() - renewed_at >= lease_s / 3:
            if not store.renew(record["id"], owner, lease_s):
                log.info("deployment %s: lease not ours any more (ended, or taken over)", record["id"])
                return
            renewed_at = time.monotonic()
        stored = store.get(record["id"]) or record
        replicas = live_replicas(server)
        status, error = evaluate(stored, replicas)
        if stored["status"] in FINAL_STATUSES:
            return
        if status in ("succeeded", "superseded"):
            store.finish(record["id"], status, error)
            return
        if status != "failed" and time.time() > deadline:
            waiting = [f"{r.replica_id} serves {r.version or r.versions}" for r in replicas]
            status, error = (
                "failed",
                (
                    f"not every replica served version {record['version']} within "
                    f"{server.settings.deploy_timeout_s:.0f}s: {', '.join(waiting) or 'no live replica'}"
                ),
            )
        if status == "failed":
            if not store.renew(record["id"], owner, lease_s):  # only the lease holder moves the alias back
                return
            error = f"{error}; {_move_back(server, record, error or 'failed')}"
            store.finish(record["id"], "failed", error)
            log.error("deployment %s failed: %s", record["id"], error)
            return
        time.sleep(WATCH_POLL_S)


def _move_back(server: ServerExtension, record: dict[str, Any], reason: str) -> str:
    """``registry.restore_aliases`` from the deployment's row; returns a sentence for the row's error."""
    alias = server.alias
    prior = PriorAliases(
        candidate=str(record["version"]),
        champion=record.get("previous"),
        previous=record.get("prior_previous"),
    )
    try:
        left_alone = server.registry.restore(
            prior, alias=alias, reason=f"deploy {record['id']} failed: {reason}"
        )
    except Exception as exc:
        log.exception("could not move alias %s back", alias)
        return f"moving alias {alias!r} back failed: {exc}"
    if left_alone:
        return f"alias {alias!r} not moved back: {left_alone}"
    if prior.champion is None:
        return f"alias {alias!r} removed (there was no previous version)"
    return f"alias {alias!r} moved back to version {prior.champion}"


class DeploymentKeeper:
    """One per worker: takes over the deployments whose watcher died (lease ran out) and watches them.

    Checks every third of the lease; the check is one indexed query on the deployments table."""

    def __init__(self, server: ServerExtension) -> None:
        self.server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deploy-keeper", daemon=True)

    def start(self) -> DeploymentKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def adopt_orphans(self) -> list[str]:
        """Take over every expired lease this worker wins; start watching each. Returns their ids."""
        server, taken = self.server, []
        owner, lease_s = lease_owner(server), server.settings.deploy_lease_s
        for record in server.deployments.orphans():
            if server.deployments.take(record, owner, lease_s):
                log.warning(
                    "deployment %s: its watcher %s is gone (lease expired); %s finishes it",
                    record["id"],
                    record.get("lease_owner"),
                    owner,
                )
                taken.append(record["id"])
                _watch_in_background(server, record)
        return taken

    def _run(self) -> None:
        interval = max(0.2, self.server.settings.deploy_lease_s / 3)
        while not self._stop.wait(interval):
            try:
                self.adopt_orphans()
            except Exception:
                log.warning("checking for orphaned deployments failed", exc_info=True)


def wait(server: ServerExtension, deployment_id: str, timeout_s: float) -> dict[str, Any]:
    """Wait until the deployment's row is final (the watcher writes it) or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        record = server.deployments.get(deployment_id)
        if record is None or record["status"] in FINAL_STATUSES or time.monotonic() > deadline:
            return record or {}
        time.sleep(WATCH_POLL_S)
