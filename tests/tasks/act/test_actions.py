"""Stored proposals and decisions: replace-not-duplicate, one decision each, edits, audit."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, func, select

from pdca.errors import UserError
from pdca.models import Action, AuditEntry
from tasks.act.actions import decide, period_actions, save_proposals
from tasks.act.types import Proposal, StoredAction
from tasks.common.periods import Period
from tests.scenario import CAMPAIGN_ID, PERIOD, apply, spec_dict

REALLOCATION = {
    "type": "reallocate_budget",
    "scope": {"channel": "sms"},
    "params": {"from_channel": "sms", "to_channel": "phone", "share": 0.1, "from_budget": 3000.0},
    "rationale": "sms cac 412.5 against 300",
    "expected_impact": "300.00 moves to phone",
    "status": "proposed",
}
PROMOTION = {
    "type": "promote_variant",
    "scope": {},
    "params": {"winner": "B", "loser": "A"},
    "rationale": "B beat A",
    "expected_impact": "+1.2 pp application_rate",
    "status": "proposed",
}


@pytest.fixture
def campaign(engine: Engine) -> Engine:
    with engine.begin() as conn:
        apply(conn, spec_dict())
    return engine


def save(engine: Engine, *proposals: dict) -> list[StoredAction]:
    with engine.begin() as conn:
        return save_proposals(
            conn, CAMPAIGN_ID, Period.parse(PERIOD), [Proposal.of(item) for item in proposals]
        )


def decide_one(engine: Engine, action_id: int, decision: str, **options) -> StoredAction:
    options.setdefault("decided_by", "Mei Chen")
    with engine.begin() as conn:
        return decide(conn, action_id, decision, **options)


def audit(engine: Engine, action: str) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            select(AuditEntry.actor, AuditEntry.subject, AuditEntry.detail).where(
                AuditEntry.action == action
            )
        ).all()


class TestSaveProposals:
    def test_stores_them_proposed_in_order(self, campaign):
        stored = save(campaign, REALLOCATION, PROMOTION)
        assert [a.type for a in stored] == ["reallocate_budget", "promote_variant"]
        assert all(a.status == "proposed" and a.decided_by is None for a in stored)
        assert stored[0].params == REALLOCATION["params"]

    def test_a_rerun_replaces_undecided_proposals(self, campaign):
        save(campaign, REALLOCATION, PROMOTION)
        again = save(campaign, PROMOTION)
        assert [a.type for a in again] == ["promote_variant"]
        with campaign.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Action)).scalar_one() == 1

    def test_a_decided_proposal_is_not_proposed_again(self, campaign):
        first = save(campaign, REALLOCATION, PROMOTION)
        decide_one(campaign, first[0].action_id, "approve", amount=600.0)
        decide_one(campaign, first[1].action_id, "reject")
        again = save(campaign, REALLOCATION, PROMOTION)
        assert [(a.action_id, a.status) for a in again] == [
            (first[0].action_id, "approved"),
            (first[1].action_id, "rejected"),
        ]

    def test_other_periods_are_untouched(self, campaign):
        save(campaign, REALLOCATION)
        with campaign.begin() as conn:
            save_proposals(conn, CAMPAIGN_ID, Period.parse("2026-04"), [Proposal.of(PROMOTION)])
            assert [a["type"] for a in period_actions(conn, CAMPAIGN_ID, PERIOD)] == [
                "reallocate_budget"
            ]


class TestDecide:
    def test_approval_records_who_when_and_why(self, campaign):
        (action,) = save(campaign, PROMOTION)
        at = datetime(2026, 4, 1, 9, 30)
        decided = decide_one(campaign, action.action_id, "approve", comment="go", at=at)
        assert decided.status == "approved"
        assert decided.decided_by == "Mei Chen"
        assert decided.decided_at == "2026-04-01T09:30:00"
        assert decided.comment == "go"
        ((actor, subject, detail),) = audit(campaign, "act.approve")
        assert actor == "Mei Chen"
        assert subject == f"{CAMPAIGN_ID}:{PERIOD}:action-{action.action_id}"
        assert detail == {"type": "promote_variant", "comment": "go", "edited": None}

    def test_rejection(self, campaign):
        (action,) = save(campaign, PROMOTION)
        assert decide_one(campaign, action.action_id, "reject").status == "rejected"
        assert len(audit(campaign, "act.reject")) == 1

    def test_an_edited_amount_becomes_the_share(self, campaign):
        (action,) = save(campaign, REALLOCATION)
        decided = decide_one(campaign, action.action_id, "approve", amount=750.0)
        assert decided.params["share"] == pytest.approx(0.25)
        assert decided.params["amount"] == 750.0
        ((_, _, detail),) = audit(campaign, "act.approve")
        assert detail["edited"] == {"share": {"from": 0.1, "to": 0.25}, "amount": 750.0}

    @pytest.mark.parametrize(
        ("amount", "reason"), [(0.0, "above 0"), (-5.0, "above 0"), (3000.01, "at most")]
    )
    def test_an_amount_outside_the_budget_is_refused(self, campaign, amount, reason):
        (action,) = save(campaign, REALLOCATION)
        with pytest.raises(UserError, match=reason):
            decide_one(campaign, action.action_id, "approve", amount=amount)
        with campaign.connect() as conn:
            assert period_actions(conn, CAMPAIGN_ID, PERIOD)[0]["status"] == "proposed"

    @pytest.mark.parametrize(
        ("proposal", "decision", "options", "reason"),
        [
            (PROMOTION, "approve", {"amount": 10.0}, "only reallocate_budget"),
            (REALLOCATION, "reject", {"amount": 10.0}, "only be edited on approval"),
            (PROMOTION, "maybe", {}, "not approve or reject"),
            (PROMOTION, "approve", {"decided_by": "  "}, "name of who"),
        ],
    )
    def test_bad_decisions_are_refused(self, campaign, proposal, decision, options, reason):
        (action,) = save(campaign, proposal)
        with pytest.raises(UserError, match=reason):
            decide_one(campaign, action.action_id, decision, **options)

    def test_a_decision_is_taken_once(self, campaign):
        (action,) = save(campaign, PROMOTION)
        decide_one(campaign, action.action_id, "approve")
        with pytest.raises(UserError, match="already approved by Mei Chen"):
            decide_one(campaign, action.action_id, "reject", decided_by="Li Wei")

    def test_an_unknown_action(self, campaign):
        with pytest.raises(UserError, match="no such action"):
            decide_one(campaign, 999, "approve")


class TestProposedAmount:
    def test_share_of_the_budget(self):
        assert Proposal.of(REALLOCATION).proposed_amount() == pytest.approx(300.0)

    def test_other_types_have_none(self):
        assert Proposal.of(PROMOTION).proposed_amount() is None
