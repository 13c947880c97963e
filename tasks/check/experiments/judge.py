"""The experiment judgement of the Check stage: did a variant move the metric?

The contract's "Experiment" paragraph, made precise (docs/experiments.md tells it whole):

- **Intention to treat, cumulative.** An arm is everyone *assigned* to it from the
  experiment's start up to the period's end, whether or not anything was sent or delivered
  (`members.experiment_members`). A member's outcome counts once their attribution window
  has closed by the period's end; the others are pending (reported, and counted in the
  sample-ratio test, which needs no outcome). The period's own cohort is reported beside.
- **Comparisons.** Each variant (treatment) against `holdout` (control) when the split has
  a hold-out, and every pair of variants (control = the first in sorted order, so "A vs B"
  reads the same every week). Arms are the split's: an arm in the data but not in the split
  is ignored, and an arm of the split with no members counts as n = 0.
- **Decision: sequential.** The check looks at the experiment every week, so decisions use
  the mixture SPRT's always-valid p-value, Holm-adjusted across the comparisons
  (`sequential`), on the CUPED-adjusted difference where the covariate reduces the variance
  (`cuped`). The fixed-horizon z-test, its Holm adjustment, its Wald interval and Cohen's
  `min_sample` (`fixed`) are reported for reference.
- **Sample ratio mismatch.** Chi-square of the cumulative assignment counts against the
  configured shares; p < `srm_alpha` voids every comparison: `srm_invalid`.

Decisions, in order: `srm_invalid`; then `sequential.sequential_decisions`: a winner when the
Holm-adjusted always-valid p-value is below alpha (and the arms are large enough for the
normal approximation), `no_difference` once the planned size is reached without one,
`insufficient_sample` before.

Results are plain dicts, ready for `json.dumps(allow_nan=False)`: every number is a Python
int or float, and what cannot be computed is None, never NaN or inf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from tasks.check.experiments import cuped as cuped_module
from tasks.check.experiments import sequential
from tasks.check.experiments.fixed import (
    finite,
    holm,
    min_sample,
    probability,
    rate,
    srm_p_value,
    wald_interval,
    z_test_p_value,
)
from tasks.check.experiments.members import ARM_COLUMNS

HOLDOUT = "holdout"
"""The control group's variant name (the contract's hold-out rows)."""

DECISIONS = (
    "treatment_wins",
    "control_wins",
    "no_difference",
    "insufficient_sample",
    "srm_invalid",
)
"""The contract's decisions."""

DECISION_BASIS = "sequential: mixture SPRT always-valid p-value, Holm-adjusted"
"""What the decision rests on (the JSON's `decision_basis`)."""

RESULT_KEYS = (
    "metric",
    "control",
    "treatment",
    "control_n",
    "control_rate",
    "treatment_n",
    "treatment_rate",
    "lift",
    "lift_relative",
    "ci_low",
    "ci_high",
    "p_value",
    "p_value_adjusted",
    "srm_p_value",
    "min_sample",
    "decision",
    "decision_basis",
    "sequential_p_value",
    "sequential_p_value_adjusted",
    "cs_low",
    "cs_high",
    "planned_sample",
    "control_assigned",
    "treatment_assigned",
    "control_pending",
    "treatment_pending",
    "cuped",
    "cohort",
)
"""The keys of every comparison, in order (the contract's `experiments` plus extras)."""

OPTIONAL_COLUMNS = (
    "assigned",
    "covariate_sum",
    "covariate_square_sum",
    "covariate_converted_sum",
    "cohort_assigned",
    "cohort_members",
    "cohort_converted",
)
"""Columns of `experiment_members` that `judge` reads when present."""


# --- the judgement ----------------------------------------------------------------------


def judge(
    arms: pd.DataFrame,
    split: Mapping[str, float],
    *,
    metric: str = "application_rate",
    alpha: float = 0.05,
    power: float = 0.8,
    mde: float = 0.2,
    srm_alpha: float = 0.001,
    min_members: int = 100,
    cuped: bool = True,
    cuped_min_reduction: float = 0.01,
) -> list[dict[str, Any]]:
    """Every comparison of the experiment with its statistics and decision.

    `arms` has `ARM_COLUMNS` and any of `OPTIONAL_COLUMNS` (as `experiment_members`
    returns them; without `assigned` every member counts as assigned, without the
    covariate sums there is no CUPED, without the cohort columns no cohort); `split` is
    the configured allocation, the spec's variants plus `holdout` (an arm with share 0 is
    not part of the experiment). The defaults are the settings'. Fewer than two arms:
    nothing to compare, an empty list.
    """
    shares = _shares(split)
    if len(shares) < 2:
        return []
    totals = _counts(arms, shares)
    srm_p = srm_p_value([totals[arm]["assigned"] for arm in shares], list(shares.values()))
    cohort_srm_p = srm_p_value(
        [totals[arm]["cohort_assigned"] for arm in shares], list(shares.values())
    )
    variants = sorted(arm for arm in shares if arm != HOLDOUT)
    pairs = [(HOLDOUT, variant) for variant in variants] if HOLDOUT in shares else []
    pairs += list(combinations(variants, 2))

    results = []
    for control, treatment in pairs:
        c, t = totals[control], totals[treatment]
        numbers = compare(
            c["converted"], c["members"], t["converted"], t["members"],
            alpha=alpha, power=power, mde=mde,
        )  # fmt: skip
        adjusted = cuped_of(c, t) if cuped and "covariate_sum" in arms.columns else None
        numbers |= sequential_numbers(
            numbers, adjusted, alpha=alpha, power=power, mde=mde, min_reduction=cuped_min_reduction
        )
        cohort = cohort_of(c, t, cohort_srm_p) if "cohort_assigned" in arms.columns else None
        results.append(
            {"metric": metric, "control": control, "treatment": treatment, **numbers}
            | {"srm_p_value": srm_p, "decision_basis": DECISION_BASIS}
            | _assignment(c, t)
            | {"cohort": cohort}
        )
    _adjust_and_decide(results, alpha=alpha, srm_alpha=srm_alpha, min_members=min_members)
    return [{key: result[key] for key in RESULT_KEYS} for result in results]


def compare(
    control_converted: int,
    control_n: int,
    treatment_converted: int,
    treatment_n: int,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    mde: float = 0.2,
) -> dict[str, Any]:
    """One treatment against one control: rates, lift, interval, raw p-value, min_sample
    (the fixed-horizon numbers).

    Everything that needs an empty arm's rate is None; the p-value is None when the test
    has no variance (both arms all 0 or all 1: no evidence either way).
    """
    control_rate = rate(control_converted, control_n)
    treatment_rate = rate(treatment_converted, treatment_n)
    lift = lift_relative = ci_low = ci_high = p_value = None
    if control_rate is not None and treatment_rate is not None:
        lift = treatment_rate - control_rate
        lift_relative = finite(lift / control_rate) if control_rate > 0 else None
        ci_low, ci_high = wald_interval(
            control_rate, control_n, treatment_rate, treatment_n, alpha=alpha
        )
        p_value = z_test_p_value(control_converted, control_n, treatment_converted, treatment_n)
    pooled_rate = rate(control_converted + treatment_converted, control_n + treatment_n)
    base_rate = control_rate if control_rate else pooled_rate
    return {
        "control_n": int(control_n),
        "control_rate": control_rate,
        "treatment_n": int(treatment_n),
        "treatment_rate": treatment_rate,
        "lift": lift,
        "lift_relative": lift_relative,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": p_value,
        "min_sample": min_sample(base_rate, alpha=alpha, power=power, mde=mde),
        "_base_rate": base_rate,
        "_pooled_rate": pooled_rate,
    }


def sequential_numbers(
    numbers: Mapping[str, Any],
    adjusted: cuped_module.Cuped | None,
    *,
    alpha: float,
    power: float,
    mde: float,
    min_reduction: float,
) -> dict[str, Any]:
    """The sequential test of one comparison: always-valid p-value and confidence sequence
    of the difference (CUPED-adjusted when that reduces the variance by `min_reduction`),
    the planned size, and the CUPED report."""
    # planned on the arms' common rate under "no effect", the pooled one: the control's
    # alone collapses the plan when the control is a hold-out that nothing was sent to
    # (0.1 % applying against 4 % contacted): a 20 % lift on 0.1 % tunes the mixture to
    # effects hundreds of times smaller than the real one, which it then barely sees
    plan = sequential.plan(numbers["_pooled_rate"], alpha=alpha, power=power, mde=mde)
    out: dict[str, Any] = {
        "sequential_p_value": None,
        "cs_low": None,
        "cs_high": None,
        "planned_sample": plan.planned_sample if plan else None,
        "cuped": None,
        "_estimate": numbers["lift"],
        "_variance": None,
        "_planned_variance": plan.planned_variance if plan else None,
    }
    if numbers["lift"] is None:
        return out
    estimate = numbers["lift"]
    variance = float(
        sequential.difference_variance(
            numbers["control_rate"], numbers["control_n"],
            numbers["treatment_rate"], numbers["treatment_n"],
        )
    )  # fmt: skip
    if adjusted is not None:
        applied = adjusted.variance_reduction >= min_reduction
        out["cuped"] = {
            "covariate": "applications before assignment",
            "applied": applied,
            "theta": finite(adjusted.theta),
            "lift": finite(adjusted.estimate),
            "variance_reduction": finite(adjusted.variance_reduction),
        }
        if applied:
            estimate, variance = adjusted.estimate, adjusted.variance
    out["_estimate"], out["_variance"] = estimate, variance
    if plan is None or variance <= 0:
        return out
    out["sequential_p_value"] = probability(
        sequential.always_valid_p_value(estimate, variance, plan.tau2)
    )
    low, high = sequential.confidence_sequence(estimate, variance, plan.tau2, alpha)
    out["cs_low"], out["cs_high"] = finite(low), finite(high)
    return out


def cuped_of(control: Mapping[str, int], treatment: Mapping[str, int]) -> cuped_module.Cuped | None:
    """CUPED of two arms from their covariate sums (`cuped.adjust`)."""

    def sums(arm: Mapping[str, int]) -> cuped_module.ArmSums:
        return cuped_module.ArmSums(
            n=arm["members"],
            y=arm["converted"],
            x=arm["covariate_sum"],
            xx=arm["covariate_square_sum"],
            xy=arm["covariate_converted_sum"],
        )

    return cuped_module.adjust(sums(control), sums(treatment))


def cohort_of(
    control: Mapping[str, int],
    treatment: Mapping[str, int],
    srm_p: float | None,
) -> dict[str, Any]:
    """The period's own cohort (customers assigned in the period): assignment, members with
    a closed window, their rates and lift, the cohort's own SRM p-value. Reported only."""
    control_rate = rate(control["cohort_converted"], control["cohort_members"])
    treatment_rate = rate(treatment["cohort_converted"], treatment["cohort_members"])
    lift = (
        treatment_rate - control_rate
        if control_rate is not None and treatment_rate is not None
        else None
    )
    return {
        "control_assigned": control["cohort_assigned"],
        "control_n": control["cohort_members"],
        "control_rate": control_rate,
        "treatment_assigned": treatment["cohort_assigned"],
        "treatment_n": treatment["cohort_members"],
        "treatment_rate": treatment_rate,
        "lift": lift,
        "srm_p_value": srm_p,
    }


def decide(
    result: Mapping[str, Any],
    *,
    alpha: float = 0.05,
    srm_alpha: float = 0.001,
    min_members: int = 100,
) -> str:
    """The contract's decision for one comparison (see the module docstring's order);
    `result` carries the internal `_estimate`, `_variance`, `_planned_variance` and
    `_pooled_rate` beside `sequential_p_value_adjusted`."""
    srm_p = result["srm_p_value"]
    if srm_p is not None and srm_p < srm_alpha:
        return "srm_invalid"
    p_adjusted = result["sequential_p_value_adjusted"]
    estimate, pooled = result["_estimate"], result["_pooled_rate"]
    if p_adjusted is None or estimate is None or pooled is None:
        return "insufficient_sample"
    planned = result["_planned_variance"]
    code = sequential.sequential_decisions(
        estimate,
        result["_variance"],
        p_adjusted,
        planned if planned is not None else -math.inf,
        min(result["control_n"], result["treatment_n"]),
        pooled,
        alpha=alpha,
        min_members=min_members,
    )
    return sequential.DECISION_CODES[int(code)]


# --- helpers ----------------------------------------------------------------------------


def _adjust_and_decide(
    results: list[dict[str, Any]], *, alpha: float, srm_alpha: float, min_members: int
) -> None:
    """Holm across the family for both p-values, then each comparison's decision."""
    fixed_adjusted = holm([r["p_value"] for r in results])
    raw = np.array(
        [np.nan if r["sequential_p_value"] is None else r["sequential_p_value"] for r in results]
    )
    sequential_adjusted = sequential.holm_matrix(raw)
    for result, p_fixed, p_sequential in zip(
        results, fixed_adjusted, sequential_adjusted, strict=True
    ):
        result["p_value_adjusted"] = p_fixed
        result["sequential_p_value_adjusted"] = probability(p_sequential)
        result["decision"] = decide(
            result, alpha=alpha, srm_alpha=srm_alpha, min_members=min_members
        )


def _assignment(control: Mapping[str, int], treatment: Mapping[str, int]) -> dict[str, int]:
    """Assigned and pending (window still open at the period's end) per arm."""
    return {
        "control_assigned": control["assigned"],
        "treatment_assigned": treatment["assigned"],
        "control_pending": control["assigned"] - control["members"],
        "treatment_pending": treatment["assigned"] - treatment["members"],
    }


def _shares(split: Mapping[str, float]) -> dict[str, float]:
    """The split's arms with a positive share, in the split's order."""
    shares = {}
    for arm, share in split.items():
        share = float(share)
        if not math.isfinite(share) or share < 0:
            raise ValueError(f"split share of {arm!r} must be a finite number ≥ 0, not {share}")
        if share > 0:
            shares[str(arm)] = share
    return shares


def _counts(arms: pd.DataFrame, shares: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """Per arm of the split, every count of the frame (0 for an arm without a row; rows of
    the same variant add up, rows of other variants are ignored). `assigned` defaults to
    `members`."""
    missing = [column for column in ARM_COLUMNS if column not in arms.columns]
    if missing:
        raise ValueError(f"arms frame lacks columns {missing}; expected {ARM_COLUMNS}")
    columns = ["members", "converted", *(c for c in OPTIONAL_COLUMNS if c in arms.columns)]
    frame = arms[["variant", *columns]].copy()
    frame["variant"] = frame["variant"].astype("str")
    frame = frame[frame["variant"].isin(list(shares))]
    totals = frame.groupby("variant")[columns].sum()
    counts = {}
    for arm in shares:
        row = {c: int(totals.at[arm, c]) if arm in totals.index else 0 for c in columns}
        row.setdefault("assigned", row["members"])
        for column in OPTIONAL_COLUMNS:
            row.setdefault(column, 0)
        n, x = row["members"], row["converted"]
        if n < 0 or x < 0 or x > n:
            raise ValueError(f"arm {arm!r}: converted {x} must be within [0, members {n}]")
        if row["assigned"] < n:
            raise ValueError(f"arm {arm!r}: members {n} must be within assigned")
        counts[arm] = row
    return counts
