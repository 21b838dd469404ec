"""Reminders scheduled by custom actions (Rasa's ReminderScheduled), fired by the server when due.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reminders",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("sender", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("intent", sa.String(128), nullable=False),
        sa.Column("entities", sa.JSON, nullable=False),
        sa.Column("kill_on_user_message", sa.Boolean, nullable=False),
        sa.Column("scheduled_at", Timestamp, nullable=False),
        sa.Column("due_at", Timestamp, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fired_at", Timestamp),
    )
    op.create_index("ix_reminders_conversation_id", "reminders", ["conversation_id"])
    op.create_index("ix_reminders_due_at", "reminders", ["due_at"])
    op.create_index("ix_reminders_status", "reminders", ["status"])


def downgrade() -> None:
    op.drop_table("reminders")
