"""Do: the batch and its outbox — every intended send is recorded before any is sent.

A batch is one (campaign, day, window); a rerun finds it and adds only what is new.
The staged chosen are written to the `outbox` (status `pending`, or `held` when their
window has closed, or `holdout` for hold-out members, who get their one unsent touch
here); held sends join the batch of the window they were held for. A send its provider
could not take is `deferred` (with why) and goes again in the next run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Float,
    String,
    and_,
    case,
    cast,
    event,
    false,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from pdca.models import Customer, OutboxEntry, OutreachBatch, Touch
from tasks.common.campaigns import CampaignSpec
from tasks.do.assignment import HOLDOUT
from tasks.do.audience import STAGE
from tasks.do.slots import Slot, next_slot

CHECKPOINT_PAGES = 16_384
"""SQLite: dispatch's connections fold the write-ahead log back into the database every
64 MiB (16,384 pages) rather than SQLite's 4 MiB; a batch writes hundreds of MiB in
chunks, and each checkpoint costs two fsyncs."""


def open_batch(conn: Connection, campaign_id: str, slot: Slot) -> int:
    """The batch of (campaign, day, window): found when it exists, else created."""
    found = conn.execute(
        select(OutreachBatch.batch_id).where(
            OutreachBatch.campaign_id == campaign_id,
            OutreachBatch.send_date == slot.day,
            OutreachBatch.window == slot.window,
        )
    ).scalar()
    if found is not None:
        return found
    return conn.execute(
        insert(OutreachBatch)
        .values(
            campaign_id=campaign_id,
            send_date=slot.day,
            window=slot.window,
            status="open",
            created_at=_now(),
            summary={},
        )
        .returning(OutreachBatch.batch_id)
    ).scalar_one()


def remaining_quotas(conn: Connection, batch_id: int, quotas: dict[str, int]) -> dict[str, int]:
    """What is left of each channel's quota once the batch's existing entries are counted
    (hold-out members included: they took their places), so that a rerun tops up what
    was not written, never sends a second batch."""
    used = dict(
        conn.execute(
            select(OutboxEntry.channel, func.count())
            .where(OutboxEntry.batch_id == batch_id)
            .group_by(OutboxEntry.channel)
        ).all()
    )
    return {channel: max(quota - used.get(channel, 0), 0) for channel, quota in quotas.items()}


def schedule(effective: CampaignSpec, slot: Slot, at: datetime) -> tuple[datetime, str]:
    """When the batch's new sends are due, and their status: now (`pending`) while the
    window is open; once it has closed, `held` for the next window (its end when none
    follows), never sent late."""
    if at < slot.ends_at:
        return max(at, slot.starts_at), "pending"
    following = next_slot(effective, slot.ends_at)
    return (following.starts_at if following else slot.ends_at), "held"


def next_outbox_id(conn: Connection) -> int:
    """Above every outbox entry written so far: entries from here on are new."""
    return conn.execute(select(func.coalesce(func.max(OutboxEntry.outbox_id), 0))).scalar_one() + 1


def write_outbox_entries(
    conn: Connection, batch_id: int, scheduled_at: datetime, status: str
) -> int:
    """Record the staged chosen — intended sends and hold-out assignments — before
    anything is sent: one `insert … select`, channel by channel, so that a chunk of the
    outbox goes to one or two gateways, each part a contiguous run of entries."""
    chosen = STAGE.c.exclusion_reason.is_(None)
    source = select(
        literal(batch_id),
        STAGE.c.customer_id,
        STAGE.c.channel,
        STAGE.c.variant,
        literal(scheduled_at, DateTime),
        case((STAGE.c.variant == HOLDOUT, "holdout"), else_=status),
        literal(0),
    ).where(chosen)
    columns = ["batch_id", "customer_id", "channel", "variant", "scheduled_at", "status"]
    source = source.order_by(STAGE.c.channel, STAGE.c.customer_id)
    return _count(conn, insert(OutboxEntry).from_select([*columns, "attempts"], source))


TOUCH_COLUMNS = [
    "touch_id",
    "campaign_id",
    "customer_id",
    "channel",
    "variant",
    "sent_at",
    "delivered",
    "responded",
    "cost",
]


def touch_id(prefix: str) -> ColumnElement:
    """A touch named after its outbox entry: `d<outbox_id>` (dispatched), `h…` (hold-out)."""
    return literal(prefix) + cast(OutboxEntry.outbox_id, String)


def record_holdouts(conn: Connection, batch_id: int, campaign_id: str) -> int:
    """Hold-out members get their one `touches` row: assigned, never sent, cost 0."""
    waiting = and_(
        OutboxEntry.batch_id == batch_id,
        OutboxEntry.status == "holdout",
        OutboxEntry.touch_id.is_(None),
    )
    source = select(
        touch_id("h"),
        literal(campaign_id),
        OutboxEntry.customer_id,
        OutboxEntry.channel,
        literal(HOLDOUT),
        OutboxEntry.scheduled_at,
        false(),
        false(),
        literal(0.0, Float),
    ).where(waiting)
    count = _count(conn, insert(Touch).from_select(TOUCH_COLUMNS, source))
    conn.execute(update(OutboxEntry).where(waiting).values(touch_id=touch_id("h")))
    return count


def release_held(conn: Connection, campaign_id: str, slot: Slot, batch_id: int) -> int:
    """Held sends whose next window is this one join this window's batch, to go now.

    A held send whose customer already has an entry in this batch (the batch was written
    before the send was held: a late run of an earlier window) is `superseded` instead:
    the customer is contacted in this window already, once (the batch holds one entry
    per customer and channel, and one window a day per customer)."""
    batches = select(OutreachBatch.batch_id).where(OutreachBatch.campaign_id == campaign_id)
    due = and_(
        OutboxEntry.batch_id.in_(batches),
        OutboxEntry.status == "held",
        OutboxEntry.scheduled_at >= slot.starts_at,
        OutboxEntry.scheduled_at < slot.ends_at,
    )
    present = aliased(OutboxEntry)
    in_batch = (
        select(present.outbox_id)
        .where(present.batch_id == batch_id, present.customer_id == OutboxEntry.customer_id)
        .exists()
    )
    reason = (
        f"superseded: the customer already has a send in the {slot.window} window of {slot.day}"
    )
    conn.execute(update(OutboxEntry).where(due, in_batch).values(status="superseded", error=reason))
    return conn.execute(
        update(OutboxEntry).where(due).values(status="pending", batch_id=batch_id)
    ).rowcount


def defer_channel(conn: Connection, batch_id: int, channel: str, reason: str) -> int:
    """The batch's sends on `channel` still to do become `deferred` with `reason`: its
    provider is down, the next run sends them (with the same keys). Returns how many."""
    return conn.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.batch_id == batch_id,
            OutboxEntry.channel == channel,
            OutboxEntry.status.in_(("pending", "sending")),
        )
        .values(status="deferred", error=reason)
    ).rowcount


def requeue_deferred(conn: Connection, batch_id: int) -> int:
    """The batch's `deferred` sends (a provider failed in an earlier run) are due again:
    `pending`, sent by this run like the others, each with its own key."""
    return conn.execute(
        update(OutboxEntry)
        .where(OutboxEntry.batch_id == batch_id, OutboxEntry.status == "deferred")
        .values(status="pending")
    ).rowcount


def earlier_combinations(conn: Connection, batch_id: int, below: int) -> set[tuple[str, str, str]]:
    """The (channel, variant, segment) of the batch's sends still to do that were written
    before `below` (released held sends, a crashed run's leftovers): their wording has
    not been checked in this run."""
    return set(
        conn.execute(
            select(OutboxEntry.channel, OutboxEntry.variant, Customer.segment)
            .distinct()
            .join(Customer, Customer.customer_id == OutboxEntry.customer_id)
            .where(
                OutboxEntry.batch_id == batch_id,
                OutboxEntry.status.in_(("pending", "sending")),
                OutboxEntry.outbox_id < below,
            )
        ).all()
    )


def tune_for_batches(engine: Engine) -> None:
    """Set up a SQLite engine for dispatch's large writes (see CHECKPOINT_PAGES); every
    connection it opens from now on gets the setting. Nothing to do on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return

    def checkpoint_less_often(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"pragma wal_autocheckpoint={CHECKPOINT_PAGES}")
        cursor.close()

    event.listen(engine, "connect", checkpoint_less_often)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _count(conn: Connection, statement) -> int:
    """Run an `insert … select` and return how many rows it wrote (SQLAlchemy keeps an
    insert's row count only when asked to)."""
    return conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def insert_new_touches(conn: Connection, source, *, may_exist: bool = True) -> None:
    """Write the touches `source` selects (`TOUCH_COLUMNS`), leaving a touch already
    written (by an interrupted run) as it is.

    `may_exist=False` is for sends handed over for the first time: a send's touch is
    written in the transaction that marks it `sent`, so none of theirs can exist yet, and
    a plain insert spares PostgreSQL's conflict check per row (measured on 800,000 rows in
    chunks of 100,000 into a table with the touches' four indexes: 7.9 s against 9.5–10.5 s
    with `on conflict do nothing`)."""
    if not may_exist:
        conn.execute(insert(Touch).from_select(TOUCH_COLUMNS, source))
        return
    upsert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(Touch)
    conn.execute(upsert.from_select(TOUCH_COLUMNS, source).on_conflict_do_nothing())
