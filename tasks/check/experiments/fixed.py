"""The fixed-horizon statistics of a comparison, reported beside the sequential decision.

- **Test.** Two-sided two-proportion z-test with the pooled variance (statsmodels'
  `proportions_ztest`): the textbook test, valid for one look at a planned size. A check
  looks every week, so its p-value is reported for reference and decides nothing.
- **Interval.** The 1 − alpha Wald interval of the difference of proportions with the
  unpooled variance.
- **Multiplicity.** Holm-adjusted p-values across the comparisons of one judgement
  (statsmodels' `multipletests(method="holm")`).
- **Sample ratio mismatch.** A chi-square goodness-of-fit test of the assignment counts of
  every arm of the split against the configured shares.
- **Minimum sample.** Members per arm a fixed-horizon test would need for a relative lift
  `mde`, on Cohen's arcsine effect size (`NormalIndPower`, equal arms).

SciPy's and statsmodels' statistics are imported where a function needs them: together
they take half a second to import, which every command that merely imports the Check
stage (and the flow-run processes of a worker) would otherwise pay up front.
"""

from __future__ import annotations

import math
import warnings


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
    from scipy.stats import norm

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
    from statsmodels.stats.proportion import proportions_ztest

    pooled = (control_converted + treatment_converted) / (control_n + treatment_n)
    if pooled <= 0 or pooled >= 1:
        return None
    _, p_value = proportions_ztest(
        [treatment_converted, control_converted], [treatment_n, control_n]
    )
    return probability(p_value)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values across one family of comparisons (None stays None and does
    not count in the family)."""
    present = [p for p in p_values if p is not None]
    if not present:
        return list(p_values)
    # the step-down by hand (vectorised): statsmodels' multipletests collects garbage on
    # every call, 0.15 s to 1 s each late in a long process
    from tasks.check.experiments.sequential import holm_matrix

    adjusted = iter(holm_matrix(present).tolist())
    return [None if p is None else probability(next(adjusted)) for p in p_values]


def srm_p_value(members: list[int], shares: list[float]) -> float | None:
    """Chi-square goodness-of-fit p-value of the arms' member counts against `shares`
    (normalised to sum to 1); None when there are no members at all."""
    from scipy.stats import chisquare

    total = sum(members)
    if total <= 0:
        return None
    share_total = sum(shares)
    expected = [total * share / share_total for share in shares]
    return probability(chisquare(members, expected).pvalue)


def min_sample(
    base_rate: float | None, *, alpha: float = 0.05, power: float = 0.8, mde: float = 0.2
) -> int | None:
    """Members per arm to detect a relative lift `mde` on `base_rate` (two-sided test at
    `alpha` with `power`, Cohen's h); None when the rate is unknown, 0, or leaves no room
    for a lift (1)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

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


def rate(converted: int, n: int) -> float | None:
    """converted / n; None for an empty arm."""
    return converted / n if n > 0 else None


def finite(value: float) -> float | None:
    """A float, None when not finite."""
    value = float(value)
    return value if math.isfinite(value) else None


def probability(value: float) -> float | None:
    """A p-value as a plain float clipped to [0, 1]; None when not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(value)
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else None
