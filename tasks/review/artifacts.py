"""The weekly review's presentations besides the report file: the Prefect artifact that
sums the review up, and the e-mail that carries it (text and HTML, charts inline).
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from tasks.common.links import publish_file_link
from tasks.review.charts import Chart
from tasks.review.mail import build_message, content_ids, inline_css
from tasks.review.review import TEXT_TEMPLATE, Review, render_review
from tasks.review.summary import Summary

ARTIFACT_KEY = "weekly-review"


def summary_markdown(review: Review, path: Path) -> str:
    """The Prefect artifact: one line per campaign, where the report is, then the same
    summary as the e-mail's first screen. Campaign names are escaped: the UI renders the
    markdown's HTML."""
    lines = [
        f"# Weekly review {review.period.name}",
        "",
        f"Report: `{path}`",
        "",
        "| campaign | data | on track | at risk | off track | anomalies | bottleneck | actions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in review.campaigns:
        counts = item.status_counts()
        data = "no check" if not item.checked else ("trusted" if item.trusted else "UNTRUSTED")
        stage = item.bottleneck_stage
        lines.append(
            f"| {_markdown_cell(item.name)} ({item.campaign_id}) | {data} | "
            f"{counts['on_track']} | {counts['at_risk']} | {counts['off_track']} | "
            f"{len(item.anomalies)} | {stage} | {len(item.actions)} |"
        )
    if not review.campaigns:
        lines.append("| (no active campaign) | | | | | | | |")
    else:
        lines += summary_sections(review.summary())
    return "\n".join(lines) + "\n"


def summary_sections(summary: Summary, top: int = 10) -> list[str]:
    """What the e-mail's first screen says, as markdown: the KPI cards, the exceptions by
    cost, the decisions with their commands, the changes. Names escaped, figures in their
    units (`tasks.common.formatting`, through the summary)."""
    lines = ["", "## KPIs", ""]
    for cards in summary.cards:
        lines.append(f"**{_markdown_cell(cards.name)}**")
        lines.append("")
        if not cards.judged:
            lines += [_markdown_cell(cards.note or "No KPI judged this period."), ""]
            continue
        lines += ["| | KPI | target | actual | status | 8 weeks |", "|---|---|---|---|---|---|"]
        for label, rows in cards.families:
            lines += [
                f"| {label} | {card.metric} | {card.target} | {card.actual} | "
                f"{card.status.replace('_', ' ')} | {card.spark} |"
                for card in rows
            ]
        lines.append("")
    lines += ["## Exceptions, by what they cost or risk", ""]
    for rank, found in enumerate(summary.exceptions[:top], 1):
        kind = "at risk" if found.kind == "risk" else "cost"
        lines.append(
            f"{rank}. **{found.amount_text(summary.currency)}** {kind}: "
            f"{_markdown_cell(found.campaign)}, {found.scope}: {_markdown_cell(found.diagnosis)}"
        )
    if len(summary.exceptions) > top:
        lines.append(f"\n… and {len(summary.exceptions) - top} more in the report.")
    if not summary.exceptions:
        lines.append("None: no KPI is off track or at risk.")
    lines += ["", "## Decisions waiting", ""]
    lines += [
        f"- {item.type} ({_markdown_cell(item.campaign)}, {item.scope}): "
        f"{_markdown_cell(item.rationale)} — `{item.approve}` or `{item.reject}`"
        for item in summary.decisions
    ] or ["None: no proposal is waiting for a decision."]
    lines += ["", "## What changed since last week", ""]
    lines += [
        f"- {_markdown_cell(item.campaign)}: {_markdown_cell(item.what)}"
        for item in summary.changes
    ] or ["Nothing: no action was applied and the SOP did not change."]
    return lines


def _markdown_cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|")


def publish_review(
    review: Review,
    path: Path,
    problems: list[str],
    output_dir: Path | None = None,
    reports_url: str | None = None,
) -> None:
    """The markdown summary artifact, with a stable key, and the report itself (a link
    when the output folder is served)."""
    if output_dir is not None:
        publish_file_link(
            f"{ARTIFACT_KEY}-report",
            path,
            "Weekly review report",
            f"Weekly review {review.period.name}",
            output_dir=output_dir,
            reports_url=reports_url,
        )
    markdown = summary_markdown(review, path)
    if problems:
        lines = [f"- {html.escape(problem)}" for problem in problems]
        markdown += "\n## Problems\n\n" + "\n".join(lines) + "\n"
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=markdown, description=f"Weekly review {review.period.name}"
    )


def review_message(
    review: Review,
    charts: list[Chart],
    sender: str,
    measured: list[str],
    pdf: bytes | None = None,
) -> EmailMessage:
    """The review as an e-mail to every recipient of its campaigns: text and HTML
    alternatives (the HTML's CSS inlined, its charts as inline parts it names by cid), and
    the printed report attached as a PDF when there is one."""
    ids = content_ids([item.name for item in charts])
    rich = inline_css(
        render_review(
            review, charts, {name: f"cid:{cid}" for name, cid in ids.items()}, measured=measured
        )
    )
    text = render_review(review, charts, {}, measured=measured, template=TEXT_TEMPLATE)
    by_name = {item.name: item for item in charts}
    names = ", ".join(part.name for part in review.campaigns) or "no active campaign"
    return build_message(
        subject=f"Weekly review {review.period.name}: {names}",
        sender=sender,
        recipients=review.recipients,
        text=text,
        html=rich,
        images={cid: by_name[name] for name, cid in ids.items()},
        pdf=None if pdf is None else (f"weekly-review-{review.period.name}.pdf", pdf),
    )
