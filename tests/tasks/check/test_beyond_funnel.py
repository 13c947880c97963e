"""tasks.check.beyond_funnel: the asset-quality or customer-value KPI furthest on its bad
side of its reference, judged by hand."""

from __future__ import annotations

import json
import math

import pytest

from tasks.check.beyond_funnel import BEYOND_DIAGNOSES, BEYOND_FUNNEL, beyond_funnel
from tasks.check.result import Bottleneck


def test_lower_is_better_counts_a_rise_as_a_shortfall() -> None:
    """npl_rate up 50 % is worse than ltv down 20 %: the risk KPI is named."""
    found = beyond_funnel(
        {"npl_rate": 0.03, "ltv": 800.0}, {"npl_rate": 0.02, "ltv": 1000.0}, "target"
    )
    assert found["metric"] == "npl_rate" and found["family"] == "risk"
    assert found["gap_pct"] == pytest.approx(-0.5)
    assert found["diagnosis"] == BEYOND_DIAGNOSES["npl_rate"]
    evidence = {row["metric"]: row["gap_pct"] for row in found["evidence"]}
    assert evidence["ltv"] == pytest.approx(-0.2)
    assert [row["metric"] for row in found["evidence"]] == [m for m, _ in BEYOND_FUNNEL]


def test_a_negative_nps_reference_is_measured_by_its_size() -> None:
    """From −10 to −20 is a fall of 100 % of the reference's size, not a rise."""
    found = beyond_funnel({"nps": -20.0}, {"nps": -10.0}, "baseline")
    assert found["metric"] == "nps" and found["gap_pct"] == pytest.approx(-1.0)


def test_none_worse_says_so() -> None:
    found = beyond_funnel(
        {"churn_rate": 0.1, "nps": 30.0}, {"churn_rate": 0.2, "nps": 20.0}, "target"
    )
    assert found["metric"] is None and found["gap_pct"] is None
    assert "no customer-value or asset-quality KPI" in found["note"]


@pytest.mark.parametrize(
    "actual, reference",
    [
        ({}, {}),
        ({"nps": None, "churn_rate": math.nan}, {"nps": 10.0, "churn_rate": 0.1}),
        ({"npl_rate": 0.01}, {"npl_rate": 0.0}),  # no relative gap from 0
    ],
)
def test_nothing_comparable_is_none(actual: dict, reference: dict) -> None:
    assert beyond_funnel(actual, reference, "baseline") is None


def test_unknown_reference_kind() -> None:
    with pytest.raises(ValueError, match="reference_kind"):
        beyond_funnel({}, {}, "guess")


def test_it_travels_in_the_bottleneck_of_the_json() -> None:
    """`bottleneck.beyond_funnel` reads back from the stored JSON as it was written."""
    beyond = beyond_funnel({"ltv_cac": 2.0}, {"ltv_cac": 4.0}, "target")
    document = {
        "stage": "approval",
        "metric": "approval_rate",
        "actual": 0.2,
        "reference": 0.3,
        "gap_pct": -1 / 3,
        "reference_kind": "target",
        "diagnosis": "…",
        "note": None,
        "evidence": [],
        "beyond_funnel": beyond,
    }
    back = Bottleneck.from_json(json.loads(json.dumps(document, allow_nan=False)))
    assert back.beyond_funnel.metric == "ltv_cac"
    assert back.to_json() == document
