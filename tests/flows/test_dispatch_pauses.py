"""Dispatch under a guardrail's pause: nothing goes to the paused scope until a manager
approves its resume, and what the outbox still held for a stopped scope is cancelled.

Like `test_dispatch_rules.py` (whose worlds, baseline and helpers this module uses), each
test writes the decisions into `actions` and holds the dispatch to the same world
dispatched with none: the pause removes its scope's customers, counted `paused`, and
changes nothing else. The whole loop (act pausing on a check, approving the resume) is
in `test_guardrails.py`.
"""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from flows.dispatch import dispatch_flow
from pdca.db import make_engine
from pdca.models import Action
from tests.flows import test_dispatch_rules as dispatch_rules
from tests.flows.test_dispatch_rules import Run, action, assert_only_removed, run_world
from tests.scenario import (
    BACKENDS,
    CAMPAIGN_ID,
    DAY,
    build_dispatch_world,
    database,
    local_utc,
    new_database,
    outbox,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    simulated_sends,
)

pytestmark = pytest.mark.usefixtures("prefect_env")

baseline = dispatch_rules.baseline
"""The rich world dispatched with no action, per back end (that module's fixture)."""
_dispose_engines = dispatch_rules._dispose_engines


def paused(kind: str, name: str) -> dict:
    """A guardrail's pause as act leaves it: applied at once, decided by the guardrail."""
    row = action("pause", {"metric": "complaint_rate", "limit": 10.0}, {kind: name})
    return {**row, "status": "applied", "decided_by": "guardrail"}


def on_channel(run: Run, channel: str) -> set[str]:
    return {c for c, (ch, _, _) in run.outcome().items() if ch == channel}


class TestPausedScopes:
    def test_a_paused_channel_is_sent_nothing_its_customers_counted_paused(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [paused("channel", "sms")])
        assert_only_removed(run, base, on_channel(base, "sms"), "paused")
        assert "sms" not in run.noon["sends"] and run.noon["sends"], "others still sent"
        assert not (simulated_sends(run.engine)["channel"] == "sms").any()

    def test_a_paused_segment_is_contacted_on_no_channel(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [paused("segment", "salaried")])
        salaried = run.who(lambda c: c["segment"] == "salaried") & set(base.outcome())
        assert_only_removed(run, base, salaried, "paused")

    def test_an_approved_resume_lifts_the_pause(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [paused("channel", "sms"), resume("approved")])
        assert run.outcome() == base.outcome()
        assert run.noon["excluded"] == base.noon["excluded"]
        assert run.noon["sends"] == base.noon["sends"]

    @pytest.mark.parametrize("status", ["proposed", "rejected"])
    def test_a_resume_not_approved_keeps_the_pause(self, db_url, baseline, status):
        base = baseline("rich")
        run = run_world(db_url, "rich", [paused("channel", "sms"), resume(status)])
        assert_only_removed(run, base, on_channel(base, "sms"), "paused")


def resume(status: str) -> dict:
    """The resume act proposes with the pause (the first action of the fresh database)."""
    return action("resume", {"pause_action_id": 1}, {"channel": "sms"}, status=status)


class TestStoppedSendsInTheOutbox:
    @pytest.mark.parametrize("backend", BACKENDS)
    @pytest.mark.parametrize(
        "stop, reason",
        [
            (paused("channel", "sms"), "paused"),
            (action("retire_channel", {"channel": "sms"}), "retired"),
        ],
        ids=["paused", "retired"],
    )
    def test_sends_written_before_the_stop_are_cancelled_not_sent(
        self, backend, stop, reason, request, tmp_path
    ):
        """Sends held from a closed window for the evening, then the channel is stopped
        before the evening: they are cancelled with the reason; the others still go."""
        url = new_database(request, tmp_path, backend)
        engine = make_engine(url)
        with engine.begin() as conn:
            build_dispatch_world(conn, eligible=60)
        with database(url):
            dispatch_flow(CAMPAIGN_ID, DAY, window="noon", at=local_utc(DAY, 14, 0))
            held = outbox(engine)
            held = held[held["status"] == "held"]
            on_sms = sorted(held.loc[held["channel"] == "sms", "outbox_id"])
            others = sorted(held.loc[held["channel"] != "sms", "outbox_id"])
            with engine.begin() as conn:
                conn.execute(insert(Action), [stop])
            (evening,) = dispatch_flow(CAMPAIGN_ID, DAY, window="evening", at=local_utc(DAY, 19, 5))
        assert on_sms and others, "the world should hold sends on sms and elsewhere"
        box = outbox(engine).set_index("outbox_id")
        assert (box.loc[on_sms, "status"] == "cancelled").all()
        assert (box.loc[on_sms, "error"] == reason).all()
        assert box.loc[on_sms, "touch_id"].isna().all(), "a cancelled send left a touch"
        assert (box.loc[others, "status"] == "sent").all()
        assert evening["cancelled"] == {reason: len(on_sms)}
        assert not (simulated_sends(engine)["channel"] == "sms").any()
        engine.dispose()
