"""The experiment judgement of the Check stage: did a variant move the metric?

The contract's "Experiment" paragraph, made precise:

- **Intention to treat.** An arm is everyone *assigned* to it, whether or not anything was
  sent or delivered: a customer's assignment is the variant of their first touch in the
  campaign (hold-out rows included), and for `application_rate` the outcome is at least one
  application, attributed or not, within `attribution_days` after that first touch
  (`sql/experiment_arms.sql`). Counting only delivered or attributed customers would let
  delivery failures and the attribution rule, which differ between arms (the hold-out is
  never delivered anything), bias the comparison.
- **Comparisons.** Each variant (treatment) against `holdout` (control) when the split has
  a hold-out, and every pair of variants (control = the first in sorted order, so "A vs B"
  reads the same every week). Arms are the split's: an arm in the data but not in the split
  ('unassigned', a retired variant) is ignored, and an arm of the split with no members in
  the data counts as n = 0 (which the SRM test then flags).
- **Test.** Two-sided two-proportion z-test with the pooled variance (statsmodels'
  `proportions_ztest`): the textbook test, valid for the large arms a campaign has.
- **Interval.** The 1 − alpha (95 %) Wald interval of the difference of proportions with
  the unpooled variance: the interval of the lift itself, without assuming the null.
  Its coverage is poor for tiny arms and rates near 0 or 1, which `min_sample` mostly keeps
  from a verdict.
- **Multiplicity.** Three comparisons at alpha = 0.05 would find a "winner" in about
  one experiment out of seven by chance alone, so decisions use Holm-adjusted p-values across
  all the comparisons of one judgement (statsmodels' `multipletests(method="holm")`):
  it controls the family-wise error like Bonferroni but loses less power.
- **Sample ratio mismatch.** A chi-square goodness-of-fit test of the members of every arm
  of the split against the configured shares (normalised over those arms). A mismatch
  (p < `srm_alpha`) means the assignment or the data is broken, and every comparison of
  the experiment is void: `srm_invalid`.
- **Minimum sample.** Members per arm needed to detect a relative lift of `mde` on the
  control's rate (target = rate × (1 + mde), at most 1) with a two-sided test at alpha and
  the given power, on Cohen's arcsine effect size h = 2·asin√p₁ − 2·asin√p₀
  (`NormalIndPower` with equal arms, ≈ 2·((z₁₋α/₂ + z_power) / h)²). With a control rate
  of 0 the pooled rate stands in; with that 0 too nothing can be planned (None), and the
  comparison is `insufficient_sample` until there is data. Judging before both arms reach
  it would turn noise into decisions.

Decisions, in order: `srm_invalid`; `insufficient_sample` (either arm below min_sample, or
none computable); then on the Holm-adjusted p-value: below alpha → `treatment_wins` when
the lift is positive, else `control_wins`; otherwise `no_difference`.

Results are plain dicts, ready for `json.dumps(allow_nan=False)`: every number is a Python
int or float, and what cannot be computed (a rate of an empty arm, the relative lift on a
zero control rate) is None, never NaN or inf.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from datetime import datetime
from itertools import combinations
from typing import Any

import pandas as pd
from scipy.stats import chisquare, norm
from sqlalchemy import Connection
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize, proportions_ztest

from tasks.common.sqlfiles import query

HOLDOUT = "holdout"
"""The control group's variant name (the contract's hold-out rows)."""

ARM_COLUMNS = ["variant", "members", "converted"]
"""What `experiment_arms` returns and `judge` reads."""

DECISIONS = (
    "treatment_wins",
    "control_wins",
    "no_difference",
    "insufficient_sample",
    "srm_invalid",
)
"""The contract's decisions."""

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
)
"""The keys of every comparison, in order (the contract's `experiments` plus extras)."""


# --- the data ---------------------------------------------------------------------------


def experiment_arms(
    conn: Connection,
    campaign_id: str,
    starts_at: datetime,
    ends_at: datetime,
    attribution_days: int = 14,
) -> pd.DataFrame:
    """Members and converted members of each arm assigned in [starts_at, ends_at).

    `starts_at`/`ends_at` are naive UTC (a period's `utc_bounds`). Columns `ARM_COLUMNS`,
    one row per variant with members, in variant order. The outcome is
    `application_rate`'s (see `sql/experiment_arms.sql`). A customer belongs to the period
    of their assignment only, so frames of disjoint periods add up (`judge` sums rows of
    the same variant).
    """
    params = {
        "campaign_id": campaign_id,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "attribution_days": attribution_days,
    }
    result = conn.execute(query("experiment_arms", conn.dialect.name), params)
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    frame = frame.astype({"variant": "str", "members": "int64", "converted": "int64"})
    return frame[ARM_COLUMNS].sort_values("variant").reset_index(drop=True)


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
) -> list[dict[str, Any]]:
    """Every comparison of the experiment with its statistics and decision.

    `arms` has `ARM_COLUMNS` (as `experiment_arms` returns them); `split` is the configured
    allocation, the spec's variants plus `holdout`, e.g. {"A": 0.45, "B": 0.45,
    "holdout": 0.10} (an arm with share 0 is not part of the experiment). The defaults
    are the settings' experiment_alpha, experiment_power, experiment_mde and srm_alpha.
    Fewer than two arms: nothing to compare, an empty list.
    """
    shares = _shares(split)
    if len(shares) < 2:
        return []
    members, converted = _counts(arms, shares)
    srm_p = srm_p_value([members[arm] for arm in shares], list(shares.values()))
    variants = sorted(arm for arm in shares if arm != HOLDOUT)
    pairs = [(HOLDOUT, variant) for variant in variants] if HOLDOUT in shares else []
    pairs += list(combinations(variants, 2))

    results = []
    for control, treatment in pairs:
        numbers = compare(
            converted[control],
            members[control],
            converted[treatment],
            members[treatment],
            alpha=alpha,
            power=power,
            mde=mde,
        )
        identity = {"metric": metric, "control": control, "treatment": treatment}
        results.append({**identity, **numbers, "srm_p_value": srm_p})
    for result, adjusted in zip(results, holm([r["p_value"] for r in results]), strict=True):
        result["p_value_adjusted"] = adjusted
        result["decision"] = decide(result, alpha=alpha, srm_alpha=srm_alpha)
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
    """One treatment against one control: rates, lift, interval, raw p-value, min_sample.

    Everything that needs an empty arm's rate is None; the p-value is None when the test
    has no variance (both arms all 0 or all 1: no evidence either way).
    """
    control_rate = _rate(control_converted, control_n)
    treatment_rate = _rate(treatment_converted, treatment_n)
    lift = lift_relative = ci_low = ci_high = p_value = None
    if control_rate is not None and treatment_rate is not None:
        lift = treatment_rate - control_rate
        lift_relative = _finite(lift / control_rate) if control_rate > 0 else None
        ci_low, ci_high = wald_interval(
            control_rate, control_n, treatment_rate, treatment_n, alpha=alpha
        )
        p_value = z_test_p_value(control_converted, control_n, treatment_converted, treatment_n)
    pooled_rate = _rate(control_converted + treatment_converted, control_n + treatment_n)
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
    }


def wald_interval(
    control_rate: float,
    control_n: int,
    treatment_rate: float,
    treatment_n: int,
    *,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """The 1 − alpha Wald interval of treatment_rate − control_rate, unpooled variance:
    lift ± z₁₋α/₂ · √(p₀(1−p₀)/n₀ + p₁(1−p₁)/n₁). Both arms must be non-empty."""
    lift = treatment_rate - control_rate
    variance = (
        control_rate * (1 - control_rate) / control_n
        + treatment_rate * (1 - treatment_rate) / treatment_n
    )
    half_width = float(norm.ppf(1 - alpha / 2)) * math.sqrt(max(variance, 0.0))
    return lift - half_width, lift + half_width


def z_test_p_value(
    control_converted: int, control_n: int, treatment_converted: int, treatment_n: int
) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test; None without variance."""
    pooled = (control_converted + treatment_converted) / (control_n + treatment_n)
    if pooled <= 0 or pooled >= 1:
        return None
    _, p_value = proportions_ztest(
        [treatment_converted, control_converted], [treatment_n, control_n]
    )
    return _probability(p_value)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values across one family of comparisons (None stays None and does
    not count in the family)."""
    present = [p for p in p_values if p is not None]
    if not present:
        return list(p_values)
    adjusted = iter(multipletests(present, method="holm")[1])
    return [None if p is None else _probability(next(adjusted)) for p in p_values]


def srm_p_value(members: list[int], shares: list[float]) -> float | None:
    """Chi-square goodness-of-fit p-value of the arms' member counts against `shares`
    (normalised to sum to 1); None when there are no members at all."""
    total = sum(members)
    if total <= 0:
        return None
    share_total = sum(shares)
    expected = [total * share / share_total for share in shares]
    return _probability(chisquare(members, expected).pvalue)


def min_sample(
    base_rate: float | None, *, alpha: float = 0.05, power: float = 0.8, mde: float = 0.2
) -> int | None:
    """Members per arm to detect a relative lift `mde` on `base_rate` (two-sided test at
    `alpha` with `power`, Cohen's h); None when the rate is unknown, 0, or leaves no room
    for a lift (1)."""
    if base_rate is None or base_rate <= 0:
        return None
    target = min(base_rate * (1 + mde), 1.0)
    effect = abs(float(proportion_effectsize(target, base_rate)))
    if not math.isfinite(effect) or effect == 0:
        return None
    nobs = NormalIndPower().solve_power(
        effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    nobs = float(nobs)
    return math.ceil(nobs) if math.isfinite(nobs) else None


def decide(result: Mapping[str, Any], *, alpha: float = 0.05, srm_alpha: float = 0.001) -> str:
    """The contract's decision for one comparison (see the module docstring's order)."""
    srm_p = result["srm_p_value"]
    if srm_p is not None and srm_p < srm_alpha:
        return "srm_invalid"
    needed = result["min_sample"]
    if needed is None or min(result["control_n"], result["treatment_n"]) < needed:
        return "insufficient_sample"
    p_adjusted = result["p_value_adjusted"]
    if p_adjusted is None:
        return "insufficient_sample"
    if p_adjusted < alpha:
        return "treatment_wins" if result["lift"] > 0 else "control_wins"
    return "no_difference"


# --- helpers ----------------------------------------------------------------------------


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


def _counts(arms: pd.DataFrame, shares: Mapping[str, float]) -> tuple[dict, dict]:
    """Members and converted per arm of the split (0 for an arm without a row); rows of the
    same variant add up, rows of other variants are ignored."""
    missing = [column for column in ARM_COLUMNS if column not in arms.columns]
    if missing:
        raise ValueError(f"arms frame lacks columns {missing}; expected {ARM_COLUMNS}")
    frame = arms[ARM_COLUMNS].copy()
    frame["variant"] = frame["variant"].astype("str")
    frame = frame[frame["variant"].isin(list(shares))]
    totals = frame.groupby("variant")[["members", "converted"]].sum()
    members, converted = {}, {}
    for arm in shares:
        n = int(totals.at[arm, "members"]) if arm in totals.index else 0
        x = int(totals.at[arm, "converted"]) if arm in totals.index else 0
        if n < 0 or x < 0 or x > n:
            raise ValueError(f"arm {arm!r}: converted {x} must be within [0, members {n}]")
        members[arm], converted[arm] = n, x
    return members, converted


def _rate(converted: int, n: int) -> float | None:
    return converted / n if n > 0 else None


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _probability(value: float) -> float | None:
    """A p-value as a plain float clipped to [0, 1]; None when not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(value)
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else None
