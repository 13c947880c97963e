"""The plan's Prefect artifacts: the budget split and the campaign-level targets, as the
UI shows a new plan version."""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_table_artifact


def publish_plan(result: dict[str, Any]) -> None:
    """Two table artifacts: the budget split and the campaign-level targets."""
    key = f"plan-{result['campaign']}".lower()
    create_table_artifact(
        key=f"{key}-budget",
        table=result["budget"],
        description=f"Budget split, {result['campaign']} {result['period']} "
        f"(version {result['version']})",
    )
    create_table_artifact(
        key=f"{key}-targets",
        table=target_table(result["targets"]),
        description=f"Targets, {result['campaign']} {result['period']}",
    )


def target_table(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets of the campaign and of each channel (segments left out), with bands."""
    return [
        {
            "metric": t["metric"],
            "channel": t["channel"] or "(all)",
            "target": round(t["target"], 4),
            "band": f"±{t['tolerance_warn']:.0%} / ±{t['tolerance_fail']:.0%}",
            "lower_is_better": t["lower_is_better"],
        }
        for t in targets
        if t["segment"] is None
    ]
