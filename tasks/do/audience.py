"""Do: the window's audience — who is excluded and why, staged with variant and channel.

`sql/dispatch_audience.sql` decides every exclusion in the database; `stage_audience`
adds the window (a customer belongs to one window a day), the variant, the tier and its
channel, and what the approved actions in force (`tasks.common.rules.RulesInForce`) say
beyond the spec (`sql/dispatch_stage.sql`), in one `insert … select` into a temporary
table (`STAGE`); the plan's capacity (`daily_quotas`) then trims each channel's chosen
(`apply_capacity_in_stage`). Set-based, so that a million customers cost a few
statements, not a million objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from sqlalchemy import (
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    TextualSelect,
    and_,
    bindparam,
    collate,
    func,
    insert,
    select,
    text,
    update,
)

from pdca.errors import UserError
from pdca.models import Budget, OutboxEntry, OutreachBatch, Plan
from tasks.common.campaigns import CampaignSpec
from tasks.common.metrics import campaign_timezone
from tasks.common.periods import Period, local_midnight_utc
from tasks.common.rules import RulesInForce, scoped_admission_checks
from tasks.common.sqlfiles import PARAMETER_TYPES, query, render
from tasks.do.assignment import HALF, HOLDOUT, hash_binds, variant_cuts, window_cuts
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
    """Each segment's application rate (attributed applications per delivered touch, as
    the funnel counts them) over the campaign's 8 weeks before `day`, read as one span
    (`sql/segment_propensity.sql`): a run's ranking needs no week, decision or loan.

    Empty without history: every segment then counts as average.
    """
    from tasks.plan.plan import history_window  # here: the plan's optimiser is slow to import

    window = history_window(day)
    timezone = campaign_timezone(conn, campaign_id)
    rows = conn.execute(
        query("segment_propensity", conn.dialect.name),
        {
            "campaign_id": campaign_id,
            "starts_at": local_midnight_utc(window.start, timezone),
            "ends_at": local_midnight_utc(window.end, timezone),
            "attribution_days": attribution_days,
        },
    )
    counts = sorted((str(segment), delivered, applied) for segment, delivered, applied in rows)
    return {segment: float(applied) / float(delivered) for segment, delivered, applied in counts}


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


def audience_parameters(spec: CampaignSpec, batch_id: int, slot: Slot) -> dict[str, object]:
    """What `sql/dispatch_audience.sql` takes for the campaign's batch of `slot`."""
    local_day_start = local_midnight_utc(slot.day, spec.timezone)
    return {
        "campaign_id": spec.id,
        "batch_id": batch_id,
        "min_credit_score": spec.risk.min_credit_score,
        "max_debt_ratio": spec.risk.max_debt_ratio,
        "excluded_industries": list(spec.risk.excluded_industries),
        "cap_starts_at": local_day_start - timedelta(days=6),
        "complaints_since_at": local_day_start - timedelta(days=90),
        "max_touches_per_7d": spec.contact_policy.max_touches_per_7d,
    }


def audience_statement(conn: Connection, spec: CampaignSpec, batch_id: int, slot: Slot):
    """`sql/dispatch_audience.sql` with the campaign's values bound: every customer with
    the first rule that excludes them (None when eligible)."""
    values = audience_parameters(spec, batch_id, slot)
    industries = bindparam("excluded_industries", values.pop("excluded_industries"), expanding=True)
    return query("dispatch_audience", conn.dialect.name).bindparams(industries, **values)


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
    """Stage the window's audience in one `insert … select` of `sql/dispatch_stage.sql`:
    the audience query's exclusions, the window (a customer belongs to one window a day),
    the variant (`tasks.do.assignment`), the tier and its channel (`tasks.do.routing`),
    `tier_c_frequency` and `no_channel`, applied in the database. What the rules in force
    decide reaches the query as rendered lists and bind values (`Staging`).

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
    staging = Staging(binds=audience_parameters(rules.spec, batch_id, slot))
    stage_window(conn, staging, spec, batch_id, slot, windows)
    stage_propensity(staging, propensity, rules.deprioritised_segments)
    stage_routing(staging, rules.spec)
    stage_scoped_admission(staging, rules)
    stage_variants(staging, spec, rules.promoted)
    staging.binds.update(hash_binds(conn, staging.hashes))
    STAGE.drop(conn, checkfirst=True)
    STAGE.create(conn)
    statement = staging.statement(conn.dialect.name)
    conn.execute(insert(STAGE).from_select([c.name for c in STAGE.columns], statement))


@dataclass
class Staging:
    """`sql/dispatch_stage.sql` for one batch, as it is put together: the lists rendered
    into it (`options`), its bind values, and the hashes it draws (role → salt, cuts)."""

    options: dict[str, object] = field(default_factory=dict)
    binds: dict[str, object] = field(default_factory=dict)
    hashes: dict[str, tuple[str, list[int]]] = field(default_factory=dict)

    def statement(self, dialect: str) -> TextualSelect:
        """The query rendered for `dialect`, with the values it uses bound, as `query`
        binds a plain query's: timestamps typed by name, lists expanding."""
        clause = text(render("dispatch_stage", dialect, tuple(sorted(self.options.items()))))
        bound = []
        for name in clause.compile().params:
            value = self.binds[name]
            kinds = [kind() for suffix, kind in PARAMETER_TYPES if name.endswith(suffix)]
            kind = kinds[0] if kinds else None
            bound.append(bindparam(name, value, type_=kind, expanding=isinstance(value, list)))
        return clause.bindparams(*bound).columns(**{c.name: c.type for c in STAGE.columns})


def stage_window(
    conn: Connection,
    staging: Staging,
    spec: CampaignSpec,
    batch_id: int,
    slot: Slot,
    windows: Sequence[str],
) -> None:
    """Keep the window's customers (by hash, when the day has several windows); skip the
    batch's own customers and those with a held send in the campaign. An empty skip list
    (a new batch, nothing held) is not tested per row."""
    batches = select(OutreachBatch.batch_id).where(OutreachBatch.campaign_id == spec.id)
    in_batch = select(OutboxEntry.customer_id).where(OutboxEntry.batch_id == batch_id)
    held = select(OutboxEntry.customer_id).where(
        OutboxEntry.batch_id.in_(batches), OutboxEntry.status == "held"
    )
    staging.options["skip_batch"] = bool(conn.execute(select(in_batch.exists())).scalar())
    staging.options["skip_held"] = bool(conn.execute(select(held.exists())).scalar())
    staging.options["split_windows"] = len(windows) > 1
    if len(windows) > 1:
        staging.binds["window_index"] = list(windows).index(slot.window)
        staging.hashes["window"] = (f"{spec.id}:window", window_cuts(len(windows)))


def stage_propensity(
    staging: Staging, propensity: dict[str, float], deprioritised: Sequence[str]
) -> None:
    """Each segment's propensity (`DEPRIORITISED` for deprioritised segments), and the
    measured average that unknown segments get and tier A must reach."""
    average = float(np.mean(list(propensity.values()))) if propensity else 0.0
    rates = {**propensity, **dict.fromkeys(deprioritised, DEPRIORITISED)}
    staging.options["segment_count"] = len(rates)
    staging.binds["average_propensity"] = average
    for i, (segment, rate) in enumerate(rates.items()):
        staging.binds[f"segment_{i}"] = segment
        staging.binds[f"segment_propensity_{i}"] = float(rate)


def stage_routing(staging: Staging, effective: CampaignSpec) -> None:
    """The tiers' thresholds and channels (`tasks.do.routing`) for the campaign's channels."""
    usable = usable_channels(effective)
    alternates = len(usable["B"]) > 1
    staging.options["no_channel_tiers"] = tuple(tier for tier, found in usable.items() if not found)
    staging.options["tier_b_alternates"] = alternates
    staging.binds.update(
        tier_a_score=TIER_A_SCORE,
        tier_b_score=TIER_B_SCORE,
        low_frequency_cap=low_frequency_cap(effective),
        tier_a_channel=next(iter(usable["A"]), None),
        tier_b_channel=next(iter(usable["B"]), None),
        tier_b_alternate=usable["B"][1] if alternates else None,
        tier_c_channel=next(iter(usable["C"]), None),
    )
    if alternates:
        staging.hashes["channel"] = (f"{effective.id}:channel", [HALF])


def stage_scoped_admission(staging: Staging, rules: RulesInForce) -> None:
    """The approved floors and caps scoped to a segment or a channel
    (`tasks.common.rules.scoped_admission_checks`): the checks rendered, their segments or
    channels and their thresholds bound."""
    for kind, scoped in (("segment", rules.segment_rules()), ("channel", rules.channel_rules())):
        checks = scoped_admission_checks(scoped, EXCLUSION_ORDER)
        staging.options[f"{kind}_checks"] = tuple(
            (
                check.reason,
                check.measure,
                "<" if check.fails_below else ">",
                check.replaces,
                len(check.limits),
            )
            for check in checks
        )
        for check in checks:
            for j, (name, limit) in enumerate(check.limits):
                staging.binds[f"{kind}_{check.measure}_{j}_scope"] = name
                staging.binds[f"{kind}_{check.measure}_{j}"] = limit


def stage_variants(staging: Staging, spec: CampaignSpec, promoted: dict[str, str]) -> None:
    """New members drawn with the written split's cuts, each retired variant read as its
    winner, for new and earlier members alike (see `stage_audience`)."""
    cuts = variant_cuts(spec)
    staging.options["variant_count"] = len(cuts)
    staging.options["promoted_count"] = len(promoted)
    staging.hashes["variant"] = (spec.id, [position for _, position in cuts])
    for i, (name, _) in enumerate(cuts):
        staging.binds[f"drawn_variant_{i}"] = promoted.get(name, name)
    for i, (retired, winner) in enumerate(promoted.items()):
        staging.binds[f"retired_variant_{i}"] = retired
        staging.binds[f"promoted_variant_{i}"] = winner


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
