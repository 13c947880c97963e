"""The act flow from the user's side: proposals from a stored check, decisions, the SOP, the
report, and the loop closing on the next plan.

The check results are built by hand (`tests/tasks/act/test_proposals.py`'s builders), stored
as the check stage stores them, so that each test knows exactly which triggers are
present. The approval pause against a real Prefect server is in `test_act_approval.py`.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select

from flows.act import act_flow
from flows.plan import plan_flow
from pdca.db import make_engine
from pdca.models import Action, AuditEntry, CheckResult, Report, SopVersion
from tasks.common.periods import Period
from tests.flows.test_plan import budget_rows, new_campaign
from tests.scenario import (
    BACKENDS,
    CAMPAIGN_ID,
    PERIOD,
    add_plan,
    apply,
    database,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
    spec_dict,
)
from tests.tasks.act.test_proposals import check_result, experiment, failing_sms
from tests.worlds import World

pytestmark = pytest.mark.usefixtures("prefect_env")

PLAN_TOUCHES = {"phone": 500, "sms": 60_000, "im": 66_667, "app_push": 100_000}
"""With the scenario's costs per touch: 4,000 / 3,000 / 2,000 / 1,000."""


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


def store_check(engine: Engine, result: dict, campaign_id: str = CAMPAIGN_ID) -> None:
    """Store a check result as the check stage does."""
    result = {**result, "campaign": campaign_id}
    with engine.begin() as conn:
        conn.execute(
            insert(CheckResult).values(
                campaign_id=campaign_id,
                period=result["period"],
                trusted=result["trusted"],
                result=result,
            )
        )


def failing_sms_and_b_wins(period: str = PERIOD) -> dict:
    """Two triggers: sms misses its CAC target (phone earns most) and B beat A."""
    check = failing_sms()
    check["period"] = period
    check["experiments"] = [experiment("A", "B", "treatment_wins")]
    return check


def count(engine: Engine, model, **where) -> int:
    with engine.connect() as conn:
        statement = select(func.count()).select_from(model)
        for key, value in where.items():
            statement = statement.where(getattr(model, key) == value)
        return conn.execute(statement).scalar_one()


class TestProposals:
    def test_auto_approve_decides_each_proposal_and_logs_who(self, world):
        store_check(world, failing_sms_and_b_wins())
        result = act_flow(CAMPAIGN_ID, PERIOD, auto_approve=True)
        types = [action["type"] for action in result["actions"]]
        assert types == ["reallocate_budget", "promote_variant"]
        for action in result["actions"]:
            assert set(action) >= {
                "type",
                "scope",
                "params",
                "rationale",
                "expected_impact",
                "status",
            }
            assert action["status"] == "approved"
            assert action["decided_by"] == "auto-approve"
        reallocation = result["actions"][0]
        assert reallocation["params"]["from_channel"] == "sms"
        assert reallocation["params"]["to_channel"] == "phone"
        assert "412.5" in reallocation["rationale"]
        assert count(world, AuditEntry, action="act.approve") == 2
        assert count(world, AuditEntry, action="act.propose") == 1

    def test_untrusted_data_hold_and_nothing_else(self, world):
        check = failing_sms_and_b_wins()
        check["trusted"] = False
        check["data_quality"] = {
            "trusted": False,
            "suites": [
                {"name": "touches", "success": False, "evaluated": 9, "failed": ["sent_at"]}
            ],
            "quarantine": [],
        }
        store_check(world, check)
        result = act_flow(CAMPAIGN_ID, PERIOD, auto_approve=True)
        assert [a["type"] for a in result["actions"]] == ["hold"]
        assert result["actions"][0]["status"] == "proposed", "hold needs no decision"
        assert result["trusted"] is False
        assert result["sop"]["version"] == 1
        assert [entry["action"] for entry in result["sop"]["changes"]] == ["initial"]
        html = Path(result["report"]["path"]).read_text()
        assert "Data quality failed" in html

    def test_a_check_on_plan_proposes_nothing(self, world):
        store_check(world, check_result(period=PERIOD))
        result = act_flow(CAMPAIGN_ID, PERIOD, auto_approve=True)
        assert result["actions"] == []
        assert "No adjustment proposed" in Path(result["report"]["path"]).read_text()

    def test_without_a_server_or_auto_approve_proposals_stay_proposed(self, world):
        store_check(world, failing_sms_and_b_wins())
        result = act_flow(CAMPAIGN_ID, PERIOD)
        assert [a["status"] for a in result["actions"]] == ["proposed", "proposed"]
        assert result["sop"]["changes"] == [{**result["sop"]["changes"][0], "version": 1}]
        assert count(world, AuditEntry, action="act.approve") == 0

    def test_rerun_converges(self, world):
        store_check(world, failing_sms_and_b_wins())
        first = act_flow(CAMPAIGN_ID, PERIOD, auto_approve=True)
        second = act_flow(CAMPAIGN_ID, PERIOD, auto_approve=True)
        assert second["actions"] == first["actions"]
        assert count(world, Action) == 2
        assert second["sop"]["version"] == first["sop"]["version"] == 3
        assert second["sop"]["changes"] == []
        assert count(world, SopVersion) == 3
        assert count(world, Report, kind="adjustment_report") == 1
        assert count(world, AuditEntry, action="act.approve") == 2

    def test_a_missing_check_is_run_first(self, world):
        result = act_flow(CAMPAIGN_ID, PERIOD, auto_approve=True)
        assert count(world, CheckResult, period=PERIOD) == 1
        assert result["period"] == PERIOD


class TestSopAndReport:
    def test_each_approved_action_makes_a_version_with_its_diff(self, world):
        store_check(world, failing_sms_and_b_wins())
        result = act_flow(CAMPAIGN_ID, PERIOD, auto_approve=True)
        sop = result["sop"]
        assert sop["version"] == 3
        assert [entry["version"] for entry in sop["changes"]] == [1, 2, 3]
        assert sop["changes"][1]["action"].startswith("reallocate_budget (channel=sms)")
        assert sop["changes"][2]["action"].startswith("promote_variant (campaign)")
        body = Path(sop["path"]).read_text()
        assert "**version 3**" in body
        assert "Variant A retired: B won" in body
        assert "Variant B: 90% of the audience." in body
        html = Path(result["report"]["path"]).read_text()
        assert "+- Variant B: 90% of the audience." in html.replace("&#43;", "+")
        assert html.count('class="action"') == 2

    def test_campaign_names_are_escaped(self, world, db_url):
        with make_engine(db_url).begin() as conn:
            apply(conn, spec_dict(name="<script>alert(1)</script>"))
        store_check(world, failing_sms_and_b_wins())
        html = Path(act_flow(CAMPAIGN_ID, PERIOD)["report"]["path"]).read_text()
        assert "<script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


class TestCli:
    def test_json_prints_the_contract(self, world, capfd):
        store_check(world, failing_sms_and_b_wins())
        code, out, _ = run_main(
            ["act", "--campaign", CAMPAIGN_ID, "--period", PERIOD, "--auto-approve", "--json"],
            capfd,
        )
        assert code == 0
        document = json.loads(out)
        assert set(document) >= {"actions", "sop", "report"}
        assert set(document["sop"]) == {"path", "version", "changes"}
        assert Path(document["report"]["path"]).exists()

    def test_sop_show_diff_and_changelog(self, world, capfd):
        store_check(world, failing_sms_and_b_wins())
        act_flow(CAMPAIGN_ID, PERIOD, auto_approve=True)
        code, out, _ = run_main(["sop", "show", "--campaign", CAMPAIGN_ID, "--diff"], capfd)
        assert code == 0
        assert out.startswith(f"--- {CAMPAIGN_ID} SOP v2\n+++ {CAMPAIGN_ID} SOP v3\n")
        assert "+- Variant A retired: B won" in out
        code, out, _ = run_main(["sop", "show", "--campaign", CAMPAIGN_ID, "--version", "1"], capfd)
        assert "**version 1**" in out
        code, out, _ = run_main(["sop", "show", "--campaign", CAMPAIGN_ID, "--changelog"], capfd)
        assert [line.split()[0] for line in out.splitlines()[::2]] == ["v1", "v2", "v3"]

    def test_bad_period_is_bad_usage(self, world, capfd):
        code, _, err = run_main(["act", "--campaign", CAMPAIGN_ID, "--period", "2026-13"], capfd)
        assert code == 2
        assert "2026-13" in err and "Traceback" not in err

    def test_no_sop_yet_is_a_clear_error(self, world, capfd):
        code, _, err = run_main(["sop", "show", "--campaign", CAMPAIGN_ID], capfd)
        assert code == 2
        assert "no SOP yet" in err


class TestActionsCommand:
    """`pdca actions` without a server: the proposals an act run left proposed (nobody could
    answer its pause) are listed and decided from the command line, with the audit row
    and SOP version the run would have written."""

    def test_list_approve_reject(self, world, capfd, caplog):
        store_check(world, failing_sms_and_b_wins())
        result = act_flow(CAMPAIGN_ID, PERIOD)
        ids = [action["action_id"] for action in result["actions"]]
        assert [a["status"] for a in result["actions"]] == ["proposed", "proposed"]
        assert f"pdca actions approve {ids[0]} {ids[1]} --by NAME" in caplog.text
        versions = count(world, SopVersion)

        code, out, _ = run_main(["actions", "list", "--status", "proposed"], capfd)
        assert code == 0
        assert [int(line.split()[0]) for line in out.splitlines()] == ids
        assert "reallocate_budget" in out and "promote_variant" in out

        argv = ["actions", "approve", str(ids[1]), "--by", "Mei Chen", "--comment", "ship B"]
        code, out, err = run_main(argv, capfd)
        assert code == 0, err
        assert "approved" in out and "Mei Chen" in out
        code, out, err = run_main(["actions", "reject", str(ids[0]), "--by", "Li Wei"], capfd)
        assert code == 0, err

        with world.connect() as conn:
            decided = conn.execute(
                select(Action.action_id, Action.status, Action.decided_by, Action.comment)
                .where(Action.campaign_id == CAMPAIGN_ID)
                .order_by(Action.action_id)
            ).all()
            audit = conn.execute(
                select(AuditEntry.actor, AuditEntry.action).where(
                    AuditEntry.action.in_(["act.approve", "act.reject"])
                )
            ).all()
        assert decided == [
            (ids[0], "rejected", "Li Wei", None),
            (ids[1], "approved", "Mei Chen", "ship B"),
        ]
        assert sorted(audit) == [("Li Wei", "act.reject"), ("Mei Chen", "act.approve")]
        assert count(world, SopVersion) == versions + 1, "the approval made no SOP version"

        code, _, err = run_main(["actions", "approve", str(ids[1]), "--by", "Mei Chen"], capfd)
        assert code == 2 and "already approved by Mei Chen" in err
        code, out, _ = run_main(["actions", "list", "--status", "proposed"], capfd)
        assert code == 0 and out == ""


# --- the loop closes on the next plan -------------------------------------------------------

DEMO_START = date(2026, 3, 2)
WEEKS = 6
WORLD = World(customers=3000, weeks=WEEKS, start=DEMO_START)
"""The plan flow's tests load the same world (tests/worlds.py builds it once)."""
WEEK = Period.week_of(DEMO_START + timedelta(weeks=WEEKS))
"""The first week after the demo history (2026-W16)."""


@pytest.fixture(scope="module", params=BACKENDS)
def history(request, tmp_path_factory, demo_worlds) -> str:
    """The demo history loaded (what the plan estimates from)."""
    return demo_worlds.database(request, tmp_path_factory.mktemp("act-db"), request.param, WORLD)


def test_an_approved_reallocation_moves_the_next_plan(history, tmp_path, monkeypatch):
    monkeypatch.setenv("PDCA_OUTPUT_DIR", str(tmp_path))
    engine = make_engine(history)
    # 300 a week: the budget binds (not the channels' reach), so the shift is honoured
    new_campaign(engine, "act-loop", budget_total=1200)
    with database(history):
        before = plan_flow("act-loop", str(WEEK))
        store_check(engine, failing_sms_and_b_wins(str(WEEK)), campaign_id="act-loop")
        acted = act_flow("act-loop", str(WEEK), auto_approve=True)
        after = plan_flow("act-loop", str(WEEK.shifted(1)))
    (moved,) = [a for a in acted["actions"] if a["type"] == "reallocate_budget"]
    assert moved["status"] == "approved"
    share = moved["params"]["share"]
    previous = {c: row["amount"] for c, row in budget_rows(engine, before["plan_id"]).items()}
    now = {c: row["amount"] for c, row in budget_rows(engine, after["plan_id"]).items()}
    assert moved["params"]["from_budget"] == pytest.approx(previous["sms"])
    assert now["sms"] <= previous["sms"] * (1 - share) + 1e-6, (previous, now)
    assert now["phone"] >= previous["phone"] + share * previous["sms"] - 1e-6, (previous, now)
    assert after["inputs"]["applied_actions"] == [moved["action_id"]]
    engine.dispose()
