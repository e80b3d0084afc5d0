"""The shared database as ``serving/store/db.py`` defined it, plus one feedback per prediction.

Tables: ``feedback`` (with ``prediction_id`` and its unique constraint ``uq_feedback_prediction_id``),
``alert_state``, ``server_replicas``, ``server_workers``, ``server_deployments``.

A database made before migrations existed (the workers created these tables themselves) is adopted: a
table that exists keeps its rows and only gets the columns and the constraint it lacks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LABEL, VERSION, PREDICTION_ID = 128, 64, 2048


def _tables() -> dict[str, list[sa.Column]]:
    """Fresh objects each call (a Column belongs to one table)."""
    return {
        "feedback": [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("predicted_label", sa.String(LABEL), nullable=False),
            sa.Column("correct", sa.Boolean, nullable=False),
            sa.Column("true_label", sa.String(LABEL), nullable=True),
            sa.Column("model_version", sa.String(VERSION), nullable=True),
            sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("prediction_id", sa.String(PREDICTION_ID), nullable=True),
        ],
        "alert_state": [
            sa.Column("kind", sa.String(64), primary_key=True),
            sa.Column("quiet_until", sa.Float, nullable=False),
            sa.Column("last_alert_at", sa.Float, nullable=False),
        ],
        "server_replicas": [
            sa.Column("replica_id", sa.String(128), primary_key=True),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("started_at", sa.Float, nullable=False),
            sa.Column("alias", sa.String(128), nullable=False),
            sa.Column("alias_version", sa.String(64), nullable=True),
            sa.Column("alias_error", sa.Text, nullable=True),
            sa.Column("alias_checked_at", sa.Float, nullable=False),
            sa.Column("alias_read_at", sa.Float, nullable=True),
            sa.Column("alias_polls", sa.Integer, nullable=False),
        ],
        "server_workers": [
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
            sa.Column("last_seen", sa.Float, nullable=False),
        ],
        "server_deployments": [
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("alias", sa.String(128), nullable=False),
            sa.Column("version", sa.String(64), nullable=False),
            sa.Column("previous", sa.String(64), nullable=True),
            sa.Column("prior_previous", sa.String(64), nullable=True),
            sa.Column("requested_at", sa.Float, nullable=False),
            sa.Column("requested_by", sa.String(128), nullable=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("error", sa.Text, nullable=True),
            sa.Column("finished_at", sa.Float, nullable=True),
        ],
    }


#: ``table -> [(constraint name, columns)]``: one feedback per signed prediction.
UNIQUES = {"feedback": [("uq_feedback_prediction_id", ["prediction_id"])]}
#: ``(index name, table, column)``: the ``index=True`` columns of db.py, named as SQLAlchemy names them.
INDEXES = [
    ("ix_feedback_created_at", "feedback", "created_at"),
    ("ix_server_workers_last_seen", "server_workers", "last_seen"),
    ("ix_server_deployments_requested_at", "server_deployments", "requested_at"),
]


def _adopt(name: str, columns: list[sa.Column], inspector: sa.Inspector) -> None:
    """A pre-migration table: add the nullable (or defaulted) columns and the constraint it lacks."""
    have = {c["name"] for c in inspector.get_columns(name)}
    missing = [c for c in columns if c.name not in have]
    uniques = {u["name"] for u in inspector.get_unique_constraints(name)}
    wanted = [(n, cols) for n, cols in UNIQUES.get(name, []) if n not in uniques]
    if missing:
        with op.batch_alter_table(name) as batch:
            for column in missing:
                batch.add_column(column)
    if wanted:  # a second batch: SQLite's copy-and-move loses a constraint on a column added in the same one
        with op.batch_alter_table(name) as batch:
            for constraint, names in wanted:
                batch.create_unique_constraint(constraint, names)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, items in _tables().items():
        if name in existing:
            _adopt(name, items, inspector)
        else:
            uniques = [sa.UniqueConstraint(*cols, name=n) for n, cols in UNIQUES.get(name, [])]
            op.create_table(name, *items, *uniques)
    for index, table, column in INDEXES:
        if index not in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table)}:
            op.create_index(index, table, [column])


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
