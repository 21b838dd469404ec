"""The trainer's loop: review marks on inbox messages, and model versions (trained, compared, activated).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "review_marks",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("action", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
    )
    op.create_index("ix_review_marks_message_key", "review_marks", ["message_key"], unique=True)
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data_fingerprint", sa.String(64)),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("progress", sa.JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("trained_by", sa.String(128), nullable=False),
        sa.Column("trained_at", Timestamp, nullable=False),
        sa.Column("activated_by", sa.String(128)),
        sa.Column("activated_at", Timestamp),
        sa.Column("experiment_share", sa.Float, nullable=False),
    )
    op.create_index("ix_model_versions_status", "model_versions", ["status"])


def downgrade() -> None:
    op.drop_table("model_versions")
    op.drop_table("review_marks")
