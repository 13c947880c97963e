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

Set-based, so that a million customers cost a few statements, not a million Python
objects: the audience, its window, variants, tiers, channels and capacity are staged in
one `insert … select` (`stage_audience`) and written to the outbox in another; the
simulated gateway journals a chunk's sends, their touches and their outbox rows in one
statement each (`send_journaled`). Real providers keep the per-message path
(`send_messages`: messages, retries, receipts). The rules themselves are also stated on
DataFrames (`assign_variants`, `window_share`, `route`, `apply_capacity`): the tests hold
the SQL to them on SQLite and PostgreSQL. The hash behind assignment, windows and tier-B
alternation is sha256, which PostgreSQL computes natively and SQLite through a function
registered on the connection (`bucket`), drawing identical groups on both.

Approved Act actions (`tasks.common.rules.RulesInForce`) reach the staging as well: the
effective spec carries the campaign-wide changes; `stage_audience` adds what a spec
cannot say — admission scoped to a segment or a channel, deprioritised segments and the
members of retired variants (see `stage_audience`). The DataFrame rules state the spec
only: they are the reference for a campaign with no approved actions.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    collate,
    delete,
    event,
    false,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
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
    SimulatedSend,
    Touch,
)
from tasks.common.campaigns import CampaignSpec
from tasks.common.metrics import funnel, rollup
from tasks.common.periods import Period, local_midnight_utc
from tasks.common.rules import RulesInForce, ScopedAdmission
from tasks.common.sqlfiles import query
from tasks.data.inserts import insert_rows
from tasks.do.gateways import (
    GATEWAY_REF_LENGTH,
    Gateway,
    JournaledGateway,
    OutboundMessage,
    SendReceipt,
    send_with_retries,
)
from tasks.do.wording import Message

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
JOURNAL_KEY_LENGTH = SimulatedSend.__table__.c.idempotency_key.type.length
"""The simulated gateway's journal keeps keys up to this length."""
LOCK_LEASE = timedelta(minutes=30)
"""A dispatch lock older than this, whose holder is gone, may be taken over."""
EXCLUSION_ORDER = (
    "do_not_contact",
    "no_marketing_consent",
    "no_credit_score",
    "credit_score_below_floor",
    "excluded_industry",
    "debt_ratio_above_cap",
    "overdue_loan",
    "recent_complaint",
    "frequency_cap",
)
"""The audience query's rules in the order it applies them (sql/dispatch_audience.sql):
a scoped floor or cap takes the place of a later reason, never of an earlier one."""
DEPRIORITISED = -1.0
"""The propensity a deprioritised segment (approved revise_targeting) is staged with:
below every application rate, so its customers are never tier A and are ranked last for
a channel's quota, yet still contacted where the quota has room."""
CHECKPOINT_PAGES = 16_384
"""SQLite: dispatch's connections fold the write-ahead log back into the database every
64 MiB (16,384 pages) rather than SQLite's 4 MiB; a batch writes hundreds of MiB in
chunks, and each checkpoint costs two fsyncs."""


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


# --- the stable hash: one rule, drawn alike in Python, SQLite and PostgreSQL ------------

HASH_BITS = 60
"""A key's hash: the first 60 bits of sha256("<salt>:<key>"), an integer in [0, 2**60).
Sixty bits are fifteen hex digits, so PostgreSQL's `bit(60)::bigint` stays positive."""
HASH_SPAN = 1 << HASH_BITS
HALF = HASH_SPAN // 2


def hash_bits(salt: str, key: str) -> int:
    """The hash of one key under `salt` (the same number `bucket` draws in SQL)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") >> 4


def _hash_bits(salt: str, keys: Sequence[str] | pd.Series) -> np.ndarray:
    return np.fromiter((hash_bits(salt, key) for key in keys), dtype=np.int64, count=len(keys))


def _hash_unit(salt: str, keys: Sequence[str] | pd.Series) -> np.ndarray:
    """A stable uniform number in [0, 1) per key: its hash over the hash's span."""
    return _hash_bits(salt, keys) / HASH_SPAN


def cut(share: float) -> int:
    """The hash below which a key falls in the first `share` of the span: for every hash h,
    `h < cut(share)` exactly when `h / 2**60 < share` (computed without rounding)."""
    return min(math.ceil(Fraction(share) * HASH_SPAN), HASH_SPAN)


def variant_cuts(spec: CampaignSpec) -> list[tuple[str, int]]:
    """Each variant with the cut it is drawn below, in the spec's order; the hold-out is
    drawn above the last cut (the hold-out share is what the variants leave)."""
    variants = spec.experiment.variants
    edges = np.cumsum(list(variants.values()))
    return [(name, cut(float(edge))) for name, edge in zip(variants, edges, strict=True)]


def window_cuts(windows: int) -> list[int]:
    """The cuts that split the span evenly into `windows` windows (window k lies between
    cut k-1 and cut k): the k-th is ceil(k · 2**60 / windows)."""
    return [-(-k * HASH_SPAN // windows) for k in range(1, windows)]


def _bucket_function(salt: str, cuts: Sequence[int]) -> Callable[[str], int]:
    """`key → how many of the ascending cuts its hash reaches`, for one salt: what SQLite
    calls per row (the salt and the cuts bound in, the hash inlined: it runs a million
    times)."""
    salted, bounds = hashlib.sha256(f"{salt}:".encode()), tuple(cuts)
    from_bytes, reached = int.from_bytes, bisect.bisect_right

    def bucket_of(key: str) -> int:
        digest = salted.copy()  # sha256 with the salt already in
        digest.update(key.encode())
        return reached(bounds, from_bytes(digest.digest()[:8], "big") >> 4)

    return bucket_of


def bucket(conn: Connection, salt: str, key: ColumnElement, cuts: Sequence[int]) -> ColumnElement:
    """SQL for how many of the ascending `cuts` the hash of `key` under `salt` reaches
    (`hash_bits`), evaluated once per row however many groups it decides between.

    PostgreSQL computes the hash itself (`sha256`, then `width_bucket` over the cuts);
    SQLite calls a function registered on this connection for this salt and these cuts.
    Either way the expression yields exactly what the Python rule yields.
    """
    if conn.dialect.name == "postgresql":
        digest = func.sha256(func.convert_to(literal(f"{salt}:") + key, literal_column("'UTF8'")))
        hex_digest = func.encode(digest, literal_column("'hex'"), type_=String)
        prefix = literal_column("'x'", String) + func.left(hex_digest, 15, type_=String)
        hashed = cast(cast(prefix, postgresql.BIT(HASH_BITS)), BigInteger)
        bounds = postgresql.array([literal(c, BigInteger) for c in cuts])
        return func.width_bucket(hashed, bounds, type_=Integer)
    name = "pdca_bucket_" + hashlib.sha256(repr((salt, list(cuts))).encode()).hexdigest()[:16]
    raw = conn.connection.driver_connection
    raw.create_function(name, 1, _bucket_function(salt, cuts), deterministic=True)
    return getattr(func, name)(key, type_=Integer)


# --- assignment and routing, the rules in Python ----------------------------------------
#
# The flow applies these rules in SQL (`stage_audience`, `apply_capacity_in_stage`), set
# by set; the functions below state them on a DataFrame, and the tests hold the two equal
# on both back ends.


def assign_variants(campaign_id: str, spec: CampaignSpec, frame: pd.DataFrame) -> pd.Series:
    """Each customer's variant: the one they already have in the campaign, else by hash.

    The hash of (campaign, customer) falls into the spec's shares in their written order,
    the hold-out last, so a customer's group never changes across days and reruns.
    """
    cuts = variant_cuts(spec)
    names = np.asarray([*(name for name, _ in cuts), HOLDOUT], dtype=object)
    bits = _hash_bits(campaign_id, frame["customer_id"])
    position = np.searchsorted(np.asarray([c for _, c in cuts], dtype=np.int64), bits, "right")
    drawn = pd.Series(names[position], index=frame.index)
    return frame["assigned_variant"].where(frame["assigned_variant"].notna(), drawn)


def window_share(campaign_id: str, frame: pd.DataFrame, windows: Sequence[str]) -> pd.Series:
    """Which of the day's windows each customer belongs to (stable; one send a day)."""
    bits = _hash_bits(f"{campaign_id}:window", frame["customer_id"])
    index = np.searchsorted(np.asarray(window_cuts(len(windows)), dtype=np.int64), bits, "right")
    return pd.Series(np.asarray(windows, dtype=object)[index], index=frame.index)


def usable_channels(spec: CampaignSpec) -> dict[str, list[str]]:
    """Each tier's channels that the campaign uses, in order of preference."""
    return {
        tier: [channel for channel in channels if channel in spec.channels]
        for tier, channels in TIER_CHANNELS.items()
    }


def low_frequency_cap(spec: CampaignSpec) -> int:
    """Tier C's cap on contacts in 7 days: half the campaign's ("lower frequency")."""
    return max(1, spec.contact_policy.max_touches_per_7d // 2)


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
    usable = usable_channels(spec)
    channel = np.full(len(frame), None, dtype=object)
    for tier_name, channels in usable.items():
        if channels:
            channel[tier == tier_name] = channels[0]
    if len(usable["B"]) > 1:
        flip = _hash_bits(f"{spec.id}:channel", frame["customer_id"]) < HALF
        channel[(tier == "B") & flip] = usable["B"][1]
    routed = frame.assign(tier=tier, propensity=segment_rate, channel=channel)
    over = (
        (routed["tier"] == "C")
        & (routed["contacts_7d"] >= low_frequency_cap(spec))
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
    from tasks.plan.plan import history_window  # here: the plan's optimiser is slow to import

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


def audience_statement(conn: Connection, spec: CampaignSpec, batch_id: int, slot: Slot):
    """`sql/dispatch_audience.sql` with the campaign's values bound: every customer with
    the first rule that excludes them (None when eligible)."""
    local_day_start = local_midnight_utc(slot.day, spec.timezone)
    return query("dispatch_audience", conn.dialect.name).bindparams(
        bindparam("excluded_industries", list(spec.risk.excluded_industries), expanding=True),
        campaign_id=spec.id,
        batch_id=batch_id,
        min_credit_score=spec.risk.min_credit_score,
        max_debt_ratio=spec.risk.max_debt_ratio,
        cap_starts_at=local_day_start - timedelta(days=6),
        complaints_since_at=local_day_start - timedelta(days=90),
        max_touches_per_7d=spec.contact_policy.max_touches_per_7d,
    )


# --- the batch's audience, staged: assignment, routing and capacity in SQL ---------------

STAGE = Table(
    "dispatch_stage",
    MetaData(),
    Column("customer_id", String(64)),
    Column("segment", String(64)),
    Column("credit_score", Integer),
    Column("propensity", Float),
    Column("channel", String(16)),
    Column("variant", String(32)),
    Column("exclusion_reason", String(32)),
    prefixes=["TEMPORARY"],
)
"""The window's audience while a batch is prepared: one row per customer in the window
and not yet in the batch, with the reason that excludes them or, for the chosen ones
(`exclusion_reason` null), their channel and variant. A temporary table: it lives in the
preparing transaction's connection only."""


def stage_audience(
    conn: Connection,
    spec: CampaignSpec,
    batch_id: int,
    slot: Slot,
    windows: Sequence[str],
    propensity: dict[str, float],
    rules: RulesInForce | None = None,
) -> None:
    """Stage the window's audience in one `insert … select`: the audience query's
    exclusions, the window (a customer belongs to one window a day), the variant, the tier
    and its channel, `tier_c_frequency` and `no_channel` — the rules of `window_share`,
    `assign_variants` and `route`, applied in the database.

    Skipped: customers already in this batch (a rerun tops up) and customers with a held
    send in the campaign (it goes in a later window). Hold-out members (assigned
    `holdout` before) are counted, never routed. Hashes are drawn only where they decide
    something: the variant and tier-B channel of the eligible, the window when there are
    several.

    `spec` is the campaign as written; `rules`, when given, the approved actions folded
    in. Its effective spec decides admission, channels and the frequency cap, and:

    - a segment's floor or cap excludes its customers with the campaign-wide reasons, in
      the audience query's order (`EXCLUSION_ORDER`);
    - a channel's floor or cap excludes, with the same reasons, a customer who would be
      routed to it — no fallback to another channel: the tier's channel is the route the
      plan budgeted, and a second choice would hide what the rule costs. Routing is known
      only for the otherwise eligible, so an earlier reason is kept; new hold-out draws
      are judged like the treated, so that the control group stays comparable;
    - deprioritised segments are staged with propensity `DEPRIORITISED`; the average a
      tier-A segment must reach is still the measured one;
    - variants are drawn with the written split's cuts, then a retired variant is read as
      its winner, for new and earlier members alike: the hold-out region of the hash is
      exactly the written one, so promotion moves nobody into or out of the hold-out.
    """
    rules = rules or RulesInForce(spec=spec)
    effective = rules.spec
    STAGE.drop(conn, checkfirst=True)
    STAGE.create(conn)
    audience = (
        audience_statement(conn, effective, batch_id, slot)
        .columns(
            customer_id=String,
            segment=String,
            credit_score=Integer,
            debt_ratio=Float,
            assigned_variant=String,
            contacts_7d=Integer,
            exclusion_reason=String,
        )
        .subquery("audience")
    )
    a = audience.c
    batches = select(OutreachBatch.batch_id).where(OutreachBatch.campaign_id == spec.id)
    skipped = [
        select(OutboxEntry.customer_id).where(OutboxEntry.batch_id == batch_id),
        select(OutboxEntry.customer_id).where(
            OutboxEntry.batch_id.in_(batches), OutboxEntry.status == "held"
        ),
    ]
    filters = [  # an empty skip list (a new batch, nothing held) is not tested per row
        a.customer_id.not_in(customers)
        for customers in skipped
        if conn.execute(select(customers.exists())).scalar()
    ]
    if len(windows) > 1:
        in_window = bucket(conn, f"{spec.id}:window", a.customer_id, window_cuts(len(windows)))
        filters.append(in_window == list(windows).index(slot.window))
    average = float(np.mean(list(propensity.values()))) if propensity else 0.0
    rates = {**propensity, **dict.fromkeys(rules.deprioritised_segments, DEPRIORITISED)}
    segment_rate = (
        case(
            {segment: literal(rate, Float) for segment, rate in rates.items()},
            value=a.segment,
            else_=literal(average, Float),
        )
        if rates
        else literal(average, Float)
    )
    # Each step a subquery fenced by `offset 0`, which SQLite does not flatten into the
    # next: a column used several times there is computed once.
    mine = _fenced(
        select(
            a.customer_id,
            a.segment,
            a.credit_score,
            a.debt_ratio,
            a.assigned_variant,
            a.contacts_7d,
            scoped_admission(
                a.exclusion_reason, a.segment, a.credit_score, a.debt_ratio, rules.segment_rules()
            ).label("exclusion_reason"),
            segment_rate.label("propensity"),
        ).where(*filters),
        "mine",
    ).c
    tier = case(
        (and_(mine.credit_score >= TIER_A_SCORE, mine.propensity >= average), "A"),
        (mine.credit_score >= TIER_B_SCORE, "B"),
        else_="C",
    )
    usable = usable_channels(effective)
    no_channel = [name for name, channels in usable.items() if not channels]
    judged = _fenced(
        select(
            mine.customer_id,
            mine.segment,
            mine.credit_score,
            mine.debt_ratio,
            mine.propensity,
            mine.assigned_variant,
            tier.label("tier"),
            case(
                (
                    mine.assigned_variant == HOLDOUT,
                    func.coalesce(mine.exclusion_reason, "holdout_member"),
                ),
                (mine.exclusion_reason.is_not(None), mine.exclusion_reason),
                (
                    and_(tier == "C", mine.contacts_7d >= low_frequency_cap(effective)),
                    "tier_c_frequency",
                ),
                *([(tier.in_(no_channel), "no_channel")] if no_channel else []),
                else_=null(),
            ).label("exclusion_reason"),
        ),
        "judged",
    ).c

    def first(channels: list[str]) -> ColumnElement:
        return literal(channels[0]) if channels else null()

    tier_b_channel = first(usable["B"])
    if len(usable["B"]) > 1:
        flip = bucket(conn, f"{spec.id}:channel", judged.customer_id, [HALF]) == 0
        tier_b_channel = case((flip, usable["B"][1]), else_=usable["B"][0])
    channel = case(
        (judged.tier == "A", first(usable["A"])),
        (judged.tier == "B", tier_b_channel),
        else_=first(usable["C"]),
    )
    routed, reason = judged, judged.exclusion_reason
    if rules.channel_rules():  # the channel must be known before its rule can judge
        routed = _fenced(
            select(
                judged.customer_id,
                judged.segment,
                judged.credit_score,
                judged.propensity,
                judged.assigned_variant,
                case((reason.is_(None), channel), else_=null()).label("channel"),
                judged.debt_ratio,
                reason,
            ),
            "routed",
        ).c
        channel = routed.channel
        reason = scoped_admission(
            routed.exclusion_reason,
            routed.channel,
            routed.credit_score,
            routed.debt_ratio,
            rules.channel_rules(),
        )
    cuts = variant_cuts(spec)  # the written split: see the docstring
    drawn = case(
        {position: rules.promoted.get(name, name) for position, (name, _) in enumerate(cuts)},
        value=bucket(conn, spec.id, routed.customer_id, [c for _, c in cuts]),
        else_=HOLDOUT,
    )
    assigned = routed.assigned_variant
    if rules.promoted:
        assigned = case(rules.promoted, value=assigned, else_=assigned)
    variant = case((routed.assigned_variant.is_not(None), assigned), else_=drawn)
    chosen = reason.is_(None)
    source = select(
        routed.customer_id,
        routed.segment,
        routed.credit_score,
        routed.propensity,
        case((chosen, channel), else_=null()),
        case((chosen, variant), else_=null()),
        reason,
    )
    conn.execute(insert(STAGE).from_select([c.name for c in STAGE.columns], source))


def scoped_admission(
    reason: ColumnElement,
    scope: ColumnElement,
    credit_score: ColumnElement,
    debt_ratio: ColumnElement,
    admission: Sequence[ScopedAdmission],
) -> ColumnElement:
    """The exclusion reason once scoped floors and caps are judged: `scope` is the column
    the rules name (segment or channel). A failed floor or cap replaces only a reason the
    audience query applies after it (`EXCLUSION_ORDER`), or none, so a customer is
    excluded for the first rule that fails whichever scope set it. Without rules: `reason`."""
    floors = [
        and_(scope == literal(rule.name), credit_score < literal(rule.min_credit_score))
        for rule in admission
        if rule.min_credit_score is not None
    ]
    caps = [
        and_(scope == literal(rule.name), debt_ratio > literal(rule.max_debt_ratio, Float))
        for rule in admission
        if rule.max_debt_ratio is not None
    ]
    judged = []
    for name, failures in (("credit_score_below_floor", floors), ("debt_ratio_above_cap", caps)):
        if failures:
            later = list(EXCLUSION_ORDER[EXCLUSION_ORDER.index(name) + 1 :])
            open_ = or_(reason.is_(None), reason.in_(later))
            judged.append((and_(open_, or_(*failures)), name))
    return case(*judged, else_=reason) if judged else reason


def _fenced(statement, name: str):
    """`statement` as a subquery that SQLite computes once per row (`offset 0` keeps it
    from being flattened into the query that uses it; PostgreSQL reads it the same)."""
    return statement.offset(0).subquery(name)


def apply_capacity_in_stage(
    conn: Connection, quotas: dict[str, int], chosen_by_channel: dict[str, int]
) -> bool:
    """`apply_capacity` on the staged audience: where a channel has more chosen customers
    (`chosen_by_channel`) than its quota, the ones past it (by propensity, then credit
    score, then customer id) become `over_capacity`. A channel within its quota costs
    nothing. Returns whether any customer did not fit."""
    chosen = STAGE.c.exclusion_reason.is_(None)
    over = False
    for channel, count in sorted(chosen_by_channel.items()):
        quota = max(quotas.get(channel, 0), 0)
        if count <= quota:
            continue
        over = True
        mine = and_(chosen, STAGE.c.channel == channel)
        if quota > 0:
            customer = STAGE.c.customer_id
            if conn.dialect.name == "postgresql":
                customer = collate(customer, "C")  # code-point order, as in Python
            place = func.row_number().over(
                order_by=[STAGE.c.propensity.desc(), STAGE.c.credit_score.desc(), customer]
            )
            ranked = select(STAGE.c.customer_id, place.label("place")).where(mine).subquery()
            past = select(ranked.c.customer_id).where(ranked.c.place > quota)
            mine = and_(mine, STAGE.c.customer_id.in_(past))
        conn.execute(update(STAGE).where(mine).values(exclusion_reason="over_capacity"))
    return over


@dataclass
class StagedCounts:
    """What the staged audience holds, for capacity, the summary and the wording check."""

    audience: int = 0
    eligible: int = 0
    to_send: int = 0
    """The chosen who are sent something (the hold-out's newly drawn are not)."""
    excluded: dict[str, int] = field(default_factory=dict)
    chosen_by_channel: dict[str, int] = field(default_factory=dict)
    combinations: set[tuple[str, str, str]] = field(default_factory=set)
    """The chosen's distinct (channel, variant, segment)."""

    @property
    def channels(self) -> list[str]:
        return sorted({channel for channel, _, _ in self.combinations})

    @property
    def variants(self) -> list[str]:
        return sorted({variant for _, variant, _ in self.combinations})

    @property
    def segments(self) -> list[str]:
        return sorted({segment for _, _, segment in self.combinations})


def count_stage(conn: Connection) -> StagedCounts:
    """The stage's counts in three passes that sort nothing (SQLite sorts for every
    `group by`): its distinct exclusion reasons, the chosen's distinct (channel, variant,
    segment), then one row of filtered counts."""
    reason, channel, variant = STAGE.c.exclusion_reason, STAGE.c.channel, STAGE.c.variant
    chosen = reason.is_(None)
    reasons = sorted(r for r in conn.execute(select(reason).distinct()).scalars() if r)
    combinations = {
        (c, v, s)
        for c, v, s in conn.execute(
            select(channel, variant, STAGE.c.segment).distinct().where(chosen)
        )
    }
    channels = sorted({c for c, _, _ in combinations})
    counted = conn.execute(
        select(
            func.count(),
            func.count().filter(chosen),
            func.count().filter(and_(chosen, variant != HOLDOUT)),
            *(func.count().filter(reason == r) for r in reasons),
            *(func.count().filter(and_(chosen, channel == c)) for c in channels),
        )
    ).one()
    audience, eligible, to_send = counted[:3]
    excluded = dict(zip(reasons, counted[3 : 3 + len(reasons)], strict=True))
    return StagedCounts(
        audience=audience,
        eligible=eligible,
        to_send=to_send,
        excluded=dict(sorted(excluded.items(), key=lambda item: (-item[1], item[0]))),
        chosen_by_channel=dict(zip(channels, counted[3 + len(reasons) :], strict=True)),
        combinations=combinations,
    )


def drop_stage(conn: Connection) -> None:
    STAGE.drop(conn, checkfirst=True)


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


def next_outbox_id(conn: Connection) -> int:
    """Above every outbox entry written so far: entries from here on are new."""
    return conn.execute(select(func.coalesce(func.max(OutboxEntry.outbox_id), 0))).scalar_one() + 1


def write_outbox(conn: Connection, batch_id: int, scheduled_at: datetime, status: str) -> int:
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


def _touch_id(prefix: str) -> ColumnElement:
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
        _touch_id("h"),
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
    conn.execute(update(OutboxEntry).where(waiting).values(touch_id=_touch_id("h")))
    return count


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


# --- sending ----------------------------------------------------------------------------
#
# A batch goes out in chunks of the outbox (`next_chunk`): handed over (`mark_sending`,
# committed), then each channel's part (`chunk_parts`) through its gateway (`send_part`).


@dataclass
class SendTally:
    """What a batch's sending did, for the summary and the progress artifact."""

    sent: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, channel: str, variant: str, receipt: SendReceipt) -> None:
        if receipt.accepted:
            self.add_sent(channel, variant, 1)
        else:
            self.failed[channel] = self.failed.get(channel, 0) + 1
            if len(self.errors) < 20 and receipt.error:
                self.errors.append(f"{channel}: {receipt.error}")

    def add_sent(self, channel: str, variant: str, count: int) -> None:
        key = (channel, variant)
        self.sent[key] = self.sent.get(key, 0) + count


def idempotency_key(
    campaign_id: str, slot_day: date, window: str, customer_id: str, channel: str
) -> str:
    """One intended send, named so that any resend of it carries the same key."""
    return f"{campaign_id}:{slot_day:%Y%m%d}:{window}:{customer_id}:{channel}"


def _key_column(campaign_id: str, slot: Slot) -> ColumnElement:
    """`idempotency_key` in SQL, for the outbox entries of `slot`'s batch."""
    prefix = idempotency_key(campaign_id, slot.day, slot.window, "", "")[:-1]
    return literal(prefix) + OutboxEntry.customer_id + literal(":") + OutboxEntry.channel


@dataclass(frozen=True)
class Chunk:
    """The next sends of a batch, in outbox order: those with `status` up to `last_id`."""

    batch_id: int
    status: str
    last_id: int


@dataclass(frozen=True)
class ChunkPart:
    """A handed-over chunk's entries on one channel, with their count by variant and the
    length of the longest customer id among them. `first_id`..`last_id` bound them (a
    contiguous run when the outbox was written channel by channel, as `write_outbox`
    writes it), so each statement on the part reads only its own stretch."""

    batch_id: int
    channel: str
    first_id: int
    last_id: int
    by_variant: dict[str, int]
    longest_customer_id: int
    first_try: bool
    """Handed over for the first time (taken `pending`): no gateway knows these keys."""

    def entries(self) -> ColumnElement[bool]:
        return and_(
            OutboxEntry.batch_id == self.batch_id,
            OutboxEntry.status == "sending",
            OutboxEntry.outbox_id.between(self.first_id, self.last_id),
            OutboxEntry.channel == self.channel,
        )


def next_chunk(conn: Connection, batch_id: int, size: int) -> Chunk | None:
    """The batch's next `size` sends still to do: `sending` ones (a crash's leftovers)
    first, then `pending` ones; None when there are none."""
    for status in ("sending", "pending"):
        ids = (
            select(OutboxEntry.outbox_id)
            .where(OutboxEntry.batch_id == batch_id, OutboxEntry.status == status)
            .order_by(OutboxEntry.outbox_id)
            .limit(size)
            .subquery()
        )
        last_id = conn.execute(select(func.max(ids.c.outbox_id))).scalar()
        if last_id is not None:
            return Chunk(batch_id, status, last_id)
    return None


def mark_sending(conn: Connection, chunk: Chunk) -> int:
    """Hand the chunk over (commit before calling a gateway, so a crash is never silent):
    `sending`, one more attempt. Returns the number of entries."""
    return conn.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.batch_id == chunk.batch_id,
            OutboxEntry.status == chunk.status,
            OutboxEntry.outbox_id <= chunk.last_id,
        )
        .values(status="sending", attempts=OutboxEntry.attempts + 1)
    ).rowcount


def chunk_parts(conn: Connection, chunk: Chunk) -> list[ChunkPart]:
    """The handed-over chunk by channel, in channel order (one pass over the chunk)."""
    found: dict[str, list] = {}
    for channel, variant, count, first_id, last_id, longest in conn.execute(
        select(
            OutboxEntry.channel,
            OutboxEntry.variant,
            func.count(),
            func.min(OutboxEntry.outbox_id),
            func.max(OutboxEntry.outbox_id),
            func.max(func.length(OutboxEntry.customer_id)),
        )
        .where(
            OutboxEntry.batch_id == chunk.batch_id,
            OutboxEntry.status == "sending",
            OutboxEntry.outbox_id <= chunk.last_id,
        )
        .group_by(OutboxEntry.channel, OutboxEntry.variant)
    ):
        firsts, lasts, by_variant, longests = found.setdefault(channel, [[], [], {}, []])
        firsts.append(first_id)
        lasts.append(last_id)
        by_variant[variant] = count
        longests.append(longest)
    return [
        ChunkPart(
            chunk.batch_id,
            channel,
            min(firsts),
            max(lasts),
            by_variant,
            max(longests),
            first_try=chunk.status == "pending",
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
) -> None:
    """Send one channel's part of a chunk: set-based through a journaled (simulated)
    gateway when every key fits its journal, else one message per entry."""
    if isinstance(gateway, JournaledGateway) and _fits_journal(gateway, campaign_id, slot, part):
        send_journaled(conn, gateway, campaign_id, slot, part, sent_at, costs, tally)
    else:
        send_messages(conn, gateway, campaign_id, slot, part, sent_at, costs, rendered, tally)


def _fits_journal(gateway: JournaledGateway, campaign_id: str, slot: Slot, part: ChunkPart) -> bool:
    """Whether every key of the part fits the journal, and its reference `<prefix>-<key>`
    the outbox (the per-message path shortens a longer reference with a hash)."""
    key = idempotency_key(campaign_id, slot.day, slot.window, "", part.channel)
    room = min(GATEWAY_REF_LENGTH - len(gateway.inner.ref_prefix) - 1, JOURNAL_KEY_LENGTH)
    return part.longest_customer_id + len(key) <= room


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
        _touch_id("d"),
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
    conn.execute(_insert(conn, Touch).from_select(TOUCH_COLUMNS, source).on_conflict_do_nothing())
    sent = conn.execute(
        update(OutboxEntry)
        .where(entries)
        .values(
            status="sent",
            gateway_ref=literal(f"{gateway.inner.ref_prefix}-") + key,
            error=None,
            touch_id=_touch_id("d"),
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
) -> None:
    """The per-message path (real providers): one message per entry, sent with retries,
    the receipts recorded set-based."""
    rows = sending_rows(conn, part)
    receipts = send_with_retries(gateway, messages_for(rows, slot, campaign_id, rendered))
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
    conn.execute(_insert(conn, Touch).from_select(TOUCH_COLUMNS, source).on_conflict_do_nothing())


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


def _count(conn: Connection, statement) -> int:
    """Run an `insert … select` and return how many rows it wrote (SQLAlchemy keeps an
    insert's row count only when asked to)."""
    return conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def _insert(conn: Connection, table):
    """The dialect's `insert`, which knows `on conflict do nothing`."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
