"""Plan: set the period's targets and split its budget across channels.

Reads like the stage: find the history to learn from, work out each channel's economics,
let the LP split the budget (under capacity, floors, the overdue ceiling and the
manager-approved adjustments), derive each scope's targets from its own history (the
campaign's where a scope has too little, said in the notes), and save them as the new current
version of the (campaign, period) plan. Earlier versions stay as history.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection, insert

from pdca.db import make_engine
from pdca.errors import UserError
from pdca.models import AuditEntry
from pdca.settings import get_settings
from tasks.common.campaigns import CampaignSpec, get_campaign_spec
from tasks.common.periods import Period
from tasks.plan.artifacts import publish_plan
from tasks.plan.budget import Allocation
from tasks.plan.plan import (
    History,
    allocate_within_risk,
    approved_adjustments,
    channel_economics,
    find_history,
    gather_history,
    mark_applied,
    period_budget,
    previous_budget,
    previous_split,
    save_plan,
    send_days,
    standing_adjustments,
    waiting_for_a_resume,
)
from tasks.plan.result import BudgetLine, PlanInputs, PlanResult, Target
from tasks.plan.targets import Minimums, fallback_notes, targets_from


@task(cache_policy=NO_CACHE)
def learn_from_history(conn: Connection, spec: CampaignSpec, period: Period) -> History:
    """The history the targets come from: own trailing weeks, else comparable campaigns."""
    sources = find_history(conn, spec, period)
    if not sources:
        raise UserError(
            f"campaign {spec.id!r}: no history to plan {period} from; import touches of "
            "the campaign or comparable history (e.g. `pdca import uci-bank …`)"
        )
    settings = get_settings()
    return gather_history(
        conn,
        sources,
        attribution_days=settings.attribution_window_days,
        ftp_rate=settings.ftp_rate,
        lgd=settings.lgd,
    )


@task(cache_policy=NO_CACHE)
def split_budget(
    conn: Connection, spec: CampaignSpec, period: Period, history: History
) -> tuple[Allocation, list[int], list[str]]:
    """The LP's split of the period's budget, with the approved adjustments applied and
    nothing for a channel retired or paused by a guardrail."""
    settings = get_settings()
    economics, notes = channel_economics(spec, history, send_days(spec, period))
    approved = approved_adjustments(conn, spec.id)
    standing = standing_adjustments(conn, spec, approved)
    adjustments, waiting = waiting_for_a_resume(approved, standing)
    allocation, relaxed = allocate_within_risk(
        economics,
        period_budget(spec, period),
        objective=settings.plan_objective,
        floor_share=settings.plan_floor_share,
        overdue_ceiling=spec.risk.max_overdue_rate_30,
        adjustments=[*(adjustment for _, adjustment in adjustments), *standing],
        previous=previous_split(conn, spec.id, period),
        previous_budget=previous_budget(conn, spec, period),
    )
    applied = [action_id for action_id, _ in adjustments]
    return allocation, applied, [*notes, *waiting, *relaxed]


@task(cache_policy=NO_CACHE)
def record_plan(
    conn: Connection,
    spec: CampaignSpec,
    period: Period,
    history: History,
    allocation: Allocation,
    applied: list[int],
    notes: list[str],
) -> PlanResult:
    """Targets saved with the split as the plan's new current version, in one transaction."""
    settings = get_settings()
    targets = targets_from(
        spec,
        history,
        allocation,
        (settings.tolerance_warn, settings.tolerance_fail),
        Minimums(
            settings.plan_min_history_touches,
            settings.plan_min_history_loans,
            settings.plan_min_history_delivered,
        ),
    )
    inputs = {
        "history": [f"{s.campaign_id} {s.window} ({s.reason})" for s in history.sources],
        "growth": spec.growth,
        "objective": settings.plan_objective,
        "applied_actions": applied,
        "notes": [*notes, *allocation.explanation.notes, *fallback_notes(targets)],
        "budget_shadow_price": allocation.explanation.budget_shadow_price,
        "binding": allocation.explanation.binding,
    }
    plan_id, version = save_plan(
        conn, spec.id, period, allocation, targets, inputs, dict(spec.daily_capacity)
    )
    mark_applied(conn, applied, period)
    conn.execute(
        insert(AuditEntry).values(
            actor="plan",
            action="plan.create",
            subject=f"{spec.id}:{period}",
            detail={"plan_id": plan_id, "version": version, "applied_actions": applied},
        )
    )
    conn.commit()
    return PlanResult(
        campaign=spec.id,
        period=str(period),
        plan_id=plan_id,
        version=version,
        budget=[BudgetLine(**row) for row in allocation.to_rows()],
        targets=[Target(**row) for row in targets],
        inputs=PlanInputs(**inputs),
    )


@flow(name="plan", flow_run_name="plan {campaign_id} {period}")
def plan_flow(campaign_id: str, period: str) -> dict[str, Any]:
    """Plan `period` of the campaign: budget split and targets, as a new plan version.

    Returns the plan's JSON (`PlanResult.to_json`), as `pdca plan --json` prints it."""
    settings = get_settings()
    parsed = Period.parse(period)
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        spec = get_campaign_spec(conn, campaign_id)
        history = learn_from_history(conn, spec, parsed)
        allocation, applied, notes = split_budget(conn, spec, parsed, history)
        result = record_plan(conn, spec, parsed, history, allocation, applied, notes)
    publish_plan(result, settings.currency)
    return result.to_json()


if __name__ == "__main__":
    import sys

    print(plan_flow(sys.argv[1], sys.argv[2]))
