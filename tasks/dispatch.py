"""Do: who gets which message, on which channel, in which window — recorded before sending.

The units of the dispatch flow, as plain functions over a `Connection` or a DataFrame:

- **slots**: the campaign's named send windows on a weekday, in its time zone, as UTC;
- **audience**: `sql/dispatch_audience.sql` decides every exclusion in the database;
- **assignment**: a stable hash of (campaign, customer) into the spec's variants and
  hold-out, unless the customer already has a variant in the campaign;
- **routing**: tier from credit score and the segment's propensity → channel;
- **capacity**: the plan's touches per channel, spread over the period's send days;
- **outbox**: every intended send is written (status `pending`) before any is sent; a
  rerun of the same (campaign, day, window) finds its batch and adds only what is new;
- **sending**: chunks move `pending → sending → sent`; a crash leaves `sending` rows,
  which a rerun resends with the same idempotency key, so the gateway counts them once.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from pdca.errors import UserError
from pdca.models import (
    Budget,
    Customer,
    DispatchLock,
    OutboxEntry,
    OutreachBatch,
    Plan,
    Touch,
)
from tasks.campaigns import CampaignSpec
from tasks.gateways import OutboundMessage, SendReceipt
from tasks.importing import frame_rows, insert_rows
from tasks.metrics import funnel, rollup
from tasks.periods import Period, local_midnight_utc
from tasks.plan import history_window
from tasks.sqlfiles import query
from tasks.wording import Message

HOLDOUT = "holdout"
TIER_A_SCORE = 720
"""Tier A: score ≥ 720 and a segment propensity at least the campaign's average."""
TIER_B_SCORE = 660
"""Tier B: score ≥ 660 (or a tier-A score in a below-average segment)."""
TIER_CHANNELS = {
    "A": ("phone", "sms", "im"),
    "B": ("sms", "im", "app_push", "email"),
    "C": ("app_push", "email", "sms"),
}
"""Each tier's channels in order of preference; the first ones the campaign uses win.
Tier B alternates between its first two (by customer hash) so both stay measured."""
LOCK_LEASE = timedelta(minutes=30)
"""A dispatch lock older than this, whose holder is gone, may be taken over."""


# --- slots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One named send window on one local day, with its UTC bounds."""

    window: str
    day: date
    starts_at: datetime
    ends_at: datetime


def slots_for(spec: CampaignSpec, day: date) -> list[Slot]:
    """The day's send windows in time order; none on weekends or outside the campaign."""
    if day.weekday() >= 5 or not spec.start <= day <= spec.end:
        return []
    zone = ZoneInfo(spec.timezone)
    slots = []
    for name, window in spec.contact_policy.windows.items():
        start = datetime.combine(day, window.start, tzinfo=zone)
        end = datetime.combine(day, window.end, tzinfo=zone)
        slots.append(Slot(name, day, _utc(start), _utc(end)))
    return sorted(slots, key=lambda slot: slot.starts_at)


def next_slot(spec: CampaignSpec, after: datetime) -> Slot | None:
    """The first window that opens at or after `after` (UTC), within the campaign."""
    local_day = after.replace(tzinfo=UTC).astimezone(ZoneInfo(spec.timezone)).date()
    for offset in range(0, 15):
        for slot in slots_for(spec, local_day + timedelta(days=offset)):
            if slot.starts_at >= after:
                return slot
    return None


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


# --- assignment and routing -------------------------------------------------------------


def _hash_unit(salt: str, keys: pd.Series) -> np.ndarray:
    """A stable uniform number in [0, 1) per key: the first 8 bytes of sha256(salt:key)."""
    digests = [
        int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") for key in keys
    ]
    return np.asarray(digests, dtype=np.float64) / 2.0**64


def assign_variants(campaign_id: str, spec: CampaignSpec, frame: pd.DataFrame) -> pd.Series:
    """Each customer's variant: the one they already have in the campaign, else by hash.

    The hash of (campaign, customer) falls into the spec's shares in their written order,
    the hold-out last, so a customer's group never changes across days and reruns.
    """
    unit = _hash_unit(campaign_id, frame["customer_id"])
    names = [*spec.experiment.variants, HOLDOUT]
    edges = np.cumsum([*spec.experiment.variants.values(), spec.experiment.holdout])
    position = np.minimum(np.searchsorted(edges, unit, side="right"), len(names) - 1)
    drawn = pd.Series(np.asarray(names, dtype=object)[position], index=frame.index)
    return frame["assigned_variant"].where(frame["assigned_variant"].notna(), drawn)


def window_share(campaign_id: str, frame: pd.DataFrame, windows: Sequence[str]) -> pd.Series:
    """Which of the day's windows each customer belongs to (stable; one send a day)."""
    unit = _hash_unit(f"{campaign_id}:window", frame["customer_id"])
    index = np.minimum((unit * len(windows)).astype(int), len(windows) - 1)
    return pd.Series(np.asarray(windows, dtype=object)[index], index=frame.index)


def route(frame: pd.DataFrame, spec: CampaignSpec, propensity: dict[str, float]) -> pd.DataFrame:
    """Tier and channel per customer (see TIER_CHANNELS); `channel` is None if none fits.

    Propensity is the segment's trailing application rate; a segment without history
    counts as average. Tier C customers get half the frequency cap ("lower frequency").
    """
    average = float(np.mean(list(propensity.values()))) if propensity else 0.0
    segment_rate = frame["segment"].map(propensity).fillna(average)
    score = frame["credit_score"].astype(float)
    tier = np.where(
        (score >= TIER_A_SCORE) & (segment_rate >= average),
        "A",
        np.where(score >= TIER_B_SCORE, "B", "C"),
    )
    flip = _hash_unit(f"{spec.id}:channel", frame["customer_id"]) < 0.5
    channels = []
    for tier_name, alternate in zip(tier, flip, strict=True):
        usable = [c for c in TIER_CHANNELS[tier_name] if c in spec.channels]
        if tier_name == "B" and alternate and len(usable) > 1:
            usable = [usable[1], usable[0], *usable[2:]]
        channels.append(usable[0] if usable else None)
    routed = frame.assign(tier=tier, propensity=segment_rate, channel=channels)
    low_frequency_cap = max(1, spec.contact_policy.max_touches_per_7d // 2)
    over = (
        (routed["tier"] == "C")
        & (routed["contacts_7d"] >= low_frequency_cap)
        & routed["exclusion_reason"].isna()
    )
    return routed.assign(
        exclusion_reason=routed["exclusion_reason"].where(~over, "tier_c_frequency")
    )


def apply_capacity(routed: pd.DataFrame, quotas: dict[str, int]) -> pd.DataFrame:
    """Keep each channel's best eligible customers up to its quota; the rest of the
    eligible are `over_capacity` (or `no_channel`); an earlier exclusion is kept.

    Best = highest segment propensity, then highest credit score, then customer id (so
    the choice is stable across reruns). Excluded customers take no place.
    """
    reason = routed["exclusion_reason"].copy()
    open_ = reason.isna()
    reason[open_ & routed["channel"].isna()] = "no_channel"
    ranked = routed[open_ & routed["channel"].notna()].sort_values(
        ["channel", "propensity", "credit_score", "customer_id"],
        ascending=[True, False, False, True],
    )
    rank = ranked.groupby("channel").cumcount().to_numpy()
    quota = np.array([quotas.get(channel, 0) for channel in ranked["channel"].tolist()])
    reason[ranked.index[rank >= quota]] = "over_capacity"
    return routed.assign(exclusion_reason=reason)


# --- plan and audience ------------------------------------------------------------------


def segment_propensity(
    conn: Connection, campaign_id: str, day: date, attribution_days: int
) -> dict[str, float]:
    """Each segment's application rate over the campaign's 8 weeks before `day`.

    Empty without history: every segment then counts as average.
    """
    frame = funnel(conn, campaign_id, history_window(day), attribution_days=attribution_days)
    if frame.empty:
        return {}
    rates = rollup(frame, ["segment"]).set_index("segment")["application_rate"].dropna()
    return {str(segment): float(rate) for segment, rate in rates.items()}


def current_plan(conn: Connection, campaign_id: str, day: date) -> tuple[int, Period]:
    """The current plan whose period contains `day` (the shortest such period wins)."""
    rows = conn.execute(
        select(Plan.plan_id, Plan.period).where(
            Plan.campaign_id == campaign_id, Plan.is_current.is_(True)
        )
    ).all()
    covering = [
        (Period.parse(period).days, plan_id, Period.parse(period))
        for plan_id, period in rows
        if Period.parse(period).start <= day < Period.parse(period).end
    ]
    if not covering:
        raise UserError(
            f"campaign {campaign_id!r} has no plan covering {day}; run "
            f"`pdca plan --campaign {campaign_id} --period {day:%Y-%m}` first"
        )
    _, plan_id, period = min(covering)
    return plan_id, period


def daily_quotas(
    conn: Connection, plan_id: int, period: Period, spec: CampaignSpec, windows: int
) -> tuple[dict[str, int], dict[str, float]]:
    """Touches per channel for one window, and cost per touch, from the plan's budget.

    The plan's touches spread evenly over the period's send days (weekdays within the
    campaign), then over the day's windows, capped by the channel's daily capacity.
    """
    days = [
        period.start + timedelta(days=offset)
        for offset in range(period.days)
        if (period.start + timedelta(days=offset)).weekday() < 5
        and spec.start <= period.start + timedelta(days=offset) <= spec.end
    ]
    quotas, costs = {}, {}
    for channel, amount, touches, capacity in conn.execute(
        select(Budget.channel, Budget.amount, Budget.touches, Budget.daily_capacity).where(
            Budget.plan_id == plan_id
        )
    ):
        per_day = touches / max(len(days), 1)
        if capacity is not None:
            per_day = min(per_day, capacity)
        quotas[channel] = int(per_day // windows)
        costs[channel] = amount / touches if touches else 0.0
    return quotas, costs


def select_audience(
    conn: Connection, spec: CampaignSpec, batch_id: int, slot: Slot
) -> pd.DataFrame:
    """Every customer with the first rule that excludes them (None when eligible)."""
    local_day_start = local_midnight_utc(slot.day, spec.timezone)
    statement = query("dispatch_audience", conn.dialect.name).bindparams(
        bindparam("excluded_industries", expanding=True)
    )
    result = conn.execute(
        statement,
        {
            "campaign_id": spec.id,
            "batch_id": batch_id,
            "min_credit_score": spec.risk.min_credit_score,
            "max_debt_ratio": spec.risk.max_debt_ratio,
            "excluded_industries": list(spec.risk.excluded_industries),
            "cap_starts_at": local_day_start - timedelta(days=6),
            "complaints_since_at": local_day_start - timedelta(days=90),
            "max_touches_per_7d": spec.contact_policy.max_touches_per_7d,
        },
    )
    return _frame(result)


# --- the batch and its outbox -----------------------------------------------------------


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


def already_in_batch(conn: Connection, batch_id: int) -> set[str]:
    return set(
        conn.execute(select(OutboxEntry.customer_id).where(OutboxEntry.batch_id == batch_id))
        .scalars()
        .all()
    )


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


def write_outbox(
    conn: Connection,
    batch_id: int,
    chosen: pd.DataFrame,
    scheduled_at: datetime,
    status: str,
) -> int:
    """Record the intended sends (and hold-out assignments) before anything is sent."""
    if chosen.empty:
        return 0
    frame = pd.DataFrame(
        {
            "batch_id": batch_id,
            "customer_id": chosen["customer_id"].to_numpy(),
            "channel": chosen["channel"].to_numpy(),
            "variant": chosen["variant"].to_numpy(),
            "scheduled_at": scheduled_at,
            "status": np.where(chosen["variant"] == HOLDOUT, "holdout", status),
            "attempts": 0,
        }
    )
    columns = list(frame.columns)
    insert_rows(conn, OutboxEntry.__table__, columns, frame_rows(frame, columns))
    return len(frame)


def record_holdouts(conn: Connection, batch_id: int, campaign_id: str) -> int:
    """Hold-out members get their one `touches` row: assigned, never sent, cost 0."""
    rows = conn.execute(
        select(
            OutboxEntry.outbox_id,
            OutboxEntry.customer_id,
            OutboxEntry.channel,
            OutboxEntry.scheduled_at,
        ).where(
            OutboxEntry.batch_id == batch_id,
            OutboxEntry.status == "holdout",
            OutboxEntry.touch_id.is_(None),
        )
    ).all()
    if not rows:
        return 0
    touches = [
        (
            f"h{outbox_id}",
            campaign_id,
            customer_id,
            channel,
            HOLDOUT,
            scheduled_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
            False,
            False,
            0.0,
        )
        for outbox_id, customer_id, channel, scheduled_at in rows
    ]
    insert_rows(conn, Touch.__table__, TOUCH_COLUMNS, touches)
    _set_touch_ids(conn, [(f"h{outbox_id}", outbox_id) for outbox_id, *_ in rows])
    return len(rows)


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


def _set_touch_ids(conn: Connection, pairs: list[tuple[str, int]]) -> None:
    conn.execute(
        update(OutboxEntry)
        .where(OutboxEntry.outbox_id == bindparam("id_"))
        .values(touch_id=bindparam("touch"), status=OutboxEntry.status),
        [{"touch": touch, "id_": outbox_id} for touch, outbox_id in pairs],
    )


def release_held(conn: Connection, campaign_id: str, slot: Slot, batch_id: int) -> int:
    """Held sends whose next window is this one join this window's batch, to go now."""
    batches = select(OutreachBatch.batch_id).where(OutreachBatch.campaign_id == campaign_id)
    return conn.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.batch_id.in_(batches),
            OutboxEntry.status == "held",
            OutboxEntry.scheduled_at >= slot.starts_at,
            OutboxEntry.scheduled_at < slot.ends_at,
        )
        .values(status="pending", batch_id=batch_id)
    ).rowcount


def held_customers(conn: Connection, campaign_id: str) -> set[str]:
    batches = select(OutreachBatch.batch_id).where(OutreachBatch.campaign_id == campaign_id)
    return set(
        conn.execute(
            select(OutboxEntry.customer_id).where(
                OutboxEntry.batch_id.in_(batches), OutboxEntry.status == "held"
            )
        ).scalars()
    )


# --- sending ----------------------------------------------------------------------------


@dataclass
class SendTally:
    """What a batch's sending did, for the summary and the progress artifact."""

    sent: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, channel: str, variant: str, receipt: SendReceipt) -> None:
        if receipt.accepted:
            key = (channel, variant)
            self.sent[key] = self.sent.get(key, 0) + 1
        else:
            self.failed[channel] = self.failed.get(channel, 0) + 1
            if len(self.errors) < 20 and receipt.error:
                self.errors.append(f"{channel}: {receipt.error}")


def idempotency_key(
    campaign_id: str, slot_day: date, window: str, customer_id: str, channel: str
) -> str:
    """One intended send, named so that any resend of it carries the same key."""
    return f"{campaign_id}:{slot_day:%Y%m%d}:{window}:{customer_id}:{channel}"


def next_chunk(conn: Connection, batch_id: int, size: int) -> pd.DataFrame:
    """The batch's next sends still to do: `sending` ones (a crash's leftovers) first."""
    result = conn.execute(
        select(
            OutboxEntry.outbox_id,
            OutboxEntry.customer_id,
            OutboxEntry.channel,
            OutboxEntry.variant,
            OutboxEntry.scheduled_at,
            OutboxEntry.status,
            OutboxEntry.attempts,
            Customer.segment,
            Customer.phone,
            Customer.email,
        )
        .join(Customer, Customer.customer_id == OutboxEntry.customer_id)
        .where(OutboxEntry.batch_id == batch_id, OutboxEntry.status.in_(("pending", "sending")))
        .order_by(OutboxEntry.outbox_id)
        .limit(size)
    )
    return _frame(result)


def mark_sending(conn: Connection, chunk: pd.DataFrame) -> None:
    """Commit the hand-over before calling the gateway, so a crash is never silent."""
    conn.execute(
        update(OutboxEntry)
        .where(OutboxEntry.outbox_id.in_(chunk["outbox_id"].tolist()))
        .values(status="sending", attempts=OutboxEntry.attempts + 1)
    )


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
    """Accepted sends become `sent` with their touch; refused ones `failed` with why.

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
            status=case((accepted, "sent"), else_="failed"),
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
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(dialect_insert(Touch).from_select(TOUCH_COLUMNS, source).on_conflict_do_nothing())


# --- the lock ---------------------------------------------------------------------------


def acquire_lock(conn: Connection, campaign_id: str, now: datetime) -> str:
    """Take the campaign's dispatch lock or refuse: two dispatches never send together.

    A lock older than LOCK_LEASE is taken over (its holder crashed). Committed at once,
    so that other processes see it.
    """
    holder = f"{socket.gethostname()}:{os.getpid()}:{now.isoformat()}"
    stale_before = now - LOCK_LEASE
    conn.execute(
        delete(DispatchLock).where(
            DispatchLock.campaign_id == campaign_id, DispatchLock.acquired_at < stale_before
        )
    )
    current = conn.execute(
        select(DispatchLock.holder).where(DispatchLock.campaign_id == campaign_id)
    ).scalar()
    if current is not None and _holder_is_gone(current):
        conn.execute(
            delete(DispatchLock).where(
                DispatchLock.campaign_id == campaign_id, DispatchLock.holder == current
            )
        )
    taken = conn.execute(
        select(DispatchLock.holder, DispatchLock.acquired_at).where(
            DispatchLock.campaign_id == campaign_id
        )
    ).first()
    if taken is None:
        try:
            conn.execute(
                insert(DispatchLock).values(campaign_id=campaign_id, holder=holder, acquired_at=now)
            )
            conn.commit()
            return holder
        except Exception:  # another process inserted first
            conn.rollback()
            taken = conn.execute(
                select(DispatchLock.holder, DispatchLock.acquired_at).where(
                    DispatchLock.campaign_id == campaign_id
                )
            ).first()
    conn.rollback()
    raise DispatchBusy(
        f"campaign {campaign_id!r}: another dispatch is running ({taken[0]}, since "
        f"{taken[1]:%Y-%m-%d %H:%M:%S} UTC); it was not started again"
    )


def _holder_is_gone(holder: str) -> bool:
    """A holder on this host whose process no longer exists (it crashed or was killed)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def release_lock(conn: Connection, campaign_id: str, holder: str) -> None:
    conn.execute(
        delete(DispatchLock).where(
            DispatchLock.campaign_id == campaign_id, DispatchLock.holder == holder
        )
    )
    conn.commit()


class DispatchBusy(UserError):
    """A second dispatch of the same campaign while one runs: refused, nothing sent."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _frame(result) -> pd.DataFrame:
    """A result as a DataFrame (plain tuples: pandas probes Row objects one by one)."""
    columns = list(result.keys())
    return pd.DataFrame([tuple(row) for row in result], columns=columns)


def count_by(frame: pd.DataFrame, column: str) -> dict[str, int]:
    counts = frame[column].value_counts(dropna=True)
    return {str(key): int(value) for key, value in counts.items()}
