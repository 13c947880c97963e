"""Guardrails from the user's side: a channel past the hard complaint limit is paused at
once by act, dispatch stops sending on it (and cancels what the outbox still held for
it), and it is sent to again only after a manager approves its resume.

The world is the dispatch scenario (tests/scenario.py) with the spec's hard limits set;
the check result is built by hand (`tests/tasks/act/test_proposals.py`'s builders) so that
exactly one scope, channel sms, is past a hard limit. Events are caught by Prefect's own
recording events client, installed as the process's events worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from sqlalchemy import Engine, func, select

from flows.act import act_flow
from flows.dispatch import dispatch_flow
from pdca.db import make_engine
from pdca.models import AuditEntry, SopVersion
from tests.flows.test_act import store_check
from tests.scenario import (
    CAMPAIGN_ID,
    DAY,
    NEXT_DAY,
    build_dispatch_world,
    database,
    local_utc,
    outbox,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
    simulated_sends,
    spec_dict,
)
from tests.tasks.act.test_proposals import check_result, kpi

pytestmark = pytest.mark.usefixtures("prefect_env")

WEEK, NEXT_WEEK = "2026-W10", "2026-W11"
"""DAY's ISO week, and the week after."""
LIMITS = {"hard_overdue_rate_30": 0.06, "hard_complaint_rate": 10.0}


def guarded_spec() -> dict:
    spec = spec_dict()
    return {**spec, "risk": {**spec["risk"], **LIMITS}}


def sms_complaints(period: str, rate: float = 14.0) -> dict:
    """A trusted check where only sms complains past the hard limit (10 per 1,000)."""
    return check_result(
        period,
        kpis=[
            kpi("overdue_rate_30", 0.02),
            kpi("overdue_rate_30", 0.05, channel="phone"),  # above the ceiling, under 6 %
            kpi("complaint_rate", rate, target=2.0, status="off_track", channel="sms"),
            kpi("complaint_rate", 9.9, target=2.0, status="off_track", channel="im"),
            kpi("complaint_rate", 1.0, target=2.0, segment="sme"),
        ],
    )


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[EventsWorker]:
    """Prefect's recording events client as the process's events worker."""
    AssertingEventsClient.reset()
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_args, **_kw: worker)
    yield worker
    worker.drain()


def recorded_events(worker: EventsWorker, name: str) -> list:
    """The events named `name` the flows emitted so far."""
    worker.drain()
    return [
        event
        for client in AssertingEventsClient.all
        for event in client.events
        if event.event == name
    ]


@pytest.fixture
def world(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("PDCA_OUTPUT_DIR", str(tmp_path / "out"))
    engine = make_engine(db_url)
    with engine.begin() as conn:
        build_dispatch_world(conn, eligible=90, spec=guarded_spec())
    with database(db_url):
        yield engine
    engine.dispose()


def dispatch(day, hour: int, minute: int, window: str) -> dict:
    (summary,) = dispatch_flow(
        CAMPAIGN_ID, day, window=window, at=local_utc(day, hour, minute), simulate_outcomes=True
    )
    return summary


def by_type(result: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for action in result["actions"]:
        found.setdefault(action["type"], []).append(action)
    return found


def count_audit(engine: Engine, action: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
        ).scalar_one()


def latest_sop(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(
            select(SopVersion.body).order_by(SopVersion.version.desc()).limit(1)
        ).scalar_one()


def test_pause_at_once_stop_dispatch_cancel_the_outbox_and_resume_on_approval(world, events, capfd):
    # the noon window has closed: its sends are written to the outbox, held for the evening
    held = dispatch(DAY, 14, 0, "noon")
    box = outbox(world)
    held_sms = sorted(box.loc[(box["status"] == "held") & (box["channel"] == "sms"), "outbox_id"])
    assert held["status"] == "held" and held_sms, "the world should hold sends on sms"

    # act on the week: sms is past the hard complaint limit → paused at once, no approval
    store_check(world, sms_complaints(WEEK))
    result = act_flow(CAMPAIGN_ID, WEEK, auto_approve=True)
    actions = by_type(result)
    (pause,) = actions["pause"]
    assert pause["scope"] == {"channel": "sms"}
    assert pause["status"] == "applied" and pause["decided_by"] == "guardrail"
    assert pause["params"] == {"metric": "complaint_rate", "value": 14.0, "limit": 10.0}
    assert "past the hard limit 10" in pause["rationale"]
    (resume,) = actions["resume"]
    assert resume["scope"] == {"channel": "sms"}
    assert resume["status"] == "proposed", "--auto-approve must not lift a guardrail"
    assert resume["params"] == {"pause_action_id": pause["action_id"]}
    assert count_audit(world, "act.guardrail.pause") == 1
    assert any(c["action"].startswith("pause (channel=sms)") for c in result["sop"]["changes"])
    assert "Channel `sms` **paused** by a guardrail" in latest_sop(world)
    report = Path(result["report"]["path"]).read_text(encoding="utf-8")
    assert "pause" in report and "Applied by guardrail" in report
    (event,) = recorded_events(events, "pdca.guardrail.paused")
    assert event.payload["scope"] == {"channel": "sms"}
    assert (event.payload["value"], event.payload["target"]) == (14.0, 10.0)
    assert event.resource["pdca.metric"] == "complaint_rate"

    # the evening: the held sms sends are cancelled, sms customers are excluded as paused
    evening = dispatch(DAY, 19, 5, "evening")
    box = outbox(world).set_index("outbox_id")
    assert (box.loc[held_sms, "status"] == "cancelled").all()
    assert (box.loc[held_sms, "error"] == "paused").all()
    assert evening["cancelled"] == {"paused": len(held_sms)}
    assert evening["excluded"].get("paused", 0) > 0
    assert "sms" not in evening["sends"] and evening["sends"], "other channels still sent"

    # the next day: still nothing on sms
    noon = dispatch(NEXT_DAY, 12, 5, "noon")
    assert noon["excluded"].get("paused", 0) > 0 and "sms" not in noon["sends"]
    assert not (simulated_sends(world)["channel"] == "sms").any()

    # acting again (a rerun, and the next week still past the limit) stacks nothing
    again = by_type(act_flow(CAMPAIGN_ID, WEEK, auto_approve=True))
    assert [a["action_id"] for a in again["pause"]] == [pause["action_id"]]
    assert len(again["resume"]) == 1 and again["resume"][0]["status"] == "proposed"
    store_check(world, sms_complaints(NEXT_WEEK, rate=16.0))
    later = by_type(act_flow(CAMPAIGN_ID, NEXT_WEEK, auto_approve=True))
    assert "pause" not in later and "resume" not in later, "paused already, resume waiting"
    assert count_audit(world, "act.guardrail.pause") == 1

    # a manager approves the resume: the SOP says so and the next dispatch sends on sms
    resume_id = again["resume"][0]["action_id"]
    code, out, err = run_main(
        ["actions", "approve", str(resume_id), "--by", "risk-lead", "--comment", "fixed"], capfd
    )
    assert code == 0, err
    assert "approved" in out and "resume" in out, out
    assert "paused" not in latest_sop(world).split("## 3.")[0]
    resumed = dispatch(NEXT_DAY, 19, 5, "evening")
    assert resumed["sends"].get("sms"), resumed
    assert "paused" not in resumed["excluded"] and resumed["cancelled"] == {}
