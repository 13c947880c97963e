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
from tasks.review.mail import build_message, content_ids
from tasks.review.review import TEXT_TEMPLATE, Review, render_review

ARTIFACT_KEY = "weekly-review"


def summary_markdown(review: Review, path: Path) -> str:
    """The Prefect artifact: one line per campaign and where the report is. Campaign names
    are escaped: the UI renders the markdown's HTML."""
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
    return "\n".join(lines) + "\n"


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
    review: Review, charts: list[Chart], sender: str, measured: list[str]
) -> EmailMessage:
    """The review as an e-mail to every recipient of its campaigns: text and HTML
    alternatives, the HTML's charts as inline parts it names by cid."""
    ids = content_ids([item.name for item in charts])
    rich = render_review(
        review, charts, {name: f"cid:{cid}" for name, cid in ids.items()}, measured=measured
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
    )
