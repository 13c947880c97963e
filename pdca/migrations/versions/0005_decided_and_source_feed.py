"""Decided applications in the weekly rollups; the source feed of each application.

- `weekly_rollups.decided`: the applications with a decision (approved or rejected). With
  none, approval_rate and roi of the week are "no data", not 0 and −100 %. Rows written
  before it get `decided = applications`: the rates they had are kept until a check
  recounts their week.
- `applications.source_feed`: the feed that last loaded the row (`applications`,
  `uci-bank`); null for rows written before. A feed whose source cannot carry a field
  (the UCI file has no requested amounts) says so in `tasks.common.feeds.NOT_CARRIED`, and
  the check does not hold that field's absence against the rows it loaded.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("weekly_rollups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decided", sa.Integer(), nullable=False, server_default="0"))
    op.execute("update weekly_rollups set decided = applications")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_feed", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_column("source_feed")
    with op.batch_alter_table("weekly_rollups", schema=None) as batch_op:
        batch_op.drop_column("decided")
