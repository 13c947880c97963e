"""Act: the adjustment proposals that follow from a check result, one rule per action type.

The rules are plain functions over the check result (the dict `flows.check` stores), the
campaign's earlier check results and an `ActContext` with what a check does not carry
(the spec, the plan's budget, the send windows' response figures, the loans' risk
attributes). No rule reads settings, Prefect or a database: the thresholds arrive as a
`Thresholds` built once by the caller (`Thresholds.from_settings`), so a test can judge
any case by hand. Only `gather_context` reads the database.

Each type is proposed when — and only when — its trigger is present:

- `hold`: the check's data are untrusted (`trusted` is not True). Nothing else is
  proposed: every other rule would act on numbers nobody can vouch for.
- `retire_channel`: a channel's ROI is below `roi_floor` in this and the previous
  `retire_after_periods − 1` trusted check results running. One bad period is noise; a
  run of them is the channel.
- `reallocate_budget`: a channel whose ROI or CAC is `off_track`/`at_risk` against the
  plan, or whose CAC is ≥ `cac_ratio` × the best channel's, gives `reallocation_step` of
  its budget to the channel with the best ROI: bounded steps, because one period's ROI
  is an estimate, and never below the plan's floor share, which keeps every channel
  measured.
- `tighten_admission`: overdue_rate_30 above the spec's `max_overdue_rate_30` at a scope
  raises that scope's score floor or tightens its debt-ratio cap by one step — whichever
  would have kept out more of the scope's overdue loans (see `admission_lever`).
- `shift_window`: a send window that responds significantly worse than the best one
  (two-proportion z-test, Holm-adjusted across windows) moves toward it by up to
  `window_shift_minutes`, never into the quiet hours or another window.
- `promote_variant`: a variant-against-variant comparison (not the hold-out) decided
  `treatment_wins` or `control_wins`: the winner becomes the default, the loser retires.
- `revise_targeting`: the bottleneck is the approval stage: the campaign persuades people
  who do not qualify, which is a question of whom it contacts, not of the message.

Every proposal is a JSON-ready dict: type, scope, params (what the next plan or dispatch
applies), rationale (the evidence: metric, value, target or baseline, test result),
expected_impact (a sentence with a number) and status `proposed`. The params by type:

- hold: {} (scope {}).
- retire_channel: {channel} (scope {channel}) — `tasks.plan.plan.approved_adjustments` → retire.
- reallocate_budget: {from_channel, to_channel, share, from_budget} (scope {channel: the
  from-channel}) — approved_adjustments → a shift of `share` of the from-channel's previous
  amount; `from_budget` is only the amount the share was taken of, for people.
- tighten_admission: {min_credit_score: new} or {max_debt_ratio: new}, at the scope {},
  {channel} or {segment} it applies to — for dispatch's audience rules.
- shift_window: {window, from, to} ('HH:MM-HH:MM', scope {window}) — dispatch sends the
  named window at `to` instead of the spec's range.
- promote_variant: {winner, loser} (scope {}) — dispatch assigns the loser's share to the
  winner, which becomes the default.
- revise_targeting: {segments, channels, reject_reasons} (scope {}) — lists, lowest
  approval first; dispatch can leave out or deprioritise the segments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Connection, select

from pdca.errors import UserError
from pdca.models import Budget, Plan
from tasks.check.experiments import HOLDOUT, holm, z_test_p_value
from tasks.check.findings import finite_number
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

ACTION_TYPES = (
    "hold",
    "retire_channel",
    "reallocate_budget",
    "tighten_admission",
    "shift_window",
    "promote_variant",
    "revise_targeting",
)
"""Every type `propose` emits, in the order it lists them."""

EPSILON = 1e-9
MAX_CREDIT_SCORE = 900
"""The contract's credit_score range ends here: no floor can go higher."""
MINUTES_PER_DAY = 24 * 60
TOP = 3
"""How many segments, channels and reject reasons revise_targeting names."""
FAILING = ("off_track", "at_risk")
"""KPI statuses that count as a channel failing its plan."""
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
        )


@dataclass(frozen=True)
class ActContext:
    """What the rules need beyond the check result."""

    spec: CampaignSpec
    budget: dict[str, float] = field(default_factory=dict)
    """Channel → amount in the current plan of the period (or the plan containing it);
    empty without a plan, and then no budget can be moved."""
    windows: list[dict[str, Any]] = field(default_factory=list)
    """Per send window in force: window, range ('HH:MM-HH:MM'), touches, delivered,
    responded, response_rate (None without deliveries) — `response_by_window`."""
    loans: pd.DataFrame | None = None
    """The campaign's loans with borrower risk attributes (`LOAN_COLUMNS`); None when not
    gathered: tighten_admission then judges by the rate alone and raises the score floor."""
    admission: dict[str, dict[str, float]] = field(default_factory=dict)
    """Scope key (`scope_key`) → the strictest approved {min_credit_score, max_debt_ratio}
    of earlier tighten_admission actions: the next step starts from there."""
    plan_period: str | None = None
    """The period of the plan `budget` comes from."""


# --- the rules ----------------------------------------------------------------------------


def propose(
    check: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    context: ActContext,
    thresholds: Thresholds,
) -> list[dict[str, Any]]:
    """Every proposal the check result supports, `hold` alone when its data are untrusted.

    `history`: the campaign's earlier check results, newest first (the run rules read the
    first `retire_after_periods − 1`). Order of the result: `ACTION_TYPES`.
    """
    if check.get("trusted") is not True:
        return [hold_proposal(check)]
    retiring = retire_channel_proposals(check, history, context, thresholds)
    retired = {item["params"]["channel"] for item in retiring}
    return [
        *retiring,
        *reallocate_budget_proposals(check, context, thresholds, exclude=retired),
        *tighten_admission_proposals(check, context, thresholds),
        *shift_window_proposals(context, thresholds),
        *promote_variant_proposals(check, context, thresholds),
        *revise_targeting_proposals(check, thresholds),
    ]


def hold_proposal(check: Mapping[str, Any]) -> dict[str, Any]:
    """No change: the period's data failed their checks, so any adjustment would be
    built on numbers that may be wrong. The rationale names what failed."""
    failures = failed_checks(check)
    where = f"{check.get('campaign', 'the campaign')} {check.get('period', '')}".strip()
    named = "; ".join(failures) if failures else "the check's data-quality verdict is missing"
    return _proposal(
        "hold",
        {},
        {},
        f"Data quality failed for {where}: {named}. No adjustment is proposed on untrusted "
        "numbers.",
        f"No change: 0 adjustments until the {len(failures) or 1} failed "
        f"check{'s pass' if len(failures) > 1 else ' passes'} and the period is checked again.",
    )


def failed_checks(check: Mapping[str, Any]) -> list[str]:
    """The failed suites (with their failed expectations) and quarantine shares."""
    quality = check.get("data_quality") or {}
    found = []
    for suite in quality.get("suites") or []:
        if not suite.get("success", True):
            failed = ", ".join(str(name) for name in suite.get("failed") or [])
            found.append(f"suite {suite.get('name')}" + (f" ({failed})" if failed else ""))
    for entry in quality.get("quarantine") or []:
        if not entry.get("success", True):
            share, limit = finite_number(entry.get("share")), finite_number(entry.get("max_share"))
            found.append(
                f"quarantine of {entry.get('feed')}: {entry.get('rows_quarantined')} of "
                f"{entry.get('rows_in')} rows ({_pct(share)} > {_pct(limit)})"
            )
    return found


def retire_channel_proposals(
    check: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    context: ActContext,
    thresholds: Thresholds,
) -> list[dict[str, Any]]:
    """Channels whose ROI stayed below the floor `retire_after_periods` periods running.

    A period counts only when its check was trusted and the channel had at least
    `min_channel_touches` touches (a missing, untrusted or thin period breaks the run:
    retiring is the most drastic step, so it needs an unbroken record). The campaign keeps
    at least one channel: when every channel qualifies, the one with the best ROI now stays.
    """
    runs = thresholds.retire_after_periods
    earlier = list(history[: runs - 1])
    if len(earlier) < runs - 1:
        return []
    now = channel_figures(check)
    found: dict[str, list[tuple[str, float]]] = {}
    for channel in context.spec.channels:
        record = []
        for result in [check, *earlier]:
            roi = _judged_roi(result, channel, thresholds)
            if roi is None or roi >= thresholds.roi_floor:
                break
            record.append((str(result.get("period", "?")), roi))
        if len(record) == runs:
            found[channel] = record
    active = [
        c for c in context.spec.channels if not context.budget or context.budget.get(c, 0) > 0
    ]
    if found and set(active) <= set(found):
        keep = max(found, key=lambda c: found[c][0][1])
        del found[keep]
    proposals = []
    for channel, record in found.items():
        roi = record[0][1]
        history_text = ", ".join(f"{_num(value)} in {period}" for period, value in record)
        budget = context.budget.get(channel)
        if budget:
            loss = budget * -roi if roi < 0 else None
            impact = (
                f"Frees {_num(budget)} of {channel}'s budget a plan period, which returned "
                f"{_num(roi)} per unit spent"
                + (f": about {_num(loss)} of losses avoided." if loss else ".")
            )
        else:
            impact = (
                f"Stops {channel}'s spend of {_num(now[channel]['cost'])} a period that "
                f"returned {_num(roi)} per unit spent."
            )
        proposals.append(
            _proposal(
                "retire_channel",
                {"channel": channel},
                {"channel": channel},
                f"roi of {channel} was {history_text}: below the floor of "
                f"{_num(thresholds.roi_floor)} {runs} period{'s' if runs > 1 else ''} running.",
                impact,
            )
        )
    return proposals


def reallocate_budget_proposals(
    check: Mapping[str, Any],
    context: ActContext,
    thresholds: Thresholds,
    *,
    exclude: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """One bounded step of budget from each failing channel to the best-ROI channel.

    A channel fails when its roi or cac KPI is `off_track`/`at_risk` against the plan's
    target, or its CAC is ≥ `cac_ratio` × the lowest CAC of the campaign's channels. Only
    channels with `min_channel_touches` touches are judged or chosen, and only channels of
    the plan's budget (without a plan there is nothing to move). The best channel is the
    one with the highest ROI among those not failing; a failing channel whose ROI is at
    least as high gives nothing (its CAC is high, but so is what it earns). The step is
    `reallocation_step` of the failing channel's budget, cut so that it keeps
    `plan_floor_share` of the plan's total; none when it is at its floor already.

    Params: {from_channel, to_channel, share, from_budget}: `share` of from_channel's
    budget moves (what `tasks.plan.plan.approved_adjustments` applies to the next plan's
    rescaled previous split; a share, not an amount, so that a plan period of another
    length moves the same proportion); `from_budget` is the amount it was a share of.
    """
    if not context.budget:
        return []
    skip = set(exclude)
    figures = channel_figures(check)
    judged = {
        channel: numbers
        for channel, numbers in figures.items()
        if channel in context.budget
        and channel not in skip
        and numbers["touches"] >= thresholds.min_channel_touches
    }
    cacs = {c: n["cac"] for c, n in judged.items() if n["cac"] is not None and n["cac"] > 0}
    best_cac = min(cacs.items(), key=lambda item: item[1]) if cacs else None
    reasons: dict[str, list[str]] = {}
    for channel, numbers in judged.items():
        found = []
        for metric in ("roi", "cac"):
            kpi = find_kpi(check, metric, channel=channel)
            if kpi is not None and kpi.get("status") in FAILING:
                found.append(_kpi_text(kpi, f"{metric} of {channel}"))
        cac = numbers["cac"]
        if (
            best_cac is not None
            and channel != best_cac[0]
            and cac is not None
            and cac >= thresholds.cac_ratio * best_cac[1] - EPSILON
        ):
            found.append(
                f"cac of {channel} is {_num(cac)}, {cac / best_cac[1]:.1f} × that of "
                f"{best_cac[0]} ({_num(best_cac[1])}; the limit is {thresholds.cac_ratio:g} ×)"
            )
        if found:
            reasons[channel] = found
    candidates = {
        c: n["roi"] for c, n in judged.items() if c not in reasons and n["roi"] is not None
    }
    if not candidates:
        return []
    best = max(candidates, key=lambda c: (candidates[c], c))
    best_roi = candidates[best]
    total = sum(context.budget.values())
    floor = thresholds.plan_floor_share * total
    order = sorted(reasons, key=lambda c: (_sort_low(judged[c]["roi"]), c))
    proposals = []
    for channel in order:
        roi = judged[channel]["roi"]
        if roi is not None and roi >= best_roi:
            continue
        budget = float(context.budget[channel])
        share = reallocation_share(budget, floor, thresholds.reallocation_step)
        if share is None:
            continue
        amount = budget * share
        gain = (
            f"; at this period's roi ({channel} {_num(roi)}, {best} {_num(best_roi)}) that is "
            f"about {_num(amount * (best_roi - roi))} more net return"
            if roi is not None
            else ""
        )
        proposals.append(
            _proposal(
                "reallocate_budget",
                {"channel": channel},
                {
                    "from_channel": channel,
                    "to_channel": best,
                    "share": share,
                    "from_budget": round(budget, 2),
                },
                "; ".join(reasons[channel])
                + f". {best} has the best roi, {_num(best_roi)}"
                + (f" (plan {context.plan_period})." if context.plan_period else "."),
                f"Moves {_pct(share)} of {channel}'s budget ({_num(amount)} of {_num(budget)}) "
                f"to {best}{gain}; {channel} keeps at least its floor of {_num(floor)}.",
            )
        )
    return proposals


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


def tighten_admission_proposals(
    check: Mapping[str, Any], context: ActContext, thresholds: Thresholds
) -> list[dict[str, Any]]:
    """One admission step at each scope whose overdue_rate_30 breaches the spec's ceiling.

    Scopes are the check's KPI scopes. Channel and segment breaches are answered at their
    own scope, which keeps out the risky part without turning good customers away
    elsewhere; the campaign scope only when no narrower scope breaches (the excess is
    spread across all of them). With loan data in the context, a scope needs
    `min_seasoned_loans` seasoned loans, else its rate is too thin to act on.
    """
    ceiling = context.spec.risk.max_overdue_rate_30
    breaches = [
        kpi
        for kpi in check.get("kpis") or []
        if kpi.get("metric") == "overdue_rate_30"
        and finite_number(kpi.get("actual")) is not None
        and kpi["actual"] > ceiling + EPSILON
    ]
    narrow = [kpi for kpi in breaches if _scope(kpi)]
    chosen = narrow or [kpi for kpi in breaches if not _scope(kpi)]
    proposals = []
    for kpi in chosen:
        scope = _scope(kpi)
        loans = scope_loans(context.loans, scope)
        if loans is not None and len(loans) < thresholds.min_seasoned_loans:
            continue
        floor, cap = admission_in_force(context, scope)
        choice = admission_lever(loans, floor, cap, thresholds)
        if choice is None:
            continue
        proposals.append(_admission_proposal(kpi, scope, loans, ceiling, floor, cap, choice))
    return proposals


def admission_lever(
    loans: pd.DataFrame | None, floor: int, cap: float, thresholds: Thresholds
) -> dict[str, Any] | None:
    """Raise the score floor or tighten the debt-ratio cap: which one, and what it does.

    Each lever's step is tried on the scope's seasoned loans: those it would have kept
    out (score below the new floor; debt ratio above the new cap; an unknown value keeps
    nobody out) and the overdue_rate_30 of the rest. The informative lever is the one
    that leaves the lowest rate (ties: the one that turns away fewer loans, then the score
    floor). When neither step would have kept out any loan, or there are no loan data,
    the data cannot tell them apart and the score floor — the spec's primary admission
    rule, which dispatch applies to every customer — is raised. A lever at its limit
    (score 900, cap at or below one step) is not available; with neither, None.

    Returns lever ('min_credit_score' or 'max_debt_ratio'), value (the new one), and
    when judged on loans: excluded, excluded_overdue, rate_before, rate_after.
    """
    options = []
    if floor + thresholds.score_floor_step <= MAX_CREDIT_SCORE:
        options.append(("min_credit_score", floor + thresholds.score_floor_step))
    if cap - thresholds.debt_ratio_step > EPSILON:
        options.append(("max_debt_ratio", round(cap - thresholds.debt_ratio_step, 4)))
    if not options:
        return None
    judged = []
    if loans is not None and len(loans):
        overdue = loans["is_overdue"].astype(float)
        for rank, (lever, value) in enumerate(options):
            column = pd.to_numeric(loans[lever.removeprefix("min_").removeprefix("max_")])
            out = (column < value) if lever == "min_credit_score" else (column > value + EPSILON)
            out = out.fillna(False).astype(bool)
            kept = len(loans) - int(out.sum())
            if not out.any() or kept == 0:
                continue
            after = float(overdue[~out].sum()) / kept
            judged.append(
                (
                    after,
                    int(out.sum()),
                    rank,
                    {
                        "lever": lever,
                        "value": value,
                        "excluded": int(out.sum()),
                        "excluded_overdue": int(overdue[out].sum()),
                        "loans": len(loans),
                        "rate_before": float(overdue.mean()),
                        "rate_after": after,
                    },
                )
            )
    if judged:
        return min(judged, key=lambda item: item[:3])[3]
    lever, value = options[0]
    return {"lever": lever, "value": value}


def shift_window_proposals(context: ActContext, thresholds: Thresholds) -> list[dict[str, Any]]:
    """Move each window that responds significantly worse than the best one toward it.

    Windows with at least `window_min_touches` delivered touches are compared: the best
    response_rate against each lower one with the pooled two-proportion z-test
    (`tasks.check.experiments.z_test_p_value`), Holm-adjusted across the comparisons, at
    `alpha`. A significantly worse window moves toward the best window (earlier when the
    best opens earlier in the day, else later) by up to `window_shift_minutes` — a step,
    because the hours next to a window have no figures of their own — as far as it can
    without leaving the day or overlapping the quiet hours or another window; a window
    with no room to move gets no proposal.

    Params: {window, from, to}: the window's range in force and its new range.
    """
    figures = [
        w
        for w in context.windows
        if (finite_number(w.get("delivered")) or 0) >= thresholds.window_min_touches
        and w.get("range")
    ]
    if len(figures) < 2:
        return []
    best = max(figures, key=lambda w: (w["responded"] / w["delivered"], -figures.index(w)))
    best_rate = best["responded"] / best["delivered"]
    worse = [w for w in figures if w is not best and w["responded"] / w["delivered"] < best_rate]
    raw = [
        z_test_p_value(
            int(w["responded"]), int(w["delivered"]), int(best["responded"]), int(best["delivered"])
        )
        for w in worse
    ]
    adjusted = holm(raw)
    ranges = {
        str(w["window"]): TimeRange.parse(str(w["range"]))
        for w in context.windows
        if w.get("range")
    }
    best_range = ranges[str(best["window"])]
    proposals = []
    for window, p_value in zip(worse, adjusted, strict=True):
        if p_value is None or p_value >= thresholds.alpha:
            continue
        name = str(window["window"])
        current = ranges[name]
        direction = -1 if _minutes(best_range.start) < _minutes(current.start) else 1
        blocked = [context.spec.contact_policy.quiet_hours]
        blocked += [r for other, r in ranges.items() if other != name]
        moved = shifted_range(current, direction * thresholds.window_shift_minutes, blocked)
        if moved is None:
            continue
        minutes = abs(_minutes(moved.start) - _minutes(current.start))
        length = _minutes(current.end) - _minutes(current.start)
        rate = window["responded"] / window["delivered"]
        gain = (best_rate - rate) * window["delivered"]
        proposals.append(
            _proposal(
                "shift_window",
                {"window": name},
                {"window": name, "from": str(current), "to": str(moved)},
                f"response_rate of the {name} window ({current}) is {_pct(rate)} "
                f"({int(window['responded'])} of {int(window['delivered'])} delivered) against "
                f"{_pct(best_rate)} in {best['window']} ({best_range}; "
                f"{int(best['responded'])} of {int(best['delivered'])}): two-proportion "
                f"z-test, Holm-adjusted {_p(p_value)}, below alpha {thresholds.alpha:g}.",
                f"Moves {name} {minutes} minutes {'earlier' if direction < 0 else 'later'}, "
                f"toward {best['window']}: if the {minutes} of its {length} minutes moved "
                f"responded like {best['window']}, about {gain * minutes / length:,.0f} more "
                f"responses a period (up to {gain:,.0f} were all of it to).",
            )
        )
    return proposals


def shifted_range(
    current: TimeRange, minutes: int, blocked: Sequence[TimeRange]
) -> TimeRange | None:
    """`current` moved by up to |minutes| (later when positive), as far as it can go
    within one day without overlapping any of `blocked`; None when it cannot move."""
    start, end = _minutes(current.start), _minutes(current.end)
    sign = 1 if minutes > 0 else -1
    for step in range(abs(minutes), 0, -1):
        new_start, new_end = start + sign * step, end + sign * step
        if new_start < 0 or new_end > MINUTES_PER_DAY - 1:
            continue
        candidate = TimeRange(_clock(new_start), _clock(new_end))
        if not any(candidate.overlaps(other) for other in blocked):
            return candidate
    return None


def promote_variant_proposals(
    check: Mapping[str, Any], context: ActContext, thresholds: Thresholds
) -> list[dict[str, Any]]:
    """The winner of each decided variant-against-variant comparison becomes the default.

    Comparisons against the hold-out say whether the campaign works at all, not which
    message to send, and srm_invalid, insufficient_sample and no_difference decide
    nothing. Params: {winner, loser}: dispatch assigns the loser's share to the winner.
    """
    proposals = []
    for test in check.get("experiments") or []:
        control, treatment = test.get("control"), test.get("treatment")
        decision = test.get("decision")
        if HOLDOUT in (control, treatment) or decision not in ("treatment_wins", "control_wins"):
            continue
        winner, loser = (
            (treatment, control) if decision == "treatment_wins" else (control, treatment)
        )
        rates = {control: test.get("control_rate"), treatment: test.get("treatment_rate")}
        sizes = {control: test.get("control_n"), treatment: test.get("treatment_n")}
        lift = finite_number(test.get("lift"))
        gain = abs(lift) if lift is not None else None
        metric = test.get("metric", "application_rate")
        interval = (
            f", {100 * (1 - thresholds.alpha):.0f} % CI of the lift [{_pp(test.get('ci_low'))}, "
            f"{_pp(test.get('ci_high'))}]"
            if test.get("ci_low") is not None and test.get("ci_high") is not None
            else ""
        )
        share = context.spec.experiment.variants.get(str(loser))
        share_text = f" ({_pct(share)} of the audience)" if share is not None else ""
        impact = (
            f"The loser's members{share_text} get {winner}'s message: at the measured lift of "
            f"{_pp(gain)}, about {gain * (sizes[loser] or 0):,.0f} more customers with the "
            f"outcome a period (on {loser}'s {sizes[loser] or 0:,} members)."
            if gain is not None
            else f"{loser} retires and {winner} becomes the default{share_text}."
        )
        proposals.append(
            _proposal(
                "promote_variant",
                {},
                {"winner": winner, "loser": loser},
                f"{metric} of {winner} is {_pct(rates[winner])} (n = {sizes[winner]}) against "
                f"{_pct(rates[loser])} for {loser} (n = {sizes[loser]}): lift of {treatment} "
                f"over {control} {_pp(lift)}{interval}, Holm-adjusted "
                f"{_p(test.get('p_value_adjusted', test.get('p_value')))} ({decision}).",
                impact,
            )
        )
    return proposals


def revise_targeting_proposals(
    check: Mapping[str, Any], thresholds: Thresholds
) -> list[dict[str, Any]]:
    """When approval is the bottleneck, name whom to stop or rethink targeting.

    Params: {segments, channels, reject_reasons}: the up to `TOP` segments and channels
    with the lowest approval_rate below the campaign's (each with at least
    `targeting_min_applications` applications, lowest first), and the top reject reasons
    of the period. Dispatch can leave out (or deprioritise) the segments; the reasons say
    which admission rule the audience misses.
    """
    stage = check.get("bottleneck") or {}
    if stage.get("stage") != "approval":
        return []
    rows = check.get("funnel") or []
    applications = sum(finite_number(r.get("applications")) or 0 for r in rows)
    approved = sum(finite_number(r.get("approved")) or 0 for r in rows)
    overall = approved / applications if applications else None
    low = {
        key: lowest_approval(rows, key, overall, thresholds.targeting_min_applications)
        for key in ("segment", "channel")
    }
    reasons = [
        r for r in check.get("reject_reasons") or [] if r.get("channel") is None and r.get("reason")
    ][:TOP]
    evidence = [
        f"approval is the funnel's bottleneck: {stage.get('metric', 'approval_rate')} is "
        f"{_pct(stage.get('actual'))} against its {stage.get('reference_kind', 'reference')} "
        f"of {_pct(stage.get('reference'))} ({_signed_pct(stage.get('gap_pct'))})"
    ]
    for key in ("segment", "channel"):
        if low[key]:
            evidence.append(
                f"lowest approval_rate by {key}: "
                + ", ".join(
                    f"{item['name']} {_pct(item['rate'])} ({item['approved']:,} of "
                    f"{item['applications']:,})"
                    for item in low[key]
                )
            )
    if reasons:
        evidence.append(
            "top reject reasons: "
            + ", ".join(f"{r['reason']} ({_pct(finite_number(r.get('share')))})" for r in reasons)
        )
    if low["segment"]:
        names = [item["name"] for item in low["segment"]]
        out_apps = sum(item["applications"] for item in low["segment"])
        out_approved = sum(item["approved"] for item in low["segment"])
        rest = applications - out_apps
        after = (approved - out_approved) / rest if rest else None
        impact = (
            f"Without segment{'s' if len(names) > 1 else ''} {', '.join(names)} "
            f"({out_apps:,.0f} applications) the approval_rate would have been {_pct(after)} "
            f"instead of {_pct(overall)}."
        )
    else:
        rejected = applications - approved
        impact = (
            f"{rejected:,.0f} of the period's {applications:,.0f} applications were rejected: "
            "targeting those who qualify saves their contact and processing cost."
        )
    return [
        _proposal(
            "revise_targeting",
            {},
            {
                "segments": [item["name"] for item in low["segment"]],
                "channels": [item["name"] for item in low["channel"]],
                "reject_reasons": [str(r["reason"]) for r in reasons],
            },
            "; ".join(evidence) + ".",
            impact,
        )
    ]


def lowest_approval(
    rows: Sequence[Mapping[str, Any]], key: str, overall: float | None, min_applications: int
) -> list[dict[str, Any]]:
    """The up to `TOP` values of `key` with the lowest approval_rate below `overall`, each
    with at least `min_applications` applications: name, applications, approved, rate."""
    if overall is None:
        return []
    sums: dict[str, list[float]] = {}
    for row in rows:
        name = row.get(key)
        if name is None:
            continue
        pair = sums.setdefault(str(name), [0.0, 0.0])
        pair[0] += finite_number(row.get("applications")) or 0
        pair[1] += finite_number(row.get("approved")) or 0
    found = [
        {"name": name, "applications": int(apps), "approved": int(ok), "rate": ok / apps}
        for name, (apps, ok) in sums.items()
        if apps >= min_applications and ok / apps < overall - EPSILON
    ]
    return sorted(found, key=lambda item: (item["rate"], item["name"]))[:TOP]


# --- evidence from the check result ---------------------------------------------------


def channel_figures(check: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per channel: the funnel's touches, cost, disbursements, net_interest and
    expected_loss summed over segments and variants, with roi and cac (None where the
    denominator is 0), by the contract's definitions."""
    sums: dict[str, dict[str, Any]] = {}
    counts = ("touches", "cost", "disbursements", "net_interest", "expected_loss")
    for row in check.get("funnel") or []:
        channel = row.get("channel")
        if channel is None:
            continue
        numbers = sums.setdefault(str(channel), dict.fromkeys(counts, 0.0))
        for name in counts:
            numbers[name] += finite_number(row.get(name)) or 0.0
    for numbers in sums.values():
        cost = numbers["cost"]
        net = numbers["net_interest"] - cost - numbers["expected_loss"]
        numbers["roi"] = net / cost if cost > 0 else None
        numbers["cac"] = cost / numbers["disbursements"] if numbers["disbursements"] > 0 else None
    return sums


def find_kpi(
    check: Mapping[str, Any], metric: str, *, channel: str | None = None, segment: str | None = None
) -> dict[str, Any] | None:
    """The check's KPI row of `metric` at exactly that scope, if any."""
    for kpi in check.get("kpis") or []:
        scope = kpi.get("scope") or {}
        if (
            kpi.get("metric") == metric
            and scope.get("channel") == channel
            and scope.get("segment") == segment
        ):
            return kpi
    return None


def _judged_roi(check: Mapping[str, Any], channel: str, thresholds: Thresholds) -> float | None:
    """A channel's ROI in a trusted check with enough touches to judge it; else None."""
    if check.get("trusted") is not True:
        return None
    numbers = channel_figures(check).get(channel)
    if numbers is None or numbers["touches"] < thresholds.min_channel_touches:
        return None
    return numbers["roi"]


# --- admission ----------------------------------------------------------------------------


def admission_in_force(context: ActContext, scope: Mapping[str, Any]) -> tuple[int, float]:
    """The score floor and debt-ratio cap that apply to `scope`: the spec's, tightened by
    the approved earlier steps at the campaign's and at this scope."""
    floor = context.spec.risk.min_credit_score
    cap = context.spec.risk.max_debt_ratio
    for key in dict.fromkeys(("campaign", scope_key(scope))):
        rules = context.admission.get(key, {})
        if rules.get("min_credit_score") is not None:
            floor = max(floor, int(rules["min_credit_score"]))
        if rules.get("max_debt_ratio") is not None:
            cap = min(cap, float(rules["max_debt_ratio"]))
    return floor, cap


def scope_loans(loans: pd.DataFrame | None, scope: Mapping[str, Any]) -> pd.DataFrame | None:
    """The seasoned loans of `scope` (None stays None: no loan data)."""
    if loans is None:
        return None
    mask = pd.to_numeric(loans["is_seasoned"]).fillna(0).astype(bool)
    for key, value in scope.items():
        mask &= loans[key] == value
    return loans[mask]


def _admission_proposal(
    kpi: Mapping[str, Any],
    scope: dict[str, Any],
    loans: pd.DataFrame | None,
    ceiling: float,
    floor: int,
    cap: float,
    choice: Mapping[str, Any],
) -> dict[str, Any]:
    where = " ".join(f"{key} {value}" for key, value in scope.items()) or "the campaign"
    actual = float(kpi["actual"])
    counts = ""
    if loans is not None:
        counts = f" ({int(loans['is_overdue'].sum())} of {len(loans)} seasoned loans)"
    lever, value = choice["lever"], choice["value"]
    old = floor if lever == "min_credit_score" else cap
    change = (
        f"{'raises' if lever == 'min_credit_score' else 'lowers'} {lever} from {old:g} to {value:g}"
    )
    if "rate_after" in choice:
        impact = (
            f"Had {lever} been {value:g}, {choice['excluded']} of the {choice['loans']} "
            f"seasoned loans ({choice['excluded_overdue']} of them overdue) would not have been "
            f"made: overdue_rate_30 {_pct(choice['rate_before'])} → {_pct(choice['rate_after'])}."
        )
    else:
        impact = (
            f"{change[0].upper()}{change[1:]} for {where}: a first step on the gap of "
            f"{_pp(actual - ceiling)} to the ceiling (no loan data tells the levers apart)."
        )
    return _proposal(
        "tighten_admission",
        scope,
        {lever: value},
        f"overdue_rate_30 of {where} is {_pct(actual)}{counts} against the spec's ceiling of "
        f"{_pct(ceiling)} ({_signed_pct(actual / ceiling - 1)}); the step {change}.",
        impact,
    )


# --- the database ---------------------------------------------------------------------


def gather_context(
    conn: Connection, spec: CampaignSpec, period: Period | str, *, attribution_days: int = 14
) -> ActContext:
    """Everything the rules need beyond the check result, for the campaign's `period`."""
    period = Period.parse(period) if isinstance(period, str) else period
    plan_period, budget = current_budget(conn, spec.id, period)
    approved = approved_actions(conn, spec.id, except_period=str(period))
    ranges = windows_in_force(spec, approved)
    return ActContext(
        spec=spec,
        budget=budget,
        windows=response_by_window(conn, spec, period, ranges),
        loans=loan_risk(conn, spec, period, attribution_days=attribution_days),
        admission=admission_from_actions(approved),
        plan_period=plan_period,
    )


def current_budget(
    conn: Connection, campaign_id: str, period: Period
) -> tuple[str | None, dict[str, float]]:
    """(plan period, channel → amount) of the current plan of exactly `period`, else of
    the shortest planned period containing it (amounts as planned, not pro-rated: shares
    of them are what the rules move); (None, {}) without a plan."""
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
        return None, {}
    _, _, name, plan_id = min(containing)
    rows = conn.execute(select(Budget.channel, Budget.amount).where(Budget.plan_id == plan_id))
    return name, {str(channel): float(amount) for channel, amount in rows}


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


# --- wording ------------------------------------------------------------------------------


def _proposal(
    kind: str, scope: dict[str, Any], params: dict[str, Any], rationale: str, impact: str
) -> dict[str, Any]:
    return {
        "type": kind,
        "scope": scope,
        "params": params,
        "rationale": rationale,
        "expected_impact": impact,
        "status": "proposed",
    }


def _kpi_text(kpi: Mapping[str, Any], label: str) -> str:
    """'cac of sms is 412.50 against a target of 300.00 (off_track, +37.5 %)'."""
    return (
        f"{label} is {_num(kpi.get('actual'))} against a target of {_num(kpi.get('target'))} "
        f"({kpi.get('status')}, {_signed_pct(kpi.get('variance_pct'))})"
    )


def _scope(kpi: Mapping[str, Any]) -> dict[str, Any]:
    """A KPI's scope without its None entries ({} for the campaign)."""
    return {key: value for key, value in (kpi.get("scope") or {}).items() if value is not None}


def _sort_low(value: float | None) -> float:
    return math.inf if value is None else value


def _num(value: Any) -> str:
    number = finite_number(value)
    return "n/a" if number is None else f"{number:,.2f}"


def _pct(value: Any) -> str:
    number = finite_number(value)
    return "n/a" if number is None else f"{100 * number:.1f} %"


def _signed_pct(value: Any) -> str:
    number = finite_number(value)
    return "n/a" if number is None else f"{100 * number:+.1f} %"


def _pp(value: Any) -> str:
    number = finite_number(value)
    return "n/a" if number is None else f"{100 * number:+.2f} pp"


def _p(value: Any) -> str:
    """'p = 0.0123', 'p < 0.001' or 'p n/a'."""
    number = finite_number(value)
    if number is None:
        return "p n/a"
    return f"p = {number:.3g}" if number >= 0.001 else "p < 0.001"


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def _clock(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)
