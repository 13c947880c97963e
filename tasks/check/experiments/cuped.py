"""CUPED: the variance reduction of a comparison by a covariate known before assignment.

Deng, Xu, Kohavi, Walker, "Improving the sensitivity of online controlled experiments by
utilizing pre-experiment data" (WSDM 2013). With X a covariate the variant cannot have
moved (here the member's applications in the days before assignment), each member's
outcome Y is replaced by Y − θ(X − X̄), θ = cov(X, Y) / var(X). The adjusted arm means
ȳᵢ − θ(x̄ᵢ − x̄) estimate the same difference (X has the same mean in every arm by
randomisation), with the variance shrunk by the share of Y's variance that X explains
(1 − ρ²). θ is pooled over both arms from *within-arm* deviations, so that the treatment
effect itself does not leak into it.

It needs only per-arm sums (n, Σy, Σx, Σx², Σxy; y is 0/1 so Σy² = Σy), which
`sql/experiment_members.sql` returns: no member row leaves the database.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArmSums:
    """An arm's members and the sums CUPED needs: n, Σy, Σx, Σx², Σxy."""

    n: int
    y: float
    x: float
    xx: float
    xy: float


@dataclass(frozen=True)
class Cuped:
    """The adjusted comparison: theta, the adjusted difference (estimate) and its
    variance, and the raw variance it is compared with."""

    theta: float
    estimate: float
    variance: float
    raw_variance: float

    @property
    def variance_reduction(self) -> float:
        """1 − V_cuped / V_raw: the share of the raw variance removed."""
        return 1 - self.variance / self.raw_variance


def adjust(control: ArmSums, treatment: ArmSums) -> Cuped | None:
    """CUPED on two arms; None when it cannot be computed (an empty arm, no variance of X
    within the arms, or no raw variance to reduce)."""
    if control.n <= 0 or treatment.n <= 0:
        return None
    sxx = sum(arm.xx - arm.x**2 / arm.n for arm in (control, treatment))
    sxy = sum(arm.xy - arm.x * arm.y / arm.n for arm in (control, treatment))
    if sxx <= 1e-12:
        return None
    theta = sxy / sxx
    x_bar = (control.x + treatment.x) / (control.n + treatment.n)
    means, variances, raw = [], [], []
    for arm in (control, treatment):
        y_bar, x_arm = arm.y / arm.n, arm.x / arm.n
        var_y = y_bar * (1 - y_bar)
        var_x = max(arm.xx / arm.n - x_arm**2, 0.0)
        cov = arm.xy / arm.n - x_arm * y_bar
        means.append(y_bar - theta * (x_arm - x_bar))
        variances.append(max(var_y - 2 * theta * cov + theta**2 * var_x, 0.0) / arm.n)
        raw.append(var_y / arm.n)
    raw_variance = sum(raw)
    if raw_variance <= 0:
        return None
    return Cuped(
        theta=theta,
        estimate=means[1] - means[0],
        variance=sum(variances),
        raw_variance=raw_variance,
    )
