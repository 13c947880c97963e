"""The rules in force: approved Act actions folded into the spec (tasks/common/rules.py).

Plain data in, plain data out: each action is the dict `approved_actions` returns, so a
case reads as the manager's decisions in the order they were made. `approved_actions`
itself is read against the database on both back ends.
"""

from __future__ import annotations

from datetime import datetime
from itertools import count
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from pdca.errors import UserError
from pdca.models import Action
from tasks.common.campaigns import CampaignSpec
from tasks.common.rules import (
    PLAN_ACTION_TYPES,
    BudgetChange,
    ScopedAdmission,
    approved_actions,
    budget_change,
    budget_moves,
    changes_rules,
    rules_in_force,
)
from tests.scenario import CAMPAIGN_ID, apply, spec_dict

SPEC = CampaignSpec.model_validate(spec_dict())
"""Floor 600, debt cap 0.7, windows noon 12:00-13:30 and evening 19:00-21:00, variants
A 0.45 / B 0.45, hold-out 0.10, channels phone, sms, im, app_push."""
THREE_WAY = CampaignSpec.model_validate(
    spec_dict(
        experiment={"variants": {"A": 0.3, "B": 0.3, "C": 0.3}, "holdout": 0.1},
    )
)

_ids = count(1)


def action(kind: str, params: dict[str, Any], scope: dict[str, Any] | None = None) -> dict:
    """One approved action as `approved_actions` returns it (ids in proposal order)."""
    return {
        "action_id": next(_ids),
        "period": "2026-W10",
        "type": kind,
        "scope": scope or {},
        "params": params,
    }


def tighten(scope: dict | None = None, **params: float) -> dict:
    return action("tighten_admission", params, scope)


def promote(winner: str, loser: str) -> dict:
    return action("promote_variant", {"winner": winner, "loser": loser})


def assert_spec_unchanged_but(rules, *paths: str) -> None:
    """Every field of the effective spec but `paths` ('risk.min_credit_score') is the
    written spec's: an action changes what it says and nothing else."""
    written, effective = SPEC.model_dump(mode="json"), rules.spec.model_dump(mode="json")
    for path in paths:
        *parents, leaf = path.split(".")
        for document in (written, effective):
            for parent in parents:
                document = document[parent]
            document.pop(leaf)
    assert effective == written


class TestNothingApproved:
    def test_the_spec_is_the_rules(self) -> None:
        rules = rules_in_force(SPEC, [])
        assert rules.spec == SPEC
        assert rules.scoped_admission == []
        assert rules.deprioritised_segments == [] and rules.retired_channels == []
        assert rules.promoted == {} and rules.applied == []

    def test_hold_and_reallocation_change_no_dispatch_rule(self) -> None:
        moved = action(
            "reallocate_budget",
            {"from_channel": "phone", "to_channel": "sms", "share": 0.1, "from_budget": 1e4},
            {"channel": "phone"},
        )
        rules = rules_in_force(SPEC, [action("hold", {}), moved])
        assert rules.spec == SPEC
        assert [a["type"] for a in rules.applied] == ["reallocate_budget"], "hold is no rule"


class TestAdmission:
    def test_campaign_scope_tightens_the_spec(self) -> None:
        rules = rules_in_force(SPEC, [tighten(min_credit_score=640), tighten(max_debt_ratio=0.6)])
        assert rules.spec.risk.min_credit_score == 640
        assert rules.spec.risk.max_debt_ratio == 0.6
        assert rules.scoped_admission == []
        assert_spec_unchanged_but(rules, "risk.min_credit_score", "risk.max_debt_ratio")

    def test_the_strictest_wins_whatever_the_order(self) -> None:
        for steps in ((660, 630), (630, 660)):
            rules = rules_in_force(SPEC, [tighten(min_credit_score=s) for s in steps])
            assert rules.spec.risk.min_credit_score == 660, steps
        rules = rules_in_force(SPEC, [tighten(max_debt_ratio=r) for r in (0.5, 0.65)])
        assert rules.spec.risk.max_debt_ratio == 0.5

    def test_a_looser_action_never_loosens_the_spec(self) -> None:
        rules = rules_in_force(SPEC, [tighten(min_credit_score=550), tighten(max_debt_ratio=0.9)])
        assert rules.spec.risk.min_credit_score == 600
        assert rules.spec.risk.max_debt_ratio == 0.7

    def test_segment_and_channel_scopes_become_scoped_rules(self) -> None:
        rules = rules_in_force(
            SPEC,
            [
                tighten({"segment": "farmer"}, min_credit_score=650),
                tighten({"segment": "farmer"}, min_credit_score=680),
                tighten({"segment": "farmer"}, max_debt_ratio=0.5),
                tighten({"channel": "sms"}, max_debt_ratio=0.4),
            ],
        )
        assert rules.spec == SPEC, "a scoped rule leaves the campaign-wide rules alone"
        assert rules.segment_rules() == [ScopedAdmission("segment", "farmer", 680, 0.5)]
        assert rules.channel_rules() == [ScopedAdmission("channel", "sms", None, 0.4)]

    def test_a_combined_scope_is_ignored(self) -> None:
        rules = rules_in_force(
            SPEC, [tighten({"segment": "farmer", "channel": "sms"}, min_credit_score=700)]
        )
        assert rules.scoped_admission == [] and rules.spec == SPEC


class TestWindows:
    def test_a_shift_replaces_the_window_range(self) -> None:
        shift = action(
            "shift_window", {"window": "noon", "from": "12:00-13:30", "to": "12:30-14:00"}
        )
        rules = rules_in_force(SPEC, [shift])
        assert str(rules.spec.contact_policy.windows["noon"]) == "12:30-14:00"
        assert str(rules.spec.contact_policy.windows["evening"]) == "19:00-21:00"
        assert_spec_unchanged_but(rules, "contact_policy.windows")

    def test_the_latest_shift_wins(self) -> None:
        first = action(
            "shift_window", {"window": "noon", "from": "12:00-13:30", "to": "12:30-14:00"}
        )
        later = action(
            "shift_window", {"window": "noon", "from": "12:30-14:00", "to": "11:30-13:00"}
        )
        rules = rules_in_force(SPEC, [first, later])
        assert str(rules.spec.contact_policy.windows["noon"]) == "11:30-13:00"

    def test_the_same_shift_approved_twice_moves_the_window_once(self) -> None:
        params = {"window": "evening", "from": "19:00-21:00", "to": "18:30-20:30"}
        twice = [action("shift_window", params), action("shift_window", dict(params))]
        rules = rules_in_force(SPEC, twice)
        assert rules.spec == rules_in_force(SPEC, twice[:1]).spec
        assert str(rules.spec.contact_policy.windows["evening"]) == "18:30-20:30"

    def test_a_step_from_a_range_since_changed_changes_nothing(self) -> None:
        moved = action(
            "shift_window", {"window": "evening", "from": "19:00-21:00", "to": "18:30-20:30"}
        )
        stale = action(
            "shift_window", {"window": "evening", "from": "19:00-21:00", "to": "19:30-21:00"}
        )
        rules = rules_in_force(SPEC, [moved, stale])
        assert str(rules.spec.contact_policy.windows["evening"]) == "18:30-20:30"

    def test_a_shift_into_the_quiet_hours_is_a_clear_error(self) -> None:
        shift = action(
            "shift_window", {"window": "evening", "from": "19:00-21:00", "to": "20:30-22:30"}
        )
        with pytest.raises(UserError, match=r"contact_policy\.windows\.evening: .*quiet"):
            rules_in_force(SPEC, [shift])

    def test_an_unknown_window_is_ignored(self) -> None:
        shift = action("shift_window", {"window": "morning", "from": "x", "to": "10:00-11:00"})
        assert rules_in_force(SPEC, [shift]).spec == SPEC


class TestPromotion:
    def test_the_winner_takes_the_losers_share(self) -> None:
        rules = rules_in_force(SPEC, [promote("B", "A")])
        assert rules.spec.experiment.variants == {"B": 0.9}
        assert rules.spec.experiment.holdout == SPEC.experiment.holdout
        assert rules.promoted == {"A": "B"}
        assert_spec_unchanged_but(rules, "experiment.variants")

    def test_a_chain_resolves_to_the_last_winner(self) -> None:
        rules = rules_in_force(THREE_WAY, [promote("B", "A"), promote("C", "B")])
        assert rules.promoted == {"A": "C", "B": "C"}
        assert rules.spec.experiment.variants == pytest.approx({"C": 0.9})

    def test_a_retired_winner_cannot_come_back(self) -> None:
        """B beat A, then A 'beat' B: A is retired, so the second decision changes nothing."""
        rules = rules_in_force(THREE_WAY, [promote("B", "A"), promote("A", "B")])
        assert rules.promoted == {"A": "B"}
        assert rules.spec.experiment.variants == pytest.approx({"B": 0.6, "C": 0.3})

    @pytest.mark.parametrize(
        ("winner", "loser"), [("Z", "A"), ("A", "Z"), ("A", "A"), ("holdout", "A")]
    )
    def test_unknown_or_self_promotion_is_ignored(self, winner: str, loser: str) -> None:
        rules = rules_in_force(SPEC, [promote(winner, loser)])
        assert rules.promoted == {} and rules.spec == SPEC


class TestChannelsAndTargeting:
    def test_a_retired_channel_leaves_the_list(self) -> None:
        rules = rules_in_force(SPEC, [action("retire_channel", {"channel": "phone"})])
        assert rules.spec.channels == ["sms", "im", "app_push"]
        assert rules.retired_channels == ["phone"]
        assert_spec_unchanged_but(rules, "channels")

    def test_an_unknown_channel_is_ignored(self) -> None:
        rules = rules_in_force(SPEC, [action("retire_channel", {"channel": "email"})])
        assert rules.spec.channels == SPEC.channels and rules.retired_channels == []

    def test_everything_retired_keeps_the_list(self) -> None:
        """A spec needs a channel; with none left the plan has no budget to give."""
        retire = [action("retire_channel", {"channel": c}) for c in SPEC.channels]
        rules = rules_in_force(SPEC, retire)
        assert rules.spec.channels == SPEC.channels
        assert rules.retired_channels == SPEC.channels

    def test_revise_targeting_deprioritises_each_segment_once(self) -> None:
        revise = [
            action("revise_targeting", {"segments": ["farmer", "student"], "channels": []}),
            action("revise_targeting", {"segments": ["student", "salaried"]}),
        ]
        rules = rules_in_force(SPEC, revise)
        assert rules.deprioritised_segments == ["farmer", "student", "salaried"]
        assert rules.spec == SPEC


class TestFoldOrder:
    def test_everything_at_once_and_applied_oldest_first(self) -> None:
        approved = [
            tighten(min_credit_score=620),
            action("shift_window", {"window": "evening", "from": "", "to": "19:30-20:30"}),
            promote("A", "B"),
            action("retire_channel", {"channel": "app_push"}),
            tighten({"channel": "phone"}, min_credit_score=700),
            action("revise_targeting", {"segments": ["farmer"]}),
        ]
        rules = rules_in_force(SPEC, approved)
        assert rules.spec.risk.min_credit_score == 620
        assert str(rules.spec.contact_policy.windows["evening"]) == "19:30-20:30"
        assert rules.spec.experiment.variants == {"A": 0.9}
        assert rules.spec.channels == ["phone", "sms", "im"]
        assert rules.channel_rules() == [ScopedAdmission("channel", "phone", 700, None)]
        assert rules.deprioritised_segments == ["farmer"]
        assert [a["action_id"] for a in rules.applied] == [a["action_id"] for a in approved]


class TestApprovedActions:
    def test_only_the_campaigns_approved_actions_in_proposal_order(self, engine: Engine) -> None:
        with engine.begin() as conn:
            apply(conn, spec_dict())
            apply(conn, spec_dict("other-campaign"))
            rows = [
                (CAMPAIGN_ID, "approved", "shift_window"),
                (CAMPAIGN_ID, "proposed", "retire_channel"),
                ("other-campaign", "approved", "retire_channel"),
                (CAMPAIGN_ID, "rejected", "promote_variant"),
                (CAMPAIGN_ID, "approved", "tighten_admission"),
            ]
            conn.execute(
                insert(Action),
                [
                    {
                        "campaign_id": campaign,
                        "period": "2026-W10" if n < 3 else "2026-W11",
                        "type": kind,
                        "scope": {},
                        "params": {"n": n},
                        "rationale": "test",
                        "expected_impact": "",
                        "status": status,
                        "decided_by": "test",
                        "decided_at": datetime(2026, 3, 9),
                    }
                    for n, (campaign, status, kind) in enumerate(rows)
                ],
            )
        with engine.connect() as conn:
            found = approved_actions(conn, CAMPAIGN_ID)
            without = approved_actions(conn, CAMPAIGN_ID, except_period="2026-W11")
        assert [(a["type"], a["params"]) for a in found] == [
            ("shift_window", {"n": 0}),
            ("tighten_admission", {"n": 4}),
        ]
        assert [a["type"] for a in without] == ["shift_window"]


class TestWhatAnApprovedActionChanges:
    """What plan and the SOP ask of the rules: the budget change, a new SOP version or not,
    and the budget moves the SOP lists."""

    def test_a_reallocation_is_a_shift_of_the_plan(self):
        change = budget_change(
            "reallocate_budget",
            {"from_channel": "sms", "to_channel": "phone", "share": 0.1, "from_budget": 3e3},
        )
        assert change == BudgetChange("shift", "sms", to_channel="phone", share=0.1)

    def test_an_edited_reallocation_moves_the_amount(self):
        params = {"from_channel": "sms", "to_channel": "phone", "share": 0.25, "amount": 750.0}
        change = budget_change("reallocate_budget", params)
        assert change is not None and (change.share, change.amount) == (0.25, 750.0)

    def test_a_retirement_retires_the_channel(self):
        assert budget_change("retire_channel", {"channel": "im"}) == BudgetChange("retire", "im")

    @pytest.mark.parametrize(
        "kind", ["hold", "tighten_admission", "shift_window", "promote_variant", "revise_targeting"]
    )
    def test_other_types_leave_the_plan_alone(self, kind):
        assert kind not in PLAN_ACTION_TYPES
        assert budget_change(kind, {}) is None

    def test_only_hold_makes_no_sop_version(self):
        assert not changes_rules("hold")
        assert all(changes_rules(kind) for kind in ("retire_channel", *PLAN_ACTION_TYPES))

    def test_the_sop_lists_the_reallocations_oldest_first(self):
        moved = action("reallocate_budget", {"from_channel": "sms", "to_channel": "phone"})
        approved = [action("shift_window", {"window": "evening"}), moved]
        assert budget_moves(approved) == [
            {
                "from_channel": "sms",
                "to_channel": "phone",
                "action_id": moved["action_id"],
                "period": "2026-W10",
            }
        ]


# --- guardrail pauses ------------------------------------------------------------------------


def pause(kind: str, name: str) -> dict:
    """A guardrail's pause as `approved_actions` returns it (status `applied`)."""
    return action("pause", {"metric": "complaint_rate"}, {kind: name})


def resume(paused: dict) -> dict:
    return action("resume", {"pause_action_id": paused["action_id"]}, dict(paused["scope"]))


class TestPauses:
    def test_a_pause_stops_its_scope_and_changes_no_spec_rule(self) -> None:
        sms, farmer = pause("channel", "sms"), pause("segment", "farmer")
        rules = rules_in_force(SPEC, [sms, farmer])
        assert rules.paused_names("channel") == ["sms"]
        assert rules.paused_names("segment") == ["farmer"]
        assert [p.action_id for p in rules.paused] == [sms["action_id"], farmer["action_id"]]
        assert rules.spec == SPEC, "a pause is not a retirement: the channel keeps its budget"
        assert [a["type"] for a in rules.applied] == ["pause", "pause"]

    def test_an_approved_resume_lifts_only_its_own_scope(self) -> None:
        sms, im = pause("channel", "sms"), pause("channel", "im")
        rules = rules_in_force(SPEC, [sms, im, resume(sms)])
        assert rules.paused_names("channel") == ["im"]

    def test_a_pause_after_a_resume_stops_the_scope_again(self) -> None:
        first = pause("segment", "farmer")
        again = pause("segment", "farmer")
        rules = rules_in_force(SPEC, [first, resume(first), again])
        assert [(p.name, p.action_id) for p in rules.paused] == [("farmer", again["action_id"])]

    def test_a_second_pause_of_a_paused_scope_changes_nothing(self) -> None:
        first, second = pause("channel", "sms"), pause("channel", "sms")
        rules = rules_in_force(SPEC, [first, second])
        assert [p.action_id for p in rules.paused] == [first["action_id"]]

    def test_a_campaign_or_combined_scope_is_not_a_pause(self) -> None:
        odd = [
            action("pause", {}, {}),
            action("pause", {}, {"channel": "sms", "segment": "farmer"}),
        ]
        assert rules_in_force(SPEC, odd).paused == []

    def test_an_applied_pause_is_in_force_a_rejected_resume_is_not(self, engine: Engine) -> None:
        with engine.begin() as conn:
            apply(conn, spec_dict())
            rows = [("pause", "applied"), ("resume", "rejected"), ("resume", "proposed")]
            conn.execute(
                insert(Action),
                [
                    {
                        "campaign_id": CAMPAIGN_ID,
                        "period": "2026-W10",
                        "type": kind,
                        "scope": {"channel": "sms"},
                        "params": {},
                        "rationale": "test",
                        "expected_impact": "",
                        "status": status,
                        "decided_by": None if status == "proposed" else "guardrail",
                        "decided_at": None if status == "proposed" else datetime(2026, 3, 9),
                    }
                    for kind, status in rows
                ],
            )
        with engine.connect() as conn:
            found = approved_actions(conn, CAMPAIGN_ID)
        assert [a["type"] for a in found] == ["pause"]
        assert rules_in_force(SPEC, found).paused_names("channel") == ["sms"]
