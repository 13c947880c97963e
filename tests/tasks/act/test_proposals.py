"""The Act stage's proposal rules: each type proposed when — and only when — its trigger is.

One class per action type with its success, no-trigger and null cases, built from small
inline check results (`check_result`): four channels that earn the same, nothing off
track, no experiment decided, no bottleneck — a check that proposes nothing — with just
the evidence each case needs laid on top. Property tests hold what must be true for any
input (a reallocation never takes a channel below its floor; an untrusted check proposes
`hold` alone); the database test reads a small campaign on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, update

from pdca.db import make_engine
from pdca.models import Action, Application, Customer, Loan, Repayment, Touch
from pdca.settings import Settings
from tasks.act.proposals import (
    ACTION_TYPES,
    LOAN_COLUMNS,
    ActContext,
    Thresholds,
    gather_context,
    propose,
    reallocate_budget_proposals,
    reallocation_share,
    shifted_range,
    windows_from_quarter_hours,
)
from tasks.act.types import Proposal
from tasks.check.result import CheckResult
from tasks.common.campaigns import CampaignSpec, TimeRange
from tasks.common.periods import Period
from tasks.common.rules import budget_change
from tasks.plan.budget import BudgetAdjustment
from tests.scenario import CAMPAIGN_ID, add_plan, apply, customer, local_utc, spec_dict, touch

SPEC = CampaignSpec.model_validate(spec_dict())
CHANNELS = ("phone", "sms", "im", "app_push")
BUDGET = {"phone": 4000.0, "sms": 3000.0, "im": 2000.0, "app_push": 1000.0}
"""10,000 in all: the 5 % floor is 500."""
RULES = Thresholds(
    min_channel_touches=100,
    window_min_touches=100,
    min_seasoned_loans=10,
    targeting_min_applications=20,
)


# --- helpers ------------------------------------------------------------------------------


def channel_row(
    channel: str,
    *,
    roi: float = 0.5,
    cac: float | None = 100.0,
    touches: int = 1000,
    cost: float = 1000.0,
    segment: str = "sme",
    **counts: Any,
) -> dict[str, Any]:
    """A funnel row whose counts give exactly `roi` and `cac` (cac None: no loans)."""
    row = {
        "channel": channel,
        "segment": segment,
        "variant": "A",
        "touches": touches,
        "delivered": touches,
        "responded": 0,
        "applications": 0,
        "approved": 0,
        "disbursements": cost / cac if cac else 0,
        "disbursed_amount": 0.0,
        "cost": cost,
        "net_interest": cost * (1 + roi),
        "expected_loss": 0.0,
    }
    row.update(counts)
    return row


def kpi(
    metric: str,
    actual: float | None,
    *,
    target: float | None = None,
    status: str = "on_track",
    channel: str | None = None,
    segment: str | None = None,
) -> dict[str, Any]:
    """A KPI row shaped like `tasks.check.findings.variance` makes them."""
    pct = None if target in (None, 0) or actual is None else (actual - target) / target
    return {
        "metric": metric,
        "scope": {"channel": channel, "segment": segment},
        "target": target,
        "actual": actual,
        "variance": None if pct is None else actual - target,
        "variance_pct": pct,
        "status": status,
    }


def check_result(period: str = "2026-W11", **overrides: Any) -> dict[str, Any]:
    """A trusted check that triggers nothing: four channels alike, nothing off track."""
    result = {
        "campaign": CAMPAIGN_ID,
        "period": period,
        "trusted": True,
        "data_quality": {"trusted": True, "suites": [], "quarantine": []},
        "funnel": [channel_row(channel) for channel in CHANNELS],
        "kpis": [kpi("overdue_rate_30", 0.02)],
        "anomalies": [],
        "experiments": [],
        "bottleneck": None,
        "reject_reasons": [],
    }
    result.update(overrides)
    return result


def with_rows(**rows: dict[str, Any]) -> list[dict[str, Any]]:
    """The default funnel with the named channels' rows replaced."""
    return [rows.get(channel, channel_row(channel)) for channel in CHANNELS]


def context(**overrides: Any) -> ActContext:
    values = {"spec": SPEC, "budget": dict(BUDGET), "plan_period": "2026-03"}
    values.update(overrides)
    return ActContext(**values)


def run(check: dict, history: list[dict] | None = None, **options: Any) -> list[Proposal]:
    rules = options.pop("rules", RULES)
    found = propose(
        CheckResult.from_json(check),
        [CheckResult.from_json(item) for item in history or []],
        context(**options),
        rules,
    )
    assert_json_ready([item.to_json() for item in found])
    return found


def of_type(proposals: list[Proposal], kind: str) -> list[Proposal]:
    return [item for item in proposals if item.type == kind]


def assert_json_ready(value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"not JSON-ready ({error}): {value!r}") from error


def assert_types(proposals: list[Proposal], *expected: str) -> None:
    """Exactly these types, in this order; the message shows every proposal's rationale."""
    found = [item.type for item in proposals]
    assert found == list(expected), f"expected {list(expected)}, got {found}: " + "; ".join(
        f"{item.type}: {item.rationale}" for item in proposals
    )


def test_a_check_without_triggers_proposes_nothing() -> None:
    assert_types(run(check_result()))


def test_every_proposal_has_the_contract_fields() -> None:
    check = check_result(
        funnel=with_rows(sms=channel_row("sms", roi=-0.5, cac=400.0)),
        kpis=[kpi("overdue_rate_30", 0.05)],
        bottleneck={"stage": "approval", "metric": "approval_rate", "actual": 0.3},
    )
    found = run(check)
    assert found
    for item in found:
        assert set(item.to_json()) == {
            "type",
            "scope",
            "params",
            "rationale",
            "expected_impact",
            "status",
        }
        assert item.type in ACTION_TYPES and item.status == "proposed"
        assert any(ch.isdigit() for ch in item.expected_impact), item.expected_impact


# --- hold ---------------------------------------------------------------------------------


UNTRUSTED_QUALITY = {
    "trusted": False,
    "suites": [
        {"name": "touches", "success": False, "failed": ["touch_id: must be unique"]},
        {"name": "loans", "success": True, "failed": []},
    ],
    "quarantine": [
        {
            "feed": "applications",
            "rows_in": 1000,
            "rows_quarantined": 32,
            "share": 0.032,
            "max_share": 0.01,
            "success": False,
        }
    ],
}


class TestHold:
    def test_untrusted_data_hold_naming_what_failed(self) -> None:
        found = run(check_result(trusted=False, data_quality=UNTRUSTED_QUALITY))
        assert_types(found, "hold")
        (hold,) = found
        assert hold.scope == {} and hold.params == {}
        assert "suite touches (touch_id: must be unique)" in hold.rationale
        assert "quarantine of applications: 32 of 1000 rows (3.2 % > 1.0 %)" in hold.rationale
        assert "loans" not in hold.rationale
        assert "2 failed checks" in hold.expected_impact

    def test_hold_suppresses_every_other_trigger(self) -> None:
        """Each rule's trigger at once, on untrusted data: hold and nothing else (sms
        retires; im's high CAC moves budget)."""
        loser = channel_row("sms", roi=-0.5, cac=400.0)
        check = check_result(
            trusted=False,
            data_quality=UNTRUSTED_QUALITY,
            funnel=with_rows(sms=loser, im=channel_row("im", roi=0.2, cac=400.0)),
            kpis=[
                kpi("overdue_rate_30", 0.09),
                kpi("cac", 400.0, target=100.0, status="off_track", channel="sms"),
            ],
            experiments=[experiment("A", "B", "treatment_wins")],
            bottleneck={"stage": "approval", "metric": "approval_rate", "actual": 0.3},
        )
        history = [check_result(f"2026-W{week}", funnel=with_rows(sms=loser)) for week in (10, 9)]
        found = run(check, history, windows=WINDOWS_APART)
        assert_types(found, "hold")
        trusted = run(dict(check, trusted=True), history, windows=WINDOWS_APART)
        assert {item.type for item in trusted} == set(ACTION_TYPES) - {"hold"}

    @pytest.mark.parametrize("trusted", [None, "yes", 1])
    def test_a_missing_or_odd_verdict_holds(self, trusted: Any) -> None:
        """Only `True` is trust: anything else cannot vouch for the numbers."""
        found = run(check_result(trusted=trusted, data_quality=None))
        assert_types(found, "hold")
        assert "verdict is missing" in found[0].rationale

    def test_trusted_data_never_hold(self) -> None:
        assert not of_type(run(check_result()), "hold")


# --- retire_channel -----------------------------------------------------------------------


def losing_run(periods: int, *, roi: float = -0.5, channel: str = "sms") -> tuple[dict, list]:
    """The current check and `periods − 1` earlier ones, `channel` at `roi` in each."""
    row = channel_row(channel, roi=roi)
    checks = [
        check_result(f"2026-W{11 - k:02d}", funnel=with_rows(**{channel: row}))
        for k in range(periods)
    ]
    return checks[0], checks[1:]


class TestRetireChannel:
    def test_below_the_floor_three_periods_running(self) -> None:
        check, history = losing_run(3)
        found = run(check, history)
        assert_types(found, "retire_channel")
        (retire,) = found
        assert retire.scope == {"channel": "sms"} and retire.params == {"channel": "sms"}
        assert retire.rationale == (
            "roi of sms was -0.50 in 2026-W11, -0.50 in 2026-W10, -0.50 in 2026-W09: below "
            "the floor of 0.00 3 periods running."
        )
        assert "Frees 3,000.00" in retire.expected_impact
        assert "1,500.00 of losses avoided" in retire.expected_impact

    def test_plan_applies_it(self) -> None:
        check, history = losing_run(3)
        (retire,) = run(check, history)
        BudgetAdjustment("retire", retire.params["channel"])

    @pytest.mark.parametrize("good_period", [0, 1, 2])
    def test_one_period_above_the_floor_breaks_the_run(self, good_period: int) -> None:
        check, history = losing_run(3)
        checks = [check, *history]
        checks[good_period] = check_result(checks[good_period]["period"])
        assert not of_type(run(checks[0], checks[1:]), "retire_channel")

    def test_too_short_a_history(self) -> None:
        check, history = losing_run(2)
        assert not of_type(run(check, history), "retire_channel")

    def test_an_untrusted_period_breaks_the_run(self) -> None:
        check, history = losing_run(3)
        history[1] = dict(history[1], trusted=False)
        assert not of_type(run(check, history), "retire_channel")

    def test_a_thin_channel_is_not_judged(self) -> None:
        row = channel_row("sms", roi=-0.5, touches=50)
        checks = [check_result(funnel=with_rows(sms=row)) for _ in range(3)]
        assert not of_type(run(checks[0], checks[1:]), "retire_channel")

    def test_a_channel_without_cost_has_no_roi(self) -> None:
        row = channel_row("sms", cost=0.0, cac=None, net_interest=0.0)
        checks = [check_result(funnel=with_rows(sms=row)) for _ in range(3)]
        assert not of_type(run(checks[0], checks[1:]), "retire_channel")

    def test_the_floor_and_the_run_length_are_settings(self) -> None:
        check, history = losing_run(1, roi=0.05)
        rules = Thresholds(min_channel_touches=100, roi_floor=0.1, retire_after_periods=1)
        assert_types(run(check, history, rules=rules), "retire_channel")

    def test_the_campaign_keeps_its_best_channel(self) -> None:
        rows = {
            c: channel_row(c, roi=r)
            for c, r in zip(CHANNELS, (-0.1, -0.5, -0.6, -0.7), strict=True)
        }
        checks = [check_result(f"2026-W{11 - k}", funnel=with_rows(**rows)) for k in range(3)]
        found = of_type(run(checks[0], checks[1:]), "retire_channel")
        assert sorted(item.params["channel"] for item in found) == ["app_push", "im", "sms"]

    def test_a_retiring_channel_gives_no_reallocation(self) -> None:
        """Its whole budget goes: a step of it on top would say the same thing twice."""
        row = channel_row("sms", roi=-0.5, cac=400.0)
        checks = [check_result(f"2026-W{11 - k}", funnel=with_rows(sms=row)) for k in range(3)]
        assert_types(run(checks[0], checks[1:]), "retire_channel")


# --- reallocate_budget --------------------------------------------------------------------


def failing_sms(**rows: dict[str, Any]) -> dict[str, Any]:
    """sms misses its cac target; phone earns the most."""
    return check_result(
        funnel=with_rows(
            **{
                "sms": channel_row("sms", roi=0.2, cac=412.5),
                "phone": channel_row("phone", roi=0.9, cac=150.0),
                **rows,
            }
        ),
        kpis=[
            kpi("overdue_rate_30", 0.02),
            kpi("cac", 412.5, target=300.0, status="off_track", channel="sms"),
        ],
    )


class TestReallocateBudget:
    def test_off_track_cac_moves_a_step_to_the_best_roi(self) -> None:
        found = run(failing_sms())
        assert_types(found, "reallocate_budget")
        (move,) = found
        assert move.scope == {"channel": "sms"}
        assert move.params == {
            "from_channel": "sms",
            "to_channel": "phone",
            "share": 0.1,
            "from_budget": 3000.0,
        }
        assert move.rationale.startswith(
            "cac of sms is 412.50 against a target of 300.00 (off_track, +37.5 %)"
        )
        assert "phone has the best roi, 0.90 (plan 2026-03)" in move.rationale
        assert move.expected_impact == (
            "Moves 10.0 % of sms's budget (300.00 of 3,000.00) to phone; at this period's roi "
            "(sms 0.20, phone 0.90) that is about 210.00 more net return; sms keeps at least "
            "its floor of 500.00."
        )

    def test_by_ltv_cac_the_money_goes_to_the_best_customers_per_cost(self) -> None:
        """With act_reallocation_metric ltv_cac, the channels' ltv_cac KPIs decide, not roi:
        phone earns the most this period, but im's customers are worth the most per cost."""
        check = failing_sms()
        check["kpis"] += [
            kpi("ltv_cac", 3.0, channel="sms"),
            kpi("ltv_cac", 9.0, channel="phone"),
            kpi("ltv_cac", 20.0, channel="im"),
        ]
        (by_roi,) = of_type(run(check), "reallocate_budget")
        assert by_roi.params["to_channel"] == "phone"
        rules = replace(RULES, reallocation_metric="ltv_cac")
        (move,) = of_type(run(check, rules=rules), "reallocate_budget")
        assert move.params["to_channel"] == "im"
        assert "im has the best ltv_cac, 20.00 (plan 2026-03)" in move.rationale
        assert "at this period's ltv_cac (sms 3.00, im 20.00)" in move.expected_impact

    def test_by_ltv_cac_a_channel_without_one_is_not_chosen(self) -> None:
        check = failing_sms()
        check["kpis"] += [kpi("ltv_cac", 3.0, channel="sms")]
        rules = replace(RULES, reallocation_metric="ltv_cac")
        assert of_type(run(check, rules=rules), "reallocate_budget") == []

    def test_the_plan_understands_the_params(self) -> None:
        """tasks.plan.plan.approved_adjustments reads exactly these keys into a shift."""
        (move,) = run(failing_sms())
        params = move.params
        adjustment = BudgetAdjustment(
            "shift",
            params["from_channel"],
            to_channel=params["to_channel"],
            share=params.get("share"),
            amount=params.get("amount"),
        )
        assert adjustment.label == "shift 10% sms to phone"
        change = budget_change("reallocate_budget", params)  # what approved_adjustments asks
        assert change is not None
        assert BudgetAdjustment(**asdict(change)) == adjustment

    def test_at_risk_roi_triggers(self) -> None:
        check = failing_sms()
        check["kpis"] = [kpi("roi", 0.2, target=0.22, status="at_risk", channel="sms")]
        (move,) = of_type(run(check), "reallocate_budget")
        assert move.rationale.startswith("roi of sms is 0.20 against a target of 0.22")

    def test_cac_far_above_the_best_channels_triggers_without_a_target(self) -> None:
        check = check_result(
            funnel=with_rows(
                sms=channel_row("sms", roi=0.2, cac=250.0),
                phone=channel_row("phone", roi=0.9, cac=100.0),
            )
        )
        (move,) = of_type(run(check), "reallocate_budget")
        assert move.params["from_channel"] == "sms"
        assert "cac of sms is 250.00, 2.5 × that of phone (100.00; the limit is 2 ×)" in (
            move.rationale
        )

    def test_cac_within_the_ratio_and_on_track_kpis(self) -> None:
        check = check_result(
            funnel=with_rows(sms=channel_row("sms", roi=0.2, cac=190.0)),
            kpis=[kpi("cac", 190.0, target=185.0, status="on_track", channel="sms")],
        )
        assert not of_type(run(check), "reallocate_budget")

    def test_without_a_plan_there_is_nothing_to_move(self) -> None:
        assert not of_type(run(failing_sms(), budget={}), "reallocate_budget")

    def test_a_channel_at_its_floor_gives_nothing(self) -> None:
        budget = {"phone": 4000.0, "sms": 500.0, "im": 4500.0, "app_push": 1000.0}
        assert not of_type(run(failing_sms(), budget=budget), "reallocate_budget")

    def test_the_step_stops_at_the_floor(self) -> None:
        budget = {"phone": 4000.0, "sms": 520.0, "im": 4480.0, "app_push": 1000.0}
        (move,) = of_type(run(failing_sms(), budget=budget), "reallocate_budget")
        assert move.params["share"] == 0.0384  # (520 − 500) / 520 = 0.03846, rounded down
        assert 520.0 * (1 - move.params["share"]) >= 500.0

    def test_a_failing_channel_that_earns_more_than_the_best_keeps_its_budget(self) -> None:
        """High CAC, but the highest ROI: moving money away would lose return."""
        check = check_result(
            funnel=with_rows(phone=channel_row("phone", roi=2.0, cac=400.0)),
        )
        assert not of_type(run(check), "reallocate_budget")

    def test_every_channel_failing_still_gives_to_the_best_roi(self) -> None:
        rois = {"phone": 0.6, "sms": -0.2, "im": 0.1, "app_push": 0.3}
        check = check_result(
            funnel=with_rows(**{c: channel_row(c, roi=r) for c, r in rois.items()}),
            kpis=[
                kpi("roi", r, target=1.0, status="off_track", channel=c) for c, r in rois.items()
            ],
        )
        found = of_type(run(check), "reallocate_budget")
        assert [(m.params["from_channel"], m.params["to_channel"]) for m in found] == [
            ("sms", "phone"),
            ("im", "phone"),
            ("app_push", "phone"),
        ]

    def test_a_channel_at_its_capacity_takes_no_more(self) -> None:
        """phone earns most but the plan could not give it more: the next best takes it."""
        check = failing_sms(im=channel_row("im", roi=0.7))
        (move,) = of_type(run(check, at_capacity=frozenset({"phone"})), "reallocate_budget")
        assert move.params["to_channel"] == "im"
        assert "im has the best roi, 0.70" in move.rationale

    def test_a_channel_above_the_overdue_ceiling_takes_no_more(self) -> None:
        check = failing_sms(im=channel_row("im", roi=0.7))
        check["kpis"].append(kpi("overdue_rate_30", 0.05, channel="phone"))
        (move,) = of_type(run(check), "reallocate_budget")
        assert move.params["to_channel"] == "im"

    def test_a_move_that_improves_roi_by_less_than_the_margin_is_not_made(self) -> None:
        """sms 0.88 against phone's 0.90: 2.3 % better, under the 5 % margin."""
        check = failing_sms(sms=channel_row("sms", roi=0.88, cac=412.5))
        assert not of_type(run(check), "reallocate_budget")
        (move,) = of_type(
            run(check, rules=Thresholds(min_channel_touches=100, min_improvement=0.02)),
            "reallocate_budget",
        )
        assert move.params["to_channel"] == "phone"

    def test_a_rule_changed_since_the_period_began_is_not_proposed_again(self) -> None:
        changed = frozenset({"reallocate_budget channel:sms"})
        assert not of_type(run(failing_sms(), changed=changed), "reallocate_budget")
        other = frozenset({"reallocate_budget channel:im"})
        assert of_type(run(failing_sms(), changed=other), "reallocate_budget")

    def test_thin_channels_are_neither_judged_nor_chosen(self) -> None:
        check = failing_sms(sms=channel_row("sms", roi=0.2, cac=412.5, touches=50))
        assert not of_type(run(check), "reallocate_budget")
        check = failing_sms(phone=channel_row("phone", roi=0.9, touches=50))
        (move,) = of_type(run(check), "reallocate_budget")
        assert move.params["to_channel"] != "phone"

    def test_a_channel_without_loans_has_no_cac_to_compare(self) -> None:
        check = check_result(funnel=with_rows(sms=channel_row("sms", roi=0.5, cac=None)))
        assert not of_type(run(check), "reallocate_budget")

    def test_each_failing_channel_gives_one_step_worst_first(self) -> None:
        check = check_result(
            funnel=with_rows(
                sms=channel_row("sms", roi=0.2, cac=300.0),
                im=channel_row("im", roi=-0.3, cac=500.0),
                phone=channel_row("phone", roi=0.9, cac=100.0),
            )
        )
        found = of_type(run(check), "reallocate_budget")
        assert [item.params["from_channel"] for item in found] == ["im", "sms"]
        assert {item.params["to_channel"] for item in found} == {"phone"}


class TestReallocateBudgetProperties:
    @given(
        budgets=st.lists(st.floats(0, 1e6), min_size=4, max_size=4),
        rois=st.lists(st.floats(-1, 3), min_size=4, max_size=4),
        cacs=st.lists(st.one_of(st.none(), st.floats(1, 1000)), min_size=4, max_size=4),
        statuses=st.lists(st.sampled_from(["on_track", "at_risk", "off_track"]), min_size=4),
        step=st.floats(0.01, 1),
        floor_share=st.floats(0, 0.3),
    )
    @settings(max_examples=300, deadline=None)
    def test_never_below_the_floor_and_never_more_than_the_budget(
        self, budgets, rois, cacs, statuses, step, floor_share
    ) -> None:
        budget = dict(zip(CHANNELS, budgets, strict=True))
        check = check_result(
            funnel=[
                channel_row(c, roi=r, cac=k) for c, r, k in zip(CHANNELS, rois, cacs, strict=True)
            ],
            kpis=[
                kpi("roi", r, target=0.5, status=s, channel=c)
                for c, r, s in zip(CHANNELS, rois, statuses, strict=False)
            ],
        )
        rules = Thresholds(
            min_channel_touches=100, reallocation_step=step, plan_floor_share=floor_share
        )
        found = reallocate_budget_proposals(
            CheckResult.from_json(check), context(budget=budget), rules
        )
        assert_json_ready([item.to_json() for item in found])
        floor = floor_share * sum(budgets)
        for move in found:
            params = move.params
            source = budget[params["from_channel"]]
            assert params["from_channel"] != params["to_channel"]
            assert 0 < params["share"] <= min(step, 1.0)
            moved = params["share"] * source
            assert 0 < moved <= source
            assert source - moved >= floor - 1e-9 * max(source, 1.0), (source, moved, floor)
            BudgetAdjustment(
                "shift",
                params["from_channel"],
                to_channel=params["to_channel"],
                share=params["share"],
            )

    @given(budget=st.floats(0, 1e7), floor=st.floats(0, 1e7), step=st.floats(1e-4, 1))
    @settings(max_examples=300, deadline=None)
    def test_reallocation_share(self, budget: float, floor: float, step: float) -> None:
        share = reallocation_share(budget, floor, step)
        if share is not None:
            assert 0 < share <= step
            assert budget * (1 - share) >= floor - 1e-9 * budget


# --- tighten_admission --------------------------------------------------------------------


def loans(*groups: tuple[int, dict[str, Any]]) -> pd.DataFrame:
    """Seasoned loans: (count, attributes) groups; attributes default to a good sms loan."""
    rows = []
    for count, values in groups:
        for _ in range(count):
            row = {
                "loan_id": f"l{len(rows)}",
                "channel": "sms",
                "segment": "sme",
                "credit_score": 700.0,
                "debt_ratio": 0.3,
                "is_seasoned": 1,
                "is_overdue": 0,
            }
            row.update(values)
            rows.append(row)
    return pd.DataFrame(rows, columns=LOAN_COLUMNS)


class TestTightenAdmission:
    def test_a_campaign_breach_raises_the_score_floor(self) -> None:
        found = run(check_result(kpis=[kpi("overdue_rate_30", 0.05)]))
        assert_types(found, "tighten_admission")
        (tighten,) = found
        assert tighten.scope == {}
        assert tighten.params == {"min_credit_score": 620}
        assert tighten.rationale == (
            "overdue_rate_30 of the campaign is 5.0 % against the spec's ceiling of 3.0 % "
            "(+66.7 %); the step raises min_credit_score from 600 to 620."
        )

    def test_a_channel_breach_is_answered_at_its_own_scope(self) -> None:
        check = check_result(
            kpis=[
                kpi("overdue_rate_30", 0.035),
                kpi("overdue_rate_30", 0.08, channel="sms"),
                kpi("overdue_rate_30", 0.01, channel="phone"),
                kpi("overdue_rate_30", 0.06, segment="farmer"),
            ]
        )
        found = of_type(run(check), "tighten_admission")
        assert [item.scope for item in found] == [{"channel": "sms"}, {"segment": "farmer"}]

    def test_a_channel_and_segment_scope_reads_as_the_check_writes_scopes(self) -> None:
        check = check_result(kpis=[kpi("overdue_rate_30", 0.05, channel="sms", segment="sme")])
        (tighten,) = of_type(run(check), "tighten_admission")
        assert tighten.scope == {"channel": "sms", "segment": "sme"}
        assert tighten.rationale.startswith("overdue_rate_30 of channel sms, segment sme is 5.0 %")

    @pytest.mark.parametrize("actual", [0.03, 0.01, None])
    def test_at_or_under_the_ceiling_or_unknown(self, actual: float | None) -> None:
        check = check_result(kpis=[kpi("overdue_rate_30", actual, channel="sms")])
        assert not of_type(run(check), "tighten_admission")

    def test_the_debt_cap_when_it_is_what_keeps_out_the_overdue_loans(self) -> None:
        """Score floor 620 would turn away 30 good loans; the cap 0.65 the 4 overdue ones."""
        book = loans(
            (30, {"credit_score": 610.0}),
            (4, {"debt_ratio": 0.68, "is_overdue": 1}),
            (6, {}),
        )
        check = check_result(kpis=[kpi("overdue_rate_30", 0.1, channel="sms")])
        (tighten,) = of_type(run(check, loans=book), "tighten_admission")
        assert tighten.params == {"max_debt_ratio": 0.65}
        assert "(4 of 40 seasoned loans)" in tighten.rationale
        assert tighten.expected_impact == (
            "Had max_debt_ratio been 0.65, 4 of the 40 seasoned loans (4 of them overdue) "
            "would not have been made: overdue_rate_30 10.0 % → 0.0 %."
        )

    def test_the_score_floor_when_it_is_what_keeps_out_the_overdue_loans(self) -> None:
        book = loans((4, {"credit_score": 605.0, "is_overdue": 1}), (36, {"debt_ratio": 0.68}))
        check = check_result(kpis=[kpi("overdue_rate_30", 0.1, channel="sms")])
        (tighten,) = of_type(run(check, loans=book), "tighten_admission")
        assert tighten.params == {"min_credit_score": 620}

    def test_too_few_seasoned_loans_to_act_on(self) -> None:
        book = loans((3, {"is_overdue": 1}), (5, {}), (40, {"is_seasoned": 0}))
        check = check_result(kpis=[kpi("overdue_rate_30", 0.375, channel="sms")])
        assert not of_type(run(check, loans=book), "tighten_admission")

    def test_a_step_that_only_turns_away_good_loans_is_not_proposed(self) -> None:
        """The issue's case: 5 of 95 seasoned loans (0 of them overdue) kept out, 5.3 % →
        5.6 %: worse, so neither lever is proposed."""
        book = loans(
            (5, {"credit_score": 610.0, "debt_ratio": 0.68}),
            (5, {"is_overdue": 1}),
            (85, {}),
        )
        check = check_result(kpis=[kpi("overdue_rate_30", 5 / 95, channel="sms")])
        assert not of_type(run(check, loans=book), "tighten_admission")

    def test_a_step_that_keeps_out_no_loan_is_not_proposed(self) -> None:
        book = loans((4, {"is_overdue": 1}), (36, {}))
        check = check_result(kpis=[kpi("overdue_rate_30", 0.1, channel="sms")])
        assert not of_type(run(check, loans=book), "tighten_admission")

    def test_a_breach_the_rules_in_force_now_answer_is_not_acted_on_again(self) -> None:
        """The 4 overdue loans are below the floor of 620 approved since: by the rules now
        the scope's loans are all current, and the evidence says nothing more."""
        book = loans((4, {"credit_score": 610.0, "is_overdue": 1}), (36, {}))
        check = check_result(kpis=[kpi("overdue_rate_30", 0.1, channel="sms")])
        (first,) = of_type(run(check, loans=book), "tighten_admission")
        assert first.params == {"min_credit_score": 620}
        admission = {"channel:sms": {"min_credit_score": 620}}
        assert not of_type(run(check, loans=book, admission=admission), "tighten_admission")

    def test_the_step_is_judged_on_the_loans_the_rules_now_admit(self) -> None:
        book = loans(
            (4, {"credit_score": 610.0, "is_overdue": 1}),
            (3, {"credit_score": 630.0, "is_overdue": 1}),
            (33, {}),
        )
        check = check_result(kpis=[kpi("overdue_rate_30", 7 / 40, channel="sms")])
        admission = {"channel:sms": {"min_credit_score": 620}}
        (step,) = of_type(run(check, loans=book, admission=admission), "tighten_admission")
        assert step.params == {"min_credit_score": 640}
        assert "(7 of 40 seasoned loans); 3 of the 36 that the rules in force now" in (
            step.rationale
        )
        assert step.expected_impact == (
            "Had min_credit_score been 640, 3 of the 36 seasoned loans (3 of them overdue) "
            "would not have been made: overdue_rate_30 8.3 % → 0.0 %."
        )

    def test_the_next_step_starts_from_the_approved_floor(self) -> None:
        check = check_result(kpis=[kpi("overdue_rate_30", 0.05, channel="sms")])
        admission = {"channel:sms": {"min_credit_score": 640}, "campaign": {"max_debt_ratio": 0.6}}
        (tighten,) = of_type(run(check, admission=admission), "tighten_admission")
        assert tighten.params == {"min_credit_score": 660}

    def test_a_floor_at_the_top_of_the_scale_tightens_the_cap(self) -> None:
        check = check_result(kpis=[kpi("overdue_rate_30", 0.05)])
        (tighten,) = of_type(
            run(check, admission={"campaign": {"min_credit_score": 890}}), "tighten_admission"
        )
        assert tighten.params == {"max_debt_ratio": 0.65}


# --- shift_window -------------------------------------------------------------------------


def window(name: str, span: str, delivered: int, responded: int) -> dict[str, Any]:
    return {
        "window": name,
        "range": span,
        "touches": delivered,
        "delivered": delivered,
        "responded": responded,
        "response_rate": responded / delivered if delivered else None,
    }


WINDOWS_APART = [
    window("noon", "12:00-13:30", 1000, 50),
    window("evening", "19:00-21:00", 1000, 20),
]
"""5 % against 2 %: z ≈ 3.7, p ≈ 0.0002."""


class TestShiftWindow:
    def test_a_worse_window_moves_toward_the_best(self) -> None:
        found = run(check_result(), windows=WINDOWS_APART)
        assert_types(found, "shift_window")
        (shift,) = found
        assert shift.scope == {"window": "evening"}
        assert shift.params == {"window": "evening", "from": "19:00-21:00", "to": "18:30-20:30"}
        assert shift.rationale.startswith(
            "response_rate of the evening window (19:00-21:00) is 2.0 % (20 of 1000 delivered) "
            "against 5.0 % in noon (12:00-13:30; 50 of 1000): two-proportion z-test, "
            "Holm-adjusted p < 0.001"
        )
        assert "Moves evening 30 minutes earlier" in shift.expected_impact
        assert "up to 30 were all of it to" in shift.expected_impact

    def test_a_move_that_improves_the_window_by_less_than_the_margin_is_not_made(self) -> None:
        """Moving 30 of 120 minutes: 2.0 % → 2.75 %, 37.5 % better; a 40 % margin asks more."""
        strict = Thresholds(window_min_touches=100, min_improvement=0.4)
        assert not run(check_result(), windows=WINDOWS_APART, rules=strict)

    def test_the_step_starts_from_the_ranges_in_force_now(self) -> None:
        """The figures are counted in the windows of the period; the next step starts
        from the ranges in force now (another window moved since)."""
        now = {"noon": "11:30-13:00", "evening": "19:00-21:00"}
        (shift,) = run(check_result(), windows=WINDOWS_APART, ranges=now)
        assert shift.params == {"window": "evening", "from": "19:00-21:00", "to": "18:30-20:30"}
        assert "in noon (12:00-13:30; 50 of 1000)" in shift.rationale

    def test_a_worse_earlier_window_moves_later(self) -> None:
        windows = [
            window("noon", "12:00-13:30", 1000, 20),
            window("evening", "19:00-21:00", 1000, 50),
        ]
        (shift,) = run(check_result(), windows=windows)
        assert shift.params == {"window": "noon", "from": "12:00-13:30", "to": "12:30-14:00"}

    def test_no_significant_difference(self) -> None:
        windows = [
            window("noon", "12:00-13:30", 1000, 50),
            window("evening", "19:00-21:00", 1000, 45),
        ]
        assert not run(check_result(), windows=windows)

    @pytest.mark.parametrize("delivered", [99, 0])
    def test_thin_windows_are_not_compared(self, delivered: int) -> None:
        windows = [
            window("noon", "12:00-13:30", 1000, 50),
            window("evening", "19:00-21:00", delivered, 0),
        ]
        assert not run(check_result(), windows=windows)

    def test_one_window_or_no_figures(self) -> None:
        assert not run(check_result(), windows=WINDOWS_APART[:1])
        assert not run(check_result(), windows=[])

    def test_a_window_with_no_room_stays(self) -> None:
        windows = [
            window("noon", "12:00-13:30", 1000, 50),
            window("afternoon", "13:30-15:00", 1000, 20),
        ]
        assert not run(check_result(), windows=windows)

    def test_a_window_moves_as_far_as_there_is_room(self) -> None:
        windows = [
            window("noon", "12:00-13:30", 1000, 50),
            window("afternoon", "13:40-15:00", 1000, 20),
        ]
        (shift,) = run(check_result(), windows=windows)
        assert shift.params["to"] == "13:30-14:50"

    def test_holm_adjusts_across_windows(self) -> None:
        """3.7 % against 5.0 % on 2,000 each: p ≈ 0.044 alone, ≈ 0.088 for the smaller of
        two such p-values after Holm (× 2), and so for both (step-down keeps the order)."""
        noon, worse = window("noon", "12:00-13:30", 2000, 100), ("19:00-21:00", 2000, 74)
        assert len(run(check_result(), windows=[noon, window("evening", *worse)])) == 1
        windows = [noon, window("evening", *worse), window("morning", "09:30-10:30", 2000, 74)]
        assert not run(check_result(), windows=windows)


class TestShiftedRange:
    QUIET = TimeRange.parse("21:00-09:00")

    @pytest.mark.parametrize(
        ("current", "minutes", "expected"),
        [
            ("19:00-20:30", 30, "19:30-21:00"),
            ("19:00-20:45", 30, "19:15-21:00"),  # the quiet hours stop it
            ("19:30-21:00", 30, None),
            ("09:00-10:00", -30, None),
            ("09:20-10:00", -30, "09:00-09:40"),
        ],
    )
    def test_stops_at_the_quiet_hours(self, current: str, minutes: int, expected: str) -> None:
        moved = shifted_range(TimeRange.parse(current), minutes, [self.QUIET])
        assert (None if moved is None else str(moved)) == expected

    def test_stays_within_the_day(self) -> None:
        assert str(shifted_range(TimeRange.parse("00:10-01:00"), -30, [])) == "00:00-00:50"
        assert str(shifted_range(TimeRange.parse("23:00-23:50"), 30, [])) == "23:09-23:59"


class TestWindowsFromQuarterHours:
    def test_local_time_follows_daylight_saving(self) -> None:
        """Europe/Berlin: UTC+1 in March, UTC+2 from 29 March 2026."""
        frame = pd.DataFrame(
            [
                ("2026-03-02 18", 0, 10, 9, 3),  # 19:00 CET: evening
                ("2026-03-02 19", 3, 10, 8, 2),  # 20:45 CET: evening
                ("2026-03-02 17", 3, 10, 7, 1),  # 18:45 CET: outside
                ("2026-04-06 18", 0, 10, 6, 1),  # 20:00 CEST: evening
                ("2026-04-06 19", 0, 10, 5, 5),  # 21:00 CEST: outside
                ("2026-04-06 10", 2, 4, 4, 2),  # 12:30 CEST: noon
            ],
            columns=["sent_hour", "sent_quarter", "touches", "delivered", "responded"],
        )
        ranges = {"noon": "12:00-13:30", "evening": "19:00-21:00"}
        found = windows_from_quarter_hours(frame, "Europe/Berlin", ranges)
        assert found == [
            window("noon", "12:00-13:30", 4, 2),
            {**window("evening", "19:00-21:00", 23, 6), "touches": 30},
        ]

    def test_no_sends(self) -> None:
        empty = pd.DataFrame(
            columns=["sent_hour", "sent_quarter", "touches", "delivered", "responded"]
        )
        found = windows_from_quarter_hours(empty, "Asia/Shanghai", {"noon": "12:00-13:30"})
        assert found == [
            {
                "window": "noon",
                "range": "12:00-13:30",
                "touches": 0,
                "delivered": 0,
                "responded": 0,
                "response_rate": None,
            }
        ]


# --- promote_variant ----------------------------------------------------------------------


def experiment(control: str, treatment: str, decision: str, **numbers: Any) -> dict[str, Any]:
    """A comparison shaped like `tasks.check.experiments.judge` makes them."""
    row = {
        "metric": "application_rate",
        "control": control,
        "treatment": treatment,
        "control_n": 4480,
        "control_rate": 0.049,
        "treatment_n": 4500,
        "treatment_rate": 0.061,
        "lift": 0.012,
        "lift_relative": 0.245,
        "ci_low": 0.003,
        "ci_high": 0.021,
        "p_value": 0.002,
        "p_value_adjusted": 0.004,
        "srm_p_value": 0.5,
        "min_sample": 3000,
        "decision": decision,
    }
    row.update(numbers)
    return row


class TestPromoteVariant:
    def test_the_treatment_wins(self) -> None:
        found = run(check_result(experiments=[experiment("A", "B", "treatment_wins")]))
        assert_types(found, "promote_variant")
        (promote,) = found
        assert promote.scope == {}
        assert promote.params == {"winner": "B", "loser": "A"}
        assert promote.rationale == (
            "application_rate of B is 6.1 % (n = 4500) against 4.9 % for A (n = 4480): lift of "
            "B over A +1.20 pp, 95 % CI of the lift [+0.30 pp, +2.10 pp], Holm-adjusted "
            "p = 0.004 (treatment_wins)."
        )
        assert "about 54 more customers" in promote.expected_impact
        assert "(45.0 % of the audience)" in promote.expected_impact

    def test_the_control_wins(self) -> None:
        test = experiment("A", "B", "control_wins", lift=-0.012, ci_low=-0.021, ci_high=-0.003)
        (promote,) = run(check_result(experiments=[test]))
        assert promote.params == {"winner": "A", "loser": "B"}

    @pytest.mark.parametrize("decision", ["treatment_wins", "control_wins"])
    def test_a_win_over_the_holdout_promotes_nothing(self, decision: str) -> None:
        tests = [experiment("holdout", "A", decision), experiment("holdout", "B", decision)]
        assert not run(check_result(experiments=tests))

    @pytest.mark.parametrize("decision", ["srm_invalid", "insufficient_sample", "no_difference"])
    def test_undecided_comparisons(self, decision: str) -> None:
        assert not run(check_result(experiments=[experiment("A", "B", decision)]))

    def test_unknown_numbers(self) -> None:
        test = experiment("A", "B", "treatment_wins", lift=None, ci_low=None, ci_high=None)
        (promote,) = run(check_result(experiments=[test]))
        assert promote.expected_impact == (
            "A retires and B becomes the default (45.0 % of the audience)."
        )


# --- revise_targeting ---------------------------------------------------------------------


APPROVAL_BOTTLENECK = {
    "stage": "approval",
    "metric": "approval_rate",
    "actual": 105 / 310,
    "reference": 0.6,
    "reference_kind": "target",
    "gap_pct": 105 / 310 / 0.6 - 1,
}
TARGETING_FUNNEL = [
    channel_row("phone", segment="sme", applications=200, approved=100),
    channel_row("sms", segment="farmer", applications=100, approved=5),
    channel_row("sms", segment="salaried", applications=10, approved=0),  # too few to name
]
REASONS = [
    {"channel": None, "reason": "low_credit_score", "count": 150, "share": 0.73},
    {"channel": None, "reason": "high_debt_ratio", "count": 40, "share": 0.195},
    {"channel": "sms", "reason": "low_credit_score", "count": 120, "share": 0.8},
]


class TestReviseTargeting:
    def test_approval_bottleneck_names_segments_channels_and_reasons(self) -> None:
        check = check_result(
            funnel=TARGETING_FUNNEL, bottleneck=APPROVAL_BOTTLENECK, reject_reasons=REASONS
        )
        found = run(check)
        assert_types(found, "revise_targeting")
        (revise,) = found
        assert revise.scope == {}
        assert revise.params == {
            "segments": ["farmer"],
            "channels": ["sms"],
            "reject_reasons": ["low_credit_score", "high_debt_ratio"],
        }
        assert revise.rationale == (
            "approval is the funnel's bottleneck: approval_rate is 33.9 % against its target of "
            "60.0 % (-43.5 %); lowest approval_rate by segment: farmer 5.0 % (5 of 100); lowest "
            "approval_rate by channel: sms 4.5 % (5 of 110); top reject reasons: "
            "low_credit_score (73.0 %), high_debt_ratio (19.5 %)."
        )
        assert revise.expected_impact == (
            "Without segment farmer (100 applications) the approval_rate would have been "
            "47.6 % instead of 33.9 %."
        )

    @pytest.mark.parametrize("stage", ["response", "application", "delivery", None])
    def test_another_bottleneck(self, stage: str | None) -> None:
        check = check_result(
            funnel=TARGETING_FUNNEL, bottleneck=dict(APPROVAL_BOTTLENECK, stage=stage)
        )
        assert not run(check)

    def test_no_bottleneck(self) -> None:
        assert not run(check_result(funnel=TARGETING_FUNNEL, bottleneck=None))

    def test_thin_segments_are_not_named(self) -> None:
        rows = [
            channel_row("phone", segment="sme", applications=200, approved=100),
            channel_row("sms", segment="farmer", applications=19, approved=0),
        ]
        (revise,) = run(check_result(funnel=rows, bottleneck=APPROVAL_BOTTLENECK))
        assert revise.params == {"segments": [], "channels": [], "reject_reasons": []}
        assert revise.expected_impact.startswith("119 of the period's 219 applications")


# --- untrusted data, whatever else ------------------------------------------------------


class TestProposeProperties:
    @given(
        trusted=st.one_of(st.none(), st.just(False)),
        rois=st.lists(st.floats(-1, 3), min_size=4, max_size=4),
        overdue=st.floats(0, 1),
        decision=st.sampled_from(["treatment_wins", "control_wins", "no_difference"]),
        stage=st.sampled_from(["approval", "response", None]),
    )
    @settings(max_examples=100, deadline=None)
    def test_untrusted_is_hold_alone(self, trusted, rois, overdue, decision, stage) -> None:
        check = check_result(
            trusted=trusted,
            funnel=[channel_row(c, roi=r) for c, r in zip(CHANNELS, rois, strict=True)],
            kpis=[kpi("overdue_rate_30", overdue)],
            experiments=[experiment("A", "B", decision)],
            bottleneck={"stage": stage},
        )
        history = [check_result(funnel=check["funnel"])] * 2
        found = propose(
            CheckResult.from_json(check),
            [CheckResult.from_json(item) for item in history],
            context(windows=WINDOWS_APART),
            RULES,
        )
        assert [item.type for item in found] == ["hold"]
        assert_json_ready([item.to_json() for item in found])


class TestThresholds:
    def test_from_settings(self) -> None:
        chosen = Settings(
            plan_floor_share=0.07,
            experiment_alpha=0.01,
            act_roi_floor=0.1,
            act_retire_after_periods=4,
            act_reallocation_step=0.2,
            act_cac_ratio=3.0,
            act_min_channel_touches=50,
            act_score_floor_step=10,
            act_debt_ratio_step=0.1,
            act_min_seasoned_loans=5,
            act_window_min_touches=500,
            act_window_shift_minutes=15,
            act_targeting_min_applications=40,
        )
        assert Thresholds.from_settings(chosen) == Thresholds(
            plan_floor_share=0.07,
            roi_floor=0.1,
            retire_after_periods=4,
            reallocation_step=0.2,
            cac_ratio=3.0,
            min_channel_touches=50,
            score_floor_step=10,
            debt_ratio_step=0.1,
            min_seasoned_loans=5,
            window_min_touches=500,
            window_shift_minutes=15,
            targeting_min_applications=40,
            alpha=0.01,
        )

    def test_the_defaults_are_the_settings_defaults(self) -> None:
        defaults = Settings(_env_file=None)
        assert Thresholds.from_settings(defaults) == Thresholds(alpha=defaults.experiment_alpha)


# --- gather_context on the database -------------------------------------------------------


def action(
    kind: str,
    scope: dict,
    params: dict,
    *,
    status: str = "approved",
    decided_at: datetime | None = datetime(2026, 3, 5, 1),
) -> dict[str, Any]:
    """An action of 2026-W10, decided (when approved) before 2026-W11 began."""
    return {
        "campaign_id": CAMPAIGN_ID,
        "period": "2026-W10",
        "type": kind,
        "scope": scope,
        "params": params,
        "rationale": "test",
        "expected_impact": "",
        "status": status,
        "decided_at": decided_at if status != "proposed" else None,
    }


class TestGatherContext:
    """2026-W11 (9–15 March) of a campaign planned by month, in Asia/Shanghai (UTC+8)."""

    def build(self, db_url: str) -> None:
        engine = make_engine(db_url)
        day = date(2026, 3, 10)
        with engine.begin() as conn:
            apply(conn, spec_dict())
            conn.execute(
                insert(Customer),
                [customer(f"c{n}", credit_score=610 + n, debt_ratio=0.6) for n in range(12)],
            )

            def sent(n: int, hour: int, minute: int, **options: Any) -> dict[str, Any]:
                responded = options.pop("responded", False)
                row = touch(
                    f"t{n}",
                    f"c{n}",
                    local_utc(day, hour, minute),
                    campaign_id=CAMPAIGN_ID,
                    **options,
                )
                return dict(row, responded=responded)

            conn.execute(
                insert(Touch),
                [
                    sent(0, 12, 10, responded=True),
                    sent(1, 12, 10, responded=True),
                    sent(2, 12, 40),
                    sent(3, 13, 20),
                    sent(4, 18, 40, responded=True),  # evening as shifted: 18:30-20:30
                    sent(5, 19, 20),
                    sent(6, 19, 20, delivered=False),
                    sent(7, 20, 40),  # after the shifted evening
                    sent(8, 15, 0),  # in no window
                    sent(9, 12, 10, variant="holdout", delivered=False, cost=0.0),
                    {
                        **touch("t10", "c10", local_utc(date(2026, 3, 3), 12, 10)),
                        "campaign_id": CAMPAIGN_ID,
                    },  # the week before
                ],
            )
            add_plan(conn, {"phone": 100, "sms": 1000}, period="2026-03")
            add_plan(conn, {"phone": 999, "sms": 999}, period="2026-Q1")
            conn.execute(
                insert(Action),
                [
                    action(
                        "shift_window",
                        {"window": "evening"},
                        {"window": "evening", "from": "19:00-21:00", "to": "18:30-20:30"},
                    ),
                    action("tighten_admission", {"channel": "sms"}, {"min_credit_score": 640}),
                    action("tighten_admission", {"channel": "sms"}, {"min_credit_score": 620}),
                    action("tighten_admission", {}, {"min_credit_score": 700}, status="proposed"),
                ],
            )
            self.add_loan(conn, "c0", "l-overdue", date(2026, 2, 1), [(date(2026, 3, 10), 35)])
            self.add_loan(conn, "c1", "l-young", date(2026, 3, 1), [(date(2026, 3, 12), 0)])
        engine.dispose()

    @staticmethod
    def add_loan(conn, who: str, loan_id: str, disbursed: date, snapshots) -> None:
        at = datetime.combine(disbursed, datetime.min.time())
        conn.execute(
            insert(Application).values(
                application_id=f"a-{loan_id}",
                customer_id=who,
                campaign_id=CAMPAIGN_ID,
                channel="sms",
                applied_at=at - timedelta(days=1),
                product_code="sme-revolving",
                amount_requested=5000.0,
            )
        )
        conn.execute(
            insert(Loan).values(
                loan_id=loan_id,
                application_id=f"a-{loan_id}",
                disbursed_at=at,
                amount=5000.0,
                apr=18.0,
                term_months=12,
            )
        )
        conn.execute(
            insert(Repayment),
            [
                {"loan_id": loan_id, "as_of": as_of, "dpd": dpd, "outstanding": 4000.0}
                for as_of, dpd in snapshots
            ],
        )

    def test_reads_budget_windows_loans_and_admission(self, db_url: str) -> None:
        self.build(db_url)
        engine = make_engine(db_url)
        with engine.connect() as conn:
            found = gather_context(conn, SPEC, Period.parse("2026-W11"), attribution_days=14)
        engine.dispose()

        assert found.plan_period == "2026-03"  # the shortest plan containing the week
        assert found.budget == {"phone": 800.0, "sms": 50.0}
        assert found.windows == [
            window("noon", "12:00-13:30", 4, 2),
            {**window("evening", "18:30-20:30", 2, 1), "touches": 3},
        ]
        assert found.admission == {"channel:sms": {"min_credit_score": 640}}
        assert found.ranges == {"noon": "12:00-13:30", "evening": "18:30-20:30"}
        assert found.changed == frozenset()
        book = found.loans.set_index("loan_id")
        assert list(found.loans.columns) == LOAN_COLUMNS
        assert book.loc["l-overdue", ["is_seasoned", "is_overdue"]].tolist() == [1, 1]
        assert book.loc["l-young", ["is_seasoned", "is_overdue"]].tolist() == [0, 0]
        assert book.loc["l-overdue", "credit_score"] == 610.0
        assert book.loc["l-overdue", "segment"] == "sme"

    def test_the_period_is_judged_by_the_rules_in_force_during_it(self, db_url: str) -> None:
        """The evening shift was approved after 2026-W11 began: W11's sends are counted in
        the evening they went out in (the spec's 19:00-21:00), the next step starts from
        18:30-20:30, and neither rule is proposed again from W11's evidence."""
        self.build(db_url)
        engine = make_engine(db_url)
        with engine.begin() as conn:
            conn.execute(
                update(Action)
                .where(Action.type == "shift_window")
                .values(period="2026-W12", decided_at=datetime(2026, 3, 23, 2))
            )
            conn.execute(
                update(Action)
                .where(Action.params["min_credit_score"].as_integer() == 620)
                .values(decided_at=datetime(2026, 3, 10, 2))
            )
        with engine.connect() as conn:
            found = gather_context(conn, SPEC, Period.parse("2026-W11"))
        engine.dispose()
        assert found.windows == [
            window("noon", "12:00-13:30", 4, 2),
            {**window("evening", "19:00-21:00", 2, 0), "touches": 3},
        ]
        assert found.ranges == {"noon": "12:00-13:30", "evening": "18:30-20:30"}
        assert found.admission == {"channel:sms": {"min_credit_score": 640}}
        assert found.changed == {
            "shift_window window:evening",
            "tighten_admission channel:sms",
        }

    def test_without_plan_or_sends(self, db_url: str) -> None:
        engine = make_engine(db_url)
        with engine.begin() as conn:
            apply(conn, spec_dict())
        with engine.connect() as conn:
            found = gather_context(conn, SPEC, Period.parse("2026-W11"))
        engine.dispose()
        assert found.budget == {} and found.plan_period is None
        assert [w["delivered"] for w in found.windows] == [0, 0]
        assert found.loans.empty and list(found.loans.columns) == LOAN_COLUMNS
        assert found.admission == {}
