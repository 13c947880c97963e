"""What the Act stage shows people: the approval form's text, the adjustment report, and the
Prefect artifacts of a run (a Markdown summary and the actions table).

Builders only: they read the stage's typed results and return text or publish it; the flow
decides when.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.act.sop import SopRecord, sop_diff
from tasks.act.types import ActResult, StoredAction
from tasks.check.result import CheckResult
from tasks.common.campaigns import CampaignSpec
from tasks.common.i18n import N_, translator
from tasks.common.links import publish_file_link
from tasks.common.periods import Period
from tasks.common.reports import render
from tasks.common.scopes import format_scope

MEASURED = [
    N_(
        "Proposals follow from the period's check result: KPIs against the plan's targets "
        "(tolerance bands), anomalies against each metric's trailing 8 weeks, the A/B test "
        "against the hold-out (Holm-adjusted), the bottleneck stage and loans' 30-day overdue "
        "rate."
    ),
    N_("Thresholds are pdca's act_* settings; untrusted data (data quality failed) only hold."),
]
"""What the adjustment report says its numbers measure."""


def readable(value: object) -> str:
    """A parameter as a person reads it: lists joined, numbers rounded, no Python reprs."""
    if isinstance(value, list | tuple | set):
        return ", ".join(readable(item) for item in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{key} {readable(item)}" for key, item in value.items()) or "none"
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "none"}[value]
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def proposal_markdown(action: StoredAction) -> str:
    """What the approval form shows above its fields."""
    params = "\n".join(f"- {key}: {readable(value)}" for key, value in action.params.items())
    amount = action.proposed_amount()
    lines = [
        f"### Proposal {action.action_id}: `{action.type}` ({format_scope(action.scope)})",
        "",
        params,
        "",
        f"**Why.** {action.rationale}",
        "",
        f"**Expected impact.** {action.expected_impact}",
    ]
    if amount is not None:
        lines += ["", f"Proposed amount to move: {amount:,.2f} (edit `amount` to change it)."]
    return "\n".join(lines)


def adjustment_report_html(
    spec: CampaignSpec,
    period: Period,
    check: CheckResult,
    actions: Sequence[StoredAction],
    versions: Sequence[SopRecord],
    new_versions: Sequence[SopRecord],
    default_locale: str = "en",
) -> str:
    """The period's adjustment report (`reports/adjustment_report.html.j2`): what the check
    found, each action with its evidence and decision, and the diff of each new SOP version
    from the one before. `versions`: every stored SOP version, the latest in force. In the
    spec's `locale`, else `default_locale` (the setting `PDCA_LOCALE`)."""
    locale = spec.locale or default_locale
    _ = translator(locale)
    by_number = {record.version: record for record in versions}
    diffs = [
        {"version": record.version, "diff": sop_diff(by_number[record.version - 1], record)}
        for record in new_versions
        if record.version - 1 in by_number
    ]
    return render(
        "adjustment_report.html.j2",
        locale,
        title=_("Adjustment report: %(name)s") % {"name": spec.name},
        subtitle=_("Campaign %(id)s, period %(period)s") % {"id": spec.id, "period": period.name},
        generated_at=datetime.now().strftime("%Y-%m-%d %H:%M"),
        measured=[_(line) for line in MEASURED],
        spec=spec,
        period=period.name,
        check=check,
        actions=list(actions),
        sop=versions[-1],
        diffs=diffs,
    )


def publish_act(result: ActResult, output_dir: Path, reports_url: str | None) -> None:
    """A markdown summary, the actions table and the adjustment report (a link when the
    output folder is served), under stable keys per campaign."""
    key = f"act-{result.campaign}".lower()
    publish_file_link(
        f"{key}-report",
        Path(result.report_path),
        "Adjustment report",
        f"Adjustment report, {result.campaign} {result.period}",
        output_dir=output_dir,
        reports_url=reports_url,
    )
    create_markdown_artifact(
        key=key,
        markdown=act_markdown(result),
        description=f"Act {result.campaign} {result.period}",
    )
    create_table_artifact(
        key=f"{key}-actions",
        table=[
            {
                "action_id": action.action_id,
                "type": action.type,
                "scope": format_scope(action.scope),
                "status": action.status,
                "decided_by": action.decided_by,
                "expected_impact": action.expected_impact,
            }
            for action in result.actions
        ],
        description=f"Adjustments, {result.campaign} {result.period}",
    )


def act_markdown(result: ActResult) -> str:
    """The act stage in a few lines: each action with its status and reason, the SOP."""
    lines = [f"# Act {result.campaign} {result.period}", ""]
    if not result.trusted:
        lines += ["**Data quality failed: hold, nothing changes.**", ""]
    for action in result.actions:
        lines.append(f"- **{action.type}** ({action.status}): {action.rationale}")
    if not result.actions:
        lines.append("- no adjustment proposed: the period is on plan")
    lines += ["", f"SOP version {result.sop_version}: `{result.sop_path}`"]
    lines += [f"- v{entry['version']}: {entry['action']}" for entry in result.sop_changes]
    lines += ["", f"Report: `{result.report_path}`"]
    return "\n".join(lines) + "\n"
