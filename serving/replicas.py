"""What every model-server replica serves, in the server's shared database (the feedback store's URL).

The registry alias is the one record of what *should* be served; these rows say what *is* served, so a
deploy knows when it is complete and every pod answers ``GET /replicas`` and ``/deploy/status`` the same:

- ``server_replicas``: one row per replica (one gunicorn instance, one pod): its id and host, and the
  followed alias as last read from the registry. Its ``alias_checked_at`` is also the replica's poll slot:
  a worker reads the registry only after winning ``claim_alias_poll`` (an atomic ``UPDATE ... WHERE``), so a
  replica makes at most one alias request per poll interval whatever its worker count.
- ``server_workers``: one row per worker: version served, runtime, loaded_at, last_seen (heartbeat), the
  version it is loading and its last load error. A worker not seen for ``ttl_s`` is not live: a killed pod
  drops out by itself, no PID probing.
- ``server_deployments``: one row per ``POST /deploy`` (the alias move it made and how it ended).

Times are UNIX seconds from each writer's clock (pods run NTP); SQLite locally, Postgres in production.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

_metadata = sa.MetaData()
replicas_table = sa.Table(
    "server_replicas",
    _metadata,
    sa.Column("replica_id", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("alias", sa.String(128), nullable=False),
    sa.Column("alias_version", sa.String(64), nullable=True),
    sa.Column("alias_error", sa.Text, nullable=True),
    sa.Column("alias_checked_at", sa.Float, nullable=False, default=0.0),
    sa.Column("alias_read_at", sa.Float, nullable=True),
    sa.Column("alias_polls", sa.Integer, nullable=False, default=0),
)
workers_table = sa.Table(
    "server_workers",
    _metadata,
    sa.Column("replica_id", sa.String(128), primary_key=True),
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("family", sa.String(64), nullable=True),
    sa.Column("runtime", sa.String(32), nullable=True),
    sa.Column("loaded_at", sa.String(64), nullable=True),
    sa.Column("target_version", sa.String(64), nullable=True),
    sa.Column("load_error", sa.Text, nullable=True),
    sa.Column("error_version", sa.String(64), nullable=True),
    sa.Column("error_at", sa.Float, nullable=True),
    sa.Column("last_seen", sa.Float, nullable=False, index=True),
)
deployments_table = sa.Table(
    "server_deployments",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("alias", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("previous", sa.String(64), nullable=True),
    sa.Column("prior_previous", sa.String(64), nullable=True),
    sa.Column("requested_at", sa.Float, nullable=False, index=True),
    sa.Column("requested_by", sa.String(128), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
)
#: Statuses a deployment ends in; ``pending`` and ``loading`` are not final.
FINAL_STATUSES = ("succeeded", "failed", "superseded")


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
    alias_checked_at: float = 0.0
    alias_read_at: float | None = None
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

    def serves(self, version: str) -> bool:
        return bool(self.workers) and all(w.version == version for w in self.workers)

    def as_json(self) -> dict[str, Any]:
        last_seen = max((w.last_seen for w in self.workers), default=None)
        runtimes = sorted({w.runtime for w in self.workers if w.runtime})
        loaded = sorted(w.loaded_at for w in self.workers if w.loaded_at)
        return {
            "replica_id": self.replica_id,
            "host": self.host,
            "version": self.version,
            "state": self.state,
            "runtime": runtimes[0] if len(runtimes) == 1 else (runtimes or None),
            "loaded_at": loaded[-1] if loaded else None,
            "last_seen": last_seen,
            "load_error": self.load_error,
            "alias": self.alias,
            "alias_version": self.alias_version,
            "alias_error": self.alias_error,
            "started_at": self.started_at,
            "workers": [
                {
                    "worker_id": w.worker_id,
                    "version": w.version,
                    "state": w.state,
                    "runtime": w.runtime,
                    "family": w.family,
                    "loaded_at": w.loaded_at,
                    "last_seen": w.last_seen,
                    "target_version": w.target_version,
                    "load_error": w.load_error,
                    "error_version": w.error_version,
                    "error_at": w.error_at,
                }
                for w in self.workers
            ],
        }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def pool_kwargs(url: str) -> dict[str, Any]:
    """Pool sizes of a server database engine (``SENTIFLOW_SERVER_DB_POOL_SIZE``, ``_DB_MAX_OVERFLOW``).

    Every worker has two engines (feedback, replicas): replicas x workers x 2 x (size + overflow) must fit
    the database's ``max_connections`` (docs/deployment.md)."""
    if url.startswith("sqlite"):
        return {}
    from sentiflow.config import ServerSettings

    settings = ServerSettings()
    return {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}


def make_engine(url: str) -> sa.Engine:
    is_sqlite = url.startswith("sqlite")
    engine = sa.create_engine(
        url,
        connect_args={"timeout": 30} if is_sqlite else {},
        pool_pre_ping=not is_sqlite,
        **pool_kwargs(url),
    )
    if is_sqlite:
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def create_tables(engine: sa.Engine, attempts: int = 5) -> None:
    """Create the tables if missing; replicas and workers start together, so a lost race is retried."""
    for attempt in range(attempts):
        try:
            _metadata.create_all(engine, checkfirst=True)
            return
        except sa.exc.DatabaseError:
            names = set(sa.inspect(engine).get_table_names())
            if {t.name for t in _metadata.sorted_tables} <= names:
                return
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


class ReplicaStore:
    """Queries on the replica, worker and deployment tables."""

    def __init__(self, url: str, *, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        create_tables(self.engine)

    # --- replicas ------------------------------------------------------------------------------------
    def register_replica(self, replica_id: str, host: str, alias: str) -> None:
        """Insert this replica's row (once per replica: a second worker finds it there)."""
        with self.engine.begin() as conn:
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

    def claim_alias_poll(self, replica_id: str, interval_s: float, now: float | None = None) -> bool:
        """Whether this worker may read the alias from the registry now (one read per interval, replica)."""
        now = time.time() if now is None else now
        t = replicas_table
        with self.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.replica_id == replica_id, t.c.alias_checked_at <= now - interval_s)
                .values(alias_checked_at=now, alias_polls=t.c.alias_polls + 1)
            )
        return result.rowcount == 1

    def record_alias(self, replica_id: str, version: str | None, error: str | None) -> None:
        t = replicas_table
        with self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.replica_id == replica_id)
                .values(alias_version=version, alias_error=error, alias_read_at=time.time())
            )

    def replica_alias(self, replica_id: str) -> tuple[bool, str | None, str | None]:
        """``(read_yet, version, error)``: the alias as the replica's last registry read found it."""
        t = replicas_table
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.alias_read_at, t.c.alias_version, t.c.alias_error).where(
                    t.c.replica_id == replica_id
                )
            ).first()
        if row is None or row.alias_read_at is None:
            return False, None, None
        return True, row.alias_version, row.alias_error

    def alias_polls(self) -> dict[str, int]:
        """Registry alias reads per replica since it started (for the benchmark's request rate)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(replicas_table.c.replica_id, replicas_table.c.alias_polls)).all()
        return {r.replica_id: int(r.alias_polls) for r in rows}

    # --- workers -------------------------------------------------------------------------------------
    def heartbeat(self, replica_id: str, worker_id: str, **fields: Any) -> None:
        """Upsert this worker's row with ``fields`` and ``last_seen`` = now (each row has one writer)."""
        t = workers_table
        values = {**fields, "last_seen": time.time()}
        key = (t.c.replica_id == replica_id, t.c.worker_id == worker_id)
        with self.engine.begin() as conn:
            if conn.execute(t.update().where(*key).values(**values)).rowcount == 0:
                conn.execute(t.insert().values(replica_id=replica_id, worker_id=worker_id, **values))

    def remove_worker(self, replica_id: str, worker_id: str) -> None:
        t = workers_table
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.replica_id == replica_id, t.c.worker_id == worker_id))

    def live(self, ttl_s: float, now: float | None = None) -> list[ReplicaView]:
        """Replicas with at least one worker seen within ``ttl_s``, each with its live workers."""
        now = time.time() if now is None else now
        w, r = workers_table, replicas_table
        with self.engine.connect() as conn:
            workers = conn.execute(
                sa.select(w).where(w.c.last_seen >= now - ttl_s).order_by(w.c.replica_id, w.c.worker_id)
            ).all()
            ids = sorted({row.replica_id for row in workers})
            replicas = conn.execute(sa.select(r).where(r.c.replica_id.in_(ids))).all() if ids else []
        views = {
            row.replica_id: ReplicaView(
                replica_id=row.replica_id,
                host=row.host,
                started_at=row.started_at,
                alias=row.alias,
                alias_version=row.alias_version,
                alias_error=row.alias_error,
                alias_checked_at=row.alias_checked_at,
                alias_read_at=row.alias_read_at,
            )
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
        with self.engine.begin() as conn:
            removed = conn.execute(w.delete().where(w.c.last_seen < cutoff)).rowcount
            conn.execute(
                r.delete().where(
                    r.c.started_at < cutoff, ~r.c.replica_id.in_(sa.select(w.c.replica_id).distinct())
                )
            )
        return removed

    # --- deployments ---------------------------------------------------------------------------------
    def add_deployment(self, record: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(deployments_table.insert().values(**record))

    def finish_deployment(self, deployment_id: str, status: str, error: str | None = None) -> bool:
        """End a deployment that is not final yet; False when it already ended (someone else finished it)."""
        t = deployments_table
        with self.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.id == deployment_id, t.c.status.notin_(FINAL_STATUSES))
                .values(status=status, error=error, finished_at=time.time())
            )
        return result.rowcount == 1

    def deployment(self, deployment_id: str) -> dict[str, Any] | None:
        t = deployments_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == deployment_id)).first()
        return None if row is None else dict(row._mapping)

    def latest_deployment(self) -> dict[str, Any] | None:
        t = deployments_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).order_by(t.c.requested_at.desc()).limit(1)).first()
        return None if row is None else dict(row._mapping)

    def dispose(self) -> None:
        self.engine.dispose()
