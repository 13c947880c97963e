"""Weekly rollups: the check stage's stored funnel counts per whole ISO week.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:59:03.071526
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "weekly_rollups",
        sa.Column("rollup_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("touches", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("responded", sa.Integer(), nullable=False),
        sa.Column("applications", sa.Integer(), nullable=False),
        sa.Column("approved", sa.Integer(), nullable=False),
        sa.Column("disbursements", sa.Integer(), nullable=False),
        sa.Column("disbursed_amount", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("net_interest", sa.Float(), nullable=False),
        sa.Column("expected_loss", sa.Float(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.campaign_id"],
            name=op.f("fk_weekly_rollups_campaign_id_campaigns"),
        ),
        sa.PrimaryKeyConstraint("rollup_id", name=op.f("pk_weekly_rollups")),
        sa.UniqueConstraint(
            "campaign_id",
            "week",
            "channel",
            "segment",
            "variant",
            name=op.f("uq_weekly_rollups_campaign_id_week_channel_segment_variant"),
        ),
    )


def downgrade() -> None:
    op.drop_table("weekly_rollups")
