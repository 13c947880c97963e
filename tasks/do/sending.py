"""Do: sending a batch in chunks — handed over, sent, and recorded with their receipts.

A batch goes out in chunks of the outbox (`next_chunk`): handed over (`mark_sending`,
committed), then each channel's part (`chunk_parts`) through its gateway (`send_part`).
Entries move `pending → sending → sent`; a crash leaves `sending` rows, which a rerun
resends with the same idempotency key, so the gateway counts them once. The simulated
gateway journals a part's sends, their touches and their outbox rows in one statement
each (`send_journaled`); real providers take the per-message path (`send_messages`:
messages, retries, receipts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    delete,
    false,
    func,
    literal,
    select,
    update,
)

from pdca.models import Customer, OutboxEntry, SimulatedSend
from tasks.common.campaigns import CampaignSpec
from tasks.data.inserts import insert_rows
from tasks.do.gateways import (
    GATEWAY_REF_LENGTH,
    MAX_ERROR_LENGTH,
    CircuitBreaker,
    Gateway,
    JournaledGateway,
    OutboundMessage,
    SendReceipt,
    provider_receipts,
)
from tasks.do.keys import has_unkeyable, idempotency_key
from tasks.do.outbox import defer_channel, earlier_combinations, insert_new_touches, touch_id
from tasks.do.slots import Slot
from tasks.do.wording import Message, preflight

if TYPE_CHECKING:
    from tasks.do.artifacts import BatchSummary

JOURNAL_KEY_LENGTH = SimulatedSend.__table__.c.idempotency_key.type.length
"""The simulated gateway's journal keeps keys up to this length."""

BREAKER_THRESHOLD = 3
"""Consecutive failed calls after which a provider is left alone for the rest of the run
(its channel's remaining sends are deferred to the next run)."""


@dataclass
class SendTally:
    """What a batch's sending did, for the summary and the progress artifact."""

    sent: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    """Refused for good (`failed`): never sent again."""
    deferred: dict[str, int] = field(default_factory=dict)
    """Left for the next run (`deferred`): the provider could not take them now."""
    reasons: dict[str, str] = field(default_factory=dict)
    """The first reason a channel's send was failed or deferred."""
    errors: list[str] = field(default_factory=list)
    handed_over: int = 0
    """Entries handed over to a gateway (`mark_sending`), resends included."""

    def add(self, channel: str, variant: str, receipt: SendReceipt) -> None:
        if receipt.accepted:
            self.add_sent(channel, variant, 1)
        elif receipt.retryable:
            self.add_unsent(self.deferred, channel, 1, receipt.error or "refused for now")
        else:
            self.add_unsent(self.failed, channel, 1, receipt.error or "refused")

    def add_sent(self, channel: str, variant: str, count: int) -> None:
        key = (channel, variant)
        self.sent[key] = self.sent.get(key, 0) + count

    def add_unsent(self, counts: dict[str, int], channel: str, count: int, reason: str) -> None:
        """`count` sends of `channel` failed or deferred (`counts` says which) for `reason`."""
        if count <= 0:
            return
        counts[channel] = counts.get(channel, 0) + count
        self.reasons.setdefault(channel, reason)
        error = f"{channel}: {reason}"
        if len(self.errors) < 20 and error not in self.errors:
            self.errors.append(error)


def _key_column(campaign_id: str, slot: Slot) -> ColumnElement:
    """`idempotency_key` in SQL, for the outbox entries of `slot`'s batch."""
    prefix = idempotency_key(campaign_id, slot.day, slot.window, "", "")[:-1]
    return literal(prefix) + OutboxEntry.customer_id + literal(":") + OutboxEntry.channel


@dataclass(frozen=True)
class Chunk:
    """The next sends of a batch, in outbox order: those with `status` from `first_id` to
    `last_id`. Both bounds keep each statement on the chunk to its own stretch of the
    (batch_id, outbox_id) index, however much of the batch is already sent."""

    batch_id: int
    status: str
    first_id: int
    last_id: int

    def entries(self, status: str) -> ColumnElement[bool]:
        return and_(
            OutboxEntry.batch_id == self.batch_id,
            OutboxEntry.status == status,
            OutboxEntry.outbox_id.between(self.first_id, self.last_id),
        )


@dataclass(frozen=True)
class ChunkPart:
    """A handed-over chunk's entries on one channel, with their count by variant and the
    length of the longest customer id among them. `first_id`..`last_id` bound them (a
    contiguous run when the outbox was written channel by channel, as `write_outbox_entries`
    writes it), so each statement on the part reads only its own stretch."""

    batch_id: int
    channel: str
    first_id: int
    last_id: int
    by_variant: dict[str, int]
    longest_customer_id: int
    first_try: bool
    """Handed over for the first time (taken `pending`): no gateway knows these keys."""
    plain_ids: bool = True
    """No customer id has whitespace or control characters (`key_part` leaves them as
    they are): the part may go the bulk path, whose keys SQL writes."""

    def entries(self) -> ColumnElement[bool]:
        return and_(
            OutboxEntry.batch_id == self.batch_id,
            OutboxEntry.status == "sending",
            OutboxEntry.outbox_id.between(self.first_id, self.last_id),
            OutboxEntry.channel == self.channel,
        )


def next_chunk(
    conn: Connection, batch_id: int, size: int, after: Mapping[str, int] | None = None
) -> Chunk | None:
    """The batch's next `size` sends still to do: `sending` ones (a crash's leftovers)
    first, then `pending` ones; None when there are none. `after` (by status, the last
    outbox id of the chunks of it already taken) skips what earlier chunks covered: every
    entry of a chunk is `sent`, `failed` or `deferred` before the next is taken, so the
    search need not walk the batch's sent entries again (`outbox.status` is not indexed:
    see the migration 0010). For the same reason, once a `pending` chunk was taken no
    `sending` entry is left to look for: the leftovers all came first."""
    after = after or {}
    for status in ("sending", "pending"):
        if status == "sending" and "pending" in after:
            continue
        ids = (
            select(OutboxEntry.outbox_id)
            .where(
                OutboxEntry.batch_id == batch_id,
                OutboxEntry.status == status,
                OutboxEntry.outbox_id > after.get(status, 0),
            )
            .order_by(OutboxEntry.outbox_id)
            .limit(size)
            .subquery()
        )
        first_id, last_id = conn.execute(
            select(func.min(ids.c.outbox_id), func.max(ids.c.outbox_id))
        ).one()
        if last_id is not None:
            return Chunk(batch_id, status, first_id, last_id)
    return None


def mark_sending(conn: Connection, chunk: Chunk) -> int:
    """Hand the chunk over (commit before calling a gateway, so a crash is never silent):
    `sending`, one more attempt. Returns the number of entries."""
    return conn.execute(
        update(OutboxEntry)
        .where(chunk.entries(chunk.status))
        .values(status="sending", attempts=OutboxEntry.attempts + 1)
    ).rowcount


def chunk_parts(conn: Connection, chunk: Chunk) -> list[ChunkPart]:
    """The handed-over chunk by channel, in channel order (one pass over the chunk)."""
    found: dict[str, list] = {}
    unkeyable: set[str] = set()
    for channel, variant, count, first_id, last_id, longest, odd in conn.execute(
        select(
            OutboxEntry.channel,
            OutboxEntry.variant,
            func.count(),
            func.min(OutboxEntry.outbox_id),
            func.max(OutboxEntry.outbox_id),
            func.max(func.length(OutboxEntry.customer_id)),
            func.max(case((has_unkeyable(OutboxEntry.customer_id, conn.dialect.name), 1), else_=0)),
        )
        .where(chunk.entries("sending"))
        .group_by(OutboxEntry.channel, OutboxEntry.variant)
    ):
        firsts, lasts, by_variant, longests = found.setdefault(channel, [[], [], {}, []])
        firsts.append(first_id)
        lasts.append(last_id)
        by_variant[variant] = count
        longests.append(longest)
        if odd:
            unkeyable.add(channel)
    return [
        ChunkPart(
            chunk.batch_id,
            channel,
            min(firsts),
            max(lasts),
            by_variant,
            max(longests),
            first_try=chunk.status == "pending",
            plain_ids=channel not in unkeyable,
        )
        for channel, (firsts, lasts, by_variant, longests) in sorted(found.items())
    ]


def send_part(
    conn: Connection,
    gateway: Gateway,
    campaign_id: str,
    slot: Slot,
    part: ChunkPart,
    sent_at: datetime,
    costs: dict[str, float],
    rendered: dict[tuple[str, str, str], Message],
    tally: SendTally,
    breaker: CircuitBreaker | None = None,
) -> None:
    """Send one channel's part of a chunk: set-based through a journaled (simulated)
    gateway when every key fits its journal, else one message per entry (`breaker`: the
    channel's, for the run)."""
    if isinstance(gateway, JournaledGateway) and _fits_journal(gateway, campaign_id, slot, part):
        send_journaled(conn, gateway, campaign_id, slot, part, sent_at, costs, tally)
    else:
        send_messages(
            conn, gateway, campaign_id, slot, part, sent_at, costs, rendered, tally, breaker
        )


def _fits_journal(gateway: JournaledGateway, campaign_id: str, slot: Slot, part: ChunkPart) -> bool:
    """Whether every key of the part fits the journal, and its reference `<prefix>-<key>`
    the outbox (the per-message path shortens a longer reference with a hash), with its
    customer ids as they are."""
    key = idempotency_key(campaign_id, slot.day, slot.window, "", part.channel)
    room = min(GATEWAY_REF_LENGTH - len(gateway.inner.ref_prefix) - 1, JOURNAL_KEY_LENGTH)
    return part.plain_ids and part.longest_customer_id + len(key) <= room


def send_journaled(
    conn: Connection,
    gateway: JournaledGateway,
    campaign_id: str,
    slot: Slot,
    part: ChunkPart,
    sent_at: datetime,
    costs: dict[str, float],
    tally: SendTally,
) -> int:
    """The simulated provider's bulk path: the part's sends go to the gateway as one
    selection (it journals their keys set-based and commits, as a provider would), then
    one `insert … select` writes their touches and one `update` marks them `sent` — the
    same rows, keys, references and outcomes the per-message path records."""
    key = _key_column(campaign_id, slot)
    entries = part.entries()
    selection = select(
        key.label("idempotency_key"),
        OutboxEntry.channel.label("channel"),
        OutboxEntry.customer_id.label("customer_id"),
    ).where(entries)
    gateway.send_selected(part.channel, selection)
    # The touches' outcomes are the journal's. Keys handed over for the first time on a
    # channel without drawn outcomes can only be "not known": no need to look them up.
    journal = SimulatedSend.__table__
    look_up = not part.first_try or gateway.draws_outcomes(part.channel)
    delivered, responded = false(), false()
    if look_up:
        delivered = func.coalesce(journal.c.delivered, false())
        responded = func.coalesce(and_(journal.c.delivered, journal.c.responded), false())
    source = select(
        touch_id("d"),
        literal(campaign_id),
        OutboxEntry.customer_id,
        OutboxEntry.channel,
        OutboxEntry.variant,
        literal(sent_at, DateTime),
        delivered,
        responded,
        literal(round(costs.get(part.channel, 0.0), 4), Float),
    ).where(entries)
    if look_up:
        source = source.join(journal, journal.c.idempotency_key == key, isouter=True)
    insert_new_touches(conn, source, may_exist=not part.first_try)
    sent = conn.execute(
        update(OutboxEntry)
        .where(entries)
        .values(
            status="sent",
            gateway_ref=literal(f"{gateway.inner.ref_prefix}-") + key,
            error=None,
            touch_id=touch_id("d"),
            sent_at=literal(sent_at, DateTime),
        )
    ).rowcount
    for variant, count in part.by_variant.items():
        tally.add_sent(part.channel, variant, count)
    return sent


def sending_rows(conn: Connection, part: ChunkPart) -> pd.DataFrame:
    """The part's entries, with what a message needs."""
    result = conn.execute(
        select(
            OutboxEntry.outbox_id,
            OutboxEntry.customer_id,
            OutboxEntry.channel,
            OutboxEntry.variant,
            Customer.segment,
            Customer.phone,
            Customer.email,
        )
        .join(Customer, Customer.customer_id == OutboxEntry.customer_id)
        .where(part.entries())
        .order_by(OutboxEntry.outbox_id)
    )
    return _frame(result)


def messages_for(
    chunk: pd.DataFrame,
    slot: Slot,
    campaign_id: str,
    rendered: dict[tuple[str, str, str], Message],
) -> list[OutboundMessage]:
    columns = ("customer_id", "channel", "variant", "segment", "phone", "email")
    messages = []
    for customer_id, channel, variant, segment, phone, email in zip(
        *(chunk[name].tolist() for name in columns), strict=True
    ):
        message = rendered[(channel, variant, segment)]
        messages.append(
            OutboundMessage(
                idempotency_key=idempotency_key(
                    campaign_id, slot.day, slot.window, customer_id, channel
                ),
                channel=channel,
                customer_id=customer_id,
                to=email if channel == "email" else phone,
                subject=message.subject,
                body=message.body,
                html=message.html,
                variant=variant,
            )
        )
    return messages


def send_messages(
    conn: Connection,
    gateway: Gateway,
    campaign_id: str,
    slot: Slot,
    part: ChunkPart,
    sent_at: datetime,
    costs: dict[str, float],
    rendered: dict[tuple[str, str, str], Message],
    tally: SendTally,
    breaker: CircuitBreaker | None = None,
) -> None:
    """The per-message path (real providers): one message per entry, sent with retries
    (`breaker` stops them when the provider keeps failing), the receipts recorded
    set-based — a provider's failure included: it becomes the part's receipts."""
    rows = sending_rows(conn, part)
    messages = messages_for(rows, slot, campaign_id, rendered)
    receipts = provider_receipts(gateway, messages, breaker or CircuitBreaker())
    record_receipts(conn, campaign_id, rows, receipts, sent_at, costs, tally)


RECEIPTS = Table(
    "dispatch_receipts",
    MetaData(),
    Column("outbox_id", Integer, primary_key=True),
    Column("accepted", Boolean),
    Column("gateway_ref", String(128)),
    Column("delivered", Boolean),
    Column("responded", Boolean),
    Column("cost", Float),
    Column("error", Text),
    Column("retryable", Boolean),
    prefixes=["TEMPORARY"],
)
"""A chunk's receipts, staged so that the outbox and touches change in two statements."""


def record_receipts(
    conn: Connection,
    campaign_id: str,
    chunk: pd.DataFrame,
    receipts: Sequence[SendReceipt],
    sent_at: datetime,
    costs: dict[str, float],
    tally: SendTally,
) -> None:
    """Accepted sends become `sent` with their touch; refused ones `failed` with why, or
    `deferred` when the refusal was for now (`retryable`: the next run sends them again).

    Set-based: the receipts go to a temporary table, then one `update … from` marks the
    outbox and one `insert … select` writes the touches (a touch already written by an
    interrupted run is left as it is).
    """
    channels, variants = chunk["channel"].tolist(), chunk["variant"].tolist()
    rows = []
    for outbox_id, channel, variant, receipt in zip(
        chunk["outbox_id"].tolist(), channels, variants, receipts, strict=True
    ):
        tally.add(channel, variant, receipt)
        rows.append(
            (
                outbox_id,
                receipt.accepted,
                receipt.gateway_ref,
                bool(receipt.delivered),
                bool(receipt.delivered and receipt.responded),
                round(costs.get(channel, 0.0), 4),
                None if receipt.accepted else (receipt.error or "refused")[:500],
                not receipt.accepted and receipt.retryable,
            )
        )
    RECEIPTS.create(conn, checkfirst=True)
    conn.execute(delete(RECEIPTS))
    insert_rows(conn, RECEIPTS, [c.name for c in RECEIPTS.columns], rows)
    accepted = RECEIPTS.c.accepted.is_(True)
    conn.execute(
        update(OutboxEntry)
        .where(OutboxEntry.outbox_id == RECEIPTS.c.outbox_id)
        .values(
            status=case(
                (accepted, "sent"), (RECEIPTS.c.retryable.is_(True), "deferred"), else_="failed"
            ),
            gateway_ref=RECEIPTS.c.gateway_ref,
            error=RECEIPTS.c.error,
            touch_id=case(
                (accepted, literal("d") + cast(OutboxEntry.outbox_id, String)), else_=None
            ),
            sent_at=case((accepted, literal(sent_at, DateTime)), else_=None),
        )
    )
    source = (
        select(
            literal("d") + cast(OutboxEntry.outbox_id, String),
            literal(campaign_id),
            OutboxEntry.customer_id,
            OutboxEntry.channel,
            OutboxEntry.variant,
            literal(sent_at, DateTime),
            RECEIPTS.c.delivered,
            RECEIPTS.c.responded,
            RECEIPTS.c.cost,
        )
        .join(RECEIPTS, RECEIPTS.c.outbox_id == OutboxEntry.outbox_id)
        .where(accepted)
    )
    insert_new_touches(conn, source)


def _frame(result) -> pd.DataFrame:
    """A result as a DataFrame (plain tuples: pandas probes Row objects one by one)."""
    columns = list(result.keys())
    return pd.DataFrame([tuple(row) for row in result], columns=columns)


# --- a batch, chunk by chunk ------------------------------------------------------------


@dataclass
class PreparedBatch:
    """A batch ready to send: its outbox written, its wording checked."""

    batch_id: int
    summary: BatchSummary
    costs: dict[str, float]
    rendered: dict[tuple[str, str, str], Message]
    """The checked messages by (channel, variant, segment), for the per-message path."""
    first_new_id: int
    """Entries from this outbox id on were written (and checked) by this preparation."""


def check_earlier_sends(
    conn: Connection, spec: CampaignSpec, batch: PreparedBatch
) -> dict[tuple[str, str, str], Message]:
    """The batch's checked messages, with those of its sends written before this run (held
    sends released into this window, a crashed run's leftovers) checked now, before
    anything goes, as the new ones were when the batch was prepared."""
    rendered = dict(batch.rendered)
    earlier = earlier_combinations(conn, batch.batch_id, batch.first_new_id) - set(rendered)
    if earlier:
        rendered.update(
            preflight(
                spec,
                sorted({c for c, _, _ in earlier}),
                sorted({v for _, v, _ in earlier}),
                sorted({s for _, _, s in earlier}),
            )
        )
    return rendered


def send_chunks(
    conn: Connection,
    gateways: dict[str, Gateway],
    campaign_id: str,
    slot: Slot,
    batch: PreparedBatch,
    at: datetime,
    size: int,
    rendered: dict[tuple[str, str, str], Message],
    progress: Callable[[int], None],
) -> SendTally:
    """Send the batch's pending (and interrupted) sends, `size` at a time: each chunk
    handed over (committed), then sent channel by channel (`send_part`), each part
    committed before the next gateway call (a journal writes on its own). Stops when the
    window closes (`at` is when sending started, UTC): the rest waits, never sent late.
    A channel whose provider keeps failing (its circuit breaker opens) has the rest of its
    sends `deferred` to the next run; the other channels go on. `progress` hears how many
    entries were handed over after each chunk."""
    tally, started = SendTally(), datetime.now(UTC)
    breakers = {channel: CircuitBreaker(BREAKER_THRESHOLD) for channel in gateways}
    taken: dict[str, int] = {}  # by status, the last outbox id of the chunks taken
    while (chunk := next_chunk(conn, batch.batch_id, size, taken)) is not None:
        taken[chunk.status] = chunk.last_id
        sent_at = at + (datetime.now(UTC) - started)
        if sent_at >= slot.ends_at:
            break
        tally.handed_over += mark_sending(conn, chunk)
        conn.commit()
        for part in chunk_parts(conn, chunk):
            gateway, breaker = gateways[part.channel], breakers[part.channel]
            send_part(
                conn,
                gateway,
                campaign_id,
                slot,
                part,
                sent_at,
                batch.costs,
                rendered,
                tally,
                breaker,
            )
            if breaker.open:
                reason = f"{gateway.name} kept failing: {breaker.reason}"[:MAX_ERROR_LENGTH]
                count = defer_channel(conn, batch.batch_id, part.channel, reason)
                tally.add_unsent(tally.deferred, part.channel, count, reason)
            conn.commit()
        progress(tally.handed_over)
    return tally
