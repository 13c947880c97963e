"""The review's first screen: exceptions ranked by what they cost or risk, worked by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from types import SimpleNamespace

import pandas as pd
import pytest
from sqlalchemy import Engine

from tasks.check.result import Kpi
from tasks.common.metrics import campaign_timezone
from tasks.review.summary import (
    campaign_exceptions,
    changes_since_last_week,
    exception_cost,
    overdue_exposure,
    pending_decisions,
    ranked,
    sparkline,
    summarise_review,
)
from tests.tasks.common.test_metrics import W12, Data, O, S, apply_campaigns

CAMPAIGN = {"channel": None, "segment": None}
SMS = {"channel": "sms", "segment": None}


def kpi(metric: str, actual: float, target: float | None, status: str, scope=CAMPAIGN) -> Kpi:
    pct = None if not target else (actual - target) / target
    return Kpi(metric, dict(scope), target, actual, None, pct, status)


def campaign(kpis: list[Kpi], actions=(), sop=()) -> SimpleNamespace:
    review = SimpleNamespace(
        campaign_id="c1",
        name="Spring",
        kpis=kpis,
        trend=pd.DataFrame({"disbursements": [1, 2, 3, 4, 5, 6, 7, 8, 9]}),
        actions=list(actions),
        sop_changes=list(sop),
        note=None,
    )
    review.campaign_kpis = lambda: [item for item in kpis if item.is_campaign_wide]
    return review


KPIS = [
    # the campaign: 10,000 per disbursement, 100 disbursements, cost 2,000
    kpi("disbursements", 100, 120, "off_track"),  # 20 short x 10,000 = 200,000
    kpi("disbursed_amount", 1_000_000, 1_050_000, "at_risk"),  # 50,000 short
    kpi("cost", 2_000, 1_500, "off_track"),  # 500 over
    kpi("roi", 3.0, 5.0, "off_track"),  # 2.0 x cost 2,000 = 4,000 net income
    kpi("cac", 20, 15, "off_track"),  # 5 x 100 disbursements = 500
    kpi("application_rate", 0.03, 0.04, "off_track"),  # 25 % x 1,000,000 = 250,000
    kpi("overdue_rate_30", 0.05, 0.03, "off_track"),  # exposure 300,000
    kpi("complaint_rate", 2.0, 1.0, "off_track"),  # not money
    kpi("approval_rate", 0.5, 0.5, "on_track"),  # not an exception
    # sms: 4 disbursements, 32,000 disbursed
    kpi("disbursements", 4, 6, "off_track", SMS),  # 2 x 8,000 = 16,000
    kpi("disbursed_amount", 32_000, 30_000, "on_track", SMS),
    kpi("overdue_rate_30", 0.10, 0.03, "off_track", SMS),  # exposure 7,000
]
EXPOSURE = {"campaign": 300_000.0, "channel=sms": 7_000.0}
EXPECTED = [
    ("overdue_rate_30", "campaign", 300_000.0),
    ("application_rate", "campaign", 250_000.0),
    ("disbursements", "campaign", 200_000.0),
    ("disbursed_amount", "campaign", 50_000.0),
    ("disbursements", "channel=sms", 16_000.0),
    ("overdue_rate_30", "channel=sms", 7_000.0),
    ("roi", "campaign", 4_000.0),
    ("cac", "campaign", 500.0),
    ("cost", "campaign", 500.0),
    ("complaint_rate", "campaign", None),
]


class TestExceptions:
    def test_ranked_by_their_cost_worked_by_hand(self) -> None:
        found = ranked(campaign_exceptions(campaign(KPIS), EXPOSURE, "CNY"))
        got = [(item.metric, item.scope, item.amount) for item in found]
        assert got == [(m, s, pytest.approx(a) if a else a) for m, s, a in EXPECTED]

    def test_the_ranking_follows_the_computed_cost(self) -> None:
        found = ranked(campaign_exceptions(campaign(KPIS), EXPOSURE, "CNY"))
        amounts = [item.amount for item in found if item.amount is not None]
        assert amounts == sorted(amounts, reverse=True)
        assert found[-1].amount is None, "what money cannot measure comes last"

    def test_risk_is_the_overdue_exposure(self) -> None:
        kind, amount = exception_cost(KPIS[6], {}, 300_000.0)
        assert (kind, amount) == ("risk", 300_000.0)

    def test_a_churn_rate_above_its_target_costs_its_relative_excess(self) -> None:
        """churn_rate is lower-is-better like the check says: 12 % against 10 % is 20 %
        of the disbursed amount at risk; 8 % against 10 % costs nothing."""
        above = kpi("churn_rate", 0.12, 0.10, "off_track")
        below = kpi("churn_rate", 0.08, 0.10, "off_track")
        scope = {"disbursed_amount": 1_000_000.0}
        assert exception_cost(above, scope, None) == ("money", pytest.approx(200_000.0))
        assert exception_cost(below, scope, None) == ("money", 0.0)

    def test_one_line_of_diagnosis_in_the_metrics_units(self) -> None:
        found = ranked(campaign_exceptions(campaign(KPIS), EXPOSURE, "CNY"))
        lines = {(item.metric, item.scope): item.diagnosis for item in found}
        assert lines[("overdue_rate_30", "campaign")] == (
            "overdue_rate_30 5.0 % against target 3.0 % (+66.7 %): "
            "300,000 CNY outstanding in loans 30+ days past due"
        )
        assert lines[("disbursements", "campaign")] == (
            "disbursements 100 against target 120 (−16.7 %): "
            "about 200,000 CNY disbursed short of plan"
        )
        assert lines[("roi", "campaign")].startswith("roi 3.0× against target 5.0×")
        assert "\n" not in "".join(lines.values())


class TestCardsDecisionsChanges:
    def test_cards_side_by_side_with_an_eight_week_sparkline(self) -> None:
        summary = summarise_review([campaign(KPIS)], {"c1": EXPOSURE}, "CNY")
        cards = summary.cards[0]
        assert [card.metric for card in cards.business] == [
            "disbursements",
            "disbursed_amount",
            "application_rate",
            "approval_rate",
            "cac",
            "roi",
            "cost",
        ]
        assert [card.metric for card in cards.asset_quality] == [
            "overdue_rate_30",
            "complaint_rate",
        ]
        assert cards.business[0].spark == "▁▂▃▄▅▆▇█", "the last eight weeks of 9"
        assert cards.business[0].actual == "100" and cards.business[1].actual == "1,000,000 CNY"
        assert cards.business[5].target == "5.0×"

    def test_the_four_families_side_by_side(self) -> None:
        """The first screen groups the cards by the seeds' families; risk (asset quality)
        has a card of its own beside business, channel and customer."""
        cards = summarise_review([campaign(KPIS)], {"c1": EXPOSURE}, "CNY").cards[0]
        families = {label: [card.metric for card in rows] for label, rows in cards.families}
        assert list(families) == ["Business", "Risk", "Channel", "Customer"]
        assert families["Business"] == ["disbursements", "disbursed_amount", "roi", "cost"]
        assert families["Channel"] == ["application_rate", "approval_rate", "cac"]
        assert families["Risk"] == ["overdue_rate_30", "complaint_rate"]
        assert sum(len(rows) for rows in families.values()) == len(
            [*cards.business, *cards.asset_quality]
        ), "every card in one family"

    def test_sparkline(self) -> None:
        assert sparkline([0, 7, None, 3.5]) == "▁█ ▅"
        assert sparkline([None, None]) == ""
        assert sparkline([2, 2]) == "▁▁"

    def test_proposed_actions_wait_with_their_command(self) -> None:
        actions = [
            {
                "action_id": 7,
                "type": "shift_window",
                "scope": {"window": "noon"},
                "status": "proposed",
                "rationale": "noon is slow",
            },
            {
                "action_id": 8,
                "type": "pause",
                "scope": {"channel": "sms"},
                "status": "applied",
                "decided_by": "guardrail",
            },
        ]
        review = campaign(KPIS, actions, [{"version": 3}])
        [decision] = pending_decisions(review)
        assert decision.approve == "pdca actions approve 7 --by NAME"
        assert [change.what for change in changes_since_last_week(review)] == [
            "action 8 pause (channel=sms): applied by guardrail",
            "SOP version 3",
        ]


@pytest.fixture
def data(engine: Engine) -> Iterator[Data]:
    """The metrics tests' campaigns S and O, and an open transaction to add rows to."""
    with engine.begin() as conn:
        apply_campaigns(conn)
        yield Data(conn)


class TestOverdueExposure:
    def test_the_outstanding_of_the_loans_overdue_by_scope(self, data: Data) -> None:
        """The loans overdue_rate_30 counts as overdue, by their latest snapshot's
        outstanding (sql/review_overdue_exposure.sql), at the end of W12:

        L1 sms/sme  latest 22 Mar dpd 35, 8,000 out (1 Mar: 9,000)  overdue: 8,000
        L2 sms/sme  20 Mar dpd 0, 5,000 out                          current
        L4 sms/sme  disbursed 21 Feb: 29 days by 22 Mar, dpd 30      not seasoned
        L5 sms/sme  snapshot 23 Mar dpd 60                           after the end
        L8 another campaign's loan, dpd 60, 1,000,000 out           not this campaign
        L9 phone/retail  21 Mar dpd 45, 2,500 out                    overdue: 2,500
        """
        c1, c2 = data.customer("c1", "sme"), data.customer("c2", "retail")
        l1 = data.disbursed_application(c1, datetime(2026, 2, 1, 10))
        data.snapshot(l1, date(2026, 3, 1), dpd=0, outstanding=9_000.0)
        data.snapshot(l1, date(2026, 3, 22), dpd=35, outstanding=8_000.0)
        l2 = data.disbursed_application(c1, datetime(2026, 2, 1, 10))
        data.snapshot(l2, date(2026, 3, 20), dpd=0, outstanding=5_000.0)
        l4 = data.disbursed_application(c1, datetime(2026, 2, 21, 10))
        data.snapshot(l4, date(2026, 3, 22), dpd=30, outstanding=3_000.0)
        l5 = data.disbursed_application(c1, datetime(2026, 2, 1, 10))
        data.snapshot(l5, date(2026, 3, 23), dpd=60, outstanding=7_000.0)
        other = data.application(c1, datetime(2026, 1, 20), campaign=O)
        l8 = data.loan(other, datetime(2026, 1, 25))
        data.snapshot(l8, date(2026, 3, 22), dpd=60, outstanding=1_000_000.0)
        data.touch(c2, datetime(2026, 1, 17), channel="phone")
        by_touch = data.application(c2, datetime(2026, 1, 20), channel="phone")
        l9 = data.loan(by_touch, datetime(2026, 1, 25))
        data.snapshot(l9, date(2026, 3, 21), dpd=45, outstanding=2_500.0)
        exposure = overdue_exposure(data.conn, S, campaign_timezone(data.conn, S), W12)
        assert exposure == {
            "campaign": 10_500.0,
            "channel=phone": 2_500.0,
            "channel=sms": 8_000.0,
            "segment=retail": 2_500.0,
            "segment=sme": 8_000.0,
        }
