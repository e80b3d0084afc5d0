"""Feedback is reviewed before it trains: a status per row, the client that sent it, and the decisions.

Rows stored before the review existed start ``pending`` like new ones: nothing trains until a reviewer
accepts it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("label", sa.String(128), nullable=True),
    )
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("client", sa.String(255), nullable=True))
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'"))
        )
        batch.add_column(sa.Column("review_label", sa.String(128), nullable=True))
        batch.add_column(sa.Column("review_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_feedback_review_id", "feedback_reviews", ["review_id"], ["id"])
        batch.create_index("ix_feedback_status", ["status"])
        batch.create_index("ix_feedback_review_id", ["review_id"])


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_index("ix_feedback_review_id")
        batch.drop_index("ix_feedback_status")
        batch.drop_constraint("fk_feedback_review_id", type_="foreignkey")
        batch.drop_column("review_id")
        batch.drop_column("review_label")
        batch.drop_column("status")
        batch.drop_column("client")
    op.drop_table("feedback_reviews")
