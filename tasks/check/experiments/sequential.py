"""Always-valid inference for a difference of two proportions: the mixture SPRT.

A check looks at the same experiment every week. A fixed-horizon z-test at alpha looked at
12 times declares a false winner far more often than alpha; a sequential test keeps
P(a false winner at *any* look) ≤ alpha however often it is looked at.

**The mixture SPRT** (Johari, Koomen, Pekelis, Walsh, "Peeking at A/B tests: why it matters,
and what to do about it", KDD 2017; "Always valid inference", Operations Research 70(3),
2022; the method of Optimizely's Stats Engine; GrowthBook's sequential testing is the same
family). With θ̂ the observed difference of the rates (treatment − control) and
V = p̂₀(1−p̂₀)/n₀ + p̂₁(1−p̂₁)/n₁ its variance, the likelihood ratio of "θ ~ N(0, τ²)"
against "θ = 0", integrated over the normal mixture, is

    Λ = √(V / (V + τ²)) · exp( τ² θ̂² / (2 V (V + τ²)) )

Λ is a martingale under the null, so by Ville's inequality P(∃ look: Λ ≥ 1/α) ≤ α: the
always-valid p-value is p = min(1, 1/Λ), and the confidence sequence (the set of θ₀ not
rejected, valid simultaneously at every look) is

    θ̂ ± √( V (V + τ²) / τ² · (log((V + τ²) / V) − 2 log α) )

**The mixing variance τ²** is tuned to the experiment's plan: the confidence sequence is
narrowest, for a given V, at τ² = r·V with r the root of r = log(1 + r) − 2 log α
(≈ 8.2 at α = 0.05), where its half-width is k·√V, k = √((1 + 1/r)(log(1 + r) − 2 log α))
(≈ 3.03). The planned variance V* is the one at which a true effect δ (the relative
`mde` on the base rate) is found with the planned power at the last look:
δ = (k + z_power)·√V*, so τ² = r·V* = r·δ² / (k + z_power)². The planned size is reached
when V ≤ V*; for equal arms that is n = (p₀(1−p₀) + p₁(1−p₁)) / V* members each, about
twice the fixed-horizon sample: the price of looking every week.

Everything takes numpy arrays (or plain floats) and is vectorised, so the A/A simulation of
the tests judges thousands of experiments at once with the very code the check runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SequentialPlan:
    """The mixture and the planned size of one comparison: tau2 (τ²), planned_variance
    (V*), planned_sample (members per arm with equal arms)."""

    tau2: float
    planned_variance: float
    planned_sample: int


def optimal_ratio(alpha: float) -> float:
    """r = τ²/V that makes the confidence sequence narrowest at V: the root of
    r = log(1 + r) − 2 log α (a contraction: fixed-point iteration converges)."""
    c = -2 * math.log(alpha)
    r = c
    for _ in range(100):
        r_next = math.log1p(r) + c
        if abs(r_next - r) < 1e-12:
            break
        r = r_next
    return r


def half_width_factor(alpha: float) -> float:
    """k: the confidence sequence's half-width in standard errors where it is narrowest."""
    r = optimal_ratio(alpha)
    return math.sqrt((1 + 1 / r) * (math.log1p(r) - 2 * math.log(alpha)))


def plan(
    base_rate: float | None, *, alpha: float = 0.05, power: float = 0.8, mde: float = 0.2
) -> SequentialPlan | None:
    """τ² and the planned size for a relative lift `mde` on `base_rate` (see the module
    docstring); None when the rate is unknown, 0 or 1 (nothing to plan)."""
    if base_rate is None or not 0 < base_rate < 1:
        return None
    tau2, planned_variance, unit_variance = plan_arrays(
        base_rate, alpha=alpha, power=power, mde=mde
    )
    if not planned_variance > 0:
        return None
    return SequentialPlan(
        tau2=float(tau2),
        planned_variance=float(planned_variance),
        planned_sample=math.ceil(float(unit_variance) / float(planned_variance)),
    )


def plan_arrays(base_rate, *, alpha: float = 0.05, power: float = 0.8, mde: float = 0.2):
    """(τ², V*, p₀(1−p₀) + p₁(1−p₁)) for base rates in (0, 1), vectorised (`plan`)."""
    from scipy.stats import norm  # where used: see `fixed`

    base_rate = np.asarray(base_rate, float)
    target = np.minimum(base_rate * (1 + mde), 1.0)
    delta = target - base_rate
    z_power = float(norm.ppf(power))
    planned_variance = (delta / (half_width_factor(alpha) + z_power)) ** 2
    unit_variance = base_rate * (1 - base_rate) + target * (1 - target)
    return optimal_ratio(alpha) * planned_variance, planned_variance, unit_variance


def mixture_log_likelihood_ratio(estimate, variance, tau2):
    """log Λ of the normal-mixture SPRT (module docstring); arrays broadcast. V must be
    > 0."""
    estimate, variance = np.asarray(estimate, float), np.asarray(variance, float)
    total = variance + tau2
    return 0.5 * np.log(variance / total) + tau2 * estimate**2 / (2 * variance * total)


def always_valid_p_value(estimate, variance, tau2):
    """min(1, 1/Λ): the probability bound of a look this extreme at any look under the
    null; NaN where V is not > 0."""
    estimate, variance = np.asarray(estimate, float), np.asarray(variance, float)
    positive = variance > 0
    safe = np.where(positive, variance, 1.0)
    log_ratio = mixture_log_likelihood_ratio(estimate, safe, tau2)
    p_value = np.minimum(1.0, np.exp(-np.maximum(log_ratio, 0.0)))
    return np.where(positive, p_value, np.nan)


def confidence_sequence(estimate, variance, tau2, alpha: float):
    """(low, high) of the 1 − alpha confidence sequence of θ (module docstring)."""
    estimate, variance = np.asarray(estimate, float), np.asarray(variance, float)
    total = variance + tau2
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.sqrt(variance * total / tau2 * (np.log(total / variance) - 2 * math.log(alpha)))
    radius = np.where(variance > 0, radius, np.where(variance == 0, 0.0, np.nan))
    return estimate - radius, estimate + radius


def difference_variance(control_rate, control_n, treatment_rate, treatment_n):
    """V = p₀(1−p₀)/n₀ + p₁(1−p₁)/n₁, the unpooled variance of the difference of rates."""
    control_rate, treatment_rate = np.asarray(control_rate, float), np.asarray(treatment_rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        return control_rate * (1 - control_rate) / np.asarray(control_n, float) + treatment_rate * (
            1 - treatment_rate
        ) / np.asarray(treatment_n, float)


def holm_matrix(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values along the last axis (NaN = not in the family), vectorised:
    p₍ᵢ₎ · (m − i + 1), running maximum, capped at 1, in the original order.

    Holm over always-valid p-values controls the family-wise error over every look too:
    the first true null rejected has p ≤ α/m₀ at that look, and each of the m₀ always-valid
    p-values crosses α/m₀ at any look with probability ≤ α/m₀."""
    p_values = np.asarray(p_values, float)
    present = ~np.isnan(p_values)
    m = present.sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(present, p_values, np.inf), axis=-1, kind="stable")
    ordered = np.take_along_axis(p_values, order, axis=-1)
    rank = np.arange(p_values.shape[-1])
    scaled = np.minimum(1.0, ordered * (m - rank))
    scaled = np.where(np.isnan(scaled), -np.inf, scaled)
    running = np.maximum.accumulate(scaled, axis=-1)
    adjusted = np.empty_like(running)
    np.put_along_axis(adjusted, order, running, axis=-1)
    return np.where(present, adjusted, np.nan)


DECISION_CODES = ("treatment_wins", "control_wins", "no_difference", "insufficient_sample")
"""What `sequential_decisions` returns, as indexes into this tuple (srm is judged first,
outside)."""


def sequential_decisions(
    estimate,
    variance,
    p_adjusted,
    planned_variance,
    smallest_arm,
    pooled_rate,
    *,
    alpha: float = 0.05,
    min_members: int = 100,
    min_expected: float = 5.0,
):
    """Decision codes (indexes into `DECISION_CODES`) of comparisons, vectorised.

    - `insufficient_sample` while the normal approximation is not yet trusted (an arm
      below `min_members`, or fewer than `min_expected` expected conversions or
      non-conversions in the smaller arm) or no p-value exists;
    - the Holm-adjusted always-valid p-value below alpha: a winner by the estimate's sign;
    - otherwise `no_difference` once the planned size is reached (V ≤ V*: the effect
      planned for would have been found with the planned power), before that
      `insufficient_sample` (keep looking: the test stays valid).
    """
    estimate = np.asarray(estimate, float)
    p_adjusted = np.asarray(p_adjusted, float)
    smallest_arm = np.asarray(smallest_arm, float)
    pooled_rate = np.asarray(pooled_rate, float)
    trusted = (
        (smallest_arm >= min_members)
        & (smallest_arm * pooled_rate >= min_expected)
        & (smallest_arm * (1 - pooled_rate) >= min_expected)
        & ~np.isnan(p_adjusted)
    )
    reached = np.asarray(variance, float) <= np.asarray(planned_variance, float)
    codes = np.full(np.broadcast(estimate, p_adjusted).shape, 3)
    codes = np.where(trusted & reached, 2, codes)
    wins = trusted & (p_adjusted < alpha)
    codes = np.where(wins & (estimate > 0), 0, codes)
    codes = np.where(wins & (estimate < 0), 1, codes)
    return codes
