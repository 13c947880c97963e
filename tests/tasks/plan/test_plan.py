"""The units of the plan stage: the period's budget and send days, the history window,
where the history comes from, approved adjustments, and plan versions.

Date arithmetic on inline specs; the database units on SQLite and PostgreSQL (`engine`).
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime

import pytest
from sqlalchemy import Engine, insert, select

from pdca.models import Action, Budget, Customer, Plan, Target, Touch
from tasks.common.campaigns import CampaignSpec, get_campaign_spec
from tasks.common.periods import Period
from tasks.plan.budget import (
    Allocation,
    BudgetAdjustment,
    ChannelEconomics,
    Explanation,
)
from tasks.plan.plan import (
    allocate_within_risk,
    approved_adjustments,
    find_history,
    history_window,
    mark_applied,
    period_budget,
    previous_budget,
    previous_split,
    save_plan,
    send_days,
)
from tests.scenario import apply, customer, spec_dict, touch


def spec(
    start: str = "2026-03-02", end: str = "2026-05-31", budget: float = 91_000
) -> CampaignSpec:
    """91 days from 2 March to 31 May: 1,000 a day."""
    return CampaignSpec.model_validate(spec_dict(start=start, end=end, budget_total=budget))


class TestPeriodBudget:
    @pytest.mark.parametrize(
        ("period", "expected"),
        [
            ("2026-W11", 7_000),  # a whole week inside
            ("2026-03", 30_000),  # March from the 2nd
            ("2026-W10", 7_000),  # the first week starts with the campaign
            ("2026-Q2", 61_000),  # April and May
            ("2026-Q1", 30_000),
            ("2026-W23", 0),  # 1-7 June: after the end
            ("2026-02", 0),
        ],
    )
    def test_share_by_days_within_the_campaign(self, period, expected):
        assert period_budget(spec(), Period.parse(period)) == pytest.approx(expected)

    def test_a_period_covering_the_campaign_gets_all_of_it(self):
        assert period_budget(spec(), Period.parse("2026-Q2")) + period_budget(
            spec(), Period.parse("2026-Q1")
        ) == pytest.approx(91_000)

    def test_partial_week_at_the_end(self):
        # ends Wednesday 3 June: Monday to Wednesday of 2026-W23
        short = spec(end="2026-06-03", budget=94_000)
        assert period_budget(short, Period.parse("2026-W23")) == pytest.approx(3_000)


class TestSendDays:
    @pytest.mark.parametrize(
        ("period", "start", "end", "expected"),
        [
            ("2026-W11", "2026-03-02", "2026-05-31", 5),
            ("2026-03", "2026-03-02", "2026-05-31", 22),
            ("2026-W10", "2026-03-04", "2026-05-31", 3),  # starts on Wednesday
            ("2026-W10", "2026-03-07", "2026-05-31", 0),  # only the weekend is inside
            ("2026-W23", "2026-03-02", "2026-05-31", 0),
        ],
    )
    def test_weekdays_within_the_campaign(self, period, start, end, expected):
        assert send_days(spec(start, end), Period.parse(period)) == expected


class TestHistoryWindow:
    @pytest.mark.parametrize(
        ("end", "weeks", "start", "stop", "name"),
        [
            (date(2026, 3, 18), 8, date(2026, 1, 19), date(2026, 3, 16), "2026-W04..2026-W11"),
            (date(2026, 3, 16), 8, date(2026, 1, 19), date(2026, 3, 16), "2026-W04..2026-W11"),
            (date(2026, 3, 22), 1, date(2026, 3, 9), date(2026, 3, 16), "2026-W11..2026-W11"),
            (date(2026, 1, 7), 2, date(2025, 12, 22), date(2026, 1, 5), "2025-W52..2026-W01"),
        ],
        ids=["wednesday", "monday", "sunday-one-week", "new-year"],
    )
    def test_whole_iso_weeks_before_the_end(self, end, weeks, start, stop, name):
        window = history_window(end, weeks)
        assert (window.start, window.end, window.name, window.kind) == (start, stop, name, "weeks")
        assert window.start.weekday() == 0 and window.days == 7 * weeks


# --- the database units -----------------------------------------------------------------------


def add_campaign(conn, campaign_id: str, product: str = "sme-revolving") -> None:
    apply(conn, spec_dict(campaign_id, product=product))


def add_touch(conn, touch_id: str, campaign_id: str, sent_at: datetime) -> None:
    conn.execute(insert(Touch).values(**touch(touch_id, "c1", sent_at, campaign_id=campaign_id)))


@pytest.fixture
def world(engine: Engine) -> Engine:
    """Campaigns `sme-old` (history in February), `sme-new` (none) and `farm` (December)."""
    with engine.begin() as conn:
        conn.execute(insert(Customer).values(**customer("c1")))
        add_campaign(conn, "sme-old")
        add_campaign(conn, "sme-new")
        add_campaign(conn, "farm", product="farm-seasonal")
        add_touch(conn, "t1", "sme-old", datetime(2026, 2, 20, 4))
        add_touch(conn, "t2", "farm", datetime(2025, 12, 10, 4))
    return engine


class TestFindHistory:
    def test_own_trailing_weeks_first(self, world):
        with world.connect() as conn:
            sources = find_history(conn, spec_for(conn, "sme-old"), Period.parse("2026-W10"))
        assert [(s.campaign_id, s.window.name) for s in sources] == [
            ("sme-old", "2026-W02..2026-W09")
        ]
        assert "own trailing weeks" in sources[0].reason

    def test_a_new_campaign_borrows_the_same_product(self, world):
        with world.connect() as conn:
            (source,) = find_history(conn, spec_for(conn, "sme-new"), Period.parse("2026-W10"))
        assert source.campaign_id == "sme-old" and "same product" in source.reason
        assert source.window.end > date(2026, 2, 20) >= source.window.start

    def test_another_product_borrows_any_history(self, world):
        with world.begin() as conn:
            add_campaign(conn, "cars", product="auto-loan")
        with world.connect() as conn:
            sources = find_history(conn, spec_for(conn, "cars"), Period.parse("2026-W10"))
        assert sorted(s.campaign_id for s in sources) == ["farm", "sme-old"]
        assert all("no campaign of this product" in s.reason for s in sources)

    def test_no_history_anywhere(self, engine):
        with engine.begin() as conn:
            add_campaign(conn, "alone")
        with engine.connect() as conn:
            assert find_history(conn, spec_for(conn, "alone"), Period.parse("2026-W10")) == []


def spec_for(conn, campaign_id: str) -> CampaignSpec:
    from tasks.common.campaigns import get_campaign_spec

    return get_campaign_spec(conn, campaign_id)


def action(conn, kind: str, params: dict, status: str = "approved", applied=None) -> int:
    return conn.execute(
        insert(Action)
        .values(
            campaign_id="sme-old",
            period="2026-W09",
            type=kind,
            params=params,
            rationale="test",
            status=status,
            applied_to_period=applied,
        )
        .returning(Action.action_id)
    ).scalar_one()


class TestApprovedAdjustments:
    def test_only_approved_unapplied_budget_actions(self, world):
        with world.begin() as conn:
            shift = action(
                conn,
                "reallocate_budget",
                {"from_channel": "sms", "to_channel": "phone", "share": 0.5},
            )
            retire = action(conn, "retire_channel", {"channel": "im"})
            action(conn, "retire_channel", {"channel": "sms"}, status="proposed")
            action(conn, "retire_channel", {"channel": "sms"}, status="rejected")
            action(conn, "retire_channel", {"channel": "sms"}, applied="2026-W09")
            action(conn, "shift_window", {"window": "evening"})
        with world.connect() as conn:
            found = dict(approved_adjustments(conn, "sme-old"))
        assert found == {
            shift: BudgetAdjustment(
                "shift", "sms", to_channel="phone", share=0.5, source=f"action {shift}"
            ),
            retire: BudgetAdjustment("retire", "im", source=f"action {retire}"),
        }

    def test_an_amount_shift(self, world):
        with world.begin() as conn:
            moved = action(
                conn,
                "reallocate_budget",
                {"from_channel": "phone", "to_channel": "sms", "amount": 250.0},
            )
        with world.connect() as conn:
            ((action_id, adjustment),) = approved_adjustments(conn, "sme-old")
        assert action_id == moved and (adjustment.amount, adjustment.share) == (250.0, None)

    def test_marked_applied_they_are_not_found_again(self, world):
        with world.begin() as conn:
            first = action(conn, "retire_channel", {"channel": "im"})
            mark_applied(conn, [first], Period.parse("2026-W10"))
            mark_applied(conn, [], Period.parse("2026-W10"))  # nothing to do
        with world.connect() as conn:
            assert approved_adjustments(conn, "sme-old") == []
            applied = conn.execute(select(Action.applied_to_period)).scalar_one()
        assert applied == "2026-W10"


def allocation(amounts: dict[str, float]) -> Allocation:
    explanation = Explanation(
        status="optimal",
        objective="disbursed_amount",
        objective_value=0.0,
        budget_shadow_price=0.0,
        binding=[],
        notes=[],
        shadow_prices={},
        floors=dict.fromkeys(amounts, 0.0),
        floors_capped=(),
        adjustments={},
        spend=sum(amounts.values()),
        roi=None,
        expected_overdue_rate=None,
    )
    zeros = dict.fromkeys(amounts, 0.0)
    return Allocation(
        channels=tuple(amounts),
        budget=sum(amounts.values()),
        objective="disbursed_amount",
        amount=amounts,
        touches={channel: int(amount) for channel, amount in amounts.items()},
        expected_disbursed=zeros,
        expected_net=zeros,
        expected_loans=zeros,
        explanation=explanation,
        limited_by={"phone": ["capacity:phone"]},
    )


TARGET = {
    "metric": "touches",
    "channel": None,
    "segment": None,
    "target": 100.0,
    "tolerance_warn": 0.05,
    "tolerance_fail": 0.15,
    "lower_is_better": False,
    "evidence": {"sources": []},
}


class TestSavePlan:
    def test_versions_keep_history_and_one_current(self, world):
        week = Period.parse("2026-W10")
        with world.begin() as conn:
            first = save_plan(
                conn, "sme-old", week, allocation({"phone": 80.0}), [TARGET], {}, {"phone": 5}
            )
            second = save_plan(conn, "sme-old", week, allocation({"phone": 90.0}), [TARGET], {}, {})
            other = save_plan(
                conn,
                "sme-old",
                Period.parse("2026-W11"),
                allocation({"sms": 5.0}),
                [TARGET],
                {},
                {},
            )
        assert (first[1], second[1], other[1]) == (1, 2, 1)
        with world.connect() as conn:
            plans = conn.execute(
                select(Plan.plan_id, Plan.period, Plan.version, Plan.is_current).order_by(
                    Plan.plan_id
                )
            ).all()
            budgets = conn.execute(
                select(Budget.plan_id, Budget.amount, Budget.daily_capacity, Budget.explanation)
            ).all()
            targets = conn.execute(select(Target.plan_id)).scalars().all()
        assert [(p, v, bool(c)) for _, p, v, c in plans] == [
            ("2026-W10", 1, False),
            ("2026-W10", 2, True),
            ("2026-W11", 1, True),
        ]
        assert (first[0], 80.0, 5, {"limited_by": ["capacity:phone"]}) in [
            tuple(b) for b in budgets
        ]
        assert sorted(targets) == sorted([first[0], second[0], other[0]])

    def test_previous_split_is_the_latest_earlier_current_plan(self, world):
        with world.begin() as conn:
            for period, amount in (("W09", 1.0), ("W10", 2.0), ("W10", 3.0), ("W12", 9.0)):
                split = allocation({"sms": amount})
                save_plan(conn, "sme-old", Period.parse(f"2026-{period}"), split, [TARGET], {}, {})
        with world.connect() as conn:
            assert previous_split(conn, "sme-old", Period.parse("2026-W11")) == {"sms": 3.0}
            assert previous_split(conn, "sme-old", Period.parse("2026-W09")) is None
            assert previous_split(conn, "sme-new", Period.parse("2026-W11")) is None

    def test_previous_budget_is_the_budget_of_the_previous_splits_period(self, world):
        with world.begin() as conn:
            for period, amount in (("W09", 1.0), ("W10", 3.0)):
                split = allocation({"sms": amount})
                save_plan(conn, "sme-old", Period.parse(f"2026-{period}"), split, [TARGET], {}, {})
        with world.connect() as conn:
            old = get_campaign_spec(conn, "sme-old")
            # W10 spent 3 of its budget: a shift is a share of the budget, not of the 3
            assert previous_budget(conn, old, Period.parse("2026-W12")) == pytest.approx(
                100_000 * 7 / 91
            )
            # W09 is before the campaign: no budget of its own, the split's sum stands in
            assert previous_budget(conn, old, Period.parse("2026-W10")) is None
            assert previous_budget(conn, old, Period.parse("2026-W09")) is None


class TestAllocateWithinRisk:
    """Floors give way to the overdue ceiling, never the other way round."""

    RISKY = ChannelEconomics("sms", 0.05, 50.0, 5.0, 0.001, 0.08, None)
    SAFE = ChannelEconomics("phone", 8.0, 900.0, 90.0, 0.02, 0.01, 100.0)

    def test_success_floors_kept_when_they_fit(self):
        allocation, notes = allocate_within_risk(
            [self.SAFE, dataclasses.replace(self.RISKY, overdue_rate=0.02)],
            1000.0,
            objective="disbursed_amount",
            floor_share=0.05,
            overdue_ceiling=0.03,
            adjustments=[],
            previous=None,
        )
        assert notes == []
        assert allocation.amount["sms"] >= 50.0 - 1e-6

    def test_failure_floors_dropped_and_said_when_they_break_the_ceiling(self):
        allocation, notes = allocate_within_risk(
            [self.SAFE, self.RISKY],
            10_000.0,
            objective="disbursed_amount",
            floor_share=0.3,
            overdue_ceiling=0.03,
            adjustments=[],
            previous=None,
        )
        assert len(notes) == 1 and "floor shares were dropped" in notes[0]
        assert "overdue_ceiling" in notes[0]
        loans = {"sms": self.RISKY.loans_per_touch, "phone": self.SAFE.loans_per_touch}
        rates = {"sms": self.RISKY.overdue_rate, "phone": self.SAFE.overdue_rate}
        expected_loans = sum(allocation.touches[c] * loans[c] for c in loans)
        overdue = sum(allocation.touches[c] * loans[c] * rates[c] for c in loans)
        assert overdue <= 0.03 * expected_loans + 1e-6

    def test_failure_adjustments_are_never_relaxed_the_ceiling_gives_way_and_says_so(self):
        floor = BudgetAdjustment("floor", "sms", amount=9_000.0)
        allocation, notes = allocate_within_risk(
            [self.SAFE, self.RISKY],
            10_000.0,
            objective="disbursed_amount",
            floor_share=0.05,
            overdue_ceiling=0.03,
            adjustments=[floor],
            previous=None,
        )
        assert notes == []  # the floors add nothing to the excess: they stay
        explanation = allocation.explanation
        assert allocation.amount["sms"] >= 9_000.0 - 1e-6
        assert allocation.amount["phone"] == pytest.approx(800.0)  # all the safe calls
        assert explanation.overdue_excess > 0
        assert "adjustment:floor sms at 9,000" in explanation.overdue_ceiling_forced_by
        assert any(
            "cannot hold" in note and "adjustment:floor sms at 9,000" in note
            for note in explanation.notes
        ), explanation.notes

    def test_failure_floors_dropped_when_they_add_to_an_excess_the_adjustments_force(self):
        # the approved 1,000 on sms already breaks the ceiling; the floors of 1,000 on the
        # risky im would break it further: they go, the approval stays
        im = dataclasses.replace(self.RISKY, channel="im", overdue_rate=0.1)
        allocation, notes = allocate_within_risk(
            [self.SAFE, self.RISKY, im],
            10_000.0,
            objective="disbursed_amount",
            floor_share=0.1,
            overdue_ceiling=0.03,
            adjustments=[BudgetAdjustment("floor", "sms", amount=1_000.0)],
            previous=None,
        )
        assert len(notes) == 1 and "floor shares were dropped" in notes[0], notes
        assert allocation.amount["im"] == 0
        assert allocation.amount["sms"] == pytest.approx(1_000.0)
        assert allocation.explanation.overdue_excess > 0
