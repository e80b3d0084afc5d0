"""Replicas report the release's candidate: the alias's version as read, and what each worker staged.

``server_replicas.candidate_version`` is the candidate alias at the replica's last registry read (a hint,
like ``alias_version``); ``server_workers.staged_version`` is the candidate a worker holds loaded but not
served, ``staging_error`` and ``staging_error_version`` its last failed staging, which fails a release
before its promotion.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("server_replicas") as batch:
        batch.add_column(sa.Column("candidate_version", sa.String(64), nullable=True))
    with op.batch_alter_table("server_workers") as batch:
        batch.add_column(sa.Column("staged_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("staging_error", sa.Text, nullable=True))
        batch.add_column(sa.Column("staging_error_version", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("server_workers") as batch:
        batch.drop_column("staging_error_version")
        batch.drop_column("staging_error")
        batch.drop_column("staged_version")
    with op.batch_alter_table("server_replicas") as batch:
        batch.drop_column("candidate_version")
