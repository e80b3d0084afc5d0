"""Releases are Airflow runs, not server rows: the deployments table goes.

``POST /deploy`` asks Airflow for a run of the release DAG and replicas only follow the registry's alias,
so nothing in the server writes or reads ``server_deployments``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "server_deployments" in sa.inspect(op.get_bind()).get_table_names():
        op.drop_table("server_deployments")  # its indexes go with it


def downgrade() -> None:
    """The table as 0001 and 0002 left it, empty: the rows it held are not coming back."""
    op.create_table(
        "server_deployments",
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
        sa.Column("lease_owner", sa.String(160), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
    )
    op.create_index("ix_server_deployments_requested_at", "server_deployments", ["requested_at"])
    op.create_index("ix_server_deployments_lease_until", "server_deployments", ["lease_until"])
