"""Inbound messages carry a claim: which worker is answering and until when (a lease), so a message whose worker
died mid-turn is answered by a retry or by the sweep instead of staying "received" for ever.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as inbound:
        inbound.add_column(sa.Column("claimed_by", sa.String(96)))
        inbound.add_column(sa.Column("lease_until", sa.DateTime(timezone=True)))
    op.create_index("ix_inbound_messages_lease_until", "inbound_messages", ["lease_until"])


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_lease_until", table_name="inbound_messages")
    with op.batch_alter_table("inbound_messages") as inbound:
        inbound.drop_column("lease_until")
        inbound.drop_column("claimed_by")
