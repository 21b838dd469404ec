"""Customers, channel identities, conversations, events, inbound messages, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128)),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_table(
        "channel_identities",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id")),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_seen_at", Timestamp, nullable=False),
        sa.UniqueConstraint("channel", "external_id", name="uq_identity_channel_external"),
    )
    op.create_index("ix_channel_identities_customer_id", "channel_identities", ["customer_id"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("identity_id", BigId, sa.ForeignKey("channel_identities.id"), nullable=False),
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id")),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_conversations_identity_id", "conversations", ["identity_id"])
    op.create_index("ix_conversations_customer_id", "conversations", ["customer_id"])
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("timestamp", Timestamp, nullable=False),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_event_conversation_seq"),
    )
    op.create_index("ix_events_conversation_id", "events", ["conversation_id"])
    op.create_table(
        "inbound_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("identity_id", BigId, sa.ForeignKey("channel_identities.id"), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("user_event_id", BigId, sa.ForeignKey("events.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("replies", sa.JSON()),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("answered_at", Timestamp),
        sa.UniqueConstraint("identity_id", "message_id", name="uq_inbound_identity_message"),
    )
    op.create_index("ix_inbound_messages_conversation_id", "inbound_messages", ["conversation_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text()),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    for table in ("audit_log", "inbound_messages", "events", "conversations", "channel_identities", "customers"):
        op.drop_table(table)
