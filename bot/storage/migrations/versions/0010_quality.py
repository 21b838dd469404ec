"""Quality inspection (质检) of human chats: one row per rule hit (with the inspector's review), and one row per
agent who served a closed hand-over (the chats an agent's scorecard counts).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quality_hits",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("handoff_id", BigId, sa.ForeignKey("handoffs.id"), nullable=False),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("agent_id", BigId, sa.ForeignKey("agents.id")),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("event_seq", sa.Integer, nullable=False),
        sa.Column("excerpt", sa.Text, nullable=False),
        sa.Column("detail", sa.String(256), nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(128)),
        sa.Column("note", sa.Text),
        sa.Column("reviewed_at", Timestamp),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("handoff_id", "rule", "event_seq", name="uq_quality_hit_handoff_rule_seq"),
    )
    op.create_index("ix_quality_hits_handoff_id", "quality_hits", ["handoff_id"])
    op.create_index("ix_quality_hits_agent_id", "quality_hits", ["agent_id"])
    op.create_index("ix_quality_hits_status", "quality_hits", ["status"])
    op.create_table(
        "quality_chats",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("handoff_id", BigId, sa.ForeignKey("handoffs.id"), nullable=False),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("agent_id", BigId, sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("closed_at", Timestamp, nullable=False),
        sa.Column("checked_at", Timestamp, nullable=False),
        sa.UniqueConstraint("handoff_id", "agent_id", name="uq_quality_chat_handoff_agent"),
    )
    op.create_index("ix_quality_chats_closed_at", "quality_chats", ["closed_at"])
    op.create_index("ix_quality_chats_agent_id", "quality_chats", ["agent_id"])


def downgrade() -> None:
    op.drop_table("quality_chats")
    op.drop_table("quality_hits")
