"""Plan: a period's budget split and its KPI and asset-quality targets, from history.

1. **History.** The trailing `HISTORY_WEEKS` weeks of the same campaign; a new campaign
   borrows the latest weeks of comparable campaigns (same product first, then any
   history, such as the imported UCI data). The evidence says which was used.
2. **Economics.** Per channel and per touch: cost, disbursed amount, net income, loans,
   overdue rate — the inputs of the budget LP (`tasks.plan.budget.allocate`).
3. **Budget.** The period's share of the campaign budget (by its days within the
   campaign), split by the LP under capacity, floor share, the overdue ceiling and the
   manager-approved adjustments from the Act stage.
4. **Targets** (`tasks.plan.targets`): each scope (campaign, channel, segment) from its
   own history, the allocated touches through its own rates; a scope with too little
   history takes the campaign's, and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, insert, select, update

from pdca.models import Action, Budget, Campaign, Plan, Target, Touch
from tasks.common.campaigns import CampaignSpec
from tasks.common.metrics import BOOK_COUNTS, complaint_rate, funnel, overdue_rate_30, rollup
from tasks.common.periods import Period
from tasks.common.rules import (
    PLAN_ACTION_TYPES,
    approved_actions,
    budget_change,
    rules_in_force,
    standing_budget_changes,
)
from tasks.common.value_metrics import FAMILY_COUNTS, family_counts
from tasks.plan.budget import (
    Allocation,
    BudgetAdjustment,
    ChannelEconomics,
    allocate,
)

HISTORY_WEEKS = 8
CELL = ["channel", "segment"]
"""The finest grain of the history a scope's targets are summed from."""
REACH_HEADROOM = 1.5
"""A channel's touches in a period may exceed its best history week (per week) by 50 %:
beyond that the audience it reaches is the limit, not the budget."""


@dataclass(frozen=True)
class HistorySource:
    campaign_id: str
    window: Period
    reason: str


@dataclass
class History:
    """Summed history per channel and per segment, with where it came from."""

    sources: list[HistorySource]
    by_channel: pd.DataFrame
    by_segment: pd.DataFrame
    total: pd.Series
    overdue_by_channel: dict[str, float]
    overdue_total: float
    complaint_rate: float
    weekly_peak: dict[str, float] = field(default_factory=dict)
    """Each channel's most touches in one history week."""
    cells: pd.DataFrame | None = None
    """The funnel's counts and rates per channel × segment."""
    overdue_cells: pd.DataFrame | None = None
    """seasoned_loans and overdue_loans per channel × segment."""
    complaint_cells: pd.DataFrame | None = None
    """complaints and delivered per channel × segment (complaints by their touch's channel)."""
    family_cells: pd.DataFrame | None = None
    """`value_metrics.family_counts` per channel × segment (new customers, loan values,
    survey answers, paid-off borrowers)."""


@dataclass
class PlanResult:
    plan_id: int
    version: int
    period: str
    allocation: Allocation
    targets: list[dict[str, Any]]
    budget: float
    notes: list[str] = field(default_factory=list)


def history_window(end: date, weeks: int = HISTORY_WEEKS) -> Period:
    """The `weeks` whole ISO weeks that end before `end`."""
    monday = end - timedelta(days=end.weekday())
    start = monday - timedelta(weeks=weeks)
    first, last = Period.week_of(start), Period.week_of(monday - timedelta(days=1))
    return Period(start, monday, f"{first}..{last}", "weeks")


def find_history(conn: Connection, spec: CampaignSpec, period: Period) -> list[HistorySource]:
    """The campaign's own trailing weeks, else comparable campaigns' latest weeks."""
    own = history_window(period.start)
    if _touches_between(conn, spec.id, own):
        return [HistorySource(spec.id, own, "the campaign's own trailing weeks")]
    others = conn.execute(
        select(Campaign.campaign_id, Campaign.product_code).where(Campaign.campaign_id != spec.id)
    ).all()
    same_product = [cid for cid, product in others if product == spec.product]
    for candidates, reason in (
        (same_product, f"campaigns of the same product ({spec.product})"),
        ([cid for cid, _ in others], "other campaigns' history (no campaign of this product)"),
    ):
        sources = []
        for campaign_id in candidates:
            last = conn.execute(
                select(func.max(Touch.sent_at)).where(Touch.campaign_id == campaign_id)
            ).scalar()
            if last is not None:
                window = history_window(last.date() + timedelta(days=7))
                sources.append(HistorySource(campaign_id, window, reason))
        if sources:
            return sources
    return []


def _touches_between(conn: Connection, campaign_id: str, window: Period) -> bool:
    start, end = window.utc_bounds("UTC")
    return bool(
        conn.execute(
            select(func.count())
            .select_from(Touch)
            .where(
                Touch.campaign_id == campaign_id,
                Touch.sent_at >= start - timedelta(days=1),
                Touch.sent_at < end + timedelta(days=1),
            )
        ).scalar()
    )


def gather_history(
    conn: Connection,
    sources: list[HistorySource],
    *,
    attribution_days: int,
    ftp_rate: float,
    lgd: float,
) -> History:
    """Sum the sources' funnels (counts add up across campaigns; rates come after).

    Everything is also kept per channel × segment cell, so that each scope's targets can
    come from its own history (`tasks.plan.targets`)."""
    frames, overdue, complaints, families = [], [], [], []
    for source in sources:
        frame = funnel(
            conn,
            source.campaign_id,
            source.window,
            attribution_days=attribution_days,
            ftp_rate=ftp_rate,
            lgd=lgd,
        )
        frames.append(frame)
        overdue.append(
            overdue_rate_30(
                conn,
                source.campaign_id,
                source.window,
                CELL,
                attribution_days=attribution_days,
            )
        )
        complaints.append(
            complaint_rate(conn, source.campaign_id, source.window, CELL, funnel_frame=frame)
        )
        families.append(
            family_counts(
                conn,
                source.campaign_id,
                source.window,
                CELL,
                attribution_days=attribution_days,
                ftp_rate=ftp_rate,
                lgd=lgd,
            )
        )
    combined = pd.concat(frames, ignore_index=True) if frames else funnel_columns()
    overdue_cells = _summed(
        overdue, ["seasoned_loans", "overdue_loans", "loan_balance", *BOOK_COUNTS]
    )
    complaint_cells = _summed(complaints, ["complaints", "delivered"])
    by_channel_overdue = overdue_cells.groupby("channel")[["seasoned_loans", "overdue_loans"]].sum()
    overdue_by_channel = {
        channel: float(row.overdue_loans / row.seasoned_loans)
        for channel, row in by_channel_overdue.iterrows()
        if row.seasoned_loans > 0
    }
    seasoned = overdue_cells["seasoned_loans"].sum()
    overdue_total = (
        float(overdue_cells["overdue_loans"].sum() / seasoned) if seasoned > 0 else float("nan")
    )
    delivered = complaint_cells["delivered"].sum()
    complaint_total = (
        1000 * complaint_cells["complaints"].sum() / delivered if delivered > 0 else float("nan")
    )
    total = rollup(combined, []).iloc[0]
    return History(
        sources,
        rollup(combined, ["channel"]).set_index("channel"),
        rollup(combined, ["segment"]).set_index("segment"),
        total,
        overdue_by_channel,
        overdue_total,
        float(complaint_total),
        _weekly_peak(combined),
        cells=rollup(combined, CELL),
        overdue_cells=overdue_cells,
        complaint_cells=complaint_cells,
        family_cells=_summed(families, FAMILY_COUNTS),
    )


def _summed(frames: list[pd.DataFrame], counts: list[str]) -> pd.DataFrame:
    """The sources' per-cell counts added up (an empty frame with the columns when none)."""
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in [*CELL, *counts]})
    combined = pd.concat(frames, ignore_index=True)
    return combined.groupby(CELL, as_index=False)[counts].sum()


def _weekly_peak(combined: pd.DataFrame) -> dict[str, float]:
    peak = rollup(combined, ["week", "channel"]).groupby("channel")["touches"].max()
    return {str(channel): float(value) for channel, value in peak.items() if value > 0}


def funnel_columns() -> pd.DataFrame:
    from tasks.common.metrics import COUNTS, KEYS

    return pd.DataFrame(columns=["week", *KEYS, *COUNTS])


def channel_economics(
    spec: CampaignSpec, history: History, send_days: int
) -> tuple[list[ChannelEconomics], list[str]]:
    """Per-touch economics and capacity of the campaign's channels; gaps filled, and said.

    Capacity: the spec's daily capacity × send days, and the reach limit (best history
    week × weeks × REACH_HEADROOM; a channel without history gets the median reach).
    """
    notes, economics = [], []
    weeks = send_days / 5
    reach = {c: peak * weeks * REACH_HEADROOM for c, peak in history.weekly_peak.items()}
    median_reach = float(np.median(list(reach.values()))) if reach else None
    known = history.by_channel[history.by_channel["touches"] > 0]
    fallback_cost = float((known["cost"] / known["touches"]).median()) if len(known) else 1.0
    total = history.total
    for channel in spec.channels:
        if channel in known.index:
            row = known.loc[channel]
            touches = float(row["touches"])
            per_touch = {
                "cost": float(row["cost"]) / touches,
                "disbursed": float(row["disbursed_amount"]) / touches,
                "net": float(row["net_interest"] - row["expected_loss"]) / touches,
                "loans": float(row["disbursements"]) / touches,
            }
        else:
            touches = max(float(total["touches"]), 1.0)
            per_touch = {
                "cost": fallback_cost,
                "disbursed": float(total["disbursed_amount"]) / touches,
                "net": float(total["net_interest"] - total["expected_loss"]) / touches,
                "loans": float(total["disbursements"]) / touches,
            }
            notes.append(
                f"{channel}: no history; assumed the median cost per touch "
                f"({fallback_cost:.2f}) and the campaign-wide rates"
            )
        overdue = history.overdue_by_channel.get(channel, history.overdue_total)
        limits = [reach.get(channel, median_reach)]
        if channel in spec.daily_capacity:
            limits.append(float(spec.daily_capacity[channel] * send_days))
        capacity = min((limit for limit in limits if limit is not None), default=None)
        economics.append(
            ChannelEconomics(
                channel=channel,
                cost_per_touch=max(per_touch["cost"], 0.001),
                disbursed_per_touch=max(per_touch["disbursed"], 0.0),
                net_income_per_touch=per_touch["net"],
                loans_per_touch=max(per_touch["loans"], 0.0),
                overdue_rate=0.0 if np.isnan(overdue) else overdue,
                capacity_touches=capacity,
            )
        )
    return economics, notes


def allocate_within_risk(
    economics: list[ChannelEconomics],
    budget: float,
    *,
    objective: str,
    floor_share: float,
    overdue_ceiling: float,
    adjustments: list[BudgetAdjustment],
    previous: dict[str, float] | None,
    previous_budget: float | None = None,
) -> tuple[Allocation, list[str]]:
    """The LP's split; when the floor shares push the mix over the overdue ceiling, the
    floors give way (the ceiling is a risk limit, the floors only keep channels measured)
    and the notes say by how much the mix exceeds it with them and without them.

    Approved adjustments are never relaxed: when they alone keep the mix over the ceiling,
    the LP takes the least overdue mix they allow and its notes say so.
    """
    options = {
        "objective": objective,
        "overdue_ceiling": overdue_ceiling,
        "adjustments": adjustments,
        "previous": previous,
        "previous_budget": previous_budget,
    }
    allocation = allocate(economics, budget, floor_share=floor_share, **options)
    excess = allocation.explanation.overdue_excess
    if floor_share == 0 or excess <= 0:
        return allocation, []
    without = allocate(economics, budget, floor_share=0.0, **options)
    if without.explanation.overdue_excess >= excess * (1 - 1e-9):
        return allocation, []  # the floors add nothing to the excess: they stay
    left = without.explanation.overdue_excess
    note = (
        f"the {floor_share:.0%} floor shares were dropped: with them the mix would exceed the "
        f"overdue_ceiling by at least {excess:.3g} expected overdue loans; without them "
        + (f"by {left:.3g}" if left > 0 else "it holds")
    )
    return without, [note]


def send_days(spec: CampaignSpec, period: Period) -> int:
    """Weekdays of the period within the campaign (the days dispatch sends)."""
    return sum(
        1
        for offset in range(period.days)
        if (day := period.start + timedelta(days=offset)).weekday() < 5
        and spec.start <= day <= spec.end
    )


def period_budget(spec: CampaignSpec, period: Period) -> float:
    """The campaign budget's share for the period, by calendar days within the campaign."""
    first, last = max(period.start, spec.start), min(period.end - timedelta(days=1), spec.end)
    days = max((last - first).days + 1, 0)
    return spec.budget_total * days / ((spec.end - spec.start).days + 1)


def approved_adjustments(conn: Connection, campaign_id: str) -> list[tuple[int, BudgetAdjustment]]:
    """Approved Act actions not yet applied to a plan, as budget constraints: what each
    changes in the split is `tasks.common.rules.budget_change`'s to say."""
    rows = conn.execute(
        select(Action.action_id, Action.type, Action.params).where(
            Action.campaign_id == campaign_id,
            Action.status == "approved",
            Action.applied_to_period.is_(None),
            Action.type.in_(PLAN_ACTION_TYPES),
        )
    ).all()
    adjustments = []
    for action_id, kind, params in rows:
        change = budget_change(kind, params)
        if change is not None:
            adjustment = BudgetAdjustment(**asdict(change), source=f"action {action_id}")
            adjustments.append((action_id, adjustment))
    return adjustments


def standing_adjustments(
    conn: Connection, spec: CampaignSpec, pending: list[tuple[int, BudgetAdjustment]]
) -> list[BudgetAdjustment]:
    """The retired and paused channels, as `retire` constraints of this plan: asked again by
    every plan while the rule stands, so never marked applied. A retirement still pending
    (`pending`: this plan applies it) is not repeated."""
    rules = rules_in_force(spec, approved_actions(conn, spec.id))
    retiring = {adj.channel for _, adj in pending if adj.kind == "retire"}
    return [
        BudgetAdjustment(**asdict(change), source=origin)
        for origin, change in standing_budget_changes(rules)
        if change.channel in spec.channels and change.channel not in retiring
    ]


def waiting_for_a_resume(
    adjustments: list[tuple[int, BudgetAdjustment]], pauses: list[BudgetAdjustment]
) -> tuple[list[tuple[int, BudgetAdjustment]], list[str]]:
    """The approved adjustments this plan applies, and a note for each that waits: a shift
    into a paused channel would contradict its pause, so it stays approved and unapplied
    and reaches the first plan after the resume."""
    paused = {pause.channel for pause in pauses if pause.source.startswith("pause")}
    applied, notes = [], []
    for action_id, adjustment in adjustments:
        if adjustment.kind == "shift" and adjustment.to_channel in paused:
            notes.append(
                f"Adjustment {adjustment.label} (action {action_id}) waits: "
                f"{adjustment.to_channel} is paused by a guardrail."
            )
        else:
            applied.append((action_id, adjustment))
    return applied, notes


def previous_split(conn: Connection, campaign_id: str, period: Period) -> dict[str, float] | None:
    """The budget split of the latest plan of an earlier period (what a shift moves from)."""
    latest = _latest_earlier_plan(conn, campaign_id, period)
    if latest is None:
        return None
    return dict(
        conn.execute(select(Budget.channel, Budget.amount).where(Budget.plan_id == latest[1])).all()
    )


def previous_budget(conn: Connection, spec: CampaignSpec, period: Period) -> float | None:
    """The budget `previous_split` was made for: a shift's share is of that period's budget,
    whatever part of it the split left unallocated."""
    latest = _latest_earlier_plan(conn, spec.id, period)
    if latest is None:
        return None
    return period_budget(spec, latest[0]) or None  # 0: the period is outside the campaign


def _latest_earlier_plan(
    conn: Connection, campaign_id: str, period: Period
) -> tuple[Period, int] | None:
    """The period and id of the current plan of the latest period before `period`."""
    rows = conn.execute(
        select(Plan.plan_id, Plan.period).where(
            Plan.campaign_id == campaign_id, Plan.is_current.is_(True)
        )
    ).all()
    earlier = [(Period.parse(p), pid) for pid, p in rows if Period.parse(p) < period]
    return max(earlier, key=lambda item: (item[0].start, item[1])) if earlier else None


def save_plan(
    conn: Connection,
    campaign_id: str,
    period: Period,
    allocation: Allocation,
    targets: list[dict[str, Any]],
    inputs: dict[str, Any],
    daily_capacity: dict[str, int],
) -> tuple[int, int]:
    """A new current version of (campaign, period); earlier versions stay as history."""
    version = (
        conn.execute(
            select(func.max(Plan.version)).where(
                Plan.campaign_id == campaign_id, Plan.period == str(period)
            )
        ).scalar()
        or 0
    ) + 1
    conn.execute(
        update(Plan)
        .where(Plan.campaign_id == campaign_id, Plan.period == str(period))
        .values(is_current=False)
    )
    plan_id = conn.execute(
        insert(Plan)
        .values(
            campaign_id=campaign_id,
            period=str(period),
            version=version,
            is_current=True,
            inputs=inputs,
        )
        .returning(Plan.plan_id)
    ).scalar_one()
    conn.execute(
        insert(Budget),
        [
            {
                "plan_id": plan_id,
                "channel": channel,
                "amount": float(allocation.amount[channel]),
                "touches": int(allocation.touches[channel]),
                "daily_capacity": daily_capacity.get(channel),
                "explanation": {"limited_by": allocation.limited_by.get(channel)},
            }
            for channel in allocation.channels
        ],
    )
    conn.execute(insert(Target), [dict(row, plan_id=plan_id) for row in targets])
    return plan_id, version


def mark_applied(conn: Connection, action_ids: list[int], period: Period) -> None:
    if action_ids:
        conn.execute(
            update(Action)
            .where(Action.action_id.in_(action_ids))
            .values(applied_to_period=str(period))
        )
