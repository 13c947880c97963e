"""The Check stage's judgements: variance, anomalies and the bottleneck, by hand.

Every expected number is worked out in the test's comment or data from small inline
frames; the property tests check what must hold for any input: statuses follow the bands
and never improve as the actual gets worse, z and direction agree, a week's baseline
never sees that week or later ones, and the bottleneck is the evidence's worst gap.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tasks.check.findings import (
    DIAGNOSES,
    STAGES,
    STATUSES,
    anomalies,
    bottleneck,
    stage_rates,
    stage_references_from_targets,
    variance,
    variance_status,
)

# --- helpers ----------------------------------------------------------------------------


def target(
    metric: str,
    value: float,
    *,
    channel: str | None = None,
    segment: str | None = None,
    warn: float = 0.05,
    fail: float = 0.15,
    lower_is_better: bool | None = None,
) -> dict[str, Any]:
    """A plan target row shaped like `tasks.plan.targets.scope_rows` makes them."""
    return {
        "metric": metric,
        "channel": channel,
        "segment": segment,
        "target": value,
        "tolerance_warn": warn,
        "tolerance_fail": fail,
        "lower_is_better": (
            metric in {"cac", "overdue_rate_30", "complaint_rate"}
            if lower_is_better is None
            else lower_is_better
        ),
        "evidence": {"sources": ["test"]},
    }


def actuals(*rows: dict[str, Any]) -> pd.DataFrame:
    """One row per scope; scope_channel/scope_segment default to None (= all)."""
    return pd.DataFrame([{"scope_channel": None, "scope_segment": None, **row} for row in rows])


def assert_json_ready(value: Any) -> None:
    """No NaN or ±inf anywhere, and only plain Python types (json refuses the rest)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"not JSON-ready ({error}): {value!r}") from error


def assert_judged(result: dict, **expected: Any) -> None:
    """Every expected field equal (floats to 1e-9); the message shows the whole result."""
    wrong = {
        key: (result.get(key), value)
        for key, value in expected.items()
        if not (
            math.isclose(result.get(key), value, rel_tol=1e-9, abs_tol=1e-12)
            if isinstance(value, float) and isinstance(result.get(key), float)
            else result.get(key) == value
        )
    }
    assert not wrong, f"fields differ (actual, expected): {wrong}; result: {result}"


def weekly_frame(values, volumes=1000, *, metric="application_rate", first=1, **extra):
    """Consecutive ISO weeks 2026-W01.. with `metric` and its volume `delivered`."""
    n = len(values)
    volumes = [volumes] * n if np.isscalar(volumes) else list(volumes)
    return pd.DataFrame(
        {
            "week": [f"2026-W{first + i:02d}" for i in range(n)],
            metric: values,
            "delivered": volumes,
            **extra,
        }
    )


def find(weekly: pd.DataFrame, week: str | list[str], **options: Any) -> list[dict]:
    """`anomalies` with the contract's defaults for one metric (application_rate over
    delivered, campaign total) unless `options` say otherwise."""
    arguments = {
        "weeks": [week] if isinstance(week, str) else week,
        "metrics": {"application_rate": "delivered"},
        "z": 3.0,
        "min_volume": 200,
        "window": 8,
        "min_weeks": 4,
        "scope": [],
        **options,
    }
    return anomalies(weekly, **arguments)


RANK = {status: rank for rank, status in enumerate(STATUSES)}

# 8 weeks around 0.05: deviations (×1e-3) 0, 2, −2, 1, −1, 0, 2, −2 → mean 0.05,
# sum of squares 18e-6, sample std sqrt(18/7)·1e-3; a week at 0.01 is 0.04 below:
# z = −0.04 / (sqrt(18/7)·1e-3) = −40·sqrt(7/18) ≈ −24.94.
NOISY = [0.050, 0.052, 0.048, 0.051, 0.049, 0.050, 0.052, 0.048]
NOISY_STD = math.sqrt(18 / 7) * 1e-3
NOISY_Z = -40 * math.sqrt(7 / 18)


# --- variance ---------------------------------------------------------------------------


class TestVariance:
    @pytest.mark.parametrize(
        ("metric", "goal", "actual", "expected_variance", "expected_pct", "status"),
        [
            # higher is better
            ("applications", 100.0, 120.0, 20.0, 0.20, "on_track"),  # beating is on track
            ("applications", 100.0, 100.0, 0.0, 0.0, "on_track"),
            ("applications", 100.0, 95.0, -5.0, -0.05, "on_track"),  # exactly 5 % short
            ("applications", 100.0, 94.0, -6.0, -0.06, "at_risk"),
            ("applications", 100.0, 85.0, -15.0, -0.15, "at_risk"),  # exactly 15 % short
            ("applications", 100.0, 84.0, -16.0, -0.16, "off_track"),
            ("roi", 0.5, 0.2, -0.3, -0.6, "off_track"),
            # boundaries that floating point puts a hair outside the band
            ("approval_rate", 0.3, 0.285, -0.015, -0.05, "on_track"),
            ("approval_rate", 0.4, 0.34, -0.06, -0.15, "at_risk"),
            # lower is better: over target is the shortfall
            ("cac", 50.0, 40.0, -10.0, -0.2, "on_track"),  # cheaper is on track
            ("cac", 50.0, 52.5, 2.5, 0.05, "on_track"),
            ("cac", 50.0, 55.0, 5.0, 0.10, "at_risk"),
            ("cac", 50.0, 60.0, 10.0, 0.20, "off_track"),
            ("overdue_rate_30", 0.03, 0.0345, 0.0045, 0.15, "at_risk"),
            ("complaint_rate", 2.0, 1.0, -1.0, -0.5, "on_track"),
        ],
    )
    def test_success(self, metric, goal, actual, expected_variance, expected_pct, status):
        (result,) = variance([target(metric, goal)], actuals({metric: actual}))
        assert_judged(
            result,
            metric=metric,
            scope={"channel": None, "segment": None},
            target=goal,
            actual=actual,
            variance=expected_variance,
            variance_pct=expected_pct,
            status=status,
        )
        assert_json_ready(result)

    def test_each_target_finds_its_own_scope(self):
        frame = actuals(
            {"applications": 300.0},
            {"scope_channel": "sms", "applications": 80.0},
            {"scope_channel": "phone", "applications": 220.0},
            {"scope_segment": "micro", "applications": 50.0},
        )
        rows = [
            target("applications", 300.0),
            target("applications", 100.0, channel="sms"),
            target("applications", 200.0, channel="phone"),
            target("applications", 50.0, segment="micro"),
        ]
        got = [(r["scope"], r["actual"], r["status"]) for r in variance(rows, frame)]
        assert got == [
            ({"channel": None, "segment": None}, 300.0, "on_track"),
            ({"channel": "sms", "segment": None}, 80.0, "off_track"),  # 20 % short
            ({"channel": "phone", "segment": None}, 220.0, "on_track"),
            ({"channel": None, "segment": "micro"}, 50.0, "on_track"),
        ], f"each target must be judged against the row of its own scope: {got}"

    def test_nan_scope_means_all(self):
        """pandas turns None into NaN in a text column: both mean the campaign scope."""
        frame = pd.DataFrame(
            {"scope_channel": [np.nan, "sms"], "scope_segment": [np.nan, np.nan], "roi": [1, 2]}
        )
        (result,) = variance([target("roi", 1.0)], frame)
        assert result["actual"] == 1.0 and isinstance(result["actual"], float), result

    def test_bands_come_from_the_target_row(self):
        (result,) = variance(
            [target("applications", 100.0, warn=0.10, fail=0.30)], actuals({"applications": 80.0})
        )
        assert result["status"] == "at_risk", f"20 % short within a 30 % fail band: {result}"

    def test_default_bands_when_the_row_has_none(self):
        row = {"metric": "applications", "channel": None, "segment": None, "target": 100.0}
        (result,) = variance([row], actuals({"applications": 90.0}), tolerance=(0.05, 0.15))
        assert result["status"] == "at_risk", result
        assert result["lower_is_better"] is False, result

    def test_direction_defaults_to_the_metric(self):
        row = {"metric": "cac", "channel": None, "segment": None, "target": 100.0}
        (result,) = variance([row], actuals({"cac": 90.0}))
        assert result["status"] == "on_track" and result["lower_is_better"], result

    def test_negative_target_is_judged_the_right_way_round(self):
        """roi −0.2 planned, −0.1 achieved: better than planned. variance_pct follows the
        contract (0.1 / −0.2 = −0.5) but the status must not read it as a shortfall."""
        (result,) = variance([target("roi", -0.2)], actuals({"roi": -0.1}))
        assert_judged(result, variance=0.1, variance_pct=-0.5, status="on_track")
        (worse,) = variance([target("roi", -0.2)], actuals({"roi": -0.3}))
        assert_judged(worse, variance=-0.1, variance_pct=0.5, status="off_track")

    @pytest.mark.parametrize(
        ("metric", "actual", "status"),
        [
            ("applications", 0.0, "on_track"),
            ("applications", 3.0, "on_track"),  # more than nothing is good
            ("complaint_rate", 0.0, "on_track"),
            ("complaint_rate", 0.5, "off_track"),  # any complaint against a zero target
            ("roi", -0.1, "off_track"),
        ],
    )
    def test_zero_target(self, metric, actual, status):
        (result,) = variance([target(metric, 0.0)], actuals({metric: actual}))
        assert_judged(result, variance=actual, variance_pct=None, status=status)
        assert_json_ready(result)

    def test_one_result_per_target_in_order(self):
        rows = [target("cac", 10.0), target("applications", 5.0), target("cac", 10.0, segment="x")]
        got = [r["metric"] for r in variance(rows, actuals({"cac": 9.0, "applications": 5.0}))]
        assert got == ["cac", "applications", "cac"], got

    def test_empty(self):
        assert variance([], actuals()) == []


class TestVarianceFailure:
    def test_more_than_one_row_for_a_scope(self):
        frame = actuals({"scope_channel": "sms", "roi": 1.0}, {"scope_channel": "sms", "roi": 2.0})
        with pytest.raises(ValueError, match="more than one row"):
            variance([target("roi", 1.0, channel="sms")], frame)


class TestVarianceNull:
    @pytest.mark.parametrize(
        ("row", "frame", "why"),
        [
            (target("cac", 50.0), actuals({"cac": np.nan}), "cac has no value"),
            (target("cac", 50.0), actuals({"cac": None}), "cac has no value"),
            (target("roi", 0.5), actuals({"roi": np.inf}), "roi has no value"),
            (target("roi", 0.5), actuals({"cac": 1.0}), "roi has no value"),  # no column
            (target("roi", 0.5, channel="im"), actuals({"roi": 1.0}), "no actuals for"),
            (target("roi", math.nan), actuals({"roi": 1.0}), "target is missing"),
        ],
    )
    def test_no_data(self, row, frame, why):
        (result,) = variance([row], frame)
        assert_judged(result, status="no_data", variance=None, variance_pct=None)
        assert why in result["note"], f"the note should say {why!r}: {result['note']!r}"
        assert_json_ready(result)

    def test_tiny_target_gives_no_infinite_pct(self):
        (result,) = variance([target("roi", 5e-324)], actuals({"roi": 1.0}))
        assert_judged(result, variance_pct=None, status="on_track")
        assert_json_ready(result)

    def test_actual_kept_as_none(self):
        (result,) = variance([target("cac", 50.0)], actuals({"cac": np.nan}))
        assert result["actual"] is None and result["target"] == 50.0, result


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
bands = st.tuples(st.floats(0, 0.5), st.floats(0, 0.5)).map(sorted)


class TestVarianceProperties:
    @given(goal=finite, better=finite, worse=finite, lower=st.booleans(), band=bands)
    @settings(max_examples=300, deadline=None)
    def test_a_worse_actual_never_gets_a_better_status(self, goal, better, worse, lower, band):
        if lower:
            better, worse = min(better, worse), max(better, worse)
        else:
            better, worse = max(better, worse), min(better, worse)
        options = {"lower_is_better": lower, "warn": band[0], "fail": band[1]}
        good = variance_status(better, goal, **options)
        bad = variance_status(worse, goal, **options)
        assert RANK[bad] >= RANK[good], (
            f"target {goal}, bands {band}, lower_is_better={lower}: "
            f"{better} → {good} but the worse {worse} → {bad}"
        )

    @given(goal=finite, actual=finite, lower=st.booleans(), band=bands)
    @settings(max_examples=300, deadline=None)
    def test_status_matches_the_bands(self, goal, actual, lower, band):
        assume(abs(goal) > 1e-6)
        row = target("m", goal, warn=band[0], fail=band[1], lower_is_better=lower)
        (result,) = variance([row], actuals({"m": actual}))
        assert_json_ready(result)
        shortfall = (actual - goal if lower else goal - actual) / abs(goal)
        margin = 1e-6  # stay clear of the boundaries, where the epsilon decides
        assume(all(abs(shortfall - edge) > margin for edge in band))
        expected = (
            "on_track" if shortfall < band[0] else "at_risk" if shortfall < band[1] else "off_track"
        )
        assert result["status"] == expected, (
            f"shortfall {shortfall:.6f} with bands {band} should be {expected}: {result}"
        )
        assert math.isclose(result["variance"], actual - goal, rel_tol=1e-12, abs_tol=1e-9)

    @given(goal=finite, gain=st.floats(0, 1e6), lower=st.booleans())
    @settings(max_examples=200, deadline=None)
    def test_beating_the_target_is_on_track(self, goal, gain, lower):
        actual = goal - gain if lower else goal + gain
        status = variance_status(actual, goal, lower_is_better=lower, warn=0.0, fail=0.0)
        assert status == "on_track", f"{actual} beats {goal} (lower={lower}) yet {status}"


# --- anomalies --------------------------------------------------------------------------


class TestAnomalies:
    def test_success_a_collapse_after_steady_weeks(self):
        weekly = weekly_frame([*NOISY, 0.01])
        (found,) = find(weekly, "2026-W09")
        assert_judged(
            found,
            metric="application_rate",
            scope={},
            week="2026-W09",
            value=0.01,
            baseline_mean=0.05,
            baseline_std=NOISY_STD,
            baseline_weeks=8,
            z=NOISY_Z,
            volume=1000.0,
            direction="down",
            note=None,
        )
        assert_json_ready(found)

    def test_a_rise_is_up(self):
        (found,) = find(weekly_frame([*NOISY, 0.09]), "2026-W09")
        assert_judged(found, z=40 * math.sqrt(7 / 18), direction="up")

    @pytest.mark.parametrize(
        ("value", "z", "flagged"),
        [
            (0.05 - 3 * NOISY_STD, 3.0, True),  # exactly 3 std below: ≥ z includes it
            (0.05 - 2.9 * NOISY_STD, 3.0, False),
            (0.05 + 2.9 * NOISY_STD, 2.5, True),
            (0.05, 0.5, False),
        ],
    )
    def test_threshold(self, value, z, flagged):
        found = find(weekly_frame([*NOISY, value]), "2026-W09", z=z)
        assert bool(found) is flagged, f"value {value} at z threshold {z}: {found}"

    def test_failure_small_volume_raises_nothing(self):
        weekly = weekly_frame([*NOISY, 0.01], volumes=[1000] * 8 + [150])
        assert find(weekly, "2026-W09") == [], "150 delivered is below the 200 minimum"

    def test_volume_at_the_minimum_counts(self):
        weekly = weekly_frame([*NOISY, 0.01], volumes=[1000] * 8 + [200])
        assert len(find(weekly, "2026-W09")) == 1, "200 delivered meets the 200 minimum"

    def test_null_too_little_history(self):
        weekly = weekly_frame([0.05, 0.052, 0.048, 0.01])
        assert find(weekly, "2026-W04") == [], "3 weeks of history are fewer than min_weeks 4"
        assert len(find(weekly, "2026-W04", min_weeks=3)) == 1, "3 weeks suffice at min_weeks 3"

    def test_baseline_never_includes_the_week_or_later_ones(self):
        """W05 is judged against W01–W04 only: mean 0.05, deviations 0, 2, −2, 0 (×1e-3),
        std sqrt(8/3)·1e-3. The later weeks at 0.5 would swamp the baseline if seen."""
        weekly = weekly_frame([0.050, 0.052, 0.048, 0.050, 0.01, 0.5, 0.5, 0.5, 0.5])
        (found,) = find(weekly, "2026-W05")
        std = math.sqrt(8 / 3) * 1e-3
        assert_judged(found, baseline_mean=0.05, baseline_std=std, baseline_weeks=4, z=-0.04 / std)

    def test_rows_out_of_order_are_sorted_by_week(self):
        weekly = weekly_frame([*NOISY, 0.01]).sample(frac=1.0, random_state=7)
        (found,) = find(weekly, "2026-W09")
        assert_judged(found, baseline_mean=0.05, z=NOISY_Z)

    def test_low_volume_weeks_are_dropped_from_the_baseline(self):
        """W04 has 50 delivered and a wild 0.5: it takes a slot of the 8-week window but
        is not part of the baseline, which is the other 7 weeks of NOISY minus its 4th
        (0.051): mean 0.349/7, and the week is judged against that."""
        values = [*NOISY[:3], 0.5, *NOISY[4:], 0.01]
        weekly = weekly_frame(values, volumes=[1000, 1000, 1000, 50, 1000, 1000, 1000, 1000, 1000])
        (found,) = find(weekly, "2026-W09")
        kept = np.array([v for i, v in enumerate(NOISY) if i != 3])
        assert_judged(
            found,
            baseline_mean=float(kept.mean()),
            baseline_std=float(kept.std(ddof=1)),
            baseline_weeks=7,
        )

    def test_only_the_trailing_window(self):
        """Four early weeks at 0.2 lie outside the 8-week window of W13."""
        weekly = weekly_frame([0.2, 0.2, 0.2, 0.2, *NOISY, 0.01])
        (found,) = find(weekly, "2026-W13")
        assert_judged(found, baseline_mean=0.05, baseline_weeks=8, z=NOISY_Z)

    def test_only_the_checked_weeks(self):
        weekly = weekly_frame([*NOISY, 0.01, 0.05])
        assert find(weekly, "2026-W10") == [], "W09's collapse is not in the checked week"
        assert [f["week"] for f in find(weekly, ["2026-W09", "2026-W10"])] == ["2026-W09"]
        assert find(weekly, "2026-W30") == [], "a checked week without a row raises nothing"

    def test_scope_groups_keep_their_own_baselines(self):
        sms = weekly_frame([*NOISY, 0.01], channel="sms")
        phone = weekly_frame([0.30, 0.31, 0.29, 0.30, 0.31, 0.29, 0.30, 0.31, 0.30])
        phone = phone.assign(channel="phone")
        weekly = pd.concat([phone, sms], ignore_index=True)
        found = find(weekly, "2026-W09", scope=["channel"])
        assert [(f["scope"], f["week"]) for f in found] == [({"channel": "sms"}, "2026-W09")], (
            f"only sms collapsed, against its own 0.05 baseline: {found}"
        )
        assert_judged(found[0], baseline_mean=0.05, z=NOISY_Z)

    def test_count_metric_is_its_own_volume(self):
        weekly = weekly_frame([*NOISY, 0.01]).assign(
            applications=[500, 520, 480, 510, 490, 500, 520, 480, 100]
        )
        found = find(weekly, "2026-W09", metrics={"applications": None})
        assert [f["metric"] for f in found] == [], "100 applications is below volume 200"
        weekly.loc[8, "applications"] = 300
        (found,) = find(weekly, "2026-W09", metrics={"applications": None})
        # baseline deviations 0, 20, −20, 10, −10, 0, 20, −20: mean 500, std 10·sqrt(18/7)
        assert_judged(found, value=300.0, volume=300.0, baseline_mean=500.0)
        assert_judged(found, z=-200 / (10 * math.sqrt(18 / 7)))

    def test_sorted_by_size_of_z(self):
        weekly = weekly_frame([*NOISY, 0.01]).assign(
            reach_rate=[0.90, 0.91, 0.89, 0.90, 0.91, 0.89, 0.90, 0.91, 0.80],
            touches=1100,
        )
        found = find(
            weekly,
            "2026-W09",
            metrics={"reach_rate": "touches", "application_rate": "delivered"},
        )
        scores = [abs(f["z"]) for f in found]
        assert [f["metric"] for f in found] == ["application_rate", "reach_rate"], found
        assert scores == sorted(scores, reverse=True), scores

    def test_flat_baseline(self):
        """A metric that never moved has std 0: no z, and only a change is reported."""
        assert find(weekly_frame([0.1] * 5), "2026-W05") == [], "no change, no anomaly"
        (found,) = find(weekly_frame([0.1] * 4 + [0.09]), "2026-W05")
        assert_judged(found, z=None, baseline_std=0.0, direction="down", value=0.09)
        assert "flat baseline" in found["note"], found["note"]
        assert_json_ready(found)

    def test_flat_baselines_sort_first(self):
        weekly = weekly_frame([*NOISY, 0.01]).assign(reach_rate=[1.0] * 8 + [0.95], touches=1000)
        found = find(
            weekly,
            "2026-W09",
            metrics={"application_rate": "delivered", "reach_rate": "touches"},
        )
        assert [f["z"] is None for f in found] == [True, False], found

    def test_null_values_in_history(self):
        """A week with no deliveries has a NaN rate: it never enters a baseline, even at a
        zero minimum volume, and it is never judged."""
        values = [*NOISY[:4], np.nan, *NOISY[4:], np.nan]
        weekly = weekly_frame(values, volumes=[1000] * 4 + [0] + [1000] * 4 + [0])
        assert find(weekly, "2026-W10", min_volume=0) == []
        weekly.loc[9, ["application_rate", "delivered"]] = [0.01, 1000]
        (found,) = find(weekly, "2026-W10", min_volume=0)
        assert_judged(found, baseline_mean=0.05, baseline_weeks=7)  # W02..W09, W05 is NaN

    def test_empty(self):
        empty = weekly_frame([])
        assert find(empty, "2026-W01") == []


class TestAnomaliesFailure:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"metrics": {"approval_rate": "applications"}}, "no column"),
            ({"scope": ["channel"]}, "no column"),
            ({"min_weeks": 1}, "min_weeks"),
            ({"window": 3, "min_weeks": 4}, "window"),
        ],
    )
    def test_bad_arguments(self, options, message):
        with pytest.raises(ValueError, match=message):
            find(weekly_frame(NOISY), "2026-W08", **options)

    def test_duplicate_weeks(self):
        weekly = pd.concat([weekly_frame(NOISY), weekly_frame(NOISY)], ignore_index=True)
        with pytest.raises(ValueError, match="more than one row"):
            find(weekly, "2026-W08")


@st.composite
def weekly_series(draw):
    """8–14 weeks of a rate with volumes, some below 200; the last few are checked."""
    n = draw(st.integers(8, 14))
    values = draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n))
    volumes = draw(st.lists(st.sampled_from([0, 100, 250, 1000]), min_size=n, max_size=n))
    return weekly_frame(values, volumes)


class TestAnomaliesProperties:
    @given(weekly_series(), st.floats(0.5, 4))
    @settings(max_examples=150, deadline=None)
    def test_z_sign_matches_direction(self, weekly, z):
        weeks = list(weekly["week"])
        for found in find(weekly, weeks, z=z):
            assert_json_ready(found)
            assert found["volume"] >= 200, found
            if found["z"] is not None:
                assert abs(found["z"]) >= z - 1e-9, found
                assert (found["z"] > 0) == (found["direction"] == "up"), found
            assert (found["value"] > found["baseline_mean"]) == (found["direction"] == "up")

    @given(weekly_series(), st.integers(0, 13), st.floats(0, 1, allow_nan=False))
    @settings(max_examples=150, deadline=None)
    def test_later_weeks_never_change_a_judgement(self, weekly, position, replacement):
        assume(position < len(weekly) - 1)
        week = weekly["week"].iloc[position]
        before = find(weekly, week, z=1.0)
        changed = weekly.copy()
        changed.loc[position + 1 :, "application_rate"] = replacement
        changed.loc[position + 1 :, "delivered"] = 1000
        assert find(changed, week, z=1.0) == before, f"later weeks changed {week}'s finding"

    @given(weekly_series())
    @settings(max_examples=100, deadline=None)
    def test_sorted_by_abs_z(self, weekly):
        found = find(weekly, list(weekly["week"]), z=0.5)
        scores = [math.inf if f["z"] is None else abs(f["z"]) for f in found]
        assert scores == sorted(scores, reverse=True), scores


# --- bottleneck -------------------------------------------------------------------------


PLAN = [
    target("touches", 10_000.0),
    target("delivered", 9_500.0),
    target("applications", 500.0),
    target("approval_rate", 0.4),
    target("disbursements", 170.0),
    target("applications", 90.0, channel="sms"),  # not the campaign scope
    target("approval_rate", 0.9, segment="micro"),
]
"""Plan references: reach 0.95, application 500/9500, approval 0.4, disbursement
170 / (500 × 0.4) = 0.85; no response target."""


def counts(**changes: float) -> dict[str, float]:
    """A period that matches PLAN's rates, with 1,900 responses; `changes` override."""
    base = {
        "touches": 10_000,
        "delivered": 9_500,
        "responded": 1_900,
        "applications": 500,
        "approved": 200,
        "disbursements": 170,
    }
    return {**base, **changes}


class TestBottleneck:
    def test_many_applications_low_approval_is_targeting(self):
        """800 applications (gap +60 %) but 120 approved: approval 0.15 against 0.4 is
        −62.5 %; disbursement 100/120 against 0.85 is −2 %. The message works; the
        people contacted do not qualify."""
        actual = stage_rates(counts(applications=800, approved=120, disbursements=100))
        found = bottleneck(actual, stage_references_from_targets(PLAN), "target")
        assert_judged(
            found,
            stage="approval",
            metric="approval_rate",
            actual=0.15,
            reference=0.4,
            reference_kind="target",
            gap_pct=-0.625,
        )
        for words in ("targeting", "who is contacted", "not at the message"):
            assert words in found["diagnosis"], f"{words!r} missing: {found['diagnosis']}"
        assert_json_ready(found)

    def test_few_applications_is_the_message(self):
        """Delivered as planned, 300 applications instead of 500: application −40 %;
        approval 120/300 = 0.4 on target, disbursement 102/120 = 0.85 on target."""
        actual = stage_rates(counts(applications=300, approved=120, disbursements=102))
        found = bottleneck(actual, stage_references_from_targets(PLAN), "target")
        assert_judged(found, stage="application", gap_pct=-0.4)
        assert "message" in found["diagnosis"] and "targeting" not in found["diagnosis"]

    @pytest.mark.parametrize(
        ("changes", "stage", "words"),
        [
            ({"delivered": 6_000, "responded": 1_200, "applications": 316}, "delivery", "contact"),
            ({"disbursements": 100}, "disbursement", "offer terms"),
            ({"approved": 150, "disbursements": 128}, "approval", "targeting"),
        ],
    )
    def test_each_stage_diagnosis(self, changes, stage, words):
        found = bottleneck(
            stage_rates(counts(**changes)), stage_references_from_targets(PLAN), "target"
        )
        assert found["stage"] == stage, f"expected {stage}: {found['evidence']}"
        assert words in found["diagnosis"], found["diagnosis"]
        assert found["diagnosis"] == DIAGNOSES[stage]

    def test_against_a_baseline_including_response(self):
        baseline = stage_rates(counts())
        actual = stage_rates(counts(responded=950))  # response 0.1 against 0.2: −50 %
        found = bottleneck(actual, baseline, "baseline")
        assert_judged(found, stage="response", gap_pct=-0.5, reference_kind="baseline")
        assert "message" in found["diagnosis"]

    def test_evidence_lists_every_stage(self):
        actual = stage_rates(counts(applications=800, approved=120, disbursements=100))
        found = bottleneck(actual, stage_references_from_targets(PLAN), "target")
        assert [row["stage"] for row in found["evidence"]] == [s for s, _ in STAGES]
        response = found["evidence"][1]
        assert response["reference"] is None and response["gap_pct"] is None, (
            f"the plan has no response target, so response is not compared: {response}"
        )
        assert response["actual"] == pytest.approx(0.2), response

    def test_nothing_below_reference(self):
        actual = stage_rates(counts(applications=600, approved=300, disbursements=280))
        found = bottleneck(actual, stage_references_from_targets(PLAN), "target")
        assert found["stage"] is None and found["gap_pct"] is None, found
        assert found["note"] == "no stage is below its target", found["note"]
        assert len(found["evidence"]) == 5
        assert_json_ready(found)

    def test_ties_go_upstream(self):
        reference = {"reach_rate": 1.0, "application_rate": 0.1}
        found = bottleneck({"reach_rate": 0.5, "application_rate": 0.05}, reference, "baseline")
        assert found["stage"] == "delivery", found

    def test_failure_unknown_reference_kind(self):
        with pytest.raises(ValueError, match="reference_kind"):
            bottleneck(stage_rates(counts()), stage_rates(counts()), "plan")

    @pytest.mark.parametrize(
        ("actual", "reference"),
        [
            ({}, {}),
            (stage_rates(counts()), {}),
            ({name: math.nan for _, name in STAGES}, stage_rates(counts())),
            (stage_rates(counts()), {"approval_rate": 0.0}),  # no relative gap to a zero
        ],
    )
    def test_null_nothing_to_compare(self, actual, reference):
        assert bottleneck(actual, reference, "baseline") is None

    def test_null_a_tiny_reference_gives_no_infinite_gap(self):
        found = bottleneck({"reach_rate": 0.5}, {"reach_rate": 5e-324}, "baseline")
        assert found is None, f"0.5 / 5e-324 overflows: no gap, nothing compared: {found}"

    def test_null_stages_are_skipped(self):
        """No applications: approval and disbursement are NaN and cannot be the
        bottleneck, but the application stage (0 against 500/9500) is −100 %."""
        actual = stage_rates(counts(applications=0, approved=0, disbursements=0))
        found = bottleneck(actual, stage_references_from_targets(PLAN), "target")
        assert_judged(found, stage="application", gap_pct=-1.0)
        assert [row["gap_pct"] for row in found["evidence"]][3:] == [None, None]
        assert_json_ready(found)


rates = st.one_of(st.none(), st.just(math.nan), st.floats(0, 1))


class TestBottleneckProperties:
    @given(
        st.fixed_dictionaries({name: rates for _, name in STAGES}),
        st.fixed_dictionaries({name: rates for _, name in STAGES}),
    )
    @settings(max_examples=300, deadline=None)
    def test_gap_is_the_minimum_of_the_evidence(self, actual, reference):
        found = bottleneck(actual, reference, "baseline")
        if found is None:
            return
        assert_json_ready(found)
        gaps = [row["gap_pct"] for row in found["evidence"] if row["gap_pct"] is not None]
        if found["stage"] is None:
            assert min(gaps) >= -1e-9, f"a stage is below reference: {found['evidence']}"
        else:
            assert found["gap_pct"] == min(gaps), f"not the worst gap: {found}"
            assert found["gap_pct"] < 0, found


# --- stage rates and references ---------------------------------------------------------


class TestStageRates:
    def test_success(self):
        got = stage_rates(counts())
        expected = {
            "reach_rate": 0.95,
            "response_rate": 0.2,
            "application_rate": 500 / 9_500,
            "approval_rate": 0.4,
            "disbursement_rate": 0.85,
        }
        assert got == pytest.approx(expected), got

    def test_series_with_numpy_counts(self):
        series = pd.Series(counts(), dtype="int64")
        assert stage_rates(series) == pytest.approx(stage_rates(counts()))
        assert all(type(value) is float for value in stage_rates(series).values())

    @pytest.mark.parametrize(
        ("changes", "nan"),
        [
            ({"touches": 0}, ["reach_rate"]),
            ({"delivered": 0}, ["response_rate", "application_rate"]),
            ({"applications": 0, "approved": 0}, ["approval_rate", "disbursement_rate"]),
            ({"approved": None}, ["approval_rate", "disbursement_rate"]),
            ({"responded": math.nan}, ["response_rate"]),
            ({"decided": 0, "approved": 0}, ["approval_rate", "disbursement_rate"]),
        ],
    )
    def test_null_denominators_give_nan(self, changes, nan):
        got = stage_rates(counts(**changes))
        assert [name for name, value in got.items() if math.isnan(value)] == nan, got

    def test_no_decision_is_no_data_not_a_zero_approval(self):
        """Applications none of which is decided yet (or a feed without decisions): the
        approval stage has no data, so the bottleneck cannot blame it."""
        got = stage_rates(counts(decided=0, approved=0, disbursements=0))
        assert math.isnan(got["approval_rate"]), got
        assert stage_rates(counts(decided=1, approved=0))["approval_rate"] == 0.0
        found = bottleneck(got, stage_references_from_targets(PLAN), "target")
        assert found is None or found["stage"] != "approval", found

    def test_missing_counts(self):
        got = stage_rates({"touches": 10, "delivered": 5})
        assert got["reach_rate"] == 0.5 and math.isnan(got["application_rate"]), got


class TestStageReferencesFromTargets:
    def test_success(self):
        got = stage_references_from_targets(PLAN)
        assert got == pytest.approx(
            {
                "reach_rate": 0.95,
                "application_rate": 500 / 9_500,
                "approval_rate": 0.4,
                "disbursement_rate": 0.85,
            }
        ), f"campaign scope only, no response_rate: {got}"

    def test_null_missing_inputs_leave_rates_out(self):
        rows = [target("touches", 0.0), target("delivered", 100.0), target("approval_rate", 0.3)]
        assert stage_references_from_targets(rows) == {"approval_rate": 0.3}
        assert stage_references_from_targets([]) == {}

    def test_failure_two_campaign_targets_for_a_metric(self):
        with pytest.raises(ValueError, match="more than one"):
            stage_references_from_targets([target("touches", 1.0), target("touches", 2.0)])
