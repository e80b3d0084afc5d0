"""The server's shared database: its engine and every table (SQLite's settings too).

One ``Database`` per app (``serving.extension`` builds it from ``SENTIFLOW_SERVER_FEEDBACK_DB_URL``); the
stores (``feedback``, ``replicas``) are queries over it. SQLite in the state folder by
default, any SQLAlchemy URL (Postgres in production, shared by every replica).

The tables are defined here and created or changed only by the Alembic migrations in
``serving/store/migrations`` (``python -m serving.store.migrate upgrade``), run by one step before the
server starts: three replicas whose workers created the tables themselves raced on ``CREATE TABLE`` against
a fresh Postgres and one never booted. A worker only checks that the database is at the
migrations' head (``serving.store.migrate.open_database``). A table or column change is an edit here
plus a new migration; ``tests/integration/serving/test_migrations.py`` fails when the two disagree.

SQLite: WAL mode (set by the migration step, persistent in the file), so several gunicorn workers write
safely; each connection waits for locks (``busy_timeout``) and relaxes ``synchronous`` (safe under WAL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

#: Column sizes; the request models (``serving.http.schemas``) use the same numbers, so a value the API
#: accepts always fits its column.
LABEL_MAX_CHARS = 128
VERSION_MAX_CHARS = 64
PREDICTION_ID_MAX_CHARS = 2048
SQLITE_BUSY_TIMEOUT_MS = 30_000
CLIENT_MAX_CHARS = 255
#: Largest row id (an integer column is 32-bit in Postgres): a request naming a larger one names no row.
MAX_ROW_ID = 2**31 - 1
REVIEWER_MAX_CHARS = 128

metadata = sa.MetaData()

# --- feedback (serving.store.feedback) ---------------------------------------------------------------------
feedback_table = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("predicted_label", sa.String(LABEL_MAX_CHARS), nullable=False),
    sa.Column("correct", sa.Boolean, nullable=False),
    sa.Column("true_label", sa.String(LABEL_MAX_CHARS), nullable=True),
    sa.Column("model_version", sa.String(VERSION_MAX_CHARS), nullable=True),
    # True when the row cites a prediction the server signed; only those are trained on.
    sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
    # The signed prediction the row judges, in its canonical form (serving.prediction_ids): one row per
    # prediction, so a replayed id cannot add rows or count twice towards an alert. NULL for rows
    # stored before the column existed (NULLs never collide).
    sa.Column("prediction_id", sa.String(PREDICTION_ID_MAX_CHARS), nullable=True),
    # Who sent it: the rate limit's client key (the peer, or the address ProxyFix found).
    sa.Column("client", sa.String(CLIENT_MAX_CHARS), nullable=True),
    # The review (serving.store.feedback): pending until a reviewer (or auto-accept) decides; only
    # accepted and corrected rows train. review_label is the reviewer's label of a corrected row; review_id
    # the decision that set the status (feedback_reviews: who and when).
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'"), index=True),
    sa.Column("review_label", sa.String(LABEL_MAX_CHARS), nullable=True),
    sa.Column(
        "review_id",
        sa.Integer,
        sa.ForeignKey("feedback_reviews.id", name="fk_feedback_review_id"),
        nullable=True,
        index=True,
    ),
    sa.UniqueConstraint("prediction_id", name="uq_feedback_prediction_id"),
)
#: One row per reviewer decision (one accept, or one bulk accept of many rows): who, when, what. Its id
#: orders decisions, so the training export's watermark moves over decisions, not over feedback ids: a row
#: reviewed after newer rows were exported still reaches the next training run.
feedback_reviews_table = sa.Table(
    "feedback_reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reviewer", sa.String(REVIEWER_MAX_CHARS), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("label", sa.String(LABEL_MAX_CHARS), nullable=True),
)
#: One row per alert kind: when the last alert was raised and until when the kind stays quiet. Shared by
#: every gunicorn worker (and replicas on one database), so "one alert per window" holds across them.
alert_state_table = sa.Table(
    "alert_state",
    metadata,
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("quiet_until", sa.Float, nullable=False),
    sa.Column("last_alert_at", sa.Float, nullable=False),
)

# --- replicas and their workers (serving.store.replicas) ---------------------------------------------------
replicas_table = sa.Table(
    "server_replicas",
    metadata,
    sa.Column("replica_id", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("alias", sa.String(128), nullable=False),
    sa.Column("alias_version", sa.String(64), nullable=True),
    sa.Column("alias_error", sa.Text, nullable=True),
    sa.Column("alias_checked_at", sa.Float, nullable=False, default=0.0),
    sa.Column("alias_read_at", sa.Float, nullable=True),
    sa.Column("alias_polls", sa.Integer, nullable=False, default=0),
    sa.Column("candidate_version", sa.String(64), nullable=True),
)
workers_table = sa.Table(
    "server_workers",
    metadata,
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
    sa.Column("staged_version", sa.String(64), nullable=True),
    sa.Column("staging_error", sa.Text, nullable=True),
    sa.Column("staging_error_version", sa.String(64), nullable=True),
)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: wait for locks instead of failing. The journal mode is persistent in the file and
    set once by the migration step (``serving.store.migrate``); changing it needs an exclusive lock that
    SQLite does not wait for."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def pool_kwargs(url: str) -> dict[str, Any]:
    """Pool sizes of the server's database engine (``SENTIFLOW_SERVER_DB_POOL_SIZE``, ``_DB_MAX_OVERFLOW``).

    Every worker has one engine: replicas x workers x (size + overflow) must fit the database's
    ``max_connections`` (docs/deployment.md)."""
    if is_sqlite(url):
        return {}
    from sentiflow.settings.server import ServerSettings

    settings = ServerSettings()
    return {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}


def make_engine(url: str) -> sa.Engine:
    """The engine for ``url``: SQLite with the per-connection pragmas, others with pre-ping (Postgres
    connections may be cut by the network or a failover)."""
    sqlite = is_sqlite(url)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000} if sqlite else {},
        pool_pre_ping=not sqlite,
        **pool_kwargs(url),
    )
    if sqlite:
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and ``:memory:``)."""
    if not is_sqlite(url):
        return None
    database = sa.engine.make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


class Database:
    """One engine on the shared database; the stores run their queries on it.

    It never creates or changes a table. A worker opens it through ``serving.store.migrate.open_database``,
    which first waits for the migrations' head (the gunicorn master, removing a dead worker's row, does not).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def dispose(self) -> None:
        """Close the pooled connections (an app's ``close``, a worker's exit); the engine stays usable."""
        self.engine.dispose()
