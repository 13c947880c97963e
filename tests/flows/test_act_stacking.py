"""Act week after week, from the user's side: a period is judged by the rules in force
during it, a change already approved is not proposed again, approving the same change twice
changes nothing, a what-if that makes things worse is not proposed, and a reallocation goes
to the best channel by ROI whatever its status.

The scenario campaign (Asia/Shanghai, windows noon 12:00-13:30 and evening 19:00-21:00,
score floor 600, overdue ceiling 3 %) gets real sends and loans in the database, which is
what shift_window and tighten_admission read, and hand-made check results (stored as the
check stage stores them) for what the check says.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select

from flows.act import act_flow
from pdca.db import make_engine
from pdca.models import Action, Application, Customer, Loan, Repayment, SopVersion, Touch
from tasks.common.campaigns import get_campaign_spec
from tasks.common.periods import Period
from tasks.common.rules import RulesInForce, approved_actions, rules_in_force
from tests.flows.test_act import PLAN_TOUCHES, store_check
from tests.scenario import (
    CAMPAIGN_ID,
    add_plan,
    apply,
    customer,
    database,
    local_utc,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
    spec_dict,
    touch,
)
from tests.tasks.act.test_proposals import channel_row, check_result, kpi, with_rows

pytestmark = pytest.mark.usefixtures("prefect_env")

W11, W12 = Period.parse("2026-W11"), Period.parse("2026-W12")
"""9–15 and 16–22 March 2026: both inside the scenario's plan of 2026-03."""
_ids = itertools.count()


@pytest.fixture
def world(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The scenario campaign with a plan for its month, reports under `tmp_path`."""
    monkeypatch.setenv("PDCA_OUTPUT_DIR", str(tmp_path / "out"))
    engine = make_engine(db_url)
    with engine.begin() as conn:
        apply(conn, spec_dict())
        add_plan(conn, PLAN_TOUCHES)
    with database(db_url):
        yield engine
    engine.dispose()


def add_sends(engine: Engine, day: date, hour: int, minute: int, sent: int, responded: int):
    """`sent` delivered sms of the campaign at that local time, `responded` of them answered."""
    with engine.begin() as conn:
        for number in range(sent):
            n = next(_ids)
            conn.execute(insert(Customer).values(customer(f"s{n}")))
            row = touch(f"t{n}", f"s{n}", local_utc(day, hour, minute), campaign_id=CAMPAIGN_ID)
            conn.execute(insert(Touch).values({**row, "responded": number < responded}))


def evening_responds_worse(engine: Engine, period: Period) -> None:
    """Noon answers 15 %, the evening 5 % (at 19:10 and 20:40): a significant gap."""
    monday = period.start
    add_sends(engine, monday, 12, 30, 400, 60)
    add_sends(engine, monday, 19, 10, 200, 10)
    add_sends(engine, monday, 20, 40, 200, 10)


def add_loans(engine: Engine, count: int, *, score: int, overdue: bool, segment: str = "sme"):
    """`count` seasoned sms loans of the campaign (disbursed 1 February 2026) to borrowers
    with credit score `score`, 35 days past due on 10 March when `overdue`."""
    with engine.begin() as conn:
        for _ in range(count):
            n = next(_ids)
            who, loan_id = f"b{n}", f"l{n}"
            conn.execute(
                insert(Customer).values(customer(who, segment=segment, credit_score=score))
            )
            disbursed = datetime(2026, 2, 1)
            conn.execute(
                insert(Application).values(
                    application_id=f"a{n}",
                    customer_id=who,
                    campaign_id=CAMPAIGN_ID,
                    channel="sms",
                    applied_at=disbursed - timedelta(days=1),
                    product_code="sme-revolving",
                    amount_requested=5000.0,
                )
            )
            conn.execute(
                insert(Loan).values(
                    loan_id=loan_id,
                    application_id=f"a{n}",
                    disbursed_at=disbursed,
                    amount=5000.0,
                    apr=18.0,
                    term_months=12,
                )
            )
            conn.execute(
                insert(Repayment).values(
                    loan_id=loan_id,
                    as_of=date(2026, 3, 10),
                    dpd=35 if overdue else 0,
                    outstanding=4000.0,
                )
            )


def overdue_check(period: Period, rate: float) -> dict:
    """A trusted check whose only finding is the campaign's overdue_rate_30 at `rate`."""
    return check_result(period=str(period), kpis=[kpi("overdue_rate_30", rate)])


def rules_now(engine: Engine) -> RulesInForce:
    """The rules dispatch applies now."""
    with engine.connect() as conn:
        spec = get_campaign_spec(conn, CAMPAIGN_ID)
        return rules_in_force(spec, approved_actions(conn, CAMPAIGN_ID))


def types(result: dict) -> list[str]:
    return [action["type"] for action in result["actions"]]


def versions(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(SopVersion)).scalar_one()


class TestNeverStacks:
    def test_a_window_moved_for_w12_is_not_moved_again_from_w11(self, world):
        """Acting on W11 after W12's shift was approved: W11's sends went out in the spec's
        evening (19:00-21:00), whose evidence W12's approval already answered."""
        for period in (W11, W12):
            evening_responds_worse(world, period)
            store_check(world, check_result(period=str(period)))
        later = act_flow(CAMPAIGN_ID, str(W12), auto_approve=True)
        (shift,) = later["actions"]
        assert shift["type"] == "shift_window" and shift["status"] == "approved"
        assert shift["params"] == {"window": "evening", "from": "19:00-21:00", "to": "18:30-20:30"}
        sop = versions(world)

        earlier = act_flow(CAMPAIGN_ID, str(W11), auto_approve=True)
        assert earlier["actions"] == [], earlier["actions"]
        assert str(rules_now(world).spec.contact_policy.windows["evening"]) == "18:30-20:30"
        assert versions(world) == sop

    def test_a_floor_raised_on_this_evidence_is_not_raised_again(self, world):
        """The same loans (8 of 40 overdue, all below 620) judged in W11 and again in W12: one
        step, 600 → 620; by the rules in force now the loans left breach nothing."""
        add_loans(world, 8, score=610, overdue=True)
        add_loans(world, 32, score=700, overdue=False)
        for period in (W11, W12):
            store_check(world, overdue_check(period, 0.2))
        first = act_flow(CAMPAIGN_ID, str(W11), auto_approve=True)
        (tighten,) = first["actions"]
        assert tighten["params"] == {"min_credit_score": 620}
        assert "overdue_rate_30 20.0 % → 0.0 %" in tighten["expected_impact"]

        second = act_flow(CAMPAIGN_ID, str(W12), auto_approve=True)
        assert second["actions"] == [], second["actions"]
        assert rules_now(world).spec.risk.min_credit_score == 620

    def test_acting_twice_on_the_same_evidence_proposes_nothing_twice(self, world):
        add_loans(world, 8, score=610, overdue=True)
        add_loans(world, 32, score=700, overdue=False)
        evening_responds_worse(world, W11)
        store_check(world, overdue_check(W11, 0.2))
        first = act_flow(CAMPAIGN_ID, str(W11), auto_approve=True)
        assert types(first) == ["tighten_admission", "shift_window"]
        second = act_flow(CAMPAIGN_ID, str(W11), auto_approve=True)
        assert second["actions"] == first["actions"]
        with world.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Action)).scalar_one() == 2

    def test_approving_the_same_change_twice_changes_nothing(self, world, capfd):
        """W11 and W12 both propose the same shift before anyone decides; a manager approves
        both: the window moves once, and the second approval makes no SOP version."""
        for period in (W11, W12):
            evening_responds_worse(world, period)
            store_check(world, check_result(period=str(period)))
        proposed = [act_flow(CAMPAIGN_ID, str(p))["actions"] for p in (W11, W12)]
        (first,), (second,) = proposed
        assert first["params"] == second["params"]
        assert first["status"] == second["status"] == "proposed"

        sop = versions(world)
        for count, action in enumerate((first, second), start=1):
            argv = ["actions", "approve", str(action["action_id"]), "--by", "Mei Chen"]
            code, _, err = run_main(argv, capfd)
            assert code == 0, err
            assert versions(world) == sop + 1, f"approval {count} of the same change"
            assert str(rules_now(world).spec.contact_policy.windows["evening"]) == "18:30-20:30"


class TestOnlyImprovements:
    def test_a_step_that_turns_away_only_good_loans_is_not_proposed(self, world):
        """The overdue loans are at score 700; a floor of 620 would only turn away the 5
        good loans at 610: overdue_rate_30 5.3 % → 5.6 %, worse, so no proposal."""
        add_loans(world, 5, score=610, overdue=False)
        add_loans(world, 5, score=700, overdue=True)
        add_loans(world, 85, score=700, overdue=False)
        store_check(world, overdue_check(W11, 5 / 95))
        result = act_flow(CAMPAIGN_ID, str(W11), auto_approve=True)
        assert result["actions"] == [], result["actions"]
        assert rules_now(world).spec.risk.min_credit_score == 600

    def test_a_step_that_improves_by_the_margin_is_proposed(self, world, monkeypatch):
        """1 of the 5 overdue loans below 620: 5.3 % → 4.3 %, a 19 % improvement; a margin
        of 20 % asks for more."""
        add_loans(world, 1, score=610, overdue=True)
        add_loans(world, 4, score=700, overdue=True)
        add_loans(world, 90, score=700, overdue=False)
        store_check(world, overdue_check(W11, 5 / 95))
        monkeypatch.setenv("PDCA_ACT_MIN_IMPROVEMENT", "0.2")
        from pdca.settings import get_settings

        get_settings.cache_clear()
        try:
            assert act_flow(CAMPAIGN_ID, str(W11))["actions"] == []
        finally:
            monkeypatch.delenv("PDCA_ACT_MIN_IMPROVEMENT")
            get_settings.cache_clear()
        (tighten,) = act_flow(CAMPAIGN_ID, str(W11))["actions"]
        assert tighten["params"] == {"min_credit_score": 620}
        assert "overdue_rate_30 5.3 % → 4.3 %" in tighten["expected_impact"]


class TestReallocation:
    def test_every_channel_off_track_still_moves_budget_to_the_best_roi(self, world):
        rois = {"phone": 0.6, "sms": -0.2, "im": 0.1, "app_push": 0.3}
        check = check_result(
            period=str(W11),
            funnel=with_rows(**{c: channel_row(c, roi=r, cac=200.0) for c, r in rois.items()}),
            kpis=[
                kpi("overdue_rate_30", 0.02),
                *(
                    kpi("roi", r, target=1.0, status="off_track", channel=c)
                    for c, r in rois.items()
                ),
            ],
        )
        store_check(world, check)
        result = act_flow(CAMPAIGN_ID, str(W11), auto_approve=True)
        moves = [a["params"] for a in result["actions"] if a["type"] == "reallocate_budget"]
        assert [(m["from_channel"], m["to_channel"]) for m in moves] == [
            ("sms", "phone"),
            ("im", "phone"),
            ("app_push", "phone"),
        ]
