"""The week's touches from the index alone: the check's data-quality read reads no row.

The data-quality step of `pdca check` reads every touch of the period, all nine columns
(sql/dq_touches.sql), by the range (campaign_id, sent_at). The index of 0009 holds six of
them; for channel, responded and cost each touch's row was looked up in the table, one
B-tree descent per touch. Here the index holds all nine, in the same order, so the range
scan is the read:

- touches (campaign_id, sent_at, customer_id, variant, touch_id, delivered, channel,
  responded, cost), replacing (campaign_id, sent_at, customer_id, variant, touch_id,
  delivered): the same leading columns, so every read the old index served it serves.

Measured (SQLite, 2 cores, a 10,000,000-touch history, `bench/bench_check.py`, the same
database before and after, one run each): the week's 833,333 touches read by the
data-quality step 2.13-2.32 s → 1.00-1.08 s (SQLite's own scan of the nine columns
1.19-1.28 s → 0.29-0.33 s); data quality 6.52 → 5.52 s; the whole `pdca check` 22.0 →
16.8 s. The plain `GROUP BY channel, variant` over the week reads the index too: 1.79 →
0.62 s. Building the index on the 10 M touches: 26 s. Writes (1,000,000 rows, the same
session): `bench/bench_import.py` 44,181 → 45,840 touches/s (a bare `executemany` into the
table 100,113 → 96,184 rows/s); `bench/bench_dispatch.py` 13.85 → 14.63 s of work. The
entries are three columns (about 14 bytes) wider; there are no more of them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 21:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

RANGE = ["campaign_id", "sent_at", "customer_id", "variant", "touch_id", "delivered"]
COVERING = [*RANGE, "channel", "responded", "cost"]


def upgrade() -> None:
    op.create_index(op.f("ix_touches_" + "_".join(COVERING)), "touches", COVERING)
    op.drop_index(op.f("ix_touches_" + "_".join(RANGE)), table_name="touches")


def downgrade() -> None:
    op.create_index(op.f("ix_touches_" + "_".join(RANGE)), "touches", RANGE)
    op.drop_index(op.f("ix_touches_" + "_".join(COVERING)), table_name="touches")
