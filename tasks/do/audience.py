"""Do: the window's audience — who is excluded and why, staged with variant and channel.

`sql/dispatch_audience.sql` decides every exclusion in the database; `stage_audience`
adds the window (a customer belongs to one window a day), the variant, the tier and its
channel, and what the approved actions in force (`tasks.common.rules.RulesInForce`) say
beyond the spec, in one `insert … select` into a temporary table (`STAGE`); the plan's
capacity (`daily_quotas`) then trims each channel's chosen (`apply_capacity_in_stage`).
Set-based, so that a million customers cost a few statements, not a million objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    collate,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)

from pdca.errors import UserError
from pdca.models import Budget, OutboxEntry, OutreachBatch, Plan
from tasks.common.campaigns import CampaignSpec
from tasks.common.metrics import funnel, rollup
from tasks.common.periods import Period, local_midnight_utc
from tasks.common.rules import RulesInForce, ScopedAdmission
from tasks.common.sqlfiles import query
from tasks.do.assignment import HALF, HOLDOUT, bucket, variant_cuts, window_cuts
from tasks.do.routing import TIER_A_SCORE, TIER_B_SCORE, low_frequency_cap, usable_channels
from tasks.do.slots import Slot

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
