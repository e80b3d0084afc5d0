"""What every model-server replica serves, in the server's shared database (``serving.store.db``).

The registry alias is the one record of what *should* be served; these rows say what *is* served, so a
deploy knows when it is complete and every pod answers ``GET /replicas`` and ``/deploy/status`` the same:

- ``server_replicas``: one row per replica (one gunicorn instance, one pod): its id and host, and the
  followed alias (and the release's candidate alias) as last read from the registry. Its
  ``alias_checked_at`` is also the replica's poll slot: a worker reads the registry only after winning
  ``claim_alias_poll`` (an atomic ``UPDATE ... WHERE``), so a replica makes at most one alias request per
  poll interval whatever its worker count. The stored reading is a report and a hint to the siblings,
  never a decision: each worker acts only on its own registry reading (``serving.model.follower``), so
  whoever can write this table cannot choose what is served.
- ``server_workers``: one row per worker: version served, runtime, loaded_at, last_seen (heartbeat), the
  version it is loading and its last load error, the candidate version it holds staged (loaded, not
  served) and its last staging error. A worker not seen for ``ttl_s`` is not live: a killed pod
  drops out by itself, no PID probing.

Times are UNIX seconds from each writer's clock (pods run NTP); SQLite locally, Postgres in production.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import sqlalchemy as sa

from serving.store.db import Database, replicas_table, workers_table

log = logging.getLogger(__name__)


@dataclass
class WorkerRow:
    replica_id: str
    worker_id: str
    version: str | None
    family: str | None
    runtime: str | None
    loaded_at: str | None
    target_version: str | None
    load_error: str | None
    error_version: str | None
    error_at: float | None
    last_seen: float
    staged_version: str | None = None
    staging_error: str | None = None
    staging_error_version: str | None = None

    @property
    def state(self) -> str:
        if self.target_version and self.target_version != self.version:
            return "failed" if self.load_error and self.error_version == self.target_version else "loading"
        return "serving" if self.version else "unready"


@dataclass
class ReplicaView:
    """One live replica as ``GET /replicas`` shows it: its workers and what they agree on."""

    replica_id: str
    host: str
    started_at: float
    alias: str
    alias_version: str | None
    alias_error: str | None
    #: When the stored reading of the alias began (``record_alias``).
    alias_read_at: float | None = None
    #: The release's candidate alias's version at the same read.
    candidate_version: str | None = None
    workers: list[WorkerRow] = field(default_factory=list)

    @property
    def versions(self) -> list[str | None]:
        return sorted({w.version for w in self.workers}, key=lambda v: (v is None, v or ""))

    @property
    def version(self) -> str | None:
        """The version every live worker serves; None while they differ or none is loaded."""
        versions = self.versions
        return versions[0] if len(versions) == 1 else None

    @property
    def state(self) -> str:
        states = {w.state for w in self.workers}
        for state in ("failed", "loading", "unready"):
            if state in states:
                return state
        return "serving" if self.version else "mixed"

    @property
    def load_error(self) -> str | None:
        return next((w.load_error for w in self.workers if w.load_error), None)

    @property
    def staged_version(self) -> str | None:
        """The candidate version every live worker holds staged; None while they differ or none is."""
        staged = {w.staged_version for w in self.workers}
        return staged.pop() if len(staged) == 1 else None

    @property
    def staging_error(self) -> str | None:
        return next((w.staging_error for w in self.workers if w.staging_error), None)

    def as_json(self) -> dict[str, Any]:
        """Its stored fields and what its workers agree on (the response models pick what a caller sees)."""
        last_seen = max((w.last_seen for w in self.workers), default=None)
        runtimes = sorted({w.runtime for w in self.workers if w.runtime})
        loaded = sorted(w.loaded_at for w in self.workers if w.loaded_at)
        return {
            **asdict(self),
            "version": self.version,
            "state": self.state,
            "runtime": runtimes[0] if len(runtimes) == 1 else (runtimes or None),
            "loaded_at": loaded[-1] if loaded else None,
            "last_seen": last_seen,
            "load_error": self.load_error,
            "staged_version": self.staged_version,
            "staging_error": self.staging_error,
            "workers": [{**asdict(w), "state": w.state} for w in self.workers],
        }


class ReplicaStore:
    """Queries on the replica and worker tables of the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- replicas ------------------------------------------------------------------------------------
    def register_replica(self, replica_id: str, host: str, alias: str) -> None:
        """Insert this replica's row (once per replica: a second worker finds it there)."""
        with self.db.engine.begin() as conn:
            exists = conn.execute(
                sa.select(replicas_table.c.replica_id).where(replicas_table.c.replica_id == replica_id)
            ).first()
            if exists:
                return
            try:
                conn.execute(
                    replicas_table.insert().values(
                        replica_id=replica_id,
                        host=host,
                        started_at=time.time(),
                        alias=alias,
                        alias_checked_at=0.0,
                        alias_polls=0,
                    )
                )
            except sa.exc.IntegrityError:
                pass  # a sibling worker inserted it a moment ago

    def claim_alias_poll(self, replica_id: str, interval_s: float, now: float | None = None) -> float | None:
        """The claim's time when this worker may read the alias from the registry now (one read per interval
        and replica), else None. Pass it to ``record_alias``."""
        now = time.time() if now is None else now
        t = replicas_table
        with self.db.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(
                    t.c.replica_id == replica_id,
                    # a slot stamped in the future (a clock jump, a forged row) is free, not held forever
                    sa.or_(t.c.alias_checked_at <= now - interval_s, t.c.alias_checked_at > now + interval_s),
                )
                .values(alias_checked_at=now, alias_polls=t.c.alias_polls + 1)
            )
        return now if result.rowcount == 1 else None

    def record_alias(
        self,
        replica_id: str,
        version: str | None,
        error: str | None,
        read_started_at: float | None = None,
        *,
        candidate: str | None = None,
    ) -> bool:
        """Store a registry read of the alias begun at ``read_started_at`` (its claim's time; default now),
        unless a read begun later is stored already: False then.

        A read can outlive the poll interval (a slow registry), so a sibling's later read may end first; the
        earlier one may predate an alias move the later one saw, and must not overwrite it. ``alias_read_at``
        is when the stored reading began, so a deploy compares it with the time the alias moved.
        """
        started = time.time() if read_started_at is None else read_started_at
        t = replicas_table
        with self.db.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(
                    t.c.replica_id == replica_id,
                    sa.or_(t.c.alias_read_at.is_(None), t.c.alias_read_at <= started),
                )
                .values(
                    alias_version=version,
                    alias_error=error,
                    alias_read_at=started,
                    candidate_version=candidate,
                )
            )
        return result.rowcount == 1

    def replica_alias(self, replica_id: str) -> tuple[bool, str | None, str | None, str | None]:
        """``(read_yet, version, error, candidate)``: the followed alias and the candidate alias as the
        replica's last registry read found them."""
        t = replicas_table
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.alias_read_at, t.c.alias_version, t.c.alias_error, t.c.candidate_version).where(
                    t.c.replica_id == replica_id
                )
            ).first()
        if row is None or row.alias_read_at is None:
            return False, None, None, None
        return True, row.alias_version, row.alias_error, row.candidate_version

    def alias_polls(self) -> dict[str, int]:
        """Registry alias reads per replica since it started (for the benchmark's request rate)."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(sa.select(replicas_table.c.replica_id, replicas_table.c.alias_polls)).all()
        return {r.replica_id: int(r.alias_polls) for r in rows}

    # --- workers -------------------------------------------------------------------------------------
    def heartbeat(self, replica_id: str, worker_id: str, **fields: Any) -> None:
        """Upsert this worker's row with ``fields`` and ``last_seen`` = now (each row has one writer)."""
        t = workers_table
        values = {**fields, "last_seen": time.time()}
        key = (t.c.replica_id == replica_id, t.c.worker_id == worker_id)
        with self.db.engine.begin() as conn:
            if conn.execute(t.update().where(*key).values(**values)).rowcount == 0:
                conn.execute(t.insert().values(replica_id=replica_id, worker_id=worker_id, **values))

    def remove_worker(self, replica_id: str, worker_id: str) -> None:
        t = workers_table
        with self.db.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.replica_id == replica_id, t.c.worker_id == worker_id))

    def live(self, ttl_s: float, now: float | None = None) -> list[ReplicaView]:
        """Replicas with at least one worker seen within ``ttl_s``, each with its live workers."""
        now = time.time() if now is None else now
        w, r = workers_table, replicas_table
        with self.db.engine.connect() as conn:
            workers = conn.execute(
                sa.select(w).where(w.c.last_seen >= now - ttl_s).order_by(w.c.replica_id, w.c.worker_id)
            ).all()
            ids = sorted({row.replica_id for row in workers})
            replicas = conn.execute(sa.select(r).where(r.c.replica_id.in_(ids))).all() if ids else []
        shown = {f.name for f in fields(ReplicaView)}
        views = {
            row.replica_id: ReplicaView(**{k: v for k, v in row._mapping.items() if k in shown})
            for row in replicas
        }
        for row in workers:
            view = views.get(row.replica_id)
            if view is not None:
                view.workers.append(WorkerRow(**dict(row._mapping)))
        return [views[i] for i in sorted(views)]

    def prune(self, older_than_s: float = 3600.0) -> int:
        """Forget workers gone for ``older_than_s`` and replicas left without workers."""
        cutoff = time.time() - older_than_s
        w, r = workers_table, replicas_table
        with self.db.engine.begin() as conn:
            removed = conn.execute(w.delete().where(w.c.last_seen < cutoff)).rowcount
            conn.execute(
                r.delete().where(
                    r.c.started_at < cutoff, ~r.c.replica_id.in_(sa.select(w.c.replica_id).distinct())
                )
            )
        return removed
