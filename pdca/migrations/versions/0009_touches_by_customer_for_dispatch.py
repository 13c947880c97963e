"""Indexes for dispatch's per-run reads of a campaign's touches.

Every dispatch run reads, for the whole customer base, each customer's variant in the
campaign (sql/dispatch_audience.sql: `assignments`, the greatest variant of the
customer's touches in the campaign), and each segment's delivered touches of the 8 weeks
before (sql/segment_propensity.sql). With the indexes of 0004 the first took all of the
campaign's touches in time order and sorted them by customer, once per run, so it grew
with the campaign (at 50,000 customers, six weeks into a season, 213,000 touches: most
of the audience query); the second read every touch's row for `delivered`. Here:

- touches (campaign_id, customer_id, variant): the assignments stream by customer from
  the index alone, with no sort;
- touches (campaign_id, sent_at, customer_id, variant, touch_id, delivered), replacing
  (campaign_id, sent_at, customer_id, variant, touch_id): the same range scans for the
  check, and the span's delivered touches from the index alone.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 04:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_RANGE = ["campaign_id", "sent_at", "customer_id", "variant", "touch_id"]


def upgrade() -> None:
    op.create_index(
        op.f("ix_touches_campaign_id_customer_id_variant"),
        "touches",
        ["campaign_id", "customer_id", "variant"],
    )
    op.drop_index(
        op.f("ix_touches_campaign_id_sent_at_customer_id_variant_touch_id"), table_name="touches"
    )
    op.create_index(
        op.f("ix_touches_campaign_id_sent_at_customer_id_variant_touch_id_delivered"),
        "touches",
        [*OLD_RANGE, "delivered"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_touches_campaign_id_sent_at_customer_id_variant_touch_id_delivered"),
        table_name="touches",
    )
    op.create_index(
        op.f("ix_touches_campaign_id_sent_at_customer_id_variant_touch_id"), "touches", OLD_RANGE
    )
    op.drop_index(op.f("ix_touches_campaign_id_customer_id_variant"), table_name="touches")
