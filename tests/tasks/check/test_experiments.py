"""The experiment judgement: arms from the database, then tests, intervals and decisions.

The statistics are checked against numbers computed here by hand (the z statistic with
`math.erf`, the Wald interval, Holm's step-down, the chi-square with two degrees of
freedom, Cohen's sample size), never by calling statsmodels again. `experiment_members`
runs on SQLite and PostgreSQL (`engine`) against a small hand-built campaign.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, insert

from pdca.models import Application, Customer, Touch
from tasks.check.experiments import (
    ARM_COLUMNS,
    DECISIONS,
    MEMBER_COLUMNS,
    RESULT_KEYS,
    experiment_members,
    holm,
    judge,
    min_sample,
)
from tests.scenario import CAMPAIGN_ID, apply, customer, spec_dict, touch

SPLIT = {"A": 0.45, "B": 0.45, "holdout": 0.10}
"""The scenario spec's split: its variants plus the hold-out."""
HALVES = {"A": 0.5, "holdout": 0.5}
Z_975 = 1.959963984540054  # the standard normal's 97.5 % quantile (two-sided 95 %)
Z_80 = 0.8416212335729143  # its 80 % quantile (power 0.8)


def arms(*rows: tuple[str, int, int]) -> pd.DataFrame:
    """An arms frame from (variant, members, converted) rows."""
    return pd.DataFrame(list(rows), columns=ARM_COLUMNS)


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def by_pair(results: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["control"], r["treatment"]): r for r in results}


def assert_close(actual: float | None, expected: float, what: str, rel: float = 1e-9) -> None:
    assert actual is not None, f"{what}: expected {expected}, got None"
    assert actual == pytest.approx(expected, rel=rel, abs=1e-12), (
        f"{what}: expected {expected}, got {actual}"
    )


def assert_decisions(results: list[dict], expected: dict[tuple[str, str], str]) -> None:
    got = {pair: r["decision"] for pair, r in by_pair(results).items()}
    assert got == expected, f"decisions {got} != expected {expected}"


# --- the z-test and the interval ---------------------------------------------------------


class TestTwoProportions:
    """holdout 100/1000 against A 130/1000, worked out by hand."""

    @pytest.fixture(scope="class")
    def result(self) -> dict:
        return judge(arms(("holdout", 1000, 100), ("A", 1000, 130)), HALVES)[0]

    def test_rates_and_lift(self, result: dict) -> None:
        r = result
        assert (r["control"], r["treatment"]) == ("holdout", "A")
        assert (r["control_n"], r["treatment_n"]) == (1000, 1000)
        assert_close(r["control_rate"], 0.10, "control_rate")
        assert_close(r["treatment_rate"], 0.13, "treatment_rate")
        assert_close(r["lift"], 0.03, "lift (absolute)")
        assert_close(r["lift_relative"], 0.30, "lift_relative")

    def test_pooled_z_and_two_sided_p_value(self, result: dict) -> None:
        pooled = (100 + 130) / 2000  # 0.115
        z = (0.13 - 0.10) / math.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 1000))
        assert z == pytest.approx(2.1027, abs=1e-4)
        p = 2 * (1 - normal_cdf(abs(z)))
        assert p == pytest.approx(0.03549, abs=1e-5)
        assert_close(result["p_value"], p, "p_value", rel=1e-7)
        assert_close(result["p_value_adjusted"], p, "Holm of one comparison", rel=1e-7)

    def test_unpooled_wald_interval(self, result: dict) -> None:
        half = Z_975 * math.sqrt(0.10 * 0.90 / 1000 + 0.13 * 0.87 / 1000)
        assert half == pytest.approx(0.027932, abs=1e-6)
        assert_close(result["ci_low"], 0.03 - half, "ci_low")
        assert_close(result["ci_high"], 0.03 + half, "ci_high")

    def test_interval_follows_alpha(self) -> None:
        """1 − alpha: at alpha 0.10 the interval uses the 95 % quantile 1.6449."""
        r = judge(arms(("holdout", 1000, 100), ("A", 1000, 130)), HALVES, alpha=0.10)[0]
        half = 1.6448536269514722 * math.sqrt(0.10 * 0.90 / 1000 + 0.13 * 0.87 / 1000)
        assert_close(r["ci_high"] - r["lift"], half, "half width at alpha 0.10")

    def test_no_variance_gives_no_p_value(self) -> None:
        """Both arms all zeros: no test is possible, and no verdict either."""
        r = judge(arms(("holdout", 500, 0), ("A", 500, 0)), HALVES)[0]
        assert (r["control_rate"], r["lift"], r["ci_low"], r["ci_high"]) == (0.0, 0.0, 0.0, 0.0)
        assert r["p_value"] is None and r["p_value_adjusted"] is None
        assert r["lift_relative"] is None and r["min_sample"] is None
        assert r["decision"] == "insufficient_sample"


# --- sample ratio mismatch ---------------------------------------------------------------


class TestSampleRatioMismatch:
    def test_broken_split_invalidates_every_comparison(self) -> None:
        results = judge(arms(("A", 5000, 600), ("B", 5000, 500), ("holdout", 300, 30)), SPLIT)
        expected = {"A": 0.45 * 10_300, "B": 0.45 * 10_300, "holdout": 0.10 * 10_300}
        observed = {"A": 5000, "B": 5000, "holdout": 300}
        chi2 = sum((observed[k] - expected[k]) ** 2 / expected[k] for k in observed)
        assert chi2 == pytest.approx(574.87, abs=0.01)
        p = math.exp(-chi2 / 2)  # the chi-square survival function with 2 degrees of freedom
        for r in results:
            assert_close(r["srm_p_value"], p, "srm_p_value", rel=1e-6)
        assert_decisions(
            results,
            {
                ("holdout", "A"): "srm_invalid",
                ("holdout", "B"): "srm_invalid",
                ("A", "B"): "srm_invalid",
            },
        )

    def test_fair_split_passes(self) -> None:
        data = arms(("A", 18_000, 1800), ("B", 18_000, 1800), ("holdout", 4000, 400))
        results = judge(data, SPLIT)
        assert all(r["srm_p_value"] == pytest.approx(1.0) for r in results)
        # A vs B has reached its planned size; the 4,000 hold-outs have not, so the
        # sequential test keeps looking at the hold-out comparisons
        assert_decisions(
            results,
            {
                ("holdout", "A"): "insufficient_sample",
                ("holdout", "B"): "insufficient_sample",
                ("A", "B"): "no_difference",
            },
        )

    def test_small_imbalance_by_hand(self) -> None:
        """4600/4400/1000: χ² = 100²/4500 · 2 = 4.444, p = e^(−χ²/2) = 0.1084."""
        results = judge(arms(("A", 4600, 460), ("B", 4400, 440), ("holdout", 1000, 100)), SPLIT)
        chi2 = 2 * 100**2 / 4500
        assert_close(results[0]["srm_p_value"], math.exp(-chi2 / 2), "srm_p_value", rel=1e-6)
        assert results[0]["decision"] != "srm_invalid"

    def test_split_is_normalised_over_its_arms(self) -> None:
        """Shares that do not sum to 1 (a retired arm left out) are rescaled."""
        results = judge(arms(("A", 4500, 450), ("B", 4500, 450)), {"A": 0.45, "B": 0.45})
        assert results[0]["srm_p_value"] == pytest.approx(1.0)

    def test_missing_arm_counts_as_empty(self) -> None:
        """B is in the split but has no members: n = 0, and the split is broken."""
        results = by_pair(judge(arms(("A", 4500, 450), ("holdout", 1000, 100)), SPLIT))
        b = results[("holdout", "B")]
        assert b["treatment_n"] == 0 and b["treatment_rate"] is None
        assert b["lift"] is None and b["ci_low"] is None and b["p_value"] is None
        assert {r["decision"] for r in results.values()} == {"srm_invalid"}

    def test_srm_alpha_is_the_threshold(self) -> None:
        data = arms(("A", 4600, 460), ("B", 4400, 440), ("holdout", 1000, 100))  # p = 0.108
        assert judge(data, SPLIT, srm_alpha=0.2)[0]["decision"] == "srm_invalid"
        assert judge(data, SPLIT, srm_alpha=0.1)[0]["decision"] != "srm_invalid"


# --- Holm ------------------------------------------------------------------------------


def holm_by_hand(p_values: list[float]) -> list[float]:
    """Holm's step-down: the k-th smallest p times (m − k + 1), running maximum, ≤ 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


class TestHolm:
    @pytest.mark.parametrize(
        ("p_values", "expected"),
        [
            ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),  # the largest keeps the running max
            ([0.04, 0.001, 0.5], [0.08, 0.003, 0.5]),
            ([0.02, 0.021, 0.9], [0.06, 0.06, 0.9]),  # 2 × 0.021 < 3 × 0.02
            ([0.4, 0.5, 0.6], [1.0, 1.0, 1.0]),  # capped at 1
            ([0.01, None, 0.03], [0.02, None, 0.03]),  # None is not in the family
            ([None, None], [None, None]),
        ],
    )
    def test_adjusted_p_values(self, p_values: list, expected: list) -> None:
        got = holm(p_values)
        assert [g is None for g in got] == [e is None for e in expected], got
        assert [g for g in got if g is not None] == pytest.approx(
            [e for e in expected if e is not None]
        )

    def test_across_the_three_comparisons_of_a_judgement(self) -> None:
        """holdout 10 %, A 13 %, B 11.5 %: three raw p-values in a known order, adjusted
        together."""
        results = by_pair(
            judge(
                arms(("holdout", 1000, 100), ("A", 1000, 130), ("B", 1000, 115)),
                {"A": 1 / 3, "B": 1 / 3, "holdout": 1 / 3},
            )
        )
        pairs = [("holdout", "A"), ("holdout", "B"), ("A", "B")]
        raw = [results[pair]["p_value"] for pair in pairs]
        assert raw[0] < raw[1] < raw[2], raw  # A vs holdout is the clearest difference
        for pair, expected in zip(pairs, holm_by_hand(raw), strict=True):
            assert_close(results[pair]["p_value_adjusted"], expected, f"Holm {pair}")
        adjusted = [results[pair]["p_value_adjusted"] for pair in pairs]
        assert_close(adjusted[0], 3 * raw[0], "the smallest, times 3")
        assert_close(adjusted[1], 2 * raw[1], "the middle one, times 2")
        assert_close(adjusted[2], 2 * raw[1], "the largest keeps the running maximum")

    def test_adjustment_can_turn_a_win_into_no_difference(self) -> None:
        """Raw p ≈ 0.024 < 0.05 alone, but × 3 in a family of three (the fixed-horizon
        reference); the decision's sequential p-value is Holm-adjusted the same way."""
        data = arms(("holdout", 5000, 500), ("A", 5000, 570), ("B", 5000, 500))
        results = by_pair(judge(data, {"A": 1 / 3, "B": 1 / 3, "holdout": 1 / 3}))
        a = results[("holdout", "A")]
        assert a["p_value"] < 0.05 <= a["p_value_adjusted"]
        assert a["decision"] not in ("treatment_wins", "control_wins")
        # at the planned size: sequential p ≈ 0.023 alone, ≈ 0.068 in the family
        data = arms(("holdout", 8000, 800), ("A", 8000, 930), ("B", 8000, 800))
        results = by_pair(judge(data, {"A": 1 / 3, "B": 1 / 3, "holdout": 1 / 3}))
        a = results[("holdout", "A")]
        raw = [results[pair]["sequential_p_value"] for pair in results]
        assert a["sequential_p_value"] < 0.05 <= a["sequential_p_value_adjusted"]
        assert_close(a["sequential_p_value_adjusted"], holm_by_hand(raw)[0], "sequential Holm")
        assert a["decision"] == "no_difference"


# --- decisions ---------------------------------------------------------------------------


class TestDecisions:
    @pytest.mark.parametrize(
        ("a_converted", "decision"),
        [
            (1200, "treatment_wins"),  # 12 % against 10 % on 10,000 each
            (800, "control_wins"),  # 8 %
            (1010, "no_difference"),  # 10.1 %
        ],
    )
    def test_large_arms(self, a_converted: int, decision: str) -> None:
        r = judge(arms(("holdout", 10_000, 1000), ("A", 10_000, a_converted)), HALVES)[0]
        assert r["min_sample"] < 10_000
        assert r["decision"] == decision, r

    def test_insufficient_sample_with_tiny_arms(self) -> None:
        """A huge observed lift on 10 and 45 members decides nothing."""
        results = judge(arms(("holdout", 10, 1), ("A", 45, 20), ("B", 45, 2)), SPLIT)
        assert {r["decision"] for r in results} == {"insufficient_sample"}
        assert all(r["min_sample"] > 45 for r in results)

    def test_one_small_arm_is_enough_to_wait(self) -> None:
        """The treatment is large, the hold-out below min_members: the normal approximation
        is not trusted yet, whatever the lift. With 1,000 hold-outs the same lift is
        overwhelming evidence even before the planned size: the sequential test may stop."""
        split = {"A": 0.9, "holdout": 0.1}
        r = judge(arms(("holdout", 99, 10), ("A", 891, 400)), split)[0]
        assert r["sequential_p_value"] < 0.05 and r["control_n"] < 100
        assert r["decision"] == "insufficient_sample"
        r = judge(arms(("holdout", 1000, 100), ("A", 9000, 1500)), split)[0]
        assert r["treatment_n"] >= r["min_sample"] > r["control_n"]
        assert r["sequential_p_value"] < 1e-4
        assert r["decision"] == "treatment_wins"

    def test_all_variants_against_holdout_and_each_other(self) -> None:
        data = arms(("A", 18_000, 2700), ("B", 18_000, 1800), ("holdout", 4000, 400))
        results = judge(data, SPLIT)
        assert [(r["control"], r["treatment"]) for r in results] == [
            ("holdout", "A"),
            ("holdout", "B"),
            ("A", "B"),
        ]
        assert_decisions(
            results,
            {
                ("holdout", "A"): "treatment_wins",
                ("holdout", "B"): "insufficient_sample",  # 4,000 hold-outs: not yet planned size
                ("A", "B"): "control_wins",
            },
        )

    def test_without_holdout_only_the_pairs(self) -> None:
        data = arms(("C", 5000, 500), ("A", 5000, 500), ("B", 5000, 500))
        results = judge(data, {"C": 1, "B": 1, "A": 1})
        assert [(r["control"], r["treatment"]) for r in results] == [
            ("A", "B"),
            ("A", "C"),
            ("B", "C"),
        ]

    def test_decisions_are_the_contracts(self) -> None:
        assert set(DECISIONS) == {
            "treatment_wins",
            "control_wins",
            "no_difference",
            "insufficient_sample",
            "srm_invalid",
        }


class TestMinSample:
    @staticmethod
    def by_hand(rate: float, mde: float = 0.2) -> float:
        h = 2 * math.asin(math.sqrt(rate * (1 + mde))) - 2 * math.asin(math.sqrt(rate))
        return 2 * ((Z_975 + Z_80) / h) ** 2

    @pytest.mark.parametrize("rate", [0.01, 0.05, 0.10, 0.30])
    def test_cohens_formula(self, rate: float) -> None:
        assert abs(min_sample(rate) - math.ceil(self.by_hand(rate))) <= 1

    def test_from_the_control_rate(self) -> None:
        r = judge(arms(("holdout", 10_000, 1000), ("A", 10_000, 3000)), HALVES)[0]
        assert abs(r["min_sample"] - math.ceil(self.by_hand(0.10))) <= 1

    def test_zero_control_rate_uses_the_pooled_rate(self) -> None:
        r = judge(arms(("holdout", 5000, 0), ("A", 5000, 50)), HALVES)[0]
        assert abs(r["min_sample"] - math.ceil(self.by_hand(0.005))) <= 1
        assert r["lift_relative"] is None  # no relative lift on a zero rate

    @pytest.mark.parametrize(
        ("rate", "expected"),
        [(None, None), (0.0, None), (1.0, None)],
    )
    def test_nothing_to_plan(self, rate: float | None, expected: None) -> None:
        assert min_sample(rate) is expected

    def test_lift_capped_at_certainty(self) -> None:
        """0.9 × 1.2 > 1: the target is 1, a large effect, a small sample."""
        assert 0 < min_sample(0.9) < 100

    def test_larger_effect_needs_fewer(self) -> None:
        assert min_sample(0.1, mde=0.5) < min_sample(0.1, mde=0.2)


# --- arms and the split ------------------------------------------------------------------


class TestArms:
    def test_unknown_arms_are_ignored(self) -> None:
        base = arms(("A", 4500, 450), ("B", 4500, 500), ("holdout", 1000, 100))
        noisy = pd.concat([base, arms(("unassigned", 700, 70), ("C", 900, 10))])
        assert judge(noisy, SPLIT) == judge(base, SPLIT)

    def test_rows_of_one_variant_add_up(self) -> None:
        """Frames of disjoint periods can be concatenated before judging."""
        weeks = arms(("A", 2000, 200), ("A", 2500, 250), ("B", 4500, 500), ("holdout", 1000, 90))
        whole = arms(("A", 4500, 450), ("B", 4500, 500), ("holdout", 1000, 90))
        assert judge(weeks, SPLIT) == judge(whole, SPLIT)

    @pytest.mark.parametrize(
        "split",
        [{}, {"A": 1.0}, {"A": 1.0, "holdout": 0.0}, {"holdout": 1.0}],
    )
    def test_fewer_than_two_arms(self, split: dict) -> None:
        assert judge(arms(("A", 100, 10), ("holdout", 100, 10)), split) == []

    def test_exact_keys_and_json(self) -> None:
        degenerate = arms(("A", 0, 0), ("B", 3, 3), ("holdout", 2, 0))
        for data in (degenerate, arms(), arms(("A", 4500, 450), ("B", 4500, 500))):
            results = judge(data, SPLIT, metric="application_rate")
            assert len(results) == 3
            for r in results:
                assert tuple(r) == RESULT_KEYS
                assert r["metric"] == "application_rate"
                json.dumps(r, allow_nan=False)  # no NaN, no inf, no numpy scalars
                assert all(not hasattr(v, "dtype") for v in r.values()), r

    @pytest.mark.parametrize(
        ("data", "split", "message"),
        [
            (arms(("A", 10, 11), ("B", 10, 1)), HALVES | {"B": 0.5}, "converted"),
            (arms(("A", -1, 0), ("B", 10, 1)), {"A": 0.5, "B": 0.5}, "converted"),
            (arms(("A", 10, 1)), {"A": 0.5, "B": -0.5}, "share"),
            (pd.DataFrame({"variant": ["A"], "members": [1]}), {"A": 0.5, "B": 0.5}, "columns"),
        ],
    )
    def test_bad_input(self, data: pd.DataFrame, split: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            judge(data, split)


# --- properties --------------------------------------------------------------------------


@st.composite
def experiments(draw) -> tuple[pd.DataFrame, dict[str, float]]:
    """Arms of any size (empty ones included) and a split over some of them."""
    names = draw(st.lists(st.sampled_from(["A", "B", "C", "holdout"]), min_size=1, unique=True))
    rows = []
    for name in [*names, "unassigned"]:
        members = draw(st.integers(0, 20_000))
        rows.append((name, members, draw(st.integers(0, members))))
    split = {name: draw(st.floats(0.01, 1.0)) for name in names}
    return arms(*rows), split


@pytest.mark.slow  # every Holm adjustment runs statsmodels' gc.collect(): 0.2-1 s per example
class TestProperties:
    @given(experiments(), st.sampled_from([0.01, 0.05, 0.1]))
    @settings(max_examples=150, deadline=None)
    def test_invariants(self, experiment: tuple[pd.DataFrame, dict], alpha: float) -> None:
        data, split = experiment
        results = judge(data, split, alpha=alpha)
        k = len(split) - ("holdout" in split)
        assert len(results) == (k * (k - 1)) // 2 + (k if "holdout" in split else 0)
        for r in results:
            json.dumps(r, allow_nan=False)
            assert r["decision"] in DECISIONS
            for key in (
                "control_rate",
                "treatment_rate",
                "p_value",
                "p_value_adjusted",
                "srm_p_value",
                "sequential_p_value",
                "sequential_p_value_adjusted",
            ):
                assert r[key] is None or 0.0 <= r[key] <= 1.0, (key, r)
            if r["lift"] is not None:
                assert r["ci_low"] <= r["lift"] <= r["ci_high"], r
                assert -1.0 <= r["lift"] <= 1.0
            if r["p_value"] is not None:
                assert r["p_value_adjusted"] >= r["p_value"], r
            if r["sequential_p_value"] is not None:
                assert r["sequential_p_value_adjusted"] >= r["sequential_p_value"], r
                assert r["cs_low"] <= r["lift"] <= r["cs_high"], r
                # the confidence sequence is never narrower than the fixed-horizon interval
                assert r["cs_high"] - r["cs_low"] >= r["ci_high"] - r["ci_low"] - 1e-12, r
            if r["decision"] in ("treatment_wins", "control_wins"):
                assert r["sequential_p_value_adjusted"] < alpha
                assert r["cs_low"] > 0 or r["cs_high"] < 0, r  # 0 is outside the sequence
                assert min(r["control_n"], r["treatment_n"]) >= 100  # min_members
                assert (r["lift"] > 0) == (r["decision"] == "treatment_wins")
            if r["decision"] == "no_difference":
                assert r["planned_sample"] is not None

    @given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
    @settings(max_examples=100, deadline=None)
    def test_holm_matches_the_step_down(self, p_values: list[float]) -> None:
        assert holm(p_values) == pytest.approx(holm_by_hand(p_values))


# --- the arms in the database ------------------------------------------------------------

STARTS_AT = datetime(2026, 3, 8, 16)  # Monday 2026-03-09 00:00 in Shanghai
ENDS_AT = datetime(2026, 3, 15, 16)
T0 = datetime(2026, 3, 10, 2, 0, 0, 500)  # with microseconds: the window must be exact
SECOND = timedelta(seconds=1)
DAYS = timedelta(days=14)


def application(application_id: str, customer_id: str, applied_at: datetime, campaign_id=None):
    return {
        "application_id": application_id,
        "customer_id": customer_id,
        "campaign_id": campaign_id,
        "channel": "sms",
        "applied_at": applied_at,
        "product_code": "sme-revolving",
        "amount_requested": 10_000.0,
    }


def holdout(touch_id: str, customer_id: str, sent_at: datetime) -> dict:
    """The contract's hold-out row: an assignment, never sent, cost 0."""
    return touch(
        touch_id,
        customer_id,
        sent_at,
        campaign_id=CAMPAIGN_ID,
        variant="holdout",
        delivered=False,
        cost=0.0,
    )


def ours(touch_id: str, customer_id: str, sent_at: datetime, variant: str) -> dict:
    return touch(touch_id, customer_id, sent_at, campaign_id=CAMPAIGN_ID, variant=variant)


PEOPLE = {
    # customer: (variant assigned in the week or None, converted)
    "a-exact": ("A", True),  # applies exactly 14 days after the first touch
    "a-late": ("A", False),  # 14 days and a second after; and once before assignment
    "a-start": ("A", False),  # first touched at the week's first instant
    "b-other": ("B", True),  # applies through another campaign
    "b-none": ("B", True),  # applies with no campaign at all
    "b-tie": ("B", False),  # two first touches at the same instant: the lower touch_id's
    "h-same": ("holdout", True),  # never sent anything; applies at the assignment instant
    "h-none": ("holdout", False),  # applies, but 20 days later
    "early": (None, False),  # first touched before the week: assigned earlier
    "at-end": (None, False),  # first touched at the week's end: assigned next week
    "elsewhere": (None, False),  # touched by another campaign only
}


def build_campaign(conn: Connection) -> None:
    apply(conn, spec_dict())
    conn.execute(insert(Customer), [customer(name) for name in PEOPLE])
    conn.execute(
        insert(Touch),
        [
            ours("t-01", "a-exact", T0, "A"),
            ours("t-02", "a-exact", T0 + timedelta(days=1), "B"),  # later: does not reassign
            ours("t-03", "a-late", T0, "A"),
            ours("t-04", "a-start", STARTS_AT, "A"),
            ours("t-05", "b-other", T0, "B"),
            ours("t-06", "b-none", T0, "B"),
            touch("t-07", "b-none", STARTS_AT - timedelta(days=3)),  # another campaign's
            ours("t-tie-2", "b-tie", T0, "A"),
            ours("t-tie-1", "b-tie", T0, "B"),
            holdout("t-08", "h-same", T0),
            holdout("t-09", "h-none", T0 + timedelta(days=2)),
            ours("t-10", "early", STARTS_AT - timedelta(microseconds=1), "A"),
            ours("t-11", "early", T0, "B"),
            ours("t-12", "at-end", ENDS_AT, "A"),
            touch("t-13", "elsewhere", T0),
        ],
    )
    conn.execute(
        insert(Application),
        [
            application("ap-01", "a-exact", T0 + DAYS),
            application("ap-02", "a-late", T0 + DAYS + SECOND, CAMPAIGN_ID),
            application("ap-03", "a-late", T0 - SECOND, CAMPAIGN_ID),
            application("ap-04", "b-other", T0 + timedelta(days=3), "other-campaign"),
            application("ap-05", "b-none", T0 + timedelta(hours=1)),
            application("ap-06", "h-same", T0),
            application("ap-07", "h-none", T0 + timedelta(days=22)),
            application("ap-08", "early", T0 + timedelta(hours=2), CAMPAIGN_ID),
            application("ap-09", "at-end", ENDS_AT + timedelta(hours=1)),
            application("ap-10", "elsewhere", T0 + timedelta(hours=1)),
        ],
    )


@pytest.fixture
def campaign(engine: Engine) -> Iterator[Connection]:
    """The scenario campaign with the people above, in an open transaction."""
    with engine.begin() as conn:
        build_campaign(conn)
        yield conn


def as_dict(frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    return {row.variant: (row.members, row.converted) for row in frame.itertuples()}


def member_counts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    return {row.variant: getattr(row, column) for row in frame.itertuples()}


class TestExperimentMembers:
    """The cumulative members of the same campaign (`sql/experiment_members.sql`)."""

    LATER = ENDS_AT + DAYS  # every window of the week (and of at-end) has closed

    def members(self, conn: Connection, starts_at, ends_at, **options) -> pd.DataFrame:
        return experiment_members(conn, CAMPAIGN_ID, starts_at, ends_at, **options)

    def test_everyone_assigned_so_far(self, campaign: Connection) -> None:
        """Two weeks on: the week's members, the earlier one and the next week's one,
        outcomes within the window after each assignment."""
        frame = self.members(campaign, self.LATER - timedelta(days=7), self.LATER)
        assert list(frame.columns) == MEMBER_COLUMNS
        assert as_dict(frame) == {"A": (5, 3), "B": (3, 2), "holdout": (2, 1)}
        assert member_counts(frame, "assigned") == {"A": 5, "B": 3, "holdout": 2}
        assert set(member_counts(frame, "cohort_assigned").values()) == {0}

    def test_open_windows_are_pending(self, campaign: Connection) -> None:
        """Checked at the week's end, no window has closed: assigned, not yet members."""
        frame = self.members(campaign, STARTS_AT, ENDS_AT)
        assert member_counts(frame, "assigned") == {"A": 4, "B": 3, "holdout": 2}
        assert set(member_counts(frame, "members").values()) == {0}
        assert set(member_counts(frame, "converted").values()) == {0}
        # the week's own cohort: 'early' was assigned the week before
        assert member_counts(frame, "cohort_assigned") == {"A": 3, "B": 3, "holdout": 2}

    def test_a_window_closing_at_the_end_counts(self, campaign: Connection) -> None:
        """At T0 + 14 days exactly the windows opened at T0 have closed, the application
        at that very instant included; later assignments are pending."""
        frame = self.members(campaign, STARTS_AT, T0 + DAYS)
        assert as_dict(frame)["A"] == (4, 2)  # a-exact, a-late, a-start, early; at-end pending
        assert member_counts(frame, "assigned")["A"] == 5
        assert as_dict(frame)["holdout"] == (1, 1)  # h-none, assigned at T0 + 2 days, pends

    def test_the_covariate_is_known_before_assignment(self, campaign: Connection) -> None:
        """a-late applied a second before assignment: x = 1, and did not convert."""
        frame = self.members(campaign, STARTS_AT, self.LATER).set_index("variant")
        assert frame.loc["A", "covariate_sum"] == frame.loc["A", "covariate_square_sum"] == 1
        assert frame.loc["A", "covariate_converted_sum"] == 0
        assert frame.loc["B", "covariate_sum"] == frame.loc["holdout", "covariate_sum"] == 0
        frame = self.members(campaign, STARTS_AT, self.LATER, covariate_days=0)
        assert set(member_counts(frame, "covariate_sum").values()) == {0}

    def test_a_restart_leaves_out_earlier_assignments(self, campaign: Connection) -> None:
        frame = self.members(campaign, STARTS_AT, self.LATER, experiment_starts_at=STARTS_AT)
        assert as_dict(frame)["A"] == (4, 2)  # without 'early'

    def test_judged_with_its_cohort(self, campaign: Connection) -> None:
        results = judge(self.members(campaign, STARTS_AT, ENDS_AT), SPLIT)
        for r in results:
            json.dumps(r, allow_nan=False)
            assert r["decision"] in ("insufficient_sample", "srm_invalid")
            assert r["cohort"]["control_assigned"] + r["cohort"]["treatment_assigned"] > 0
            assert r["control_pending"] == r["control_assigned"]
