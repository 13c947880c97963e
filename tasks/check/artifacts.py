"""The check's Prefect artifacts: what a manager sees of a check in the UI.

A markdown summary (trust and why, the KPIs off track, anomalies, the experiment, the
bottleneck), the KPI table and a link to the Great Expectations Data Docs. Everything is
formatted from the typed result and its one summary (`tasks.check.result.summarise`).
"""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from tasks.check.data_quality import DataQuality
from tasks.check.result import CheckResult, summarise
from tasks.common.scopes import format_scope


def publish_check(check: CheckResult, quality: DataQuality) -> None:
    """A markdown summary, the KPI table and, when written, a link to the Data Docs."""
    key = f"check-{check.campaign}".lower()
    create_markdown_artifact(
        key=key, markdown=summary_markdown(check), description=f"Check {check.period}"
    )
    create_table_artifact(
        key=f"{key}-kpis",
        table=kpi_table(check),
        description=f"KPIs against targets, {check.campaign} {check.period}",
    )
    if quality.docs_path:
        create_link_artifact(
            key=f"{key}-data-docs",
            link=quality.docs_path.resolve().as_uri(),
            link_text="Great Expectations Data Docs",
            description=f"Validation results, {check.campaign} {check.period}",
        )


def kpi_table(check: CheckResult) -> list[dict[str, Any]]:
    """The KPI artifact's rows: every KPI against its target, `(all)` for a spanned scope."""
    return [
        {
            "metric": kpi.metric,
            "channel": kpi.scope.get("channel") or "(all)",
            "segment": kpi.scope.get("segment") or "(all)",
            "target": kpi.target,
            "actual": kpi.actual,
            "variance_pct": kpi.variance_pct,
            "status": kpi.status,
        }
        for kpi in check.kpis
    ]


def summary_markdown(check: CheckResult) -> str:
    """What a manager reads first: trust, the KPIs off track, anomalies, test, bottleneck."""
    summary = summarise(check)
    lines = [f"# Check {check.campaign} {check.period}", ""]
    if summary.no_data:
        lines.append("**No data: not a single feed row in the period; nothing was checked.**")
    elif summary.trusted:
        lines.append("**Data quality: passed.**")
    else:
        failed = [f"{suite.name}: {', '.join(suite.failed)}" for suite in summary.failed_suites]
        failed += [
            f"quarantine {entry.feed}: {entry.rows_quarantined} of {entry.rows_in} "
            f"rows ({_num(entry.share)} > {entry.max_share})"
            for entry in summary.failed_quarantine
        ]
        lines.append("**Data quality: FAILED — the result is untrusted.**")
        lines += [f"- {item}" for item in failed]
    lines += ["", "## KPIs off track", ""]
    lines += [
        f"- {kpi.metric} ({format_scope(kpi.scope)}): {_num(kpi.actual)} vs target "
        f"{_num(kpi.target)} ({kpi.status})"
        for kpi in summary.off_track
    ] or ["- none"]
    lines += ["", "## Anomalies", ""]
    lines += [
        f"- {item.week} {item.metric} ({format_scope(item.scope)}): "
        f"{_num(item.value)} vs mean {_num(item.baseline_mean)} (z = {_num(item.z)})"
        for item in summary.anomalies
    ] or ["- none"]
    lines += ["", "## Experiment", ""]
    lines += [
        f"- {test.treatment} vs {test.control}: lift {_num(test.lift)} "
        f"[{_num(test.ci_low)}, {_num(test.ci_high)}], p = {_num(test.p_value)} "
        f"(Holm {_num(test.p_value_adjusted)}) → **{test.decision}**"
        for test in summary.experiments
    ] or ["- no comparison"]
    neck = summary.bottleneck
    lines += ["", "## Bottleneck", ""]
    if neck and neck.stage:
        lines.append(
            f"**{neck.stage}**: {neck.metric} {_num(neck.actual)} "
            f"vs {neck.reference_kind} {_num(neck.reference)}. {neck.diagnosis}"
        )
    else:
        lines.append("none found")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    """A number for people: four significant digits, or n/a when it cannot be known."""
    return "n/a" if value is None else f"{value:.4g}"
