"""The check's Prefect artifacts: what a manager sees of a check in the UI.

A markdown summary (trust and why, the KPIs off track apart from those at risk, the
largest miss first, anomalies, the experiment, the bottleneck), the KPI table, a table of
the failed expectations and the Great Expectations Data Docs (a link when the output
folder is served: `tasks.common.links`). Everything is formatted from the typed result and
its one summary (`tasks.check.result.summarise`), numbers in their units
(`tasks.common.formatting`).
"""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pdca.settings import Settings
from tasks.check.data_quality import DataQuality
from tasks.check.result import CheckResult, Kpi, summarise
from tasks.common import formatting as fmt
from tasks.common.links import publish_file_link
from tasks.common.scopes import format_scope


def publish_check(check: CheckResult, quality: DataQuality, settings: Settings) -> None:
    """The summary, the KPI table, the failed expectations and the Data Docs."""
    key = f"check-{check.campaign}".lower()
    create_markdown_artifact(
        key=key,
        markdown=summary_markdown(check, settings.currency),
        description=f"Check {check.period}",
    )
    create_table_artifact(
        key=f"{key}-kpis",
        table=kpi_table(check, settings.currency),
        description=f"KPIs against targets, {check.campaign} {check.period}",
    )
    create_table_artifact(
        key=f"{key}-failed-expectations",
        table=failed_expectations(check) or [{"suite": "(none failed)"}],
        description=f"Failed expectations, {check.campaign} {check.period}",
    )
    if quality.docs_path:
        publish_file_link(
            f"{key}-data-docs",
            quality.docs_path,
            "Great Expectations Data Docs",
            f"Validation results, {check.campaign} {check.period}",
            output_dir=settings.output_dir,
            reports_url=settings.reports_url,
        )


def kpi_table(check: CheckResult, currency: str = "") -> list[dict[str, Any]]:
    """The KPI artifact's rows: every KPI against its target in its unit, `(all)` for a
    spanned scope."""
    return [
        {
            "metric": kpi.metric,
            "channel": kpi.scope.get("channel") or "(all)",
            "segment": kpi.scope.get("segment") or "(all)",
            "target": fmt.metric(kpi.metric, kpi.target, currency),
            "actual": fmt.metric(kpi.metric, kpi.actual, currency),
            "variance": fmt.signed_percent(kpi.variance_pct),
            "status": kpi.status,
        }
        for kpi in check.kpis
    ]


def failed_expectations(check: CheckResult) -> list[dict[str, Any]]:
    """One row per failed critical expectation: suite, expectation, failing rows. The
    failing rows' keys stay out (they may be customer data)."""
    return [
        {
            "suite": suite.name,
            "expectation": name,
            "failing_rows": suite.unexpected.get(name),
            "rows_checked": suite.rows_in,
        }
        for suite in check.data_quality.suites
        for name in suite.failed
    ]


def worst_first(kpis: list[Kpi]) -> list[Kpi]:
    """The largest relative miss first (|variance_pct|; unknown ones last)."""
    return sorted(kpis, key=lambda kpi: -abs(kpi.variance_pct or 0.0))


def summary_markdown(check: CheckResult, currency: str = "") -> str:
    """What a manager reads first: trust, the KPIs off track and at risk, anomalies, test,
    bottleneck."""
    summary = summarise(check)
    lines = [f"# Check {check.campaign} {check.period}", "", *_trust_lines(summary)]
    for status, title in (("off_track", "Off track"), ("at_risk", "At risk")):
        kpis = worst_first([kpi for kpi in summary.off_track if kpi.status == status])
        lines += ["", f"## {title} ({len(kpis)}, the largest miss first)", ""]
        lines += [_kpi_line(kpi, currency) for kpi in kpis] or ["- none"]
    lines += ["", "## Anomalies", ""]
    lines += [
        f"- {item.week} {item.metric} ({format_scope(item.scope)}): "
        f"{fmt.metric(item.metric, item.value, currency)} against a mean of "
        f"{fmt.metric(item.metric, item.baseline_mean, currency)} (z = {fmt.number(item.z, 1)})"
        for item in summary.anomalies
    ] or ["- none"]
    lines += ["", "## Experiment", ""]
    lines += [
        f"- {test.treatment} vs {test.control}: lift {fmt.number(test.lift, 4)} "
        f"(95 % interval {fmt.number(test.ci_low, 4)} to {fmt.number(test.ci_high, 4)}), "
        f"p = {fmt.p_value(test.p_value)}, Holm-adjusted p = {fmt.p_value(test.p_value_adjusted)}"
        f" (decides) → **{test.decision}**"
        for test in summary.experiments
    ] or ["- no comparison"]
    neck = summary.bottleneck
    lines += ["", "## Bottleneck", ""]
    if neck and neck.stage:
        lines.append(
            f"**{neck.stage}**: {neck.metric} {fmt.metric(neck.metric, neck.actual, currency)} "
            f"against the {neck.reference_kind} "
            f"{fmt.metric(neck.metric, neck.reference, currency)}. {neck.diagnosis}"
        )
    else:
        lines.append("none found")
    beyond = neck.beyond_funnel if neck else None
    if beyond and beyond.metric:
        lines.append(
            f"\nBeyond the funnel ({beyond.family}): **{beyond.metric}** "
            f"{fmt.metric(beyond.metric, beyond.actual, currency)} against the "
            f"{beyond.reference_kind} {fmt.metric(beyond.metric, beyond.reference, currency)}. "
            f"{beyond.diagnosis}"
        )
    return "\n".join(lines) + "\n"


def _trust_lines(summary: Any) -> list[str]:
    if summary.no_data:
        return ["**No data: not a single feed row in the period; nothing was checked.**"]
    if summary.trusted:
        return ["**Data quality: passed.**"]
    failed = [f"{suite.name}: {', '.join(suite.failed)}" for suite in summary.failed_suites]
    failed += [
        f"quarantine {entry.feed}: {fmt.count(entry.rows_quarantined)} of "
        f"{fmt.count(entry.rows_in)} rows ({fmt.percent(entry.share, 2)} > "
        f"{fmt.percent(entry.max_share, 2)})"
        for entry in summary.failed_quarantine
    ]
    return ["**Data quality: FAILED — the result is untrusted.**", *[f"- {i}" for i in failed]]


def _kpi_line(kpi: Kpi, currency: str) -> str:
    return (
        f"- {kpi.metric} ({format_scope(kpi.scope)}): "
        f"{fmt.metric(kpi.metric, kpi.actual, currency)} against a target of "
        f"{fmt.metric(kpi.metric, kpi.target, currency)} ({fmt.signed_percent(kpi.variance_pct)})"
    )
