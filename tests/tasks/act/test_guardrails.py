"""Act's guardrails (tasks/act/guardrails.py): which scopes a check pauses, when a pause or a
resume is not proposed again, and how a pause is stored.

Breaches and proposals are plain functions over hand-built check results (the builders of
`test_proposals.py`); storing and the whole `guard` step run against the database on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, insert, select

from pdca.models import Action, AuditEntry
from tasks.act.guardrails import (
    APPLIED,
    GUARDRAIL,
    Breach,
    apply_pauses,
    guard,
    guardrail_breaches,
    hard_limits,
    pause_proposals,
    resume_proposals,
)
from tasks.check.result import CheckResult
from tasks.common.campaigns import CampaignSpec
from tasks.common.periods import Period
from tasks.common.rules import PausedScope
from tests.scenario import CAMPAIGN_ID, apply, spec_dict
from tests.tasks.act.test_proposals import check_result, kpi

WEEK = "2026-W11"


def guarded(**limits: float) -> CampaignSpec:
    spec = spec_dict()
    return CampaignSpec.model_validate({**spec, "risk": {**spec["risk"], **limits}})


SPEC = guarded(hard_overdue_rate_30=0.06, hard_complaint_rate=10.0)


def check(*kpis: dict, trusted: bool = True) -> CheckResult:
    return CheckResult.from_json(check_result(WEEK, kpis=list(kpis), trusted=trusted))


class TestBreaches:
    def test_channel_and_segment_kpis_past_a_hard_limit(self):
        found = guardrail_breaches(
            check(
                kpi("complaint_rate", 12.5, channel="sms"),
                kpi("overdue_rate_30", 0.08, segment="student"),
                kpi("overdue_rate_30", 0.05, channel="phone"),  # past the ceiling only
                kpi("complaint_rate", 10.0, channel="im"),  # at the limit is not past it
            ),
            SPEC,
        )
        assert found == [
            Breach("channel", "sms", "complaint_rate", 12.5, 10.0),
            Breach("segment", "student", "overdue_rate_30", 0.08, 0.06),
        ]

    def test_the_campaign_as_a_whole_is_not_paused(self):
        assert guardrail_breaches(check(kpi("complaint_rate", 50.0)), SPEC) == []

    def test_untrusted_data_pause_nothing(self):
        past = kpi("complaint_rate", 50.0, channel="sms")
        assert guardrail_breaches(check(past, trusted=False), SPEC) == []

    def test_no_data_is_no_breach(self):
        assert guardrail_breaches(check(kpi("complaint_rate", None, channel="sms")), SPEC) == []

    def test_only_the_limits_the_spec_sets(self):
        spec = guarded(hard_complaint_rate=10.0)
        assert hard_limits(spec) == {"complaint_rate": 10.0}
        past = [kpi("overdue_rate_30", 0.5, channel="sms"), kpi("complaint_rate", 11, segment="x")]
        assert [b.metric for b in guardrail_breaches(check(*past), spec)] == ["complaint_rate"]
        assert guardrail_breaches(check(*past), guarded()) == []


SMS = Breach("channel", "sms", "complaint_rate", 12.5, 10.0)
SMS_OVERDUE = Breach("channel", "sms", "overdue_rate_30", 0.09, 0.06)
STUDENT = Breach("segment", "student", "overdue_rate_30", 0.08, 0.06)


class TestPauseProposals:
    def test_one_applied_pause_per_scope_naming_every_breach(self):
        found = pause_proposals([SMS, SMS_OVERDUE, STUDENT], [], set(), WEEK)
        assert [(p.type, p.scope, p.status) for p in found] == [
            ("pause", {"channel": "sms"}, APPLIED),
            ("pause", {"segment": "student"}, APPLIED),
        ]
        sms = found[0]
        assert sms.params == {"metric": "complaint_rate", "value": 12.5, "limit": 10.0}
        assert "complaint_rate 12.5 per 1,000 delivered is past the hard limit 10" in sms.rationale
        assert "overdue_rate_30 9.0% is past the hard limit 6.0%" in sms.rationale
        assert "until a manager approves its resume" in sms.expected_impact

    def test_a_paused_scope_is_not_paused_again(self):
        paused = [PausedScope("channel", "sms", action_id=4)]
        assert [p.scope for p in pause_proposals([SMS, STUDENT], paused, set(), WEEK)] == [
            {"segment": "student"}
        ]

    def test_a_scope_paused_for_this_period_before_is_not_paused_again(self):
        """The manager resumed it; a rerun on the same evidence does not undo that."""
        assert pause_proposals([SMS], [], {("channel", "sms")}, WEEK) == []


class TestResumeProposals:
    def test_one_resume_per_paused_scope_with_none_waiting(self):
        paused = [PausedScope("channel", "sms", 4), PausedScope("segment", "student", 5)]
        found = resume_proposals(paused, {5}, [SMS], WEEK)
        (resume,) = found
        assert (resume.type, resume.scope, resume.status) == (
            "resume",
            {"channel": "sms"},
            "proposed",
        )
        assert resume.params == {"pause_action_id": 4}
        assert "paused by the guardrail (action 4)" in resume.rationale
        assert "past the hard limit" in resume.rationale, "says it is still past the limit"

    def test_a_scope_back_within_the_limits_says_so(self):
        (resume,) = resume_proposals([PausedScope("channel", "sms", 4)], set(), [], WEEK)
        assert "within the hard limits" in resume.rationale


def stored_types(engine: Engine) -> list[str]:
    """The types of the stored actions, in the order they were stored."""
    with engine.connect() as conn:
        return list(conn.execute(select(Action.type).order_by(Action.action_id)).scalars())


class TestStoring:
    def test_a_pause_is_applied_by_the_guardrail_and_audited(self, engine: Engine):
        with engine.begin() as conn:
            apply(conn, spec_dict())
            (pause,) = pause_proposals([SMS], [], set(), WEEK)
            (action,) = apply_pauses(
                conn, CAMPAIGN_ID, Period.parse(WEEK), [pause], at=datetime(2026, 3, 16, 9)
            )
        assert (action.type, action.status, action.decided_by) == ("pause", APPLIED, GUARDRAIL)
        assert action.decided_at == "2026-03-16T09:00:00"
        with engine.connect() as conn:
            audit = conn.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.detail))
            entries = [row for row in audit if row.action == "act.guardrail.pause"]
        assert [(e.actor, e.detail["scope"]) for e in entries] == [(GUARDRAIL, {"channel": "sms"})]

    def test_guard_pauses_once_and_keeps_one_resume_waiting(self, engine: Engine):
        breach = check(kpi("complaint_rate", 12.5, channel="sms"))
        with engine.begin() as conn:
            apply(conn, spec_dict())
            first = guard(conn, SPEC, Period.parse(WEEK), breach)
            conn.execute(
                insert(Action).values(
                    campaign_id=CAMPAIGN_ID,
                    period=WEEK,
                    type="resume",
                    scope={"channel": "sms"},
                    params=first.resumes[0].params,
                    rationale="test",
                    status="proposed",
                )
            )
            same_week = guard(conn, SPEC, Period.parse(WEEK), breach)
            next_week = guard(conn, SPEC, Period.parse("2026-W12"), breach)
        assert [a.scope for a in first.applied] == [{"channel": "sms"}]
        assert [r.params for r in first.resumes] == [
            {"pause_action_id": first.applied[0].action_id}
        ]
        assert same_week.applied == [] and len(same_week.resumes) == 1, "rerun: replaced"
        assert next_week.applied == [] and next_week.resumes == [], "one resume waits already"
        assert stored_types(engine) == ["pause", "resume"]

    @pytest.mark.parametrize("decision", ["approved", "rejected"])
    def test_after_a_decided_resume(self, engine: Engine, decision: str):
        """Approved: the scope is no longer paused, and the same week's evidence does not
        pause it again. Rejected: still paused, and the next run asks again."""
        breach = check(kpi("complaint_rate", 12.5, channel="sms"))
        with engine.begin() as conn:
            apply(conn, spec_dict())
            first = guard(conn, SPEC, Period.parse(WEEK), breach)
            conn.execute(
                insert(Action).values(
                    campaign_id=CAMPAIGN_ID,
                    period=WEEK,
                    type="resume",
                    scope={"channel": "sms"},
                    params=first.resumes[0].params,
                    rationale="test",
                    status=decision,
                    decided_by="risk-lead",
                    decided_at=datetime(2026, 3, 17),
                )
            )
            rerun = guard(conn, SPEC, Period.parse(WEEK), breach)
            next_week = guard(conn, SPEC, Period.parse("2026-W12"), breach)
        assert rerun.applied == []
        if decision == "approved":
            assert rerun.resumes == []
            assert [a.scope for a in next_week.applied] == [{"channel": "sms"}], "new evidence"
        else:
            assert len(rerun.resumes) == 1 and next_week.applied == []
