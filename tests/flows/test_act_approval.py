"""The act flow's approval pause against a real Prefect server: a manager's decisions arrive
through the API, as they do from the UI's form, and land in the actions and the audit log.

The flow runs in a background thread of this process, reporting to the server of the
`prefect_server` fixture; the test waits for each pause, answers it with
`resume_flow_run(..., run_input=...)` and finally reads what the flow recorded.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter
from prefect.flow_runs import resume_flow_run
from sqlalchemy import Engine, select

from flows.act import act_flow
from pdca.db import make_engine
from pdca.models import Action, AuditEntry
from tests.flows.test_act import PLAN_TOUCHES, failing_sms_and_b_wins, store_check
from tests.scenario import CAMPAIGN_ID, PERIOD, add_plan, apply, database, spec_dict

pytestmark = pytest.mark.slow

WAIT = 120.0
"""Seconds to wait for a pause or the run's end (the cores may be busy)."""


@pytest.fixture
def world(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("PDCA_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("PDCA_ACT_APPROVAL_POLL_SECONDS", "1")
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        apply(conn, spec_dict())
        add_plan(conn, PLAN_TOUCHES)
    store_check(engine, failing_sms_and_b_wins())
    with database(sqlite_url):
        yield engine
    engine.dispose()


class ActRun:
    """act_flow running in a thread; `.result` or `.error` once it ends."""

    def __init__(self, **parameters: Any) -> None:
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=parameters, daemon=True)
        self.thread.start()

    def _run(self, **parameters: Any) -> None:
        try:
            self.result = act_flow(campaign_id=CAMPAIGN_ID, period=PERIOD, **parameters)
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def join(self) -> dict:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the act run did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def paused_run_id(seen: int) -> Any:
    """The act run's id once it is paused for the (seen + 1)-th time."""
    deadline = time.monotonic() + WAIT
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["act"])),
                flow_run_filter=FlowRunFilter(),
            )
            for run in runs:
                if run.state and run.state.is_paused() and _pauses(client, run.id) > seen:
                    return run.id
            time.sleep(0.5)
    raise AssertionError(f"no act run paused for decision {seen + 1} within {WAIT:.0f} s")


def _pauses(client, flow_run_id) -> int:
    """How many pauses the run has reached (its paused states, counted by the API)."""
    states = client.read_flow_run_states(flow_run_id)
    return sum(1 for state in states if state.is_paused())


def actions(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Action.type, Action.status, Action.decided_by, Action.comment, Action.params)
            .where(Action.campaign_id == CAMPAIGN_ID)
            .order_by(Action.action_id)
        ).mappings()
        return [dict(row) for row in rows]


def test_a_manager_approves_one_proposal_and_rejects_the_other(world, prefect_server):
    with prefect_server.use():
        run = ActRun(approval_timeout=300)
        first = paused_run_id(seen=0)
        with pytest.raises(RuntimeError, match="amount"):  # above the sms budget of 3,000
            resume_flow_run(
                first, run_input={"decision": "approve", "reviewer": "Mei Chen", "amount": 5e3}
            )
        with pytest.raises(RuntimeError, match="reviewer"):
            resume_flow_run(first, run_input={"decision": "approve", "reviewer": ""})
        resume_flow_run(
            first,
            run_input={
                "decision": "approve",
                "reviewer": "Mei Chen",
                "comment": "move it, but less",
                "amount": 150.0,
            },
        )
        second = paused_run_id(seen=1)
        assert second == first
        resume_flow_run(
            second,
            run_input={"decision": "reject", "reviewer": "Mei Chen", "comment": "wait a week"},
        )
        result = run.join()
    stored = actions(world)
    assert [(a["type"], a["status"]) for a in stored] == [
        ("reallocate_budget", "approved"),
        ("promote_variant", "rejected"),
    ]
    assert {a["decided_by"] for a in stored} == {"Mei Chen"}
    assert stored[0]["comment"] == "move it, but less"
    assert stored[0]["params"]["amount"] == 150.0
    assert stored[0]["params"]["share"] == pytest.approx(150.0 / 3000.0)
    assert [a["status"] for a in result["actions"]] == ["approved", "rejected"]
    assert [entry["version"] for entry in result["sop"]["changes"]] == [1, 2]
    with world.connect() as conn:
        audit = conn.execute(
            select(AuditEntry.actor, AuditEntry.action).where(AuditEntry.action.like("act.%"))
        ).all()
    assert sorted(audit) == [
        ("Mei Chen", "act.approve"),
        ("Mei Chen", "act.reject"),
        ("act", "act.propose"),
    ]


def test_after_the_timeout_proposals_stay_proposed(world, prefect_server):
    with prefect_server.use():
        result = act_flow(campaign_id=CAMPAIGN_ID, period=PERIOD, approval_timeout=2)
    assert [a["status"] for a in result["actions"]] == ["proposed", "proposed"]
    assert [a["status"] for a in actions(world)] == ["proposed", "proposed"]
    assert Path(result["report"]["path"]).exists()
