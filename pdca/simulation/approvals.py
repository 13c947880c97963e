"""The world file's manager: decides the week's proposals by the approval policy.

A proposal of a type the policy vetoes is rejected — a budget move only when it moves more
than the veto's `max_share` of its channel's budget —; every other proposal that changes a
rule is approved, except a `resume` (lifting a guardrail's pause needs a person: it stays
proposed, as with `--auto-approve`). Each decision is recorded by the same code as
`pdca actions approve|reject` (audit row, SOP version), under the manager's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pdca.actions_cli import record_here
from pdca.simulation.truths import ApprovalPolicy
from tasks.act.actions import stored_actions
from tasks.act.guardrails import MANAGER_ONLY
from tasks.act.types import PROPOSED, StoredAction
from tasks.common.periods import Period
from tasks.common.rules import changes_rules

if TYPE_CHECKING:
    from pdca.simulation.season import Season


def verdict_of(policy: ApprovalPolicy, action: StoredAction) -> tuple[str, str] | None:
    """("approve" | "reject", comment) for a proposal, or None when it is left proposed."""
    if not changes_rules(action.type) or action.type in MANAGER_ONLY:
        return None
    for veto in policy.reject:
        if veto.type != action.type:
            continue
        if veto.max_share is None:
            return "reject", f"policy: no {action.type}"
        share = float(action.params.get("share") or 0.0)
        if share > veto.max_share:
            return "reject", f"policy: moves {share:.0%}, above {veto.max_share:.0%}"
    return "approve", "policy: within limits"


def decide_by_policy(season: Season, period: str) -> list[tuple[int, str]]:
    """Decide the period's open proposals; returns (action_id, decision) of each decided."""
    policy = season.truths.approval
    with season.engine.connect() as conn:
        actions = stored_actions(conn, season.spec.id, Period.parse(period))
    decided = []
    for action in actions:
        if action.status != PROPOSED:
            continue
        verdict = verdict_of(policy, action)
        if verdict is None:
            continue
        decision, comment = verdict
        record_here(season.engine, action.action_id, decision, policy.decided_by, comment, None)
        decided.append((action.action_id, decision))
    return decided
