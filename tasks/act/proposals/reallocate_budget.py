"""`reallocate_budget`: a failing channel gives one bounded step of budget to the best one.

Bounded steps, because one period's ROI is an estimate, and never below the plan's floor
share, which keeps every channel measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from tasks.act.proposals.context import (
    EPSILON,
    ActContext,
    Thresholds,
    channel_figures,
    find_kpi,
    improves,
)
from tasks.act.proposals.text import kpi_text, num, pct, proposal
from tasks.act.types import Proposal
from tasks.check.findings import finite_number
from tasks.check.result import CheckResult


def reallocate_budget_proposals(
    check: CheckResult,
    context: ActContext,
    thresholds: Thresholds,
    *,
    exclude: Iterable[str] = (),
) -> list[Proposal]:
    """One bounded step of budget from each failing channel to the best-ROI channel (or,
    with `Thresholds.reallocation_metric` `ltv_cac`, the best LTV/CAC: the check's
    ltv_cac KPI of each channel stands where roi stands below).

    A channel fails when its roi or cac KPI is `off_track`/`at_risk` against the plan's
    target, or its CAC is ≥ `cac_ratio` × the lowest CAC of the campaign's channels. Only
    channels with `min_channel_touches` touches are judged or chosen, and only channels of
    the plan's budget (without a plan there is nothing to move). The best channel is the
    one with the highest ROI whatever its own status (when every channel fails, the money
    still goes where it earns most) that can take more: a channel the plan bound by its
    capacity cannot (`ActContext.at_capacity`), and one whose overdue_rate_30 is above the
    spec's ceiling must not (risk comes before return, and the plan keeps the expected
    rate under that ceiling). The best channel itself gives nothing (its
    CAC is high, but so is what it earns), nor does a channel whose ROI the move would not
    improve by `min_improvement` (`improves`). The step is `reallocation_step` of the failing
    channel's budget, cut so that it keeps `plan_floor_share` of the plan's total; none
    when it is at its floor already.

    Params: {from_channel, to_channel, share, from_budget}: `share` of from_channel's
    budget moves (what `tasks.plan.plan.approved_adjustments` applies to the next plan's
    rescaled previous split; a share, not an amount, so that a plan period of another
    length moves the same proportion); `from_budget` is the amount it was a share of.
    """
    if not context.budget:
        return []
    skip = set(exclude)
    judged = {
        channel: numbers
        for channel, numbers in channel_figures(check).items()
        if channel in context.budget
        and channel not in skip
        and numbers["touches"] >= thresholds.min_channel_touches
    }
    metric = thresholds.reallocation_metric
    if metric != "roi":  # the check's KPI of each channel (ltv_cac)
        judged = {c: {**n, "roi": channel_kpi(check, metric, c)} for c, n in judged.items()}
    reasons = failing_channels(check, judged, thresholds)
    candidates = receivers(check, judged, context)
    if not candidates:
        return []
    best = max(candidates, key=lambda c: (candidates[c], c))
    floor = thresholds.plan_floor_share * sum(context.budget.values())
    order = sorted(reasons, key=lambda c: (_sort_low(judged[c]["roi"]), c))
    proposals = []
    for channel in order:
        roi = judged[channel]["roi"]
        if channel == best or (
            roi is not None
            and not improves(
                roi, candidates[best], lower_is_better=False, margin=thresholds.min_improvement
            )
        ):
            continue
        budget = float(context.budget[channel])
        share = reallocation_share(budget, floor, thresholds.reallocation_step)
        if share is None:
            continue
        proposals.append(
            _reallocation(
                channel,
                roi=roi,
                best=best,
                best_roi=candidates[best],
                budget=budget,
                share=share,
                floor=floor,
                reasons=reasons[channel],
                plan_period=context.plan_period,
                metric=metric,
            )
        )
    return proposals


def receivers(
    check: CheckResult, judged: Mapping[str, Mapping[str, Any]], context: ActContext
) -> dict[str, float]:
    """Channel → its figure (roi, or the metric standing in its place) among the channels
    that can take more: with a figure, not bound by capacity, within the risk ceiling."""
    return {
        c: n["roi"]
        for c, n in judged.items()
        if n["roi"] is not None
        and c not in context.at_capacity
        and not breaches_risk(check, c, context.spec.risk.max_overdue_rate_30)
    }


def channel_kpi(check: CheckResult, metric: str, channel: str) -> float | None:
    """The channel's actual of `metric` in the check's KPIs (None without one)."""
    kpi = find_kpi(check, metric, channel=channel)
    return None if kpi is None else finite_number(kpi.actual)


def breaches_risk(check: CheckResult, channel: str, ceiling: float) -> bool:
    """Whether the channel's overdue_rate_30 KPI is above the spec's ceiling."""
    kpi = find_kpi(check, "overdue_rate_30", channel=channel)
    actual = None if kpi is None else finite_number(kpi.actual)
    return actual is not None and actual > ceiling + EPSILON


def failing_channels(
    check: CheckResult, judged: Mapping[str, Mapping[str, Any]], thresholds: Thresholds
) -> dict[str, list[str]]:
    """Channel → why it fails (its roi or cac KPI off track or at risk, its CAC at least
    `cac_ratio` × the lowest of the judged channels); channels that do not fail are left out."""
    cacs = {c: n["cac"] for c, n in judged.items() if n["cac"] is not None and n["cac"] > 0}
    best_cac = min(cacs.items(), key=lambda item: item[1]) if cacs else None
    reasons: dict[str, list[str]] = {}
    for channel, numbers in judged.items():
        found = []
        for metric in (thresholds.reallocation_metric, "cac"):
            kpi = find_kpi(check, metric, channel=channel)
            if kpi is not None and kpi.off_track:
                found.append(kpi_text(kpi, f"{metric} of {channel}"))
        cac = numbers["cac"]
        if (
            best_cac is not None
            and channel != best_cac[0]
            and cac is not None
            and cac >= thresholds.cac_ratio * best_cac[1] - EPSILON
        ):
            found.append(
                f"cac of {channel} is {num(cac)}, {cac / best_cac[1]:.1f} × that of "
                f"{best_cac[0]} ({num(best_cac[1])}; the limit is {thresholds.cac_ratio:g} ×)"
            )
        if found:
            reasons[channel] = found
    return reasons


def _reallocation(
    channel: str,
    *,
    roi: float | None,
    best: str,
    best_roi: float,
    budget: float,
    share: float,
    floor: float,
    reasons: list[str],
    plan_period: str | None,
    metric: str = "roi",
) -> Proposal:
    """The proposal moving `share` of `channel`'s `budget` to `best`, with its evidence
    (`roi` and `best_roi` are the values of `metric`: roi or ltv_cac)."""
    amount = budget * share
    gain = ""
    if roi is not None and metric == "roi":
        gain = (
            f"; at this period's roi ({channel} {num(roi)}, {best} {num(best_roi)}) that is "
            f"about {num(amount * (best_roi - roi))} more net return"
        )
    elif roi is not None:
        gain = f"; at this period's {metric} ({channel} {num(roi)}, {best} {num(best_roi)})"
    return proposal(
        "reallocate_budget",
        {"channel": channel},
        {
            "from_channel": channel,
            "to_channel": best,
            "share": share,
            "from_budget": round(budget, 2),
        },
        "; ".join(reasons)
        + f". {best} has the best {metric}, {num(best_roi)}"
        + (f" (plan {plan_period})." if plan_period else "."),
        f"Moves {pct(share)} of {channel}'s budget ({num(amount)} of {num(budget)}) "
        f"to {best}{gain}; {channel} keeps at least its floor of {num(floor)}.",
    )


def reallocation_share(budget: float, floor: float, step: float) -> float | None:
    """The share of `budget` one step moves: `step`, cut so that at least `floor` stays,
    rounded down to 4 decimals; None when nothing can move (not even one float's worth)."""
    floor = max(floor, 0.0)
    if not (math.isfinite(budget) and budget > floor):
        return None
    room = 1.0 - floor / budget
    share = math.floor(min(step, room) * 10_000) / 10_000
    # a share of a vanishing budget can underflow to moving nothing at all
    return share if share > 0 and share * budget > 0 else None


def _sort_low(value: float | None) -> float:
    return math.inf if value is None else value
