"""The sequential test, proved by simulation: safe under weekly looks, and powerful.

1,000 experiments are simulated at once with numpy, looked at weekly for 12 weeks with the
very functions the check's `judge` runs (`tasks.check.experiments.sequential`); a sample of
the looks is judged by `judge` itself to show both give the same decisions. Then the
formulas are checked by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tasks.check.experiments import ARM_COLUMNS, judge
from tasks.check.experiments import sequential as seq
from tasks.check.experiments.cuped import ArmSums, adjust

ALPHA = 0.05
RUNS = 1_000
WEEKS = 12
BASE_RATE = 0.10
SPLIT = {"A": 0.45, "B": 0.45, "holdout": 0.10}
PAIRS = [("holdout", "A"), ("holdout", "B"), ("A", "B")]
ARMS = list(SPLIT)
ARRIVALS = np.array([0.5**week for week in range(WEEKS)]) / sum(0.5**w for w in range(WEEKS))
"""Sticky assignment: half of the members are assigned in week 1, a quarter in week 2…"""
SIMULATION_ERROR = math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def simulate(
    rates: dict[str, float], total: int, seed: int, split: dict[str, float] = SPLIT
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative members and converted, shape (RUNS, WEEKS, arms), arms in `ARMS` order."""
    rng = np.random.default_rng(seed)
    weekly = rng.multinomial(total, ARRIVALS, size=RUNS)  # (RUNS, WEEKS)
    new = rng.multinomial(weekly, np.array([split[arm] for arm in ARMS]))  # (RUNS, WEEKS, arms)
    converted = rng.binomial(new, np.array([rates[arm] for arm in ARMS]))
    return new.cumsum(axis=1), converted.cumsum(axis=1)


def decisions(members: np.ndarray, converted: np.ndarray, pairs=PAIRS) -> np.ndarray:
    """Decision codes (RUNS, WEEKS, pairs) of every look, as `judge` decides them: the base
    rate is the two arms' pooled one, Holm across the pairs."""
    index = {arm: i for i, arm in enumerate(ARMS)}
    estimates, variances, p_values, planned, smallest, pooled = [], [], [], [], [], []
    for control, treatment in pairs:
        n0, n1 = members[..., index[control]], members[..., index[treatment]]
        x0, x1 = converted[..., index[control]], converted[..., index[treatment]]
        with np.errstate(divide="ignore", invalid="ignore"):
            p0, p1, pool = x0 / n0, x1 / n1, (x0 + x1) / (n0 + n1)
        base = pool
        tau2, planned_variance, _ = seq.plan_arrays(base, alpha=ALPHA)
        variance = seq.difference_variance(p0, n0, p1, n1)
        p_value = seq.always_valid_p_value(p1 - p0, variance, tau2)
        estimates.append(p1 - p0)
        variances.append(variance)
        p_values.append(p_value)
        planned.append(planned_variance)
        smallest.append(np.minimum(n0, n1))
        pooled.append(pool)
    adjusted = seq.holm_matrix(np.stack(p_values, axis=-1))
    return seq.sequential_decisions(
        np.stack(estimates, axis=-1),
        np.stack(variances, axis=-1),
        adjusted,
        np.stack(planned, axis=-1),
        np.stack(smallest, axis=-1),
        np.stack(pooled, axis=-1),
        alpha=ALPHA,
    )


def fixed_horizon_wins(members: np.ndarray, converted: np.ndarray) -> np.ndarray:
    """Any pair 'significant' by the unadjusted z-test at some look: peeking (RUNS,)."""
    found = np.zeros(RUNS, dtype=bool)
    for control, treatment in PAIRS:
        i, j = ARMS.index(control), ARMS.index(treatment)
        n0, n1, x0, x1 = members[..., i], members[..., j], converted[..., i], converted[..., j]
        pool = (x0 + x1) / (n0 + n1)
        z = (x1 / n1 - x0 / n0) / np.sqrt(pool * (1 - pool) * (1 / n0 + 1 / n1))
        found |= (np.abs(z) > 1.959963984540054).any(axis=1)
    return found


def planned_total() -> int:
    """Members (all arms) for the smallest arm, the hold-out, to reach the planned size."""
    plan = seq.plan(BASE_RATE, alpha=ALPHA)
    return math.ceil(plan.planned_sample / SPLIT["holdout"])


class TestUnderWeeklyLooks:
    @pytest.fixture(scope="class")
    def null_world(self) -> tuple[np.ndarray, np.ndarray]:
        rates = dict.fromkeys(ARMS, BASE_RATE)
        return simulate(rates, planned_total(), seed=20261204)

    def test_a_a_false_winner_rate_at_most_alpha(self, null_world) -> None:
        members, converted = null_world
        codes = decisions(members, converted)
        false_winner = (codes <= 1).any(axis=(1, 2))  # any pair, any of the 12 looks
        rate = false_winner.mean()
        peeking = fixed_horizon_wins(members, converted).mean()
        print(f"A/A: false winners {rate:.3f} sequential, {peeking:.3f} z-tests peeking")
        assert rate <= ALPHA + 2 * SIMULATION_ERROR, (
            f"A/A false-winner rate {rate:.3f} over {RUNS} runs × {WEEKS} weekly looks "
            f"(fixed-horizon z-tests peeking: {peeking:.3f})"
        )
        # the problem the sequential test solves: the z-test looked at weekly
        assert peeking > ALPHA + 3 * SIMULATION_ERROR, f"peeking rate {peeking:.3f}"

    def test_the_simulation_decides_as_judge_does(self, null_world) -> None:
        members, converted = null_world
        codes = decisions(members, converted)
        rng = np.random.default_rng(1)
        for run, week in zip(rng.integers(0, RUNS, 40), rng.integers(0, WEEKS, 40), strict=True):
            frame = pd.DataFrame(
                [
                    (arm, members[run, week, i], converted[run, week, i])
                    for i, arm in enumerate(ARMS)
                ],
                columns=ARM_COLUMNS,
            )
            judged = {(r["control"], r["treatment"]): r["decision"] for r in judge(frame, SPLIT)}
            expected = {
                pair: seq.DECISION_CODES[codes[run, week, k]] for k, pair in enumerate(PAIRS)
            }
            assert judged == expected, (run, week)


class TestPower:
    def test_a_true_20_percent_lift_is_found_at_the_planned_size(self) -> None:
        """B converts 20 % more than A; A vs B at 50/50 reaches the planned size at week 12."""
        plan = seq.plan(BASE_RATE, alpha=ALPHA)
        members, converted = simulate(
            {"A": BASE_RATE, "B": BASE_RATE * 1.2, "holdout": BASE_RATE},
            2 * plan.planned_sample,
            seed=7,
            split={"A": 0.5, "B": 0.5, "holdout": 0.0},
        )
        codes = decisions(members, converted, pairs=[("A", "B")])[..., 0]
        found = (codes == 0).any(axis=1)
        wrong = (codes == 1).any(axis=1)
        weeks = np.where(found, (codes == 0).argmax(axis=1) + 1, np.nan)
        power = found.mean()
        message = (
            f"power {power:.3f} ({found.sum()} of {RUNS} runs find B, {wrong.sum()} pick A; "
            f"median week found {np.nanmedian(weeks):.0f}) at {plan.planned_sample:,} members "
            f"per arm planned (fixed horizon would need fewer, but looks once)"
        )
        print(message)
        assert power >= 0.75, message
        assert wrong.mean() <= 0.01, message


# --- the formulas by hand ------------------------------------------------------------------


class TestFormulas:
    def test_mixture_likelihood_ratio(self) -> None:
        """Λ = √(V/(V+τ²)) · exp(τ² θ² / (2V(V+τ²))) for θ = 0.02, V = 1e-4, τ² = 4e-4."""
        theta, v, tau2 = 0.02, 1e-4, 4e-4
        by_hand = math.sqrt(v / (v + tau2)) * math.exp(tau2 * theta**2 / (2 * v * (v + tau2)))
        assert by_hand == pytest.approx(2.2151, abs=1e-4)
        assert seq.always_valid_p_value(theta, v, tau2) == pytest.approx(1 / by_hand)

    def test_confidence_sequence_is_where_the_p_value_crosses_alpha(self) -> None:
        theta, v, tau2 = 0.03, 1e-4, 4e-4
        low, high = seq.confidence_sequence(theta, v, tau2, ALPHA)
        radius = math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) - 2 * math.log(ALPHA)))
        assert (low, high) == pytest.approx((theta - radius, theta + radius))
        # a difference θ₀ on the boundary has an always-valid p-value of exactly alpha
        assert seq.always_valid_p_value(theta - low, v, tau2) == pytest.approx(ALPHA)

    def test_tuning_constants(self) -> None:
        r = seq.optimal_ratio(ALPHA)
        assert r == pytest.approx(math.log1p(r) - 2 * math.log(ALPHA))
        assert r == pytest.approx(8.21, abs=0.01)
        assert seq.half_width_factor(ALPHA) == pytest.approx(3.03, abs=0.01)

    def test_planned_size_is_about_twice_the_fixed_horizon(self) -> None:
        plan = seq.plan(0.10)
        fixed = 2 * (1.959963984540054 + 0.8416212335729143) ** 2 * 0.1 * 0.9 / 0.02**2
        assert 1.5 < plan.planned_sample / fixed < 2.5
        assert seq.plan(0.0) is None and seq.plan(None) is None and seq.plan(1.0) is None

    def test_holm_matrix_matches_the_step_down(self) -> None:
        p = np.array([[0.01, 0.04, 0.03], [0.04, np.nan, 0.5]])
        adjusted = seq.holm_matrix(p)
        assert adjusted[0] == pytest.approx([0.03, 0.06, 0.06])
        assert adjusted[1][0] == pytest.approx(0.08) and np.isnan(adjusted[1][1])
        assert adjusted[1][2] == pytest.approx(0.5)


class TestCuped:
    def test_no_relation_no_reduction(self) -> None:
        """X independent of Y: θ ≈ 0 and nothing gained."""
        rng = np.random.default_rng(3)
        x = rng.poisson(1.0, 20_000)
        y = rng.random(20_000) < 0.1
        arms = [
            ArmSums(
                n=10_000, y=y[s].sum(), x=x[s].sum(), xx=(x[s] ** 2).sum(), xy=(x[s] * y[s]).sum()
            )
            for s in (slice(0, 10_000), slice(10_000, None))
        ]
        result = adjust(*arms)
        assert abs(result.variance_reduction) < 0.01

    def test_a_predictive_covariate_reduces_the_variance_by_rho_squared(self) -> None:
        rng = np.random.default_rng(4)
        x = rng.poisson(0.5, 40_000)
        y = rng.random(40_000) < 0.05 + 0.15 * np.minimum(x, 2)
        first, second = slice(0, 20_000), slice(20_000, None)
        arms = [
            ArmSums(
                n=20_000, y=y[s].sum(), x=x[s].sum(), xx=(x[s] ** 2).sum(), xy=(x[s] * y[s]).sum()
            )
            for s in (first, second)
        ]
        result = adjust(*arms)
        rho = np.corrcoef(x, y)[0, 1]
        assert result.variance_reduction == pytest.approx(rho**2, abs=0.02)
        assert result.variance_reduction > 0.05
        # same arms: the adjusted difference stays near the raw one
        raw = y[second].mean() - y[first].mean()
        assert abs(result.estimate - raw) < 0.01

    def test_judge_reports_and_applies_it(self) -> None:
        """With covariate sums in the frame, judge reports the reduction and decides on the
        adjusted difference; switched off, it reports nothing."""
        rows = [
            ("A", 5000, 5000, 600, 2500, 4000, 500, 0, 0, 0),
            ("B", 5000, 5000, 700, 2500, 4000, 600, 0, 0, 0),
        ]
        columns = [
            "variant", "assigned", "members", "converted", "covariate_sum",
            "covariate_square_sum", "covariate_converted_sum", "cohort_assigned",
            "cohort_members", "cohort_converted",
        ]  # fmt: skip
        frame = pd.DataFrame(rows, columns=columns)
        (on,) = judge(frame, {"A": 0.5, "B": 0.5})
        assert on["cuped"]["applied"] and on["cuped"]["variance_reduction"] > 0.01
        (off,) = judge(frame, {"A": 0.5, "B": 0.5}, cuped=False)
        assert off["cuped"] is None
        assert on["cs_high"] - on["cs_low"] < off["cs_high"] - off["cs_low"]
        assert on["p_value"] == off["p_value"]  # the fixed-horizon reference is raw
