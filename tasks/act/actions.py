"""Act's proposals as stored actions, and the decisions managers take on them.

An action is proposed once per (campaign, period): re-running act replaces the period's
undecided proposals and never re-proposes what a manager already decided (the same type,
scope and params), so a rerun converges instead of piling up duplicates. A decision is
`approved` or `rejected`, by a named person, with a comment, and goes to the audit log;
an approval may edit the amount a reallocation moves. Undecided proposals stay
`proposed` (e.g. nobody answered before the approval timed out).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, delete, insert, select, update

from pdca.errors import UserError
from pdca.models import Action, AuditEntry

PROPOSED, APPROVED, REJECTED = "proposed", "approved", "rejected"
DecisionKind = Literal["approve", "reject"]
STATUS_OF = {"approve": APPROVED, "reject": REJECTED}
ACTIONS = Action.__table__


def save_proposals(
    conn: Connection,
    campaign_id: str,
    period: str,
    proposals: Sequence[Mapping[str, Any]],
    *,
    actor: str = "act",
) -> list[dict[str, Any]]:
    """Replace the period's undecided proposals with `proposals`; return every action of
    the period (decided ones first, as they were proposed, then the new ones)."""
    conn.execute(
        delete(Action).where(
            Action.campaign_id == campaign_id,
            Action.period == period,
            Action.status == PROPOSED,
        )
    )
    decided = {_identity(action) for action in period_actions(conn, campaign_id, period)}
    fresh = [proposal for proposal in proposals if _identity(proposal) not in decided]
    for proposal in fresh:
        conn.execute(
            insert(Action).values(
                campaign_id=campaign_id,
                period=period,
                type=proposal["type"],
                scope=dict(proposal.get("scope") or {}),
                params=dict(proposal.get("params") or {}),
                rationale=proposal["rationale"],
                expected_impact=proposal.get("expected_impact", ""),
                status=PROPOSED,
            )
        )
    conn.execute(
        insert(AuditEntry).values(
            actor=actor,
            action="act.propose",
            subject=f"{campaign_id}:{period}",
            detail={
                "proposed": [proposal["type"] for proposal in fresh],
                "already_decided": len(proposals) - len(fresh),
            },
        )
    )
    return period_actions(conn, campaign_id, period)


def period_actions(conn: Connection, campaign_id: str, period: str) -> list[dict[str, Any]]:
    """Every action of the (campaign, period), in the order they were proposed."""
    rows = conn.execute(
        select(ACTIONS)
        .where(ACTIONS.c.campaign_id == campaign_id, ACTIONS.c.period == period)
        .order_by(ACTIONS.c.action_id)
    ).mappings()
    return [action_record(row) for row in rows]


def read_action(conn: Connection, action_id: int) -> Mapping[str, Any] | None:
    """One stored action's row, or None."""
    return conn.execute(select(ACTIONS).where(ACTIONS.c.action_id == action_id)).mappings().first()


def action_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """An action as `pdca act --json` prints it (the contract's fields first)."""
    decided_at = row["decided_at"]
    return {
        "action_id": row["action_id"],
        "type": row["type"],
        "scope": row["scope"] or {},
        "params": row["params"] or {},
        "rationale": row["rationale"],
        "expected_impact": row["expected_impact"],
        "status": row["status"],
        "decided_by": row["decided_by"],
        "decided_at": decided_at.isoformat() if decided_at else None,
        "comment": row["comment"],
        "applied_to_period": row["applied_to_period"],
    }


def decide(
    conn: Connection,
    action_id: int,
    decision: DecisionKind,
    *,
    decided_by: str,
    comment: str = "",
    amount: float | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Record a manager's decision on a proposed action, with the audit entry.

    `amount` (approvals of `reallocate_budget` only) replaces the proposed amount: the
    share moved becomes amount / from_budget. A decided action is not decided again.
    `at` (default now) is naive UTC, like every stored time the rules compare it with.
    """
    if decision not in STATUS_OF:
        raise UserError(f"action {action_id}: decision {decision!r} is not approve or reject")
    if not decided_by.strip():
        raise UserError(f"action {action_id}: a decision needs the name of who took it")
    action = read_action(conn, action_id)
    if action is None:
        raise UserError(f"action {action_id}: no such action")
    if action["status"] != PROPOSED:
        raise UserError(f"action {action_id}: already {action['status']} by {action['decided_by']}")
    params = dict(action["params"] or {})
    edited = None
    if amount is not None:
        if decision != "approve":
            raise UserError(f"action {action_id}: an amount can only be edited on approval")
        params, edited = edited_reallocation(action_id, action["type"], params, amount)
    moment = (at or datetime.now(UTC).replace(tzinfo=None)).replace(microsecond=0)
    conn.execute(
        update(Action)
        .where(Action.action_id == action_id)
        .values(
            status=STATUS_OF[decision],
            decided_by=decided_by.strip(),
            decided_at=moment,
            comment=comment or None,
            params=params,
        )
    )
    conn.execute(
        insert(AuditEntry).values(
            actor=decided_by.strip(),
            action=f"act.{decision}",
            subject=f"{action['campaign_id']}:{action['period']}:action-{action_id}",
            detail={"type": action["type"], "comment": comment, "edited": edited},
        )
    )
    return action_record(read_action(conn, action_id))


def edited_reallocation(
    action_id: int, kind: str, params: dict[str, Any], amount: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The params of a reallocation moving `amount` instead, and what changed."""
    if kind != "reallocate_budget":
        raise UserError(f"action {action_id}: only reallocate_budget has an amount to edit")
    budget = float(params.get("from_budget") or 0.0)
    if not 0 < amount <= budget:
        raise UserError(
            f"action {action_id}: amount {amount:,.2f} must be above 0 and at most the "
            f"{params.get('from_channel')} budget {budget:,.2f}"
        )
    share = amount / budget
    edited = {"share": {"from": params.get("share"), "to": share}, "amount": amount}
    return {**params, "share": share, "amount": round(amount, 2)}, edited


def proposed_amount(action: Mapping[str, Any]) -> float | None:
    """The amount a reallocation moves as proposed (share × from_budget), else None."""
    params = action.get("params") or {}
    if action.get("type") != "reallocate_budget" or params.get("share") is None:
        return None
    return float(params["share"]) * float(params.get("from_budget") or 0.0)


def _identity(action: Mapping[str, Any]) -> str:
    """What makes two proposals the same proposal: type, scope and params."""
    return json.dumps(
        [action.get("type"), action.get("scope") or {}, _without_edits(action)],
        sort_keys=True,
        default=str,
    )


def _without_edits(action: Mapping[str, Any]) -> dict[str, Any]:
    """Params as proposed: an approved, edited reallocation is still the same proposal."""
    params = dict(action.get("params") or {})
    if action.get("type") == "reallocate_budget":
        params.pop("share", None)
        params.pop("amount", None)
    return params
