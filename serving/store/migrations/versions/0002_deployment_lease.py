"""Deployments carry a lease: any live replica finishes a deployment whose watcher died.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("server_deployments") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(160), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.Float, nullable=True))
        batch.create_index("ix_server_deployments_lease_until", ["lease_until"])


def downgrade() -> None:
    with op.batch_alter_table("server_deployments") as batch:
        batch.drop_index("ix_server_deployments_lease_until")
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
