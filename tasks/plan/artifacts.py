"""The plan's Prefect artifacts: the budget split and the campaign-level targets, as the
UI shows a new plan version."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_table_artifact

from tasks.common import formatting as fmt
from tasks.plan.result import BudgetLine, PlanResult, Target


def publish_plan(plan: PlanResult, currency: str = "") -> None:
    """Two table artifacts: the budget split and the campaign-level targets."""
    key = f"plan-{plan.campaign}".lower()
    create_table_artifact(
        key=f"{key}-budget",
        table=budget_table(plan.budget, currency),
        description=f"Budget split, {plan.campaign} {plan.period} (version {plan.version})",
    )
    create_table_artifact(
        key=f"{key}-targets",
        table=target_table(plan.targets, currency),
        description=f"Targets, {plan.campaign} {plan.period}",
    )


def budget_table(budget: list[BudgetLine], currency: str = "") -> list[dict[str, Any]]:
    """The split per channel: amounts in money, touches whole, the rest as it is."""
    return [
        {
            **line.to_json(),
            "amount": fmt.money(line.amount, currency),
            "touches": fmt.count(line.touches),
        }
        for line in budget
    ]


def target_table(targets: list[Target], currency: str = "") -> list[dict[str, Any]]:
    """The targets of the campaign and of each channel (segments left out), with bands and
    their basis: the scope's own history, or the campaign's (and why) where it had too
    little."""
    return [
        {
            "metric": t.metric,
            "channel": t.channel or "(all)",
            "target": fmt.metric(t.metric, t.target, currency),
            "band": f"±{t.tolerance_warn:.0%} / ±{t.tolerance_fail:.0%}",
            "lower_is_better": t.lower_is_better,
            "basis": _basis(t.evidence or {}),
        }
        for t in targets
        if t.segment is None
    ]


def _basis(evidence: dict[str, Any]) -> str:
    basis = evidence.get("basis", "own")
    return f"{basis}: {evidence['fallback']}" if evidence.get("fallback") else basis
