"""What the proposal rules read: the thresholds, the context a check does not carry, and the
shared readers of the check result.

No rule reads settings, Prefect or a database: the thresholds arrive as a `Thresholds` built
once by the caller (`Thresholds.from_settings`), so a test can judge any case by hand. Only
`gather_context` (and the readers it calls) reads the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Connection, select

from pdca.errors import UserError
from pdca.models import Budget, Plan
from tasks.check.findings import finite_number
from tasks.check.result import CheckResult, Kpi
from tasks.common.campaigns import CampaignSpec, TimeRange
from tasks.common.metrics import ALL_LOANS_SINCE
from tasks.common.periods import Period
from tasks.common.rules import (
    admission_from_actions,
    approved_actions,
    scope_key,
    windows_in_force,
)
from tasks.common.sqlfiles import query

if TYPE_CHECKING:
    from pdca.settings import Settings

EPSILON = 1e-9
LOAN_COLUMNS = [
    "loan_id",
    "channel",
    "segment",
    "credit_score",
    "debt_ratio",
    "is_seasoned",
    "is_overdue",
]
"""What `loan_risk` returns (`sql/act_loan_risk.sql`)."""
WINDOW_FIGURES = ("touches", "delivered", "responded")


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """The rules' thresholds; defaults are the settings' defaults."""

    plan_floor_share: float = 0.05
    """Least share of the plan's total budget a channel keeps (the plan's floor)."""
    roi_floor: float = 0.0
    retire_after_periods: int = 3
    reallocation_step: float = 0.1
    cac_ratio: float = 2.0
    min_channel_touches: int = 200
    score_floor_step: int = 20
    debt_ratio_step: float = 0.05
    min_seasoned_loans: int = 30
    window_min_touches: int = 200
    window_shift_minutes: int = 30
    targeting_min_applications: int = 30
    alpha: float = 0.05
    """Significance of the window comparison (the settings' experiment_alpha)."""
    min_improvement: float = 0.05
    """Least relative improvement of its metric a proposal's what-if must show (`improves`)."""
    reallocation_metric: str = "roi"
    """What reallocate_budget moves budget by: `roi` or `ltv_cac` (customers' lifetime value
    over their acquisition cost, setting act_reallocation_metric)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """The thresholds in force: the `act_*` settings, the plan's floor share and the
        experiments' significance level."""
        return cls(
            plan_floor_share=settings.plan_floor_share,
            roi_floor=settings.act_roi_floor,
            retire_after_periods=settings.act_retire_after_periods,
            reallocation_step=settings.act_reallocation_step,
            cac_ratio=settings.act_cac_ratio,
            min_channel_touches=settings.act_min_channel_touches,
            score_floor_step=settings.act_score_floor_step,
            debt_ratio_step=settings.act_debt_ratio_step,
            min_seasoned_loans=settings.act_min_seasoned_loans,
            window_min_touches=settings.act_window_min_touches,
            window_shift_minutes=settings.act_window_shift_minutes,
            targeting_min_applications=settings.act_targeting_min_applications,
            alpha=settings.experiment_alpha,
            min_improvement=settings.act_min_improvement,
            reallocation_metric=settings.act_reallocation_metric,
        )


@dataclass(frozen=True)
class ActContext:
    """What the rules need beyond the check result."""

    spec: CampaignSpec
    budget: dict[str, float] = field(default_factory=dict)
    """Channel → amount in the current plan of the period (or the plan containing it);
    empty without a plan, and then no budget can be moved."""
    windows: list[dict[str, Any]] = field(default_factory=list)
    """Per send window as it was in force during the period: window, range ('HH:MM-HH:MM'),
    touches, delivered, responded, response_rate (None without deliveries) —
    `response_by_window`."""
    ranges: dict[str, str] = field(default_factory=dict)
    """Window → its range in force now (empty: the ranges of `windows`): a step starts
    from and must fit among these."""
    loans: pd.DataFrame | None = None
    """The campaign's loans with borrower risk attributes (`LOAN_COLUMNS`); None when not
    gathered: tighten_admission then judges by the rate alone and raises the score floor."""
    admission: dict[str, dict[str, float]] = field(default_factory=dict)
    """Scope key (`scope_key`) → the strictest approved {min_credit_score, max_debt_ratio}
    of the tighten_admission actions in force now: the next step starts from there."""
    changed: frozenset[str] = frozenset()
    """The rules (`rule_key`) an approved action changed after the period began: the
    period's evidence is about a setting no longer in force, so none of them is proposed
    again from it."""
    plan_period: str | None = None
    """The period of the plan `budget` comes from."""
    at_capacity: frozenset[str] = frozenset()
    """Channels whose amount in that plan was bound by their capacity: the plan cannot give
    them more, so no reallocation goes to them."""


def rule_key(kind: str, scope: Mapping[str, Any]) -> str:
    """The rule an action changes: its type at its scope ('shift_window window:evening',
    'tighten_admission segment:salaried', 'reallocate_budget channel:sms')."""
    return f"{kind} {scope_key(scope)}"


def improves(before: float, after: float, *, lower_is_better: bool, margin: float) -> bool:
    """Whether going from `before` to `after` improves a metric by at least `margin` of
    its current value (any gain counts from 0); a what-if that does not is no reason to
    change a rule."""
    gain = (before - after) if lower_is_better else (after - before)
    if not gain > EPSILON:
        return False
    return before == 0 or gain >= margin * abs(before) - EPSILON


# --- evidence from the check result ---------------------------------------------------


def channel_figures(check: CheckResult) -> dict[str, dict[str, Any]]:
    """Per channel: the funnel's touches, cost, disbursements, net_interest and
    expected_loss summed over segments and variants, with roi and cac (None where the
    denominator is 0), by the contract's definitions."""
    sums: dict[str, dict[str, Any]] = {}
    counts = ("touches", "cost", "disbursements", "net_interest", "expected_loss")
    for row in check.funnel:
        if row.channel is None:
            continue
        numbers = sums.setdefault(str(row.channel), dict.fromkeys(counts, 0.0))
        for name in counts:
            numbers[name] += finite_number(getattr(row, name)) or 0.0
    for numbers in sums.values():
        cost = numbers["cost"]
        net = numbers["net_interest"] - cost - numbers["expected_loss"]
        numbers["roi"] = net / cost if cost > 0 else None
        numbers["cac"] = cost / numbers["disbursements"] if numbers["disbursements"] > 0 else None
    return sums


def find_kpi(
    check: CheckResult, metric: str, *, channel: str | None = None, segment: str | None = None
) -> Kpi | None:
    """The check's KPI of `metric` at exactly that scope, if any."""
    for kpi in check.kpis:
        scope = kpi.scope or {}
        if (
            kpi.metric == metric
            and scope.get("channel") == channel
            and scope.get("segment") == segment
        ):
            return kpi
    return None


# --- the database ---------------------------------------------------------------------


def gather_context(
    conn: Connection, spec: CampaignSpec, period: Period, *, attribution_days: int = 14
) -> ActContext:
    """Everything the rules need beyond the check result, for the campaign's `period`.

    The period is judged by the rules in force during it (approved before it began: its
    sends are counted in the windows they went out in), a step starts from the rules in
    force now (every approval but the period's own, so that a rerun converges), and a rule
    changed by an approval since the period began is not proposed again from it."""
    plan_period, budget, at_capacity = current_budget(conn, spec.id, period)
    starts_at, _ = period.utc_bounds(spec.timezone)
    during = approved_actions(conn, spec.id, decided_before=starts_at)
    now = approved_actions(conn, spec.id, except_period=period.name)
    earlier = {action["action_id"] for action in during}
    changed = frozenset(
        rule_key(action["type"], action["scope"])
        for action in approved_actions(conn, spec.id)
        if action["action_id"] not in earlier
    )
    return ActContext(
        spec=spec,
        budget=budget,
        windows=response_by_window(conn, spec, period, windows_in_force(spec, during)),
        ranges=windows_in_force(spec, now),
        loans=loan_risk(conn, spec, period, attribution_days=attribution_days),
        admission=admission_from_actions(now),
        changed=changed,
        plan_period=plan_period,
        at_capacity=at_capacity,
    )


def current_budget(
    conn: Connection, campaign_id: str, period: Period
) -> tuple[str | None, dict[str, float], frozenset[str]]:
    """(plan period, channel → amount, channels bound by their capacity) of the current
    plan of exactly `period`, else of the shortest planned period containing it (amounts
    as planned, not pro-rated: shares of them are what the rules move); (None, {}, none)
    without a plan."""
    plans = conn.execute(
        select(Plan.plan_id, Plan.period).where(
            Plan.campaign_id == campaign_id, Plan.is_current.is_(True)
        )
    ).all()
    containing = []
    for plan_id, name in plans:
        try:
            planned = Period.parse(name)
        except UserError:  # a period name pdca did not write is no match
            continue
        if planned.start <= period.start and period.end <= planned.end:
            containing.append((planned.days, -plan_id, planned.name, plan_id))
    if not containing:
        return None, {}, frozenset()
    _, _, name, plan_id = min(containing)
    rows = conn.execute(
        select(Budget.channel, Budget.amount, Budget.explanation).where(Budget.plan_id == plan_id)
    ).all()
    bound = frozenset(
        str(channel)
        for channel, _, explanation in rows
        if f"capacity:{channel}" in ((explanation or {}).get("limited_by") or [])
    )
    return name, {str(channel): float(amount) for channel, amount, _ in rows}, bound


def response_by_window(
    conn: Connection, spec: CampaignSpec, period: Period, ranges: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Touches, delivered, responded and response_rate of each send window in `period`.

    `ranges`: window → 'HH:MM-HH:MM' in force (default: the spec's). The SQL counts by
    UTC quarter-hour (`sql/act_response_by_quarter_hour.sql`); `windows_from_quarter_hours`
    places each quarter in the campaign's local day.
    """
    starts_at, ends_at = period.utc_bounds(spec.timezone)
    result = conn.execute(
        query("act_response_by_quarter_hour", conn.dialect.name),
        {"campaign_id": spec.id, "starts_at": starts_at, "ends_at": ends_at},
    )
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    if ranges is None:
        ranges = {name: str(window) for name, window in spec.contact_policy.windows.items()}
    return windows_from_quarter_hours(frame, spec.timezone, ranges)


def windows_from_quarter_hours(
    frame: pd.DataFrame, timezone: str, ranges: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Sum UTC quarter-hour figures (sent_hour 'YYYY-MM-DD HH', sent_quarter 0-3, touches,
    delivered, responded) by the local send window their quarter starts in.

    Each quarter's start is converted to `timezone` on its own date, so daylight saving
    moves it correctly. A quarter belongs to the window that contains its local start
    (windows on quarter-hour boundaries, like every window of the examples, are exact);
    quarters outside every window (imports, off-window sends) are left out. One row per
    window in `ranges` order, zero where nothing was sent.
    """
    totals = {name: dict.fromkeys(WINDOW_FIGURES, 0) for name in ranges}
    if len(frame):
        starts = pd.to_datetime(frame["sent_hour"].astype(str), format="%Y-%m-%d %H")
        starts = starts + pd.to_timedelta(frame["sent_quarter"].astype(int) * 15, unit="min")
        local = starts.dt.tz_localize("UTC").dt.tz_convert(timezone)
        clocks = [time(moment.hour, moment.minute) for moment in local]
        parsed = {name: TimeRange.parse(text) for name, text in ranges.items()}
        for clock, (_, row) in zip(clocks, frame.iterrows(), strict=True):
            for name, window in parsed.items():
                if window.contains(clock):
                    for figure in WINDOW_FIGURES:
                        totals[name][figure] += int(row[figure] or 0)
                    break
    return [
        {
            "window": name,
            "range": str(ranges[name]),
            **totals[name],
            "response_rate": (
                totals[name]["responded"] / totals[name]["delivered"]
                if totals[name]["delivered"]
                else None
            ),
        }
        for name in ranges
    ]


def loan_risk(
    conn: Connection, spec: CampaignSpec, period: Period, *, attribution_days: int = 14
) -> pd.DataFrame:
    """The campaign's loans up to the period's end with borrower score and debt ratio and
    the overdue_rate_30 flags, judged as the check judges them (`sql/act_loan_risk.sql`)."""
    _, ends_at = period.utc_bounds(spec.timezone)
    result = conn.execute(
        query("act_loan_risk", conn.dialect.name),
        {
            "campaign_id": spec.id,
            "starts_at": ALL_LOANS_SINCE,
            "ends_at": ends_at,
            "attribution_days": attribution_days,
            "as_of_end_date": period.end,
        },
    )
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    frame = frame.reindex(columns=LOAN_COLUMNS)
    for column in ("credit_score", "debt_ratio"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("is_seasoned", "is_overdue"):
        frame[column] = pd.to_numeric(frame[column]).fillna(0).astype("int64")
    return frame
