"""`tighten_admission`: overdue_rate_30 above the spec's ceiling at a scope raises that
scope's score floor or tightens its debt-ratio cap by one step, whichever would have kept
out more of the scope's overdue loans (`admission_lever`), and only when that step
improves the rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from tasks.act.proposals.context import EPSILON, ActContext, Thresholds, improves
from tasks.act.proposals.text import pct, pp, proposal, signed_pct
from tasks.act.types import Proposal
from tasks.check.findings import finite_number
from tasks.check.result import CheckResult, Kpi
from tasks.common.rules import scope_key
from tasks.common.scopes import format_scope, scope_without_gaps

MAX_CREDIT_SCORE = 900
"""The contract's credit_score range ends here: no floor can go higher."""


def tighten_admission_proposals(
    check: CheckResult, context: ActContext, thresholds: Thresholds
) -> list[Proposal]:
    """One admission step at each scope whose overdue_rate_30 breaches the spec's ceiling.

    Scopes are the check's KPI scopes. Channel and segment breaches are answered at their
    own scope, which keeps out the risky part without turning good customers away
    elsewhere; the campaign scope only when no narrower scope breaches (the excess is
    spread across all of them). With loan data in the context, the step starts from the
    rules in force now and is judged on the scope's seasoned loans those rules admit: it
    needs `min_seasoned_loans` of them (else the rate is too thin to act on), their rate
    must still breach the ceiling (else the approved rules answer it already), and the
    step must improve it by `min_improvement` (`admission_lever`).
    """
    ceiling = context.spec.risk.max_overdue_rate_30
    breaches = [
        kpi
        for kpi in check.kpis
        if kpi.metric == "overdue_rate_30"
        and finite_number(kpi.actual) is not None
        and kpi.actual > ceiling + EPSILON
    ]
    narrow = [kpi for kpi in breaches if scope_without_gaps(kpi.scope)]
    chosen = narrow or [kpi for kpi in breaches if not scope_without_gaps(kpi.scope)]
    proposals = []
    for kpi in chosen:
        scope = scope_without_gaps(kpi.scope)
        floor, cap = admission_in_force(context, scope)
        loans = scope_loans(context.loans, scope)
        admitted = None if loans is None else admitted_loans(loans, floor, cap)
        if admitted is not None and (
            len(admitted) < thresholds.min_seasoned_loans
            or admitted["is_overdue"].mean() <= ceiling + EPSILON
        ):
            continue
        choice = admission_lever(admitted, floor, cap, thresholds)
        if choice is None:
            continue
        proposals.append(
            admission_proposal(kpi, scope, loans, admitted, ceiling, floor, cap, choice)
        )
    return proposals


def admitted_loans(loans: pd.DataFrame, floor: int, cap: float) -> pd.DataFrame:
    """The loans a score floor and a debt-ratio cap would have let in (an unknown value
    keeps nobody out): what the rules in force now would have made of the evidence."""
    score = pd.to_numeric(loans["credit_score"])
    ratio = pd.to_numeric(loans["debt_ratio"])
    out = (score < floor).fillna(False) | (ratio > cap + EPSILON).fillna(False)
    return loans[~out.astype(bool)]


def admission_lever(
    loans: pd.DataFrame | None, floor: int, cap: float, thresholds: Thresholds
) -> dict[str, Any] | None:
    """Raise the score floor or tighten the debt-ratio cap: which one, and what it does.

    Each lever's step is tried on the scope's seasoned loans: those it would have kept
    out (score below the new floor; debt ratio above the new cap; an unknown value keeps
    nobody out) and the overdue_rate_30 of the rest. Only a step that lowers the rate by
    `min_improvement` of it counts (turning away good loans alone only makes it worse);
    the informative lever is the one that leaves the lowest rate (ties: the one that turns
    away fewer loans, then the score floor); with loan data and no such step, None.
    Without loan data the levers cannot be told apart and the score floor — the spec's
    primary admission rule, which dispatch applies to every customer — is raised. A lever
    at its limit (score 900, cap at or below one step) is not available; with neither,
    None.

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
            before = float(overdue.mean())
            if not improves(before, after, lower_is_better=True, margin=thresholds.min_improvement):
                continue
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
                        "rate_before": before,
                        "rate_after": after,
                    },
                )
            )
    if judged:
        return min(judged, key=lambda item: item[:3])[3]
    if loans is not None:
        return None
    lever, value = options[0]
    return {"lever": lever, "value": value}


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


def admission_proposal(
    kpi: Kpi,
    scope: dict[str, Any],
    loans: pd.DataFrame | None,
    admitted: pd.DataFrame | None,
    ceiling: float,
    floor: int,
    cap: float,
    choice: Mapping[str, Any],
) -> Proposal:
    where = format_scope(scope, separator=" ", whole="the campaign")
    actual = float(kpi.actual)
    counts = ""
    if loans is not None:
        counts = f" ({int(loans['is_overdue'].sum())} of {len(loans)} seasoned loans)"
    if loans is not None and admitted is not None and len(admitted) < len(loans):
        counts += (
            f"; {int(admitted['is_overdue'].sum())} of the {len(admitted)} that the rules in "
            f"force now (min_credit_score {floor:g}, max_debt_ratio {cap:g}) admit"
        )
    lever, value = choice["lever"], choice["value"]
    old = floor if lever == "min_credit_score" else cap
    change = (
        f"{'raises' if lever == 'min_credit_score' else 'lowers'} {lever} from {old:g} to {value:g}"
    )
    if "rate_after" in choice:
        impact = (
            f"Had {lever} been {value:g}, {choice['excluded']} of the {choice['loans']} "
            f"seasoned loans ({choice['excluded_overdue']} of them overdue) would not have been "
            f"made: overdue_rate_30 {pct(choice['rate_before'])} → {pct(choice['rate_after'])}."
        )
    else:
        impact = (
            f"{change[0].upper()}{change[1:]} for {where}: a first step on the gap of "
            f"{pp(actual - ceiling)} to the ceiling (no loan data tells the levers apart)."
        )
    return proposal(
        "tighten_admission",
        scope,
        {lever: value},
        f"overdue_rate_30 of {where} is {pct(actual)}{counts} against the spec's ceiling of "
        f"{pct(ceiling)} ({signed_pct(actual / ceiling - 1)}); the step {change}.",
        impact,
    )
