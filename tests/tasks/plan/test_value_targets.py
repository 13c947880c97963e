"""Targets on the value KPIs from each scope's history (tasks.plan.value_targets)."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.common.campaigns import CampaignSpec
from tasks.plan.plan import History
from tasks.plan.value_targets import value_rows
from tests.scenario import spec_dict

SPEC = CampaignSpec.model_validate(spec_dict())
CELLS = ["channel", "segment"]


def history() -> History:
    """sms/sme has plenty of history; phone/sme only 5 loans and 4 answers."""
    book = pd.DataFrame(
        [("sms", "sme", 1000.0, 40, 0, 2, 0), ("phone", "sme", 500.0, 5, 0, 1, 0)],
        columns=[*CELLS, "loan_balance", "snapshot_loans", "seasoned_loans", "npl_loans",
                 "overdue_loans"],
    )  # fmt: skip
    families = pd.DataFrame(
        [("sms", "sme", 40, 10, 80_000.0, 40, 20, 8, 40, 4),
         ("phone", "sme", 5, 5, 50_000.0, 4, 0, 4, 0, 0)],
        columns=[*CELLS, "value_loans", "new_customers", "lifetime_value", "answers",
                 "promoters", "detractors", "closing_borrowers", "churned_borrowers"],
    )  # fmt: skip
    empty = pd.DataFrame()
    return History([], empty, empty, pd.Series(dtype=float), {}, 0.0, 0.0,
                   overdue_cells=book, family_cells=families)  # fmt: skip


def funnel_rows() -> list[dict]:
    rows = []
    for channel, disbursements, cac in ((None, 45.0, 100.0), ("sms", 40.0, 80.0),
                                        ("phone", 5.0, 400.0)):  # fmt: skip
        for metric, target in (("disbursements", disbursements), ("cac", cac)):
            rows.append({"metric": metric, "channel": channel, "segment": None, "target": target})
    return rows


def targets() -> dict[tuple, dict]:
    rows = value_rows(SPEC, history(), funnel_rows(), (0.05, 0.15), min_count=30)
    return {(row["channel"], row["metric"]): row for row in rows}


def test_a_scope_with_history_gets_its_own_rates() -> None:
    found = targets()
    assert found[("sms", "npl_rate")]["target"] == pytest.approx(2 / 40)
    assert found[("sms", "ltv")]["target"] == pytest.approx(2_000.0)
    assert found[("sms", "ltv_cac")]["target"] == pytest.approx(2_000.0 / 80.0)
    assert found[("sms", "nps")]["target"] == pytest.approx(100 * (20 - 8) / 40)
    assert found[("sms", "churn_rate")]["target"] == pytest.approx(4 / 40)
    assert found[("sms", "new_customers")]["target"] == pytest.approx(40 * 10 / 40)
    assert found[("sms", "loan_balance")]["target"] == pytest.approx(1000.0 * SPEC.growth)
    assert found[("sms", "npl_rate")]["evidence"]["basis"] == "own"
    assert found[("sms", "npl_rate")]["lower_is_better"]
    assert not found[("sms", "nps")]["lower_is_better"]


def test_a_thin_scope_takes_the_campaigns_rates_and_says_why() -> None:
    found = targets()
    npl = found[("phone", "npl_rate")]
    assert npl["target"] == pytest.approx(3 / 45)
    assert npl["evidence"]["basis"] == "campaign"
    assert "5 loans with a snapshot" in npl["evidence"]["fallback"]
    assert found[("phone", "nps")]["target"] == pytest.approx(100 * (20 - 12) / 44)
    assert found[("phone", "ltv_cac")]["target"] == pytest.approx(130_000 / 45 / 400.0)


def test_the_campaign_scope_sums_its_cells() -> None:
    found = targets()
    assert found[(None, "loan_balance")]["target"] == pytest.approx(1500.0 * SPEC.growth)
    assert found[(None, "churn_rate")]["target"] == pytest.approx(4 / 40)


def test_no_history_of_a_kind_no_target() -> None:
    """No surveys, no payoffs (the UCI history): no nps or churn_rate target at all."""
    past = history()
    past.family_cells = past.family_cells.assign(
        answers=0, promoters=0, detractors=0, closing_borrowers=0, churned_borrowers=0
    )
    rows = value_rows(SPEC, past, funnel_rows(), (0.05, 0.15), min_count=30)
    assert not {row["metric"] for row in rows} & {"nps", "churn_rate"}
