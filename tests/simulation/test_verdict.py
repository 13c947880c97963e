"""The parts of the verdict that judge: the manager's policy, when an action finds a truth,
the invariants on hand-made rows (each must be able to fail), and the oracle's regret."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from pdca.simulation.approvals import verdict_of
from pdca.simulation.invariants import (
    assignment_never_changes,
    frequency_cap,
    holdout_never_contacted,
    no_send_to_paused_scope,
    one_send_per_intent,
)
from pdca.simulation.truths import ApprovalPolicy, parse_world
from pdca.simulation.verdict import (
    expected_applications,
    expected_net_return,
    names_scope,
    oracle_world,
)
from pdca.simulation.world import Sends, World
from tasks.act.types import StoredAction

POLICY = ApprovalPolicy.model_validate(
    {"decided_by": "cautious", "reject": [{"type": "reallocate_budget", "max_share": 0.2}]}
)


def _action(kind: str, scope: dict | None = None, **params) -> StoredAction:
    return StoredAction(action_id=1, type=kind, scope=scope or {}, params=params)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (_action("reallocate_budget", from_channel="app_push", share=0.3), "reject"),
        (_action("reallocate_budget", from_channel="app_push", share=0.15), "approve"),
        (_action("promote_variant", variant="B"), "approve"),
        (_action("resume", {"channel": "im"}), None),
        (_action("hold"), None),
    ],
)
def test_the_manager_rejects_only_what_the_policy_vetoes(action, expected) -> None:
    verdict = verdict_of(POLICY, action)
    assert (verdict[0] if verdict else None) == expected


def test_a_veto_without_a_size_rejects_every_proposal_of_its_type() -> None:
    policy = ApprovalPolicy.model_validate({"reject": [{"type": "retire_channel"}]})
    assert verdict_of(policy, _action("retire_channel", {"channel": "sms"}))[0] == "reject"


def test_an_action_finds_a_truth_only_when_it_names_its_scope() -> None:
    world = parse_world(
        {
            "truths": [
                {"name": "push", "scope": {"channel": "app_push"}, "application": 0},
                {"name": "b", "scope": {"variant": "B"}, "application": 1.2},
            ]
        },
        "test",
    )
    push, b = world.truths
    assert names_scope(push, _action("reallocate_budget", from_channel="app_push", share=0.2))
    assert not names_scope(
        push, _action("reallocate_budget", from_channel="sms", to_channel="app_push")
    )
    assert names_scope(b, _action("promote_variant", {}, variant="B"))
    assert not names_scope(b, _action("promote_variant", {}, variant="A"))
    # promote_variant's own parameters: B's lift is found by promoting B, not by retiring it
    assert names_scope(b, _action("promote_variant", {}, winner="B", loser="A"))
    assert not names_scope(b, _action("promote_variant", {}, winner="A", loser="B"))


def _touches(rows: list[tuple]) -> pd.DataFrame:
    """(customer, campaign, variant, local day offset, hour) → touch rows in naive UTC."""
    frame = pd.DataFrame(rows, columns=["customer_id", "campaign_id", "variant", "day", "hour"])
    local = pd.Timestamp("2026-03-02") + pd.to_timedelta(frame["day"], "D")
    frame["sent_at"] = local + pd.to_timedelta(frame["hour"] - 8, "h")
    frame["delivered"] = frame["variant"] != "holdout"
    frame["responded"] = False
    frame["cost"] = np.where(frame["variant"] == "holdout", 0.0, 0.05)
    frame["channel"], frame["segment"] = "sms", "sme"
    return frame


def test_the_frequency_cap_counts_the_local_day_and_the_six_before() -> None:
    kept = _touches([("c1", "s", "A", 0, 12), ("c1", "s", "A", 2, 19), ("c1", "s", "A", 7, 12)])
    assert frequency_cap(kept, "s", 2)["held"]
    broken = _touches([("c1", "s", "A", 0, 12), ("c1", "s", "A", 2, 19), ("c1", "s", "A", 6, 12)])
    result = frequency_cap(broken, "s", 2)
    assert not result["held"] and result["violations"] == 1 and result["checked"] == 3
    other = _touches([("c1", "old", "A", 0, 12), ("c1", "s", "A", 2, 19), ("c1", "s", "A", 3, 12)])
    assert frequency_cap(other, "s", 2)["violations"] == 1  # another campaign's touch counts


def test_the_holdout_and_assignment_invariants_catch_a_contacted_member() -> None:
    touches = _touches([("c1", "s", "holdout", 0, 12), ("c2", "s", "A", 0, 12)])
    outbox = pd.DataFrame(
        {"batch_id": [1, 1], "customer_id": ["c1", "c2"], "status": ["holdout", "sent"]}
    )
    assert holdout_never_contacted(touches, outbox)["held"]
    assert assignment_never_changes(touches)["held"]
    reassigned = _touches([("c1", "s", "holdout", 0, 12), ("c1", "s", "B", 3, 12)])
    assert not holdout_never_contacted(reassigned, outbox)["held"]
    assert not assignment_never_changes(reassigned)["held"]
    # a promotion moves the loser's members to the winner from the Monday it was decided
    promoted = _touches([("c3", "s", "A", 0, 12), ("c3", "s", "B", 8, 12)])
    promotion = StoredAction(
        action_id=1,
        type="promote_variant",
        scope={},
        params={"winner": "B", "loser": "A"},
        status="approved",
        period="2026-W10",
    )
    assert not assignment_never_changes(promoted)["held"]
    assert assignment_never_changes(promoted, [promotion])["held"]
    early = _touches([("c3", "s", "A", 0, 12), ("c3", "s", "B", 5, 12)])  # before the Monday
    assert not assignment_never_changes(early, [promotion])["held"]
    assert not assignment_never_changes(reassigned, [promotion])["held"]  # the hold-out never
    twice = pd.DataFrame({"batch_id": [1, 1], "customer_id": ["c2", "c2"], "status": ["sent"] * 2})
    assert one_send_per_intent(twice)["violations"] == 1


def test_no_send_after_a_pause_of_its_scope_from_the_monday_it_was_decided() -> None:
    touches = _touches([("c1", "s", "A", 6, 12), ("c2", "s", "A", 7, 12), ("c3", "s", "A", 8, 12)])
    touches.loc[2, "channel"] = "im"
    pause = StoredAction(
        action_id=9,
        type="pause",
        scope={"channel": "sms"},
        status="applied",
        period="2026-W10",  # checked on Monday 9 March (day 7), 08:00
        decided_at="2026-12-05T01:00:00",  # the machine's clock: not the season's
    )
    result = no_send_to_paused_scope(touches, [pause])
    assert result["violations"] == 1 and result["checked"] == 2 and result["stops"] == 1
    proposed = StoredAction(action_id=10, type="pause", scope={"channel": "sms"}, period="2026-W10")
    assert no_send_to_paused_scope(touches, [proposed])["stops"] == 0


def test_the_oracle_gains_by_avoiding_worse_scopes_and_using_better_ones() -> None:
    world = World.build(500, seed=2)
    n = 200
    sends = Sends.of(
        np.arange(n),
        np.where(np.arange(n) % 2, "app_push", "sms"),
        np.where(np.arange(n) % 3, "A", "B"),
        ["noon"] * n,
        [1] * n,
    )
    actual = expected_applications(world, sends)
    oracle = expected_applications(oracle_world(world), sends)
    assert (oracle >= actual - 1e-12).all()
    push_a = (np.arange(n) % 2 == 1) & (np.arange(n) % 3 != 0)
    assert (actual[push_a] == 0).all() and (oracle[push_a] > 0).all()
    assert date(2026, 3, 2) == world.start


def test_the_oracle_does_not_lend_where_a_loan_loses() -> None:
    world = World.build(
        500,
        seed=2,
        truths=parse_world(
            {"truths": [{"name": "im sours", "scope": {"channel": "im"}, "overdue_rate_30": 1.0}]},
            "test",
        ),
    )
    n = 100
    sends = Sends.of(
        np.arange(n), np.where(np.arange(n) % 2, "im", "sms"), ["A"] * n, ["noon"] * n, [1] * n
    )
    cost = np.full(n, 0.05)
    plain = expected_net_return(world, sends, cost, 0.03, 0.6, prudent=False)
    prudent = expected_net_return(world, sends, cost, 0.03, 0.6, prudent=True)
    im = np.arange(n) % 2 == 1
    assert (plain[im] < -cost[im]).any()  # every im loan stops paying: lending there loses
    assert (prudent[im] >= -cost[im] - 1e-9).all()
    assert np.allclose(plain[~im], prudent[~im])  # sms loans are worth making as they are


def test_the_summary_and_the_report_say_what_the_verdict_says(tmp_path) -> None:
    from pdca.simulation.command import summary
    from pdca.simulation.report import write_report

    document = {
        "weeks": 2,
        "customers": 3_000,
        "seed": 7,
        "world": "rehearsal",
        "approve": "policy",
        "truths": [
            {
                "name": "push never pays",
                "scope": "channel=app_push",
                "from_week": 1,
                "found": True,
                "week_found": 2,
                "action_id": 4,
            },
        ],
        "actions": [
            {
                "action_id": 4,
                "week_proposed": 2,
                "type": "retire_channel",
                "scope": {"channel": "app_push"},
                "status": "approved",
                "decided_by": "m",
            },
        ],
        "kpis_by_week": [
            {"week": 1, "kpis": {"touches": {"actual": 900.0, "target": 1000.0}}},
            {"week": 2, "kpis": {"touches": {"actual": 1200.0, "target": None}}},
        ],
        "regret": {
            "applications_expected": 10.0,
            "oracle_applications": 12.5,
            "applications_lost": 2.5,
            "share_lost": 0.2,
            "net_return_expected": 100.0,
            "oracle_net_return": 150.0,
            "net_return_lost": 50.0,
        },
        "invariants": [{"name": "quiet_hours", "held": False, "checked": 1_200, "violations": 3}],
        "report": "r.html",
    }
    text = summary(document)
    assert "push never pays: found in week 2" in text
    assert "2.5 of 12.5 expected applications and 50 of net return" in text
    assert "quiet_hours: BROKEN (3), 1,200 checked" in text
    page = write_report(document, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "channel=app_push" in page and "<svg" in page and "broken" in page
    assert "&lt;svg" not in page
