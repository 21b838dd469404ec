"""The agent desk's library: conversation labels, canned replies managed in the console (per group and
personal), attachments customers send (stored in the database with their type and size), and an agent's
employee number (工号) shown to customers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("agents") as agents:
        agents.add_column(sa.Column("employee_no", sa.String(16)))
    op.create_table(
        "conversation_labels",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.ForeignKey("agents.id")),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("conversation_id", "label", name="uq_label_conversation_label"),
    )
    op.create_index("ix_conversation_labels_label", "conversation_labels", ["label"])
    op.create_index("ix_conversation_labels_conversation_id", "conversation_labels", ["conversation_id"])
    op.create_table(
        "canned_replies",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("group", sa.String(64)),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.ForeignKey("agents.id")),
        sa.Column("updated_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.ForeignKey("agents.id")),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_canned_replies_code", "canned_replies", ["code"])
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("mime", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("filename", sa.String(128)),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_attachments_conversation_id", "attachments", ["conversation_id"])


def downgrade() -> None:
    op.drop_table("attachments")
    op.drop_table("canned_replies")
    op.drop_table("conversation_labels")
    with op.batch_alter_table("agents") as agents:
        agents.drop_column("employee_no")
