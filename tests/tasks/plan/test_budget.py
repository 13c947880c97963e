"""Budget allocation: hand-solvable LPs, adjustments, infeasibility, and properties.

The hand cases use three channels whose returns per currency unit are easy to read:
phone 100 (disbursed) / 0.2 (net return), sms 20 / 1.0, email 10 / 0.2.
"""

from __future__ import annotations

import json
import math
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pdca.errors import UserError
from tasks.plan.budget import (
    OBJECTIVES,
    Allocation,
    BudgetAdjustment,
    BudgetInfeasible,
    ChannelEconomics,
    allocate,
)


def channel(name, cost, disbursed, net=0.0, loans=0.0, overdue=0.0, capacity=None):
    return ChannelEconomics(name, cost, disbursed, net, loans, overdue, capacity)


PHONE = channel("phone", cost=10, disbursed=1000, net=12, loans=0.1, overdue=0.05)
SMS = channel("sms", cost=1, disbursed=20, net=2, loans=0.01, overdue=0.01)
EMAIL = channel("email", cost=0.5, disbursed=5, net=0.6, loans=0.001, overdue=0.02)


def with_capacity(economics: ChannelEconomics, capacity: float) -> ChannelEconomics:
    return ChannelEconomics(**{**economics.__dict__, "capacity_touches": capacity})


def assert_split(allocation: Allocation, expected: dict[str, float], rel: float = 1e-9) -> None:
    """Every channel's amount as expected; the message shows actual vs expected and why."""
    wrong = {
        name: (allocation.amount[name], amount)
        for name, amount in expected.items()
        if not math.isclose(allocation.amount[name], amount, rel_tol=rel, abs_tol=1e-9)
    }
    assert not wrong, (
        f"amounts differ (actual, expected): {wrong}; notes: {allocation.explanation.notes}"
    )


def assert_noted(allocation: Allocation, *words: str) -> None:
    """Some note mentions every one of `words`."""
    notes = allocation.explanation.notes
    assert any(all(w in note for w in words) for note in notes), (
        f"no note mentions {words}: {notes}"
    )


class TestChannelEconomics:
    def test_success(self):
        assert PHONE.value_per_unit("disbursed_amount") == 100
        assert PHONE.value_per_unit("roi") == pytest.approx(0.2)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("cost_per_touch", 0.0),
            ("cost_per_touch", -1.0),
            ("cost_per_touch", math.inf),
            ("disbursed_per_touch", -1.0),
            ("net_income_per_touch", math.nan),
            ("loans_per_touch", -0.1),
            ("overdue_rate", 1.5),
            ("capacity_touches", -1.0),
        ],
    )
    def test_failure(self, field, value):
        with pytest.raises(ValueError, match=field):
            ChannelEconomics(**{**SMS.__dict__, field: value})

    def test_null_capacity_means_no_limit(self):
        assert SMS.capacity_touches is None


class TestBudgetAdjustment:
    @pytest.mark.parametrize(
        ("adjustment", "label"),
        [
            (BudgetAdjustment("retire", "im"), "retire im"),
            (BudgetAdjustment("shift", "sms", "phone", share=0.1), "shift 10% sms to phone"),
            (BudgetAdjustment("shift", "sms", "phone", amount=5000), "shift 5,000 sms to phone"),
            (BudgetAdjustment("cap", "phone", amount=300), "cap phone at 300"),
            (BudgetAdjustment("cap", "phone", share=0.3), "cap phone at 30% of budget"),
            (BudgetAdjustment("floor", "email", amount=200), "floor email at 200"),
        ],
    )
    def test_success(self, adjustment, label):
        assert adjustment.label == label

    @pytest.mark.parametrize(
        ("kwargs", "reason"),
        [
            ({"kind": "move", "channel": "sms"}, "kind"),
            ({"kind": "retire", "channel": "im", "share": 0.5}, "retire takes no"),
            ({"kind": "shift", "channel": "sms", "share": 0.1}, "to_channel"),
            ({"kind": "shift", "channel": "sms", "to_channel": "sms", "share": 0.1}, "other"),
            ({"kind": "shift", "channel": "sms", "to_channel": "im"}, "exactly one"),
            ({"kind": "cap", "channel": "sms", "share": 0.1, "amount": 5.0}, "exactly one"),
            ({"kind": "cap", "channel": "sms", "share": 1.5}, "share"),
            ({"kind": "floor", "channel": "sms", "amount": -1.0}, "amount"),
            ({"kind": "cap", "channel": "sms", "to_channel": "im", "amount": 1.0}, "to_channel"),
        ],
    )
    def test_failure(self, kwargs, reason):
        with pytest.raises(ValueError, match=reason):
            BudgetAdjustment(**kwargs)


class TestBestChannel:
    def test_obvious_winner_takes_the_whole_budget(self):
        allocation = allocate([PHONE, SMS], 1000, floor_share=0)
        assert_split(allocation, {"phone": 1000, "sms": 0})
        assert allocation.touches == {"phone": 100, "sms": 0}
        assert allocation.explanation.objective_value == pytest.approx(100_000)
        assert allocation.explanation.binding == ["budget"]
        assert allocation.explanation.status == "optimal"

    def test_capacity_binding_sends_the_remainder_to_the_next_best(self):
        allocation = allocate([with_capacity(PHONE, 40), SMS, EMAIL], 1000, floor_share=0)
        assert_split(allocation, {"phone": 400, "sms": 600, "email": 0})
        assert allocation.expected_disbursed == pytest.approx(
            {"phone": 40_000, "sms": 12_000, "email": 0}
        )
        assert set(allocation.explanation.binding) == {"budget", "capacity:phone"}
        assert allocation.limited_by["phone"] == ["capacity:phone"]
        assert_noted(allocation, "phone", "capacity of 40 touches")
        assert_noted(allocation, "sms absorbs the rest")
        assert_noted(allocation, "email gets nothing", "returns 10, less than the 20 at the margin")

    def test_touches_are_rounded_down_and_the_remainder_noted(self):
        allocation = allocate([channel("sms", cost=3, disbursed=60)], 1000, floor_share=0)
        assert allocation.touches == {"sms": 333}
        assert allocation.amount["sms"] == pytest.approx(1000)
        assert_noted(allocation, "rounded down", "1.00")

    def test_null_every_channel_worthless_still_solves(self):
        allocation = allocate([channel("sms", 1, 0), channel("email", 1, 0)], 1000)
        assert allocation.explanation.objective_value == 0
        assert allocation.amount["sms"] >= 50 and allocation.amount["email"] >= 50


class TestFloors:
    def test_floors_keep_every_channel_measured(self):
        allocation = allocate([PHONE, SMS, EMAIL], 1000, floor_share=0.1)
        assert_split(allocation, {"phone": 800, "sms": 100, "email": 100})
        assert allocation.explanation.objective_value == pytest.approx(83_000)
        assert set(allocation.explanation.binding) == {"budget", "floor:sms", "floor:email"}
        assert_noted(allocation, "email is held at its floor of 100")
        assert allocation.explanation.floors_capped == ()

    def test_floor_above_capacity_is_capped_and_said_so(self):
        email = with_capacity(EMAIL, 40)  # 40 touches cost 20 < the floor of 100
        allocation = allocate([PHONE, SMS, email], 1000, floor_share=0.1)
        assert_split(allocation, {"phone": 880, "sms": 100, "email": 20})
        assert allocation.explanation.floors["email"] == pytest.approx(20)
        assert allocation.explanation.floors_capped == ("email",)
        assert_noted(allocation, "floor of 100 for email is capped at 20")

    def test_floors_above_the_budget_are_scaled_down_and_said_so(self):
        allocation = allocate([PHONE, SMS, EMAIL], 1000, floor_share=0.5)
        assert_split(allocation, {"phone": 1000 / 3, "sms": 1000 / 3, "email": 1000 / 3})
        assert set(allocation.explanation.floors_capped) == {"phone", "sms", "email"}
        assert_noted(allocation, "floors need 1,500", "scaled down")

    def test_null_floor_share_zero_adds_no_floor(self):
        allocation = allocate([PHONE, SMS], 1000, floor_share=0)
        assert not any(name.startswith("floor:") for name in allocation.explanation.shadow_prices)
        assert allocation.explanation.floors == {"phone": 0, "sms": 0}


class TestOverdueCeiling:
    def test_ceiling_forces_a_mix(self):
        # 0.1·x_phone·(0.05 − 0.03) ≤ 0.01·x_sms·(0.03 − 0.01)  ⇔  x_sms ≥ 10·x_phone;
        # with 10·x_phone + x_sms = 1000: x_phone = 50, x_sms = 500.
        allocation = allocate([PHONE, SMS], 1000, floor_share=0, overdue_ceiling=0.03)
        assert_split(allocation, {"phone": 500, "sms": 500})
        assert allocation.touches == {"phone": 50, "sms": 500}
        assert allocation.explanation.objective_value == pytest.approx(60_000)
        assert allocation.explanation.expected_overdue_rate == pytest.approx(0.03)
        assert set(allocation.explanation.binding) == {"budget", "overdue_ceiling"}
        assert_noted(allocation, "overdue ceiling of 3% binds")
        assert_noted(allocation, "phone and sms share the rest")

    def test_slack_ceiling_is_not_binding(self):
        allocation = allocate([PHONE, SMS], 1000, floor_share=0, overdue_ceiling=0.06)
        assert_split(allocation, {"phone": 1000, "sms": 0})
        assert "overdue_ceiling" not in allocation.explanation.binding
        assert_noted(allocation, "overdue_rate_30 is 5%, under the ceiling of 6%")

    def test_null_no_loans_expected_means_no_ceiling_row(self):
        quiet = [channel("sms", 1, 20), channel("email", 1, 10)]
        allocation = allocate(quiet, 1000, floor_share=0, overdue_ceiling=0.01)
        assert "overdue_ceiling" not in allocation.explanation.shadow_prices
        assert allocation.explanation.expected_overdue_rate is None


class TestObjective:
    def test_roi_and_disbursed_amount_pick_different_splits(self):
        by_amount = allocate([PHONE, SMS], 1000, floor_share=0)
        by_roi = allocate([PHONE, SMS], 1000, floor_share=0, objective="roi")
        assert_split(by_amount, {"phone": 1000, "sms": 0})
        assert_split(by_roi, {"phone": 0, "sms": 1000})
        assert by_roi.explanation.objective_value == pytest.approx(1000)  # (2 − 1)·1000
        assert by_roi.explanation.roi == pytest.approx(1.0)
        assert by_amount.explanation.roi == pytest.approx(0.2)

    def test_roi_leaves_budget_unspent_when_nothing_pays(self):
        losing = channel("sms", cost=1, disbursed=20, net=0.5)
        allocation = allocate([losing, EMAIL], 1000, floor_share=0.1, objective="roi")
        assert_split(allocation, {"sms": 100, "email": 900})
        losing_email = channel("email", cost=0.5, disbursed=5, net=0.4)
        allocation = allocate([losing, losing_email], 1000, floor_share=0.1, objective="roi")
        assert_split(allocation, {"sms": 100, "email": 100})
        assert allocation.explanation.budget_shadow_price == 0
        assert_noted(allocation, "800", "left unallocated")


class TestShadowPrice:
    @pytest.mark.parametrize(
        ("channels", "ceiling", "price"),
        [
            ([PHONE, SMS, EMAIL], None, 100),  # the best channel's return per unit
            ([with_capacity(PHONE, 40), SMS, EMAIL], None, 20),  # phone full: sms's
            ([with_capacity(PHONE, 40), with_capacity(SMS, 100), EMAIL], None, 10),
            ([PHONE, SMS], 0.03, 60),  # the mix's return per unit: 60,000 / 1,000
        ],
    )
    def test_equals_the_best_marginal_return_when_the_budget_binds(self, channels, ceiling, price):
        allocation = allocate(channels, 1000, floor_share=0, overdue_ceiling=ceiling)
        assert "budget" in allocation.explanation.binding
        assert allocation.explanation.budget_shadow_price == pytest.approx(price)
        more = allocate(channels, 1001, floor_share=0, overdue_ceiling=ceiling)
        gained = more.explanation.objective_value - allocation.explanation.objective_value
        assert gained == pytest.approx(price)
        assert_noted(allocation, f"would add {price:.4g}")

    def test_zero_when_the_budget_is_slack(self):
        channels = [with_capacity(PHONE, 40), with_capacity(SMS, 100)]
        allocation = allocate(channels, 1000, floor_share=0)
        assert_split(allocation, {"phone": 400, "sms": 100})
        assert allocation.explanation.budget_shadow_price == 0
        assert set(allocation.explanation.binding) == {"capacity:phone", "capacity:sms"}
        assert allocation.explanation.shadow_prices["capacity:phone"] == pytest.approx(100)
        assert_noted(allocation, "500 of the budget is left unallocated")


class TestAdjustments:
    def test_retire_gives_nothing_and_drops_the_floor(self):
        retire = BudgetAdjustment("retire", "phone", source="act 2026-W11 #3")
        allocation = allocate([PHONE, SMS, EMAIL], 1000, floor_share=0.1, adjustments=[retire])
        assert_split(allocation, {"phone": 0, "sms": 900, "email": 100})
        assert allocation.explanation.floors["phone"] == 0
        assert "adjustment:retire phone" in allocation.explanation.binding
        assert allocation.explanation.adjustments == {"retire phone": True}
        assert_noted(allocation, "retire phone", "act 2026-W11 #3")

    @pytest.mark.parametrize(
        ("shift", "previous", "split"),
        [
            (BudgetAdjustment("shift", "phone", "sms", share=0.25), {"phone": 600, "sms": 400},
             {"phone": 450, "sms": 550}),
            # rescaled to this budget: 300/200 of 500 become 600/400 of 1,000
            (BudgetAdjustment("shift", "phone", "sms", share=0.25), {"phone": 300, "sms": 200},
             {"phone": 450, "sms": 550}),
            (BudgetAdjustment("shift", "phone", "sms", amount=100), {"phone": 600, "sms": 400},
             {"phone": 500, "sms": 500}),
        ],
    )  # fmt: skip
    def test_shift_moves_at_least_the_share(self, shift, previous, split):
        allocation = allocate(
            [PHONE, SMS], 1000, floor_share=0, adjustments=[shift], previous=previous
        )
        assert_split(allocation, split)
        assert allocation.explanation.adjustments == {shift.label: True}
        assert f"adjustment:{shift.label}:from" in allocation.explanation.binding

    def test_shift_the_optimum_already_makes_is_not_binding(self):
        shift = BudgetAdjustment("shift", "phone", "sms", share=0.25)
        allocation = allocate(
            [PHONE, SMS],
            1000,
            objective="roi",
            floor_share=0,
            adjustments=[shift],
            previous={"phone": 600, "sms": 400},
        )
        assert_split(allocation, {"phone": 0, "sms": 1000})
        assert allocation.explanation.adjustments == {"shift 25% phone to sms": False}
        assert_noted(allocation, "shift 25% phone to sms", "not binding")

    @pytest.mark.parametrize(
        ("adjustment", "split"),
        [
            (BudgetAdjustment("cap", "phone", amount=300), {"phone": 300, "sms": 700}),
            (BudgetAdjustment("cap", "phone", share=0.3), {"phone": 300, "sms": 700}),
            (BudgetAdjustment("floor", "email", amount=200), {"phone": 800, "email": 200}),
        ],
    )
    def test_cap_and_floor_bound_the_amount(self, adjustment, split):
        allocation = allocate([PHONE, SMS, EMAIL], 1000, floor_share=0, adjustments=[adjustment])
        assert_split(allocation, split)
        assert allocation.explanation.adjustments == {adjustment.label: True}

    def test_loose_cap_is_reported_not_binding(self):
        cap = BudgetAdjustment("cap", "phone", amount=5000)
        allocation = allocate([PHONE, SMS], 1000, floor_share=0, adjustments=[cap])
        assert allocation.explanation.adjustments == {"cap phone at 5,000": False}

    def test_cap_below_the_floor_caps_the_floor(self):
        cap = BudgetAdjustment("cap", "sms", amount=30)
        allocation = allocate([PHONE, SMS], 1000, floor_share=0.1, adjustments=[cap])
        assert_split(allocation, {"phone": 970, "sms": 30})
        assert allocation.explanation.floors_capped == ("sms",)
        assert_noted(allocation, "floor of 100 for sms is capped at 30")

    def test_identical_adjustments_get_distinct_names(self):
        cap = BudgetAdjustment("cap", "phone", amount=300)
        allocation = allocate([PHONE, SMS], 1000, floor_share=0, adjustments=[cap, cap])
        assert set(allocation.explanation.adjustments) == {
            "cap phone at 300",
            "cap phone at 300 #2",
        }

    def test_null_retiring_an_unplanned_channel_is_noted(self):
        retire = BudgetAdjustment("retire", "im")
        allocation = allocate([PHONE, SMS], 1000, floor_share=0, adjustments=[retire])
        assert_split(allocation, {"phone": 1000})
        assert_noted(allocation, "retire im", "not planned")


class TestInfeasible:
    """Only constraints that no data can change conflict: the approvals and the budget."""

    @pytest.mark.parametrize(
        ("channels", "kwargs", "conflict"),
        [
            (
                [PHONE, SMS],
                {"adjustments": [BudgetAdjustment("retire", "phone"),
                                 BudgetAdjustment("floor", "phone", amount=100)]},
                {"adjustment:retire phone", "adjustment:floor phone at 100"},
            ),
            (
                [PHONE, SMS],
                {"adjustments": [BudgetAdjustment("floor", "phone", amount=600),
                                 BudgetAdjustment("floor", "sms", amount=600)]},
                {"budget", "adjustment:floor phone at 600", "adjustment:floor sms at 600"},
            ),
            (
                [PHONE, SMS],
                {"overdue_ceiling": 0.03,
                 "adjustments": [BudgetAdjustment("cap", "sms", amount=100),
                                 BudgetAdjustment("floor", "sms", amount=200)]},
                {"adjustment:cap sms at 100", "adjustment:floor sms at 200"},
            ),
            (
                [PHONE, SMS],
                {"adjustments": [BudgetAdjustment("retire", "sms"),
                                 BudgetAdjustment("shift", "phone", "sms", share=0.25)],
                 "previous": {"phone": 600, "sms": 400}},
                {"adjustment:retire sms", "adjustment:shift 25% phone to sms:to"},
            ),
        ],
    )  # fmt: skip
    def test_names_the_conflicting_constraints(self, channels, kwargs, conflict):
        with pytest.raises(BudgetInfeasible) as caught:
            allocate(channels, 1000, **{"floor_share": 0, **kwargs})
        assert set(caught.value.constraints) == conflict
        for name in conflict:
            assert name in str(caught.value)

    def test_is_a_user_error(self):
        with pytest.raises(UserError, match="infeasible"):
            allocate(
                [PHONE],
                1000,
                overdue_ceiling=0.01,
                adjustments=[
                    BudgetAdjustment("retire", "phone"),
                    BudgetAdjustment("floor", "phone", amount=1),
                ],
            )


class TestElasticCeiling:
    """The overdue ceiling gives way, by the least possible, to what no split can avoid."""

    def test_an_approved_floor_keeps_the_mix_over_the_ceiling_and_says_so(self):
        # phone ≥ 600: 6 loans at 5 %; sms takes the other 400: 4 loans at 1 %; 3.4 % in all,
        # 0.04 expected overdue loans above the 3 % ceiling (0.12 − 0.08)
        floor = BudgetAdjustment("floor", "phone", amount=600)
        allocation = allocate(
            [PHONE, SMS], 1000, floor_share=0, overdue_ceiling=0.03, adjustments=[floor]
        )
        assert_split(allocation, {"phone": 600, "sms": 400})
        explanation = allocation.explanation
        assert explanation.overdue_excess == pytest.approx(0.04)
        assert explanation.expected_overdue_rate == pytest.approx(0.034)
        assert set(explanation.overdue_ceiling_forced_by) == {
            "budget",
            "adjustment:floor phone at 600",
            "overdue_ceiling",
        }
        assert "overdue_ceiling" in explanation.binding
        assert_noted(allocation, "ceiling of 3% cannot hold", "adjustment:floor phone at 600")
        assert_noted(allocation, "overdue loans above the ceiling to the least", "0.04", "3.4%")
        assert not any("overdue ceiling of 3% binds" in note for note in explanation.notes)

    def test_floors_over_a_ceiling_every_channel_breaks_get_the_least_risky_mix(self):
        allocation = allocate([PHONE, SMS], 1000, floor_share=0.1, overdue_ceiling=0.005)
        assert_split(allocation, {"phone": 100, "sms": 100})
        # phone 1 loan × (5 % − 0.5 %) + sms 1 loan × (1 % − 0.5 %)
        assert allocation.explanation.overdue_excess == pytest.approx(0.05)
        assert set(allocation.explanation.overdue_ceiling_forced_by) == {
            "floor:sms",
            "overdue_ceiling",
        }

    def test_null_a_ceiling_that_holds_has_no_excess(self):
        allocation = allocate([PHONE, SMS], 1000, floor_share=0, overdue_ceiling=0.03)
        assert allocation.explanation.overdue_excess == 0
        assert allocation.explanation.overdue_ceiling_forced_by == ()


class TestAdjustmentsWithinCapacity:
    def test_a_shift_into_a_full_channel_moves_what_fits_and_says_so(self):
        shift = BudgetAdjustment("shift", "phone", "sms", share=0.25)
        allocation = allocate(
            [PHONE, with_capacity(SMS, 100)],
            1000,
            floor_share=0,
            adjustments=[shift],
            previous={"phone": 600, "sms": 400},
        )
        assert_split(allocation, {"phone": 450, "sms": 100})
        assert allocation.explanation.adjustments == {shift.label: True}
        assert_noted(allocation, "shift 25% phone to sms", "at least 550 on sms", "capacity of 100")

    def test_an_approved_floor_over_the_capacity_gets_the_capacity(self):
        floor = BudgetAdjustment("floor", "email", amount=200)
        allocation = allocate(
            [PHONE, SMS, with_capacity(EMAIL, 100)], 1000, floor_share=0, adjustments=[floor]
        )
        assert_split(allocation, {"phone": 950, "sms": 0, "email": 50})
        assert_noted(allocation, "floor email at 200", "at least 200 on email", "capacity of 50")

    def test_a_shift_of_more_than_the_channel_had_moves_all_of_it(self):
        shift = BudgetAdjustment("shift", "phone", "sms", amount=1500)
        previous = {"phone": 600, "sms": 400}
        allocation = allocate(
            [PHONE, SMS], 1000, floor_share=0, adjustments=[shift], previous=previous
        )
        assert_split(allocation, {"phone": 0, "sms": 1000})
        assert_noted(allocation, "asks to move 1,500 from phone", "moves all of it")

    def test_the_previous_split_is_rescaled_by_its_budget_not_by_its_sum(self):
        # the previous plan spent 400 of its budget of 1,000: a 25 % shift moves 100, not 250
        shift = BudgetAdjustment("shift", "phone", "sms", share=0.25)
        allocation = allocate(
            [PHONE, SMS],
            1000,
            floor_share=0,
            adjustments=[shift],
            previous={"phone": 400, "sms": 0},
            previous_budget=1000,
        )
        assert_split(allocation, {"phone": 300, "sms": 700})
        assert not any("rescaled" in note for note in allocation.explanation.notes)


class TestDemoWeekAfterTheCheckedOne:
    """The numbers of `pdca demo --customers 60000`'s plan of 2026-W18, which was infeasible:
    a shift of 10 % of phone's budget to im (above the ceiling, and full at 198), the floors
    of sms and im (capped at their capacities) against the 3 % ceiling, with app_push and
    email (0 % overdue) full at 1,992 and 1,215 touches and phone at its 1,200 calls."""

    CHANNELS = (
        ChannelEconomics("phone", 8.004920081135902, 4184.620689655172, 260.61628782961463,
                         0.041095334685598374, 0.010416666666666666, 1200.0),
        ChannelEconomics("sms", 0.0499999999999996, 752.6341631069868, 80.42948200520449,
                         0.008224087985466687, 0.058823529411764705, 8041.5),
        ChannelEconomics("im", 0.03000000000000013, 951.3263399047447, 106.76513956713089,
                         0.009977693374329294, 0.05785123966942149, 6586.5),
        ChannelEconomics("app_push", 0.009999999999999997, 255.1997590845212,
                         41.80645352338888, 0.0024091547881951417, 0.0, 1992.0),
        ChannelEconomics("email", 0.020000000000000014, 172.16174183514775,
                         24.690254017625712, 0.002073613271124935, 0.0, 1215.0),
    )  # fmt: skip
    BUDGET = 30085.30769230769
    SHIFT = BudgetAdjustment("shift", "phone", "im", share=0.1, source="action 1")
    PREVIOUS: ClassVar[dict[str, float]] = {
        "phone": 9599.085477178423, "sms": 398.67326444608335, "im": 0.0,
        "app_push": 19.919999999999995, "email": 24.30000000000002,
    }  # fmt: skip

    def allocate(self, **kwargs) -> Allocation:
        options = {"floor_share": 0.05, "overdue_ceiling": 0.03, "adjustments": [self.SHIFT]}
        return allocate(self.CHANNELS, self.BUDGET, previous=self.PREVIOUS, **options, **kwargs)

    def test_success_is_feasible_and_says_what_gave_way(self):
        allocation = self.allocate(previous_budget=self.BUDGET)
        explanation = allocation.explanation
        # the shift moves 10 % of 9,599 (not of 3 × 9,599) and im takes what it can reach
        assert allocation.amount["phone"] == pytest.approx(0.9 * self.PREVIOUS["phone"])
        assert allocation.amount["im"] == pytest.approx(6586.5 * 0.03)
        assert allocation.touches["app_push"] == 1992 and allocation.touches["email"] == 1215
        assert_noted(allocation, "shift 10% phone to im", "at least 960 on im", "capacity")
        assert explanation.overdue_excess > 0
        assert 0.03 < explanation.expected_overdue_rate < 0.05
        assert "adjustment:shift 10% phone to im:from" in explanation.overdue_ceiling_forced_by
        assert_noted(allocation, "ceiling of 3% cannot hold", "shift 10% phone to im")

    def test_the_ceiling_gives_way_by_the_least_possible(self):
        allocation = self.allocate(previous_budget=self.BUDGET)
        loans = {c.channel: c.loans_per_touch / c.cost_per_touch for c in self.CHANNELS}
        rate = {c.channel: c.overdue_rate for c in self.CHANNELS}
        excess = {c: loans[c] * (rate[c] - 0.03) for c in loans}
        # the least: every channel below the ceiling at its capacity (phone at its shifted
        # cap), every channel above it at its minimum (sms and im at their capped floors)
        least = (
            excess["phone"] * 0.9 * self.PREVIOUS["phone"]
            + excess["sms"] * 8041.5 * 0.05
            + excess["im"] * 6586.5 * 0.03
            + excess["app_push"] * 1992 * 0.01
            + excess["email"] * 1215 * 0.02
        )
        assert allocation.explanation.overdue_excess == pytest.approx(least, rel=1e-6)
        spent = sum(excess[c] * allocation.amount[c] for c in excess)
        assert spent == pytest.approx(least, rel=1e-6)


class TestValidation:
    @pytest.mark.parametrize(
        ("channels", "budget", "kwargs", "reason"),
        [
            ([], 1000, {}, "no channels"),
            ([SMS, SMS], 1000, {}, "twice"),
            ([SMS], 0, {}, "budget"),
            ([SMS], math.nan, {}, "budget"),
            ([SMS], 1000, {"floor_share": 1.5}, "floor_share"),
            ([SMS], 1000, {"overdue_ceiling": -0.1}, "overdue_ceiling"),
            ([SMS], 1000, {"objective": "profit"}, "objective"),
            ([SMS], 1000, {"previous": {"sms": 1}, "previous_budget": 0}, "previous_budget"),
            ([SMS], 1000, {"previous": {"sms": 1}, "previous_budget": math.inf}, "previous_budget"),
            ([SMS], 1000, {"adjustments": [BudgetAdjustment("cap", "fax", amount=1)]}, "fax"),
            (
                [SMS, PHONE],
                1000,
                {
                    "adjustments": [BudgetAdjustment("shift", "sms", "phone", share=0.1)],
                    "previous": {"phone": 1000},
                },
                "no previous amount for sms",
            ),
            (
                [SMS, PHONE],
                1000,
                {"adjustments": [BudgetAdjustment("shift", "sms", "phone", share=0.1)]},
                "previous",
            ),
        ],
    )
    def test_failure(self, channels, budget, kwargs, reason):
        with pytest.raises(ValueError, match=reason):
            allocate(channels, budget, **kwargs)


class TestToRows:
    def test_one_json_ready_row_per_channel(self):
        allocation = allocate([with_capacity(PHONE, 40), SMS, EMAIL], 1000, floor_share=0.1)
        rows = allocation.to_rows()
        json.dumps(rows)
        assert [row["channel"] for row in rows] == ["phone", "sms", "email"]
        assert sum(row["amount"] for row in rows) == pytest.approx(1000)
        assert rows[0]["limited_by"] == "capacity:phone"
        assert rows[2] | {"amount": 0} == {
            "channel": "email",
            "amount": 0,
            "share_of_budget": 0.1,
            "touches": 200,
            "expected_disbursed": 1000.0,
            "expected_net": 120.0,
            "expected_loans": 0.2,
            "floor": 100.0,
            "limited_by": "floor:email",
        }


# --- properties ------------------------------------------------------------------------

NAMES = ("phone", "sms", "im", "app_push", "email", "branch", "partner")


def floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_subnormal=False)


@st.composite
def problems(draw):
    names = draw(st.permutations(NAMES))[: draw(st.integers(1, 7))]
    channels = [
        ChannelEconomics(
            name,
            cost_per_touch=draw(floats(0.01, 100)),
            disbursed_per_touch=draw(floats(0, 10_000)),
            net_income_per_touch=draw(floats(-50, 500)),
            loans_per_touch=draw(floats(0, 0.2)),
            overdue_rate=draw(floats(0, 0.3)),
            capacity_touches=draw(st.none() | floats(0, 1e6)),
        )
        for name in names
    ]
    retired = draw(st.sets(st.sampled_from(names), max_size=len(names) - 1))
    return {
        "channels": channels,
        "budget": draw(floats(1, 1e7)),
        "objective": draw(st.sampled_from(OBJECTIVES)),
        "floor_share": draw(floats(0, 0.5)),
        "overdue_ceiling": draw(st.none() | floats(0, 0.3)),
        "adjustments": [BudgetAdjustment("retire", name) for name in sorted(retired)],
    }


def upper_limits(problem) -> dict[str, float]:
    retired = {adj.channel for adj in problem["adjustments"] if adj.kind == "retire"}
    return {
        c.channel: 0.0
        if c.channel in retired
        else (math.inf if c.capacity_touches is None else c.capacity_touches * c.cost_per_touch)
        for c in problem["channels"]
    }


def expected_floors(problem) -> dict[str, float]:
    """The documented rule: floor_share·budget, capped at the upper limit, scaled to fit."""
    budget, uppers = problem["budget"], upper_limits(problem)
    floors = {c: min(problem["floor_share"] * budget, upper) for c, upper in uppers.items()}
    total = sum(floors.values())
    return {c: f * budget / total for c, f in floors.items()} if total > budget else floors


def overdue_excess(problem) -> dict[str, float]:
    """Per currency unit: expected loans × (overdue rate − ceiling)."""
    ceiling = problem["overdue_ceiling"]
    return {
        c.channel: c.loans_per_touch / c.cost_per_touch * (c.overdue_rate - ceiling)
        for c in problem["channels"]
    }


def least_overdue_excess(problem, floors) -> float:
    """Greedy minimum of Σ excess·amount over floors ≤ amount ≤ limit, Σ amount ≤ budget."""
    excess, uppers = overdue_excess(problem), upper_limits(problem)
    room = problem["budget"] - sum(floors.values())
    total = sum(excess[c] * floors[c] for c in floors)
    for c in sorted(excess, key=excess.get):
        if excess[c] >= 0:
            break
        add = max(0.0, min(uppers[c] - floors[c], room))
        total, room = total + excess[c] * add, room - add
    return total


def constraint_rows(
    problem, floors, overdue_excess_allowed: float = 0.0
) -> list[tuple[str, dict[str, float], float, float]]:
    """The constraints as rows (name, coefficients, right-hand side, scale): lhs ≤ rhs;
    the ceiling's right-hand side is the excess it gives way by (docs/budget.md)."""
    budget, uppers = problem["budget"], upper_limits(problem)
    rows = [("budget", dict.fromkeys(uppers, 1.0), budget, budget)]
    for c, upper in uppers.items():
        rows.append((f"{c} ≥ 0", {c: -1.0}, 0.0, budget))
        if upper < math.inf:
            rows.append((f"capacity:{c}", {c: 1.0}, upper, budget))
        if floors[c] > 0:
            rows.append((f"floor:{c}", {c: -1.0}, -floors[c], budget))
    if problem["overdue_ceiling"] is not None:
        excess = overdue_excess(problem)
        scale = max(abs(e) for e in excess.values()) * budget
        if scale > 0:
            rows.append(("overdue_ceiling", excess, overdue_excess_allowed, scale))
    return rows


def lhs(coefficients: dict[str, float], amounts: dict[str, float]) -> float:
    return sum(k * amounts[c] for c, k in coefficients.items())


def violations(rows, amounts, tol) -> list[str]:
    """The rows the amounts break by more than `tol` (relative to each row's scale)."""
    return [name for name, k, rhs, scale in rows if lhs(k, amounts) > rhs + tol * scale]


def feasible_move(rows, amounts, delta) -> bool:
    """Whether amounts + delta is feasible: every row the move pushes up stays clearly inside."""
    return all(
        lhs(k, delta) <= 0 or lhs(k, amounts) + lhs(k, delta) <= rhs - 1e-9 * scale
        for _, k, rhs, scale in rows
    )


class TestProperties:
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(problems())
    def test_solution_respects_every_constraint_and_is_locally_optimal(self, problem):
        floors = expected_floors(problem)
        excess_scale = (
            max(abs(e) for e in overdue_excess(problem).values()) * problem["budget"]
            if problem["overdue_ceiling"] is not None
            else 0.0
        )
        least = least_overdue_excess(problem, floors) if excess_scale else -1.0
        # Without floor or shift adjustments nothing but the ceiling can give way: never
        # infeasible; the ceiling gives way by exactly the least excess the floors allow.
        allocation = allocate(**problem)
        explanation, budget = allocation.explanation, problem["budget"]
        if least > 1e-6 * excess_scale:
            event("ceiling gives way")
            assert explanation.overdue_excess == pytest.approx(
                least, rel=1e-6, abs=1e-6 * excess_scale
            )
            assert "overdue_ceiling" in explanation.overdue_ceiling_forced_by
            assert any("cannot hold" in note for note in explanation.notes)
        elif least < -1e-6 * excess_scale or not excess_scale:
            assert explanation.overdue_excess == 0, f"the ceiling holds: {least}"
        for name in explanation.binding:
            event(f"binding {name.split(':')[0]}")
        event(f"floors capped: {bool(explanation.floors_capped)}")

        assert explanation.floors == pytest.approx(floors, rel=1e-9, abs=1e-9 * budget)
        amounts = allocation.amount
        rows = constraint_rows(problem, floors, max(least, 0.0))
        assert violations(rows, amounts, 1e-6) == []
        for c in amounts:
            if floors[c] < problem["floor_share"] * budget * (1 - 1e-12) and c not in {
                adj.channel for adj in problem["adjustments"]
            }:
                assert c in explanation.floors_capped
                assert any(c in note and "floor" in note for note in explanation.notes)
        assert explanation.budget_shadow_price >= 0
        if "budget" not in explanation.binding:
            assert explanation.budget_shadow_price == 0

        # Optimality, cheaply: no feasible move of ε between channels (or in or out of the
        # budget) improves the objective.
        values = {c.channel: c.value_per_unit(problem["objective"]) for c in problem["channels"]}
        best = max(abs(v) for v in values.values()) or 1.0
        assert explanation.objective_value == pytest.approx(
            sum(values[c] * y for c, y in amounts.items()), rel=1e-9, abs=1e-9 * best * budget
        )
        eps = 1e-3 * budget
        moves = [(a, b) for a in amounts for b in amounts if a != b]
        moves += [(a, None) for a in amounts] + [(None, b) for b in amounts]
        for source, target in moves:
            delta = dict.fromkeys(amounts, 0.0)
            if source is not None:
                delta[source] -= eps
            if target is not None:
                delta[target] += eps
            if not feasible_move(rows, amounts, delta):
                continue
            gain = (values[target] if target else 0.0) - (values[source] if source else 0.0)
            assert gain * eps <= 1e-7 * best * budget, (
                f"moving {eps} from {source} to {target} gains {gain * eps}: "
                f"{amounts} is not optimal; notes: {explanation.notes}"
            )
        assert all(allocation.touches[c] >= 0 for c in amounts)
        for c in problem["channels"]:
            spent = allocation.touches[c.channel] * c.cost_per_touch
            assert spent <= amounts[c.channel] * (1 + 1e-8) + 1e-9

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(problems(), st.data())
    def test_adjustments_hold_whenever_a_solution_is_returned(self, problem, data):
        names = [c.channel for c in problem["channels"]]
        budget = problem["budget"]
        previous = {c: data.draw(floats(0, 2 * budget), label=f"previous {c}") for c in names}
        adjustment = st.builds(
            BudgetAdjustment,
            kind=st.sampled_from(["cap", "floor"]),
            channel=st.sampled_from(names),
            share=floats(0, 0.6),
        )
        if len(names) >= 2:
            adjustment |= st.builds(
                lambda pair, share: BudgetAdjustment("shift", pair[0], pair[1], share=share),
                st.permutations(names),
                floats(0, 1),
            )
        extra = data.draw(st.lists(adjustment, max_size=3), label="adjustments")
        problem = {**problem, "adjustments": problem["adjustments"] + extra}
        if sum(previous.values()) <= 0:
            previous[names[0]] = budget
        try:
            allocation = allocate(**problem, previous=previous)
        except BudgetInfeasible as error:
            event("infeasible")
            assert error.constraints, str(error)
            return
        amounts, tol = allocation.amount, 1e-6 * budget
        rescaled = {c: v * budget / sum(previous.values()) for c, v in previous.items()}
        capacity = {  # what a channel can reach: an adjustment's minimum is capped there
            c.channel: math.inf
            if c.capacity_touches is None
            else c.capacity_touches * c.cost_per_touch
            for c in problem["channels"]
        }
        for adj in problem["adjustments"]:
            y = amounts[adj.channel]
            if adj.kind == "retire":
                assert y == 0, adj.label
            elif adj.kind == "cap":
                assert y <= adj.share * budget + tol, adj.label
            elif adj.kind == "floor":
                assert y >= min(adj.share * budget, capacity[adj.channel]) - tol, adj.label
            else:
                moved = adj.share * rescaled[adj.channel]
                assert y <= rescaled[adj.channel] - moved + tol, f"{adj.label}: from"
                to = amounts[adj.to_channel]
                wanted = min(rescaled[adj.to_channel] + moved, capacity[adj.to_channel])
                assert to >= wanted - tol, f"{adj.label}: to"
        explanation = allocation.explanation
        allowed = explanation.overdue_excess * (1 + 1e-6)
        rows = constraint_rows(problem, explanation.floors, allowed)
        assert violations(rows, amounts, 1e-6) == []
        retired = {adj.channel for adj in problem["adjustments"] if adj.kind == "retire"}
        for c in set(names) - retired:
            if explanation.floors[c] < problem["floor_share"] * budget * (1 - 1e-12):
                assert c in explanation.floors_capped
                assert any(c in note and "floor" in note for note in explanation.notes)
        labels = list(explanation.adjustments)  # one per adjustment; repeats get "#2"…
        assert len(labels) == len(problem["adjustments"])
        assert all(
            label.startswith(adj.label)
            for label, adj in zip(labels, problem["adjustments"], strict=True)
        )
