"""What Act hands on: a proposal as a rule writes it, and a stored action with its decision.

Both are built in one place each (`Proposal.of`, `StoredAction.of`: from the JSON or a
stored row) and read by attribute; `to_json` gives what `pdca act --json` prints, with the
contract's keys in the contract's order. `tasks.common.rules` folds approved actions as
plain records (`StoredAction.rule_record`), the form `rules.approved_actions` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PROPOSED, APPROVED, REJECTED = "proposed", "approved", "rejected"


@dataclass(frozen=True)
class Proposal:
    """An adjustment one rule proposes: what to change (type, params), where (scope), why
    (rationale: the evidence) and what it should do (expected_impact, with a number)."""

    type: str
    scope: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    rationale: str = ""
    expected_impact: str = ""
    status: str = PROPOSED

    @classmethod
    def of(cls, value: Proposal | Mapping[str, Any]) -> Proposal:
        """A proposal from its JSON (a proposal stays itself)."""
        if isinstance(value, Proposal):
            return value
        return cls(
            type=str(value["type"]),
            scope=dict(value.get("scope") or {}),
            params=dict(value.get("params") or {}),
            rationale=str(value.get("rationale") or ""),
            expected_impact=str(value.get("expected_impact") or ""),
            status=str(value.get("status") or PROPOSED),
        )

    def proposed_amount(self) -> float | None:
        """The amount a reallocation moves as proposed (share × from_budget), else None."""
        return proposed_amount(self.type, self.params)

    def to_json(self) -> dict[str, Any]:
        """The proposal's JSON: type, scope, params, rationale, expected_impact, status."""
        return {
            "type": self.type,
            "scope": self.scope,
            "params": self.params,
            "rationale": self.rationale,
            "expected_impact": self.expected_impact,
            "status": self.status,
        }


@dataclass(frozen=True)
class StoredAction:
    """A stored proposal of one (campaign, period) and the decision taken on it.

    `decided_at` is the stored naive-UTC moment as ISO 8601 text ('2026-04-01T09:30:00'),
    the form the JSON, the report and the audit show it in."""

    action_id: int
    type: str
    scope: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    rationale: str = ""
    expected_impact: str = ""
    status: str = PROPOSED
    decided_by: str | None = None
    decided_at: str | None = None
    comment: str | None = None
    applied_to_period: str | None = None
    period: str | None = None
    """The period it was proposed for (not in the JSON: the act result names it once)."""
    campaign_id: str | None = None
    """The campaign it belongs to (not in the JSON, for the same reason)."""

    @classmethod
    def of(cls, value: StoredAction | Mapping[str, Any]) -> StoredAction:
        """An action from a row of `actions`, its JSON or a rule record (an action stays
        itself); what a record leaves out is empty."""
        if isinstance(value, StoredAction):
            return value
        decided_at = value.get("decided_at")
        if isinstance(decided_at, datetime):
            decided_at = decided_at.isoformat()
        return cls(
            action_id=int(value["action_id"]),
            type=str(value["type"]),
            scope=dict(value.get("scope") or {}),
            params=dict(value.get("params") or {}),
            rationale=value.get("rationale") or "",
            expected_impact=value.get("expected_impact") or "",
            status=value.get("status") or PROPOSED,
            decided_by=value.get("decided_by"),
            decided_at=decided_at,
            comment=value.get("comment"),
            applied_to_period=value.get("applied_to_period"),
            period=value.get("period"),
            campaign_id=value.get("campaign_id"),
        )

    def proposed_amount(self) -> float | None:
        """The amount a reallocation moves as proposed (share × from_budget), else None."""
        return proposed_amount(self.type, self.params)

    def to_json(self) -> dict[str, Any]:
        """The action as `pdca act --json` prints it (the contract's fields first)."""
        return {
            "action_id": self.action_id,
            "type": self.type,
            "scope": self.scope,
            "params": self.params,
            "rationale": self.rationale,
            "expected_impact": self.expected_impact,
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "comment": self.comment,
            "applied_to_period": self.applied_to_period,
        }

    def rule_record(self) -> dict[str, Any]:
        """The record `tasks.common.rules` folds: action_id, period, type, scope, params."""
        return {
            "action_id": self.action_id,
            "period": self.period,
            "type": self.type,
            "scope": self.scope,
            "params": self.params,
        }


def proposed_amount(kind: str, params: Mapping[str, Any]) -> float | None:
    """The amount a reallocation moves as proposed (share × from_budget), else None."""
    if kind != "reallocate_budget" or params.get("share") is None:
        return None
    return float(params["share"]) * float(params.get("from_budget") or 0.0)


@dataclass(frozen=True)
class ActResult:
    """What one act run did for a (campaign, period): the flow returns its `to_json`."""

    campaign: str
    period: str
    trusted: bool
    """Whether the check's data were trusted (untrusted: only `hold`)."""
    actions: list[StoredAction]
    sop_path: str
    sop_version: int
    sop_changes: list[dict[str, Any]]
    """The changelog entries of the SOP versions this run made, oldest first."""
    report_path: str

    def to_json(self) -> dict[str, Any]:
        """What `pdca act --json` prints: campaign, period, trusted, actions, sop, report."""
        return {
            "campaign": self.campaign,
            "period": self.period,
            "trusted": self.trusted,
            "actions": [action.to_json() for action in self.actions],
            "sop": {
                "path": self.sop_path,
                "version": self.sop_version,
                "changes": self.sop_changes,
            },
            "report": {"path": self.report_path},
        }
