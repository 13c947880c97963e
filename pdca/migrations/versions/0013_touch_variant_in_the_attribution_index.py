"""The variant of a customer's first touch in a campaign from the index alone.

Attribution gives every event (an application, a survey answer, a complaint) the variant
of the customer's first touch in the campaign (sql/attributed_events.sql, `assigned`;
sql/complaints.sql): one probe per event of touches (customer_id, sent_at, touch_id,
campaign_id, delivered), in that order, to the first entry of the campaign. The index of
0004 holds everything the probe tests but not the variant, so each probe then read that
touch's row in the table: one more B-tree descent per event, at a random place of the
largest table. The loan book pays it for every loan of the campaign's history on every
check (sql/campaign_loans.sql attributes each loan's application), and on a history larger
than memory those row reads are the disk's.

- touches (customer_id, sent_at, touch_id, campaign_id, delivered, variant), replacing
  (customer_id, sent_at, touch_id, campaign_id, delivered): the same leading columns, so
  every probe the old index served it serves; entries a variant wider (a few bytes).

Measured (SQLite, 2 cores, two copies of a 10,000,000-touch history that differ in this
index alone, in turns; README "Check performance"): the loan book's attribution of 125,144
loans, medians 2.49 → 1.94 s; the loan book 3.21 → 2.90 s, and 8.60 → 7.54 s in a memory
group smaller than the database. Building the index on the 10 M touches: 61 s.
PostgreSQL (a 2 M history): the probe becomes an index-only scan, the loan book
0.71-0.76 s → 0.65-0.70 s. The dispatch's writes (1 M window), both back ends: no cost
measurable through the noise.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 02:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PROBE = ["customer_id", "sent_at", "touch_id", "campaign_id", "delivered"]
COVERING = [*PROBE, "variant"]


def upgrade() -> None:
    op.create_index(op.f("ix_touches_" + "_".join(COVERING)), "touches", COVERING)
    op.drop_index(op.f("ix_touches_" + "_".join(PROBE)), table_name="touches")


def downgrade() -> None:
    op.create_index(op.f("ix_touches_" + "_".join(PROBE)), "touches", PROBE)
    op.drop_index(op.f("ix_touches_" + "_".join(COVERING)), table_name="touches")
