"""Channel cursors (WeCom sync) and binding codes (one customer across channels).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "channel_cursors",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "binding_codes",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("used_at", Timestamp),
        sa.Column("used_by", sa.String(160)),
    )
    op.create_index("ix_binding_codes_customer_id", "binding_codes", ["customer_id"])


def downgrade() -> None:
    op.drop_table("binding_codes")
    op.drop_table("channel_cursors")
