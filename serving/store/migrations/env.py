"""Alembic's environment for the server's shared database, driven only by ``serving.store.migrate``.

The runner hands over a connection that already holds the migration lock (``pg_advisory_xact_lock`` on
Postgres, a file lock on SQLite) inside one transaction, so migrations started together (one init
container per pod) run one after the other and the later ones find nothing to do. SQLite cannot ``ALTER``
most things, so operations render in batch mode (copy-and-move) there.
"""

from __future__ import annotations

from alembic import context

from serving.store.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations with `python -m serving.store.migrate upgrade`, not `alembic`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
