"""Agents and hand-overs to them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("max_chats", sa.Integer(), nullable=False),
        sa.Column("presence", sa.String(16), nullable=False),
        sa.Column("last_seen_at", Timestamp, nullable=False),
    )
    op.create_table(
        "handoffs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("group", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agent_id", BigId, sa.ForeignKey("agents.id")),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("assigned_at", Timestamp),
        sa.Column("closed_at", Timestamp),
        sa.Column("disposition", sa.String(64)),
        sa.Column("rating", sa.Integer()),
        sa.Column("comment", sa.Text()),
    )
    for column in ("conversation_id", "group", "status", "agent_id"):
        op.create_index(f"ix_handoffs_{column}", "handoffs", [column])


def downgrade() -> None:
    op.drop_table("handoffs")
    op.drop_table("agents")
