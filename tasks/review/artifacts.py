"""The weekly review's presentations besides the report file: the Prefect artifact that
sums the review up, and the e-mail that carries it (text and HTML, charts inline).
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from tasks.common.i18n import translator
from tasks.common.links import publish_file_link
from tasks.common.terms import scope_words, term
from tasks.review.charts import Chart
from tasks.review.mail import build_message, content_ids, inline_css
from tasks.review.review import TEXT_TEMPLATE, Review, render_review
from tasks.review.summary import Summary

ARTIFACT_KEY = "weekly-review"


def summary_markdown(review: Review, path: Path) -> str:
    """The Prefect artifact: one line per campaign, where the report is, then the same
    summary as the e-mail's first screen, in the review's locale. Campaign names are
    escaped: the UI renders the markdown's HTML."""
    locale = review.locale
    _ = translator(locale)
    header = (
        _("campaign"),
        _("data"),
        _("on track"),
        _("at risk"),
        _("off track"),
        _("anomalies"),
        _("bottleneck"),
        _("actions"),
    )
    lines = [
        "# " + _("Weekly review %(period)s") % {"period": review.period.name},
        "",
        _("Report: %(path)s") % {"path": f"`{path}`"},
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in review.campaigns:
        counts = item.status_counts()
        data = (
            term("no check", locale)
            if not item.checked
            else (_("trusted") if item.trusted else _("UNTRUSTED"))
        )
        stage = term(item.bottleneck_stage, locale)
        lines.append(
            f"| {_markdown_cell(item.name)} ({item.campaign_id}) | {data} | "
            f"{counts['on_track']} | {counts['at_risk']} | {counts['off_track']} | "
            f"{len(item.anomalies)} | {stage} | {len(item.actions)} |"
        )
    if not review.campaigns:
        lines.append("| " + _("(no active campaign)") + " | | | | | | | |")
    else:
        lines += summary_sections(review.summary())
    return "\n".join(lines) + "\n"


def summary_sections(summary: Summary, top: int = 10) -> list[str]:
    """What the e-mail's first screen says, as markdown: the KPI cards, the exceptions by
    cost, the decisions with their commands, the changes. Names escaped, figures in their
    units (`tasks.common.formatting`, through the summary), words in its locale."""
    locale = summary.locale
    _ = translator(locale)
    lines = ["", "## " + _("KPIs"), ""]
    for cards in summary.cards:
        lines.append(f"**{_markdown_cell(cards.name)}**")
        lines.append("")
        if not cards.judged:
            lines += [_markdown_cell(cards.note or _("No KPI judged this period.")), ""]
            continue
        columns = (_("KPI"), _("target"), _("actual"), _("status"), _("8 weeks"))
        lines += ["| | " + " | ".join(columns) + " |", "|---|---|---|---|---|---|"]
        for label, rows in cards.families:
            lines += [
                f"| {label} | {term(card.metric, locale)} | {card.target} | {card.actual} | "
                f"{term(card.status, locale).replace('_', ' ')} | {card.spark} |"
                for card in rows
            ]
        lines.append("")
    lines += ["## " + _("Exceptions, by what they cost or risk"), ""]
    for rank, found in enumerate(summary.exceptions[:top], 1):
        kind = _("at risk") if found.kind == "risk" else _("cost")
        lines.append(
            f"{rank}. **{found.amount_text(summary.currency)}** {kind}{_(': ')}"
            f"{_markdown_cell(found.campaign)}, {scope_words(found.scope, locale)}{_(': ')}"
            f"{_markdown_cell(found.diagnosis)}"
        )
    if len(summary.exceptions) > top:
        more = _("… and %(count)s more in the report.")
        lines.append("\n" + more % {"count": len(summary.exceptions) - top})
    if not summary.exceptions:
        lines.append(_("None: no KPI is off track or at risk."))
    lines += ["", "## " + _("Decisions waiting"), ""]
    lines += [
        f"- {term(item.type, locale)} ({_markdown_cell(item.campaign)}, "
        f"{scope_words(item.scope, locale)}){_(': ')}{_markdown_cell(item.rationale)} — "
        + _("%(approve)s or %(reject)s")
        % {"approve": f"`{item.approve}`", "reject": f"`{item.reject}`"}
        for item in summary.decisions
    ] or [_("None: no proposal is waiting for a decision.")]
    lines += ["", "## " + _("What changed since last week"), ""]
    lines += [
        f"- {_markdown_cell(item.campaign)}{_(': ')}{_markdown_cell(item.what)}"
        for item in summary.changes
    ] or [_("Nothing: no action was applied and the SOP did not change.")]
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
    recipients: list[str] | None = None,
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
    _ = translator(review.locale)
    names = _(", ").join(part.name for part in review.campaigns) or _("no active campaign")
    return build_message(
        subject=_("Weekly review %(period)s: %(names)s")
        % {"period": review.period.name, "names": names},
        sender=sender,
        recipients=review.recipients if recipients is None else recipients,
        text=text,
        html=rich,
        images={cid: by_name[name] for name, cid in ids.items()},
        pdf=None if pdf is None else (f"weekly-review-{review.period.name}.pdf", pdf),
    )
