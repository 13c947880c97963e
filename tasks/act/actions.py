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
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, delete, insert, select, update

from pdca.errors import UserError
from pdca.models import Action, AuditEntry
from tasks.act.types import APPROVED, PROPOSED, REJECTED, Proposal, StoredAction
from tasks.common.periods import Period

DecisionKind = Literal["approve", "reject"]
STATUS_OF = {"approve": APPROVED, "reject": REJECTED}
ACTIONS = Action.__table__


def save_proposals(
    conn: Connection,
    campaign_id: str,
    period: Period,
    proposals: Sequence[Proposal],
    *,
    actor: str = "act",
) -> list[StoredAction]:
    """Replace the period's undecided proposals with `proposals`; return every action of
    the period (decided ones first, as they were proposed, then the new ones)."""
    conn.execute(
        delete(Action).where(
            Action.campaign_id == campaign_id,
            Action.period == period.name,
            Action.status == PROPOSED,
        )
    )
    decided = {_identity(action) for action in stored_actions(conn, campaign_id, period)}
    fresh = [proposal for proposal in proposals if _identity(proposal) not in decided]
    for proposal in fresh:
        conn.execute(
            insert(Action).values(
                campaign_id=campaign_id,
                period=period.name,
                type=proposal.type,
                scope=dict(proposal.scope),
                params=dict(proposal.params),
                rationale=proposal.rationale,
                expected_impact=proposal.expected_impact,
                status=PROPOSED,
            )
        )
    conn.execute(
        insert(AuditEntry).values(
            actor=actor,
            action="act.propose",
            subject=f"{campaign_id}:{period.name}",
            detail={
                "proposed": [proposal.type for proposal in fresh],
                "already_decided": len(proposals) - len(fresh),
            },
        )
    )
    return stored_actions(conn, campaign_id, period)


def stored_actions(conn: Connection, campaign_id: str, period: Period) -> list[StoredAction]:
    """Every action of the (campaign, period), in the order they were proposed."""
    rows = conn.execute(
        select(ACTIONS)
        .where(ACTIONS.c.campaign_id == campaign_id, ACTIONS.c.period == period.name)
        .order_by(ACTIONS.c.action_id)
    ).mappings()
    return [StoredAction.of(row) for row in rows]


def find_actions(
    conn: Connection,
    *,
    campaign_id: str | None = None,
    period: Period | None = None,
    status: str | None = None,
) -> list[StoredAction]:
    """The actions that match every filter given, by campaign, period and id."""
    query = select(ACTIONS).order_by(ACTIONS.c.campaign_id, ACTIONS.c.period, ACTIONS.c.action_id)
    if campaign_id is not None:
        query = query.where(ACTIONS.c.campaign_id == campaign_id)
    if period is not None:
        query = query.where(ACTIONS.c.period == period.name)
    if status is not None:
        query = query.where(ACTIONS.c.status == status)
    return [StoredAction.of(row) for row in conn.execute(query).mappings()]


def period_actions(conn: Connection, campaign_id: str, period: str) -> list[dict[str, Any]]:
    """Every action of the (campaign, period) as `pdca act --json` prints it, in the order
    they were proposed: the form readers outside the act stage (the weekly review) take."""
    return [action.to_json() for action in stored_actions(conn, campaign_id, Period.parse(period))]


def read_action(conn: Connection, action_id: int) -> StoredAction | None:
    """One stored action, or None."""
    row = conn.execute(select(ACTIONS).where(ACTIONS.c.action_id == action_id)).mappings().first()
    return None if row is None else StoredAction.of(row)


def decide(
    conn: Connection,
    action_id: int,
    decision: DecisionKind,
    *,
    decided_by: str,
    comment: str = "",
    amount: float | None = None,
    at: datetime | None = None,
) -> StoredAction:
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
    if action.status != PROPOSED:
        raise UserError(f"action {action_id}: already {action.status} by {action.decided_by}")
    params = dict(action.params)
    edited = None
    if amount is not None:
        if decision != "approve":
            raise UserError(f"action {action_id}: an amount can only be edited on approval")
        params, edited = edited_reallocation(action_id, action.type, params, amount)
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
            subject=f"{action.campaign_id}:{action.period}:action-{action_id}",
            detail={"type": action.type, "comment": comment, "edited": edited},
        )
    )
    decided = read_action(conn, action_id)
    assert decided is not None  # updated just above
    return decided


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


def _identity(action: Proposal | StoredAction) -> str:
    """What makes two proposals the same proposal: type, scope and params."""
    return json.dumps(
        [action.type, action.scope, _without_edits(action)],
        sort_keys=True,
        default=str,
    )


def _without_edits(action: Proposal | StoredAction) -> dict[str, Any]:
    """Params as proposed: an approved, edited reallocation is still the same proposal."""
    params = dict(action.params)
    if action.type == "reallocate_budget":
        params.pop("share", None)
        params.pop("amount", None)
    return params
