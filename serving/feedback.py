"""User feedback on predictions: stored in a SQL database (SQLAlchemy), exported for retraining.

SQLite in the state folder by default (WAL mode, so several gunicorn workers write safely; the schema and
the journal mode are set once, under a file lock, because two workers opening a fresh database at once made
``PRAGMA journal_mode=WAL`` fail with "database is locked" and the server never booted); any SQLAlchemy
URL (Postgres in production) via ``SENTIFLOW_SERVER_FEEDBACK_DB_URL``. Each row is committed before the
request answers, so a crash right after a 201 loses nothing.

Other components react to stored rows without touching the route: the app's extension
(``serving.extension``) calls its listeners with each committed ``FeedbackRecord``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from filelock import FileLock

log = logging.getLogger(__name__)

#: Column sizes; the request models (``serving.schemas``) use the same numbers, so a value the API accepts
#: always fits its column.
LABEL_MAX_CHARS = 128
VERSION_MAX_CHARS = 64
PREDICTION_ID_MAX_CHARS = 2048
SQLITE_BUSY_TIMEOUT_MS = 30_000

_metadata = sa.MetaData()
feedback_table = sa.Table(
    "feedback",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("predicted_label", sa.String(LABEL_MAX_CHARS), nullable=False),
    sa.Column("correct", sa.Boolean, nullable=False),
    sa.Column("true_label", sa.String(LABEL_MAX_CHARS), nullable=True),
    sa.Column("model_version", sa.String(VERSION_MAX_CHARS), nullable=True),
    # True when the row cites a prediction the server signed (issue 14); only those are trained on.
    sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
)
COLUMNS = [c.name for c in feedback_table.columns]

#: One row per alert kind: when the last alert was raised and until when the kind stays quiet. Shared by
#: every gunicorn worker (and replicas on one database), so "one alert per window" holds across them.
alert_state_table = sa.Table(
    "alert_state",
    _metadata,
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("quiet_until", sa.Float, nullable=False),
    sa.Column("last_alert_at", sa.Float, nullable=False),
)
EXPORT_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class FeedbackRecord:
    id: int
    created_at: datetime
    text: str
    predicted_label: str
    correct: bool
    true_label: str | None
    model_version: str | None
    verified: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: wait for locks instead of failing. The journal mode is persistent in the file and
    set once by ``_init_schema``; changing it needs an exclusive lock that SQLite does not wait for."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_path(url: str) -> Path | None:
    database = sa.engine.make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def _add_missing_columns(engine: sa.Engine) -> None:
    """Databases made before a column existed get it (nullable or with a server default): no lost rows."""
    for table in _metadata.sorted_tables:
        have = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            ddl = column.type.compile(engine.dialect)
            default = " DEFAULT 0" if column.server_default is not None else ""
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {ddl}{default}"))


def _init_schema(engine: sa.Engine, url: str) -> None:
    """Create tables (and, for SQLite, switch to WAL) exactly once among processes starting together."""
    path = _sqlite_path(url) if url.startswith("sqlite") else None
    if path is None:
        _metadata.create_all(engine)
        _add_missing_columns(engine)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".init.lock", timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        with engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            if str(mode).lower() != "wal":
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        _metadata.create_all(engine)
        _add_missing_columns(engine)


def _record(row: Any) -> FeedbackRecord:
    created_at = row["created_at"]
    if created_at.tzinfo is None:  # SQLite returns naive datetimes; we always store UTC
        created_at = created_at.replace(tzinfo=UTC)
    return FeedbackRecord(**{**dict(row), "created_at": created_at})


class FeedbackStore:
    def __init__(self, url: str) -> None:
        self.url = url
        is_sqlite = url.startswith("sqlite")
        from serving.replicas import pool_kwargs

        self.engine = sa.create_engine(
            url,
            connect_args={"timeout": 30} if is_sqlite else {},
            pool_pre_ping=not is_sqlite,
            **pool_kwargs(url),
        )
        if is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        _init_schema(self.engine, url)

    def add(
        self,
        *,
        text: str,
        predicted_label: str,
        correct: bool,
        true_label: str | None = None,
        model_version: str | None = None,
        verified: bool = False,
    ) -> FeedbackRecord:
        values = {
            "created_at": datetime.now(UTC),
            "text": text,
            "predicted_label": predicted_label,
            "correct": correct,
            "true_label": true_label,
            "model_version": model_version,
            "verified": verified,
        }
        with self.engine.begin() as conn:
            row_id = conn.execute(feedback_table.insert().values(**values)).inserted_primary_key[0]
        return FeedbackRecord(id=int(row_id), **values)

    # --- the shared alert window (sentiflow.feedback.alerts.SharedWrongFlagWindow reads these) -------------
    def wrong_flags_between(self, start: float, end: float) -> list[FeedbackRecord]:
        """Feedback rows flagged wrong with ``start < created_at <= end`` (epoch seconds), oldest first."""
        query = (
            sa.select(feedback_table)
            .where(
                feedback_table.c.correct.is_(False),
                feedback_table.c.created_at > datetime.fromtimestamp(start, UTC),
                feedback_table.c.created_at <= datetime.fromtimestamp(end, UTC),
            )
            .order_by(feedback_table.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_record(row) for row in rows]

    def alert_state(self, kind: str) -> tuple[float, float]:
        """``(quiet_until, last_alert_at)`` of ``kind``; ``(-inf, -inf)`` before its first alert."""
        query = sa.select(alert_state_table).where(alert_state_table.c.kind == kind)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return (row["quiet_until"], row["last_alert_at"]) if row else (float("-inf"), float("-inf"))

    def claim_alert(self, kind: str, *, expected_quiet_until: float, quiet_until: float, at: float) -> bool:
        """Compare-and-set: True for exactly one caller among workers racing to raise the same alert."""
        table = alert_state_table
        if expected_quiet_until == float("-inf"):  # first alert of this kind: whoever inserts the row wins
            try:
                with self.engine.begin() as conn:
                    conn.execute(table.insert().values(kind=kind, quiet_until=quiet_until, last_alert_at=at))
            except sa.exc.IntegrityError:
                return False
            return True
        with self.engine.begin() as conn:
            result = conn.execute(
                table.update()
                .where(table.c.kind == kind, table.c.quiet_until == expected_quiet_until)
                .values(quiet_until=quiet_until, last_alert_at=at)
            )
            return result.rowcount == 1

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(feedback_table)).scalar_one())

    def frame(self, *, since_id: int = 0, limit: int | None = None):
        """Rows with ``id > since_id`` in insertion order, as a pandas frame with ``COLUMNS``."""
        import pandas as pd

        query = sa.select(feedback_table).where(feedback_table.c.id > since_id).order_by(feedback_table.c.id)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=COLUMNS)
        frame["id"] = frame["id"].astype("int64")
        frame["correct"] = frame["correct"].astype(bool)
        frame["verified"] = frame["verified"].fillna(False).astype(bool)
        return frame

    def export(self, fmt: str, *, since_id: int = 0, limit: int | None = None) -> bytes:
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; use one of {EXPORT_FORMATS}")
        frame = self.frame(since_id=since_id, limit=limit)
        if fmt == "csv":
            return frame.to_csv(index=False).encode()
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()

    def dispose(self) -> None:
        self.engine.dispose()
