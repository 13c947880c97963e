"""Act's guardrails: a channel or segment past a hard risk limit is paused at once.

The spec's optional `risk.hard_overdue_rate_30` and `risk.hard_complaint_rate` are limits
that do not wait for a manager: when the checked period's overdue_rate_30 or
complaint_rate of one channel or one segment passes one, act stores a `pause` of that
scope with status `applied` (decided by `guardrail`, audited), which dispatch obeys from
its next run (`tasks.common.rules.RulesInForce.paused`, `tasks.do.pauses`), and proposes
its `resume`, which only a manager lifts: `--auto-approve` never approves a resume
(`MANAGER_ONLY`). The soft ceiling (`max_overdue_rate_30`) keeps its gentler answer,
`tighten_admission`, proposed for approval as before.

No stacking:

- a scope already paused is not paused again; a scope is paused at most once per period
  (a rerun, or a backfill after the manager resumed it, does not pause it again on the
  same evidence — the next period's check is new evidence);
- a paused scope has at most one resume waiting: act proposes one when none waits (a
  rejected resume is asked again at the next act run, with that period's numbers).

Guardrails judge trusted data only: on untrusted data act holds, and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from pdca.models import Action, AuditEntry
from tasks.act.actions import read_action
from tasks.act.types import PROPOSED, Proposal, StoredAction
from tasks.check.result import CheckResult
from tasks.common.campaigns import CampaignSpec
from tasks.common.periods import Period
from tasks.common.rules import PausedScope, approved_actions, paused_scopes
from tasks.common.scopes import format_scope, scope_without_gaps

APPLIED = "applied"
"""The status of an action that took effect without a decision: a guardrail's pause."""
GUARDRAIL = "guardrail"
"""Who a pause is recorded as decided by, in `actions` and the audit log."""
MANAGER_ONLY = ("resume",)
"""Types that `--auto-approve` leaves to a person: lifting a guardrail needs a name."""
LIMITS = (
    ("overdue_rate_30", "hard_overdue_rate_30"),
    ("complaint_rate", "hard_complaint_rate"),
)
"""Metric → the spec's `risk` field holding its hard limit."""


@dataclass(frozen=True)
class Breach:
    """One metric of one channel or segment past its hard limit in the checked period."""

    kind: str
    name: str
    metric: str
    value: float
    limit: float

    @property
    def scope(self) -> dict[str, str]:
        return {self.kind: self.name}

    def describe(self) -> str:
        """'complaint_rate 14.0 per 1,000 delivered is past the hard limit 10.0'."""
        if self.metric == "complaint_rate":
            return (
                f"complaint_rate {self.value:.1f} per 1,000 delivered is past the hard "
                f"limit {self.limit:g}"
            )
        return f"{self.metric} {self.value:.1%} is past the hard limit {self.limit:.1%}"


@dataclass
class Guarded:
    """What the guardrails did in one act run: pauses applied, resumes to propose."""

    applied: list[StoredAction] = field(default_factory=list)
    resumes: list[Proposal] = field(default_factory=list)


def hard_limits(spec: CampaignSpec) -> dict[str, float]:
    """Metric → its hard limit, for the limits the spec sets."""
    found = {metric: getattr(spec.risk, name) for metric, name in LIMITS}
    return {metric: float(limit) for metric, limit in found.items() if limit is not None}


def guardrail_breaches(check: CheckResult, spec: CampaignSpec) -> list[Breach]:
    """Every channel or segment KPI of a trusted check past its hard limit, in the check's
    order (a scope past both limits has two breaches)."""
    limits = hard_limits(spec)
    if check.trusted is not True or not limits:
        return []
    breaches = []
    for kpi in check.kpis:
        scope = scope_without_gaps(kpi.scope)
        limit = limits.get(kpi.metric)
        if limit is None or len(scope) != 1 or not set(scope) <= {"channel", "segment"}:
            continue
        value = kpi.actual
        if isinstance(value, int | float) and math.isfinite(value) and value > limit:
            ((kind, name),) = scope.items()
            breaches.append(Breach(kind, str(name), kpi.metric, float(value), limit))
    return breaches


def pause_proposals(
    breaches: Sequence[Breach],
    paused: Sequence[PausedScope],
    paused_this_period: set[tuple[str, str]],
    period: str,
) -> list[Proposal]:
    """One `pause` (status `applied`) per breached scope that is not paused already and
    was not paused for this period before; params name the first breach, the rationale
    every one."""
    skip = {(pause.kind, pause.name) for pause in paused} | paused_this_period
    by_scope: dict[tuple[str, str], list[Breach]] = {}
    for breach in breaches:
        if (breach.kind, breach.name) not in skip:
            by_scope.setdefault((breach.kind, breach.name), []).append(breach)
    proposals = []
    for found in by_scope.values():
        first = found[0]
        where = format_scope(first.scope, separator=" ")
        proposals.append(
            Proposal(
                type="pause",
                scope=first.scope,
                params={"metric": first.metric, "value": first.value, "limit": first.limit},
                rationale=f"{where} in {period}: "
                + "; ".join(breach.describe() for breach in found)
                + ". A hard guardrail pauses at once, without approval.",
                expected_impact=f"Nothing is sent to {where} until a manager approves its "
                "resume; its sends still waiting in the outbox are cancelled.",
                status=APPLIED,
            )
        )
    return proposals


def resume_proposals(
    paused: Sequence[PausedScope], waiting: set[int], breaches: Sequence[Breach], period: str
) -> list[Proposal]:
    """A `resume` for each paused scope with none waiting (`waiting`: the pauses that have
    one), saying whether the checked period is still past the limit."""
    proposals = []
    for pause in paused:
        if pause.action_id in waiting:
            continue
        where = format_scope({pause.kind: pause.name}, separator=" ")
        still = [b for b in breaches if (b.kind, b.name) == (pause.kind, pause.name)]
        now = (
            "; ".join(breach.describe() for breach in still)
            if still
            else "within the hard limits (or without data)"
        )
        proposals.append(
            Proposal(
                type="resume",
                scope={pause.kind: pause.name},
                params={"pause_action_id": pause.action_id},
                rationale=f"{where} is paused by the guardrail (action {pause.action_id}); "
                f"in {period} it is {now}.",
                expected_impact=f"Dispatch sends to {where} again from its next run.",
            )
        )
    return proposals


def waiting_resumes(conn: Connection, campaign_id: str, except_period: str) -> set[int]:
    """The pauses (action ids) with a resume proposed and undecided in another period: this
    period's own proposals are about to be replaced by the run."""
    rows = conn.execute(
        select(Action.params).where(
            Action.campaign_id == campaign_id,
            Action.type == "resume",
            Action.status == PROPOSED,
            Action.period != except_period,
        )
    ).scalars()
    return {int(params["pause_action_id"]) for params in rows if params.get("pause_action_id")}


def paused_in_period(conn: Connection, campaign_id: str, period: str) -> set[tuple[str, str]]:
    """The (kind, name) of the scopes a pause of this period already named."""
    scopes = conn.execute(
        select(Action.scope).where(
            Action.campaign_id == campaign_id, Action.type == "pause", Action.period == period
        )
    ).scalars()
    return {
        (kind, str(name))
        for scope in scopes
        for kind, name in scope_without_gaps(scope).items()
        if kind in ("channel", "segment")
    }


def apply_pauses(
    conn: Connection,
    campaign_id: str,
    period: Period,
    pauses: Sequence[Proposal],
    *,
    at: datetime | None = None,
) -> list[StoredAction]:
    """Store each pause as `applied` by the guardrail, with its audit entry; the caller
    commits. `at` (default now) is naive UTC, like every stored decision time."""
    moment = (at or datetime.now(UTC).replace(tzinfo=None)).replace(microsecond=0)
    stored = []
    for pause in pauses:
        action_id = conn.execute(
            insert(Action)
            .values(
                campaign_id=campaign_id,
                period=period.name,
                type=pause.type,
                scope=dict(pause.scope),
                params=dict(pause.params),
                rationale=pause.rationale,
                expected_impact=pause.expected_impact,
                status=APPLIED,
                decided_by=GUARDRAIL,
                decided_at=moment,
                comment="applied at once: past a hard guardrail",
            )
            .returning(Action.action_id)
        ).scalar_one()
        conn.execute(
            insert(AuditEntry).values(
                actor=GUARDRAIL,
                action="act.guardrail.pause",
                subject=f"{campaign_id}:{period.name}:action-{action_id}",
                detail=_audit_detail(pause),
            )
        )
        action = read_action(conn, action_id)
        assert action is not None  # inserted just above
        stored.append(action)
    return stored


def guard(conn: Connection, spec: CampaignSpec, period: Period, check: CheckResult) -> Guarded:
    """The guardrails of one act run: apply the pauses the check calls for (stored, not yet
    committed) and the resumes to propose with the run's other proposals."""
    breaches = guardrail_breaches(check, spec)
    before = paused_scopes(approved_actions(conn, spec.id))
    pauses = pause_proposals(
        breaches, before, paused_in_period(conn, spec.id, period.name), period.name
    )
    applied = apply_pauses(conn, spec.id, period, pauses)
    paused = paused_scopes(approved_actions(conn, spec.id)) if applied else before
    waiting = waiting_resumes(conn, spec.id, period.name)
    return Guarded(applied, resume_proposals(paused, waiting, breaches, period.name))


def _audit_detail(pause: Proposal) -> dict[str, Any]:
    return {"type": pause.type, "scope": dict(pause.scope), "params": dict(pause.params)}
