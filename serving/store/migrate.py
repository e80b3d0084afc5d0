"""Schema migrations of the shared database, run once by one step, and the workers' check of them.

``python -m serving.store.migrate upgrade`` brings the database (``SENTIFLOW_SERVER_FEEDBACK_DB_URL``, or
``--url``) to the migrations' head. One step runs it before any server worker starts: the local stack's
start (``sentiflow.localstack.stack``) and the test helpers, compose's one-shot ``model-server-migrate``
service, Kubernetes' ``migrate`` init container of the model-server pod. Runs started together are safe:
each takes a lock first (``pg_advisory_xact_lock`` on Postgres, a file lock beside a SQLite file) and
finds the work done when it gets it, so one init container per pod is fine.

Workers never create or change a table: replicas booting together would race on ``CREATE TABLE`` and
one would die. ``wait_for_schema`` is their check: at head → go; behind (or empty) → wait up to
``SENTIFLOW_SERVER_SCHEMA_WAIT_S`` for the step, then fail to boot with ``SchemaBehindError``, whose
message names the database, both revisions and the command to run. A revision this code does not know is
a newer release's (a rolling update migrated first): migrations only add, so the worker serves on it.

``current`` prints the database's revision, ``check`` exits 1 when it is behind.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from serving.store.db import Database, make_engine, safe_url, sqlite_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Any fixed number: every migration run on one Postgres database takes this transaction-level lock.
PG_LOCK_KEY = 21_0621
COMMAND = "python -m serving.store.migrate upgrade"
WAIT_POLL_S = 0.5


class SchemaBehindError(RuntimeError):
    """The shared database is not at the migrations' head after the bounded wait."""


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None
    return revision


def known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(config()).walk_revisions()}


def current(engine: sa.Engine) -> str | None:
    """The database's revision (None: never migrated, or empty)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _locked(engine: sa.Engine, url: str) -> Iterator[sa.Connection]:
    """One transaction that holds the migration lock; concurrent runs queue on it."""
    path = sqlite_path(url)
    if path is None:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
            yield conn
        return
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".migrate.lock", timeout=300):
        with engine.connect() as conn:  # WAL is persistent in the file; set outside a transaction
            if str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower() != "wal":
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        with engine.begin() as conn:
            yield conn


def upgrade(url: str, revision: str = "head") -> str | None:
    """Migrate the database at ``url`` up to ``revision``; returns the revision it ends at."""
    return _run(url, command.upgrade, revision)


def downgrade(url: str, revision: str) -> str | None:
    """Migrate down to ``revision`` (``base``: no tables); for rolling a release back by hand, and tests."""
    return _run(url, command.downgrade, revision)


def _run(url: str, step: Callable[[Config, str], None], revision: str) -> str | None:
    engine = make_engine(url)
    try:
        with _locked(engine, url) as conn:
            cfg = config()
            cfg.attributes["connection"] = conn
            step(cfg, revision)
        return current(engine)
    finally:
        engine.dispose()


def schema_behind(engine: sa.Engine) -> tuple[str | None, str] | None:
    """``(database revision, head)`` when the database is behind this code; None when it may be served."""
    want, have = head(), current(engine)
    if have == want or (have is not None and have not in known_revisions()):
        return None  # at head, or a newer release's revision (migrations only add)
    return have, want


def wait_for_schema(engine: sa.Engine, url: str, timeout_s: float) -> None:
    """Return once the database is at head (or newer); raise ``SchemaBehindError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    warned = False
    while True:
        behind = schema_behind(engine)
        if behind is None:
            return
        have, want = behind
        if time.monotonic() >= deadline:
            raise SchemaBehindError(
                f"the shared database {safe_url(url)} is at schema revision {have or 'none (no tables)'}, "
                f"this server needs {want}; the server never creates tables. Run the migrations once, "
                f"then start the server: SENTIFLOW_SERVER_FEEDBACK_DB_URL=... {COMMAND} (docker "
                "compose: the model-server-migrate service; Kubernetes: the model-server pod's migrate "
                "init container)"
            )
        if not warned:
            log.warning(
                "shared database at revision %s, need %s: waiting up to %.0fs for `%s`",
                have,
                want,
                timeout_s,
                COMMAND,
            )
            warned = True
        time.sleep(WAIT_POLL_S)


def open_database(url: str, schema_wait_s: float) -> Database:
    """The worker's way to the shared database: at the migrations' head within ``schema_wait_s``, or
    ``SchemaBehindError`` (the worker fails to boot with the command to run)."""
    db = Database(url)
    try:
        wait_for_schema(db.engine, url, schema_wait_s)
    except BaseException:
        db.dispose()
        raise
    return db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.store.migrate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["upgrade", "current", "check", "head"])
    parser.add_argument("--url", help="SQLAlchemy URL (default: SENTIFLOW_SERVER_FEEDBACK_DB_URL's database)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "head":
        print(head())
        return 0
    if args.url is None:
        from sentiflow.settings.server import ServerSettings

        args.url = ServerSettings().resolved_feedback_db_url
    if args.command == "upgrade":
        print(f"{safe_url(args.url)}: at schema revision {upgrade(args.url)}")
        return 0
    engine = make_engine(args.url)
    try:
        have = current(engine)
        print(f"{safe_url(args.url)}: at schema revision {have or 'none'} (head {head()})")
        return 1 if args.command == "check" and schema_behind(engine) is not None else 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
