"""The outbox's sends update in place on PostgreSQL: `status` leaves the batch's index.

A send is written `pending`, then updated twice: handed over (`sending`), then `sent`
with its touch and reference. While `status` was part of an index, (batch_id, status,
outbox_id), every update wrote a new row version and a new entry in each of the table's
four indexes. PostgreSQL's heap-only updates add no index entries, but only when no
indexed column changes and the row's page has room. Here:

- the index becomes (batch_id, outbox_id): the send loop finds its chunks by outbox id
  (`tasks.do.sending.next_chunk` keeps its place, so it never walks a batch's sent
  entries again), and the few per-batch reads by status (hold-outs, held, deferred) scan
  their batch;
- on PostgreSQL, the outbox's pages are filled to 40 % (`fillfactor`), leaving each row
  room for its two later versions on its own page (pages written from now on: an
  existing outbox keeps its full pages until they are rewritten, e.g. by `VACUUM FULL`).
  SQLite has no such setting and no heap-only updates; it keeps one index entry fewer
  per update.

Measured on PostgreSQL (1,000,000 customers, `bench/bench_dispatch.py`'s window, the
statements over 150 ms): 1,501,179 of 1,532,155 outbox updates heap-only (none before);
the two updates of the sends 3.3 s instead of 15.3 s.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 14:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FILL_PERCENT = 40
"""A row and its two later versions (a little longer each) on one page."""


def upgrade() -> None:
    op.create_index(op.f("ix_outbox_batch_id_outbox_id"), "outbox", ["batch_id", "outbox_id"])
    op.drop_index(op.f("ix_outbox_batch_id_status_outbox_id"), table_name="outbox")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"alter table outbox set (fillfactor = {FILL_PERCENT})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("alter table outbox reset (fillfactor)")
    op.create_index(
        op.f("ix_outbox_batch_id_status_outbox_id"), "outbox", ["batch_id", "status", "outbox_id"]
    )
    op.drop_index(op.f("ix_outbox_batch_id_outbox_id"), table_name="outbox")
