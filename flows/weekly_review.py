"""Weekly review: one report for managers on every campaign active in the period.

Reads like the meeting it prepares: find the campaigns whose dates overlap the period;
make sure each has its check result for the period (a campaign never checked is checked
now, as a subflow, so the review never shows numbers the check stage has not judged);
gather the review from those results, the trailing weeks' rollups, the period's
adjustments and SOP changes; draw the charts; write the HTML report (charts inline as
`data:` URIs, so the file stands alone), record it and publish a summary artifact; and,
when asked, e-mail it — text and HTML with the charts as inline parts — to everyone the
campaigns' specs list as recipients, over SMTP or, with no SMTP host, into the outbox.
Every write and every send is audited. The report is written in `PDCA_LOCALE`'s language;
each recipient list reads its campaign's `locale` (one message per language).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State
from prefect.tasks import exponential_backoff
from sqlalchemy import Connection, insert

from flows.check import check_flow
from flows.fanout import fan_out, same_database
from pdca.db import make_engine
from pdca.models import AuditEntry
from pdca.settings import Settings, get_settings
from tasks.common.periods import Period
from tasks.review.artifacts import publish_review, review_message
from tasks.review.charts import Chart
from tasks.review.mail import (
    Delivery,
    SmtpConfig,
    retry_on_transient,
    send_message,
    write_eml_file,
)
from tasks.review.pdf import print_pdf
from tasks.review.review import (
    REPORT_KIND,
    Review,
    ReviewedCampaign,
    active_campaigns,
    draw_campaign_charts,
    measured_lines,
    record_review,
    render_review,
    report_path,
    review_campaign,
    stored_checks,
    trend_week_names,
    write_report,
)


@task(cache_policy=NO_CACHE)
def find_active_campaigns(conn: Connection, period: Period) -> list[ReviewedCampaign]:
    """The campaigns whose dates overlap the period."""
    return active_campaigns(conn, period)


@task(cache_policy=NO_CACHE)
def find_unchecked(
    conn: Connection, campaigns: list[ReviewedCampaign], period: Period
) -> list[str]:
    """The active campaigns with no stored check result for the period."""
    ids = [campaign.campaign_id for campaign in campaigns]
    stored = stored_checks(conn, ids, period.name)
    return [campaign_id for campaign_id in ids if campaign_id not in stored]


@task(name="check-campaign", task_run_name="check {campaign_id} {period}", cache_policy=NO_CACHE)
def check_campaign(campaign_id: str, period: str, database_url: str) -> str | None:
    """Run one campaign's check flow (a subflow), wherever the task runs (this process, or a
    Dask worker: flows/fanout.py); a failed check is a problem to report, not the end of the
    review of the others."""
    same_database(database_url)
    try:
        check_flow(campaign_id=campaign_id, period=period)
    except Exception as error:
        return f"check {campaign_id} {period} failed: {error}"
    return None


def check_unchecked(campaign_ids: list[str], period: str) -> list[str]:
    """Check the campaigns not yet checked, one task each: one after another, or on Dask
    with PDCA_DASK_ADDRESS; the problems, in the campaigns' order."""
    url = get_settings().database_url
    calls = [{"campaign_id": c, "period": period, "database_url": url} for c in campaign_ids]
    results = fan_out(check_campaign, calls)
    return [
        result if isinstance(result, str) else f"check {campaign_id} {period} failed: {result}"
        for campaign_id, result in zip(campaign_ids, results, strict=True)
        if result is not None
    ]


@task(cache_policy=NO_CACHE)
def gather_review(
    conn: Connection, period: Period, campaigns: list[ReviewedCampaign], settings: Settings
) -> Review:
    """Each campaign's stored check result, trend, adjustments, SOP changes and overdue
    exposure (the trend: the anomaly window's trailing weeks, then the period's)."""
    stored = stored_checks(conn, [campaign.campaign_id for campaign in campaigns], period.name)
    weeks = trend_week_names(period, settings.anomaly_window_weeks)
    days = settings.attribution_window_days
    reviews = [
        review_campaign(conn, campaign, period, stored.get(campaign.campaign_id), weeks, days)
        for campaign in campaigns
    ]
    now = datetime.now(UTC).replace(microsecond=0)
    return Review(period, reviews, weeks, now, currency=settings.currency, locale=settings.locale)


@task(cache_policy=NO_CACHE)
def draw_charts(review: Review) -> list[Chart]:
    """Funnel, trend with anomalies, and channel CAC/ROI of each campaign, as PNG, in the
    review's locale."""
    return [
        item
        for part in review.campaigns
        for item in draw_campaign_charts(part, review.period, review.locale)
    ]


@task(cache_policy=NO_CACHE)
def write_review_file(
    review: Review,
    charts: list[Chart],
    folder: Path,
    measured: list[str],
    locale_suffix: bool = False,
) -> Path:
    """The HTML report, its charts inline as data: URIs (the file stands alone); with
    `locale_suffix`, the copy in a recipient list's locale beside the report
    (`weekly-review-2026-W13.zh-CN.html`)."""
    sources = {item.name: item.data_uri() for item in charts}
    document = render_review(review, charts, sources, measured=measured)
    locale = review.locale if locale_suffix else None
    return write_report(report_path(folder, review.period, locale), document)


@task(cache_policy=NO_CACHE)
def save_review_record(conn: Connection, period: str, path: Path, actor: str) -> None:
    """The report's row in `reports`, replacing the period's earlier one, and its audit."""
    record_review(conn, period, path, actor)


@task(cache_policy=NO_CACHE)
def print_report_pdf(path: Path) -> bytes | None:
    """The report printed to PDF by headless Chromium, for managers who forward or print
    it; None (the e-mail goes without it, the reason logged) where it cannot be printed."""
    try:
        return print_pdf(path)
    except Exception as error:  # a missing attachment must not stop the review going out
        get_run_logger().warning(f"weekly review PDF not printed: {error}")
        return None


@task(cache_policy=NO_CACHE)
def compose_email(
    review: Review,
    charts: list[Chart],
    sender: str,
    measured: list[str],
    pdf: bytes | None = None,
    recipients: list[str] | None = None,
) -> EmailMessage:
    """Text and HTML alternatives (CSS inlined, charts as inline cid parts), the PDF
    attached, in the review's locale."""
    return review_message(review, charts, sender, measured, pdf, recipients)


@task(
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_on_transient,
)
def send_email(message: EmailMessage, recipients: list[str], config: SmtpConfig) -> Delivery:
    """Hand the message to the SMTP server; retried with backoff while the fault may pass."""
    return send_message(message, recipients, config)


@task(cache_policy=NO_CACHE)
def write_email_to_outbox(message: EmailMessage, folder: Path, period: str) -> Delivery:
    """No SMTP host: the message as an .eml file in the outbox."""
    return write_eml_file(message, folder, f"weekly-review-{period}")


@task(cache_policy=NO_CACHE)
def audit_email(conn: Connection, period: str, actor: str, detail: dict[str, Any]) -> None:
    """Who sent the review, when, to whom and how (or why it could not be sent)."""
    conn.execute(
        insert(AuditEntry).values(
            actor=actor,
            action="review.email" if "error" not in detail else "review.email_failed",
            subject=f"{REPORT_KIND}:{period}",
            detail=detail,
        )
    )
    conn.commit()


@flow(name="weekly-review", flow_run_name="weekly review {period}")
def weekly_review_flow(
    period: str, send: bool = False, actor: str = "review"
) -> dict[str, Any] | State:
    """Review `period` across the active campaigns; with `send`, e-mail it. The run ends
    Failed, with the reasons, when a campaign could not be checked or the e-mail did not
    go out (call with `return_state=True` and read it with `review_outcome`)."""
    settings = get_settings()
    parsed = Period.parse(period)
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        campaigns = find_active_campaigns(conn, parsed)
        unchecked = find_unchecked(conn, campaigns, parsed)
    problems = check_unchecked(unchecked, period)
    measured = measured_lines(parsed, settings, settings.locale)
    with engine.connect() as conn:
        review = gather_review(conn, parsed, campaigns, settings)
        charts = draw_charts(review)
        path = write_review_file(review, charts, settings.output_dir / "reports", measured)
        save_review_record(conn, period, path, actor)
        delivery = None
        if send:
            delivery = deliver(conn, review, charts, measured, settings, actor, problems, path)
    engine.dispose()
    publish_review(review, path, problems, settings.output_dir, settings.reports_url)
    for problem in problems:
        get_run_logger().warning(problem)
    result = {
        "period": period,
        "campaigns": [part.campaign_id for part in review.campaigns],
        "path": str(path),
        "recipients": review.recipients,
        "delivery": None if delivery is None else delivery.audit_detail(),
        "problems": problems,
    }
    if problems:  # the report exists, but its work failed: the UI and automations must see it
        return Failed(message="; ".join(problems), data=result)
    return result


def review_outcome(state: State) -> dict[str, Any]:
    """A weekly review run's result, whether it completed or failed with problems (a
    Failed state still carries the report's path and the problems); a crash raises."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        return result
    raise result if isinstance(result, BaseException) else RuntimeError(state.message)


def deliver(
    conn: Connection,
    review: Review,
    charts: list[Chart],
    measured: list[str],
    settings: Settings,
    actor: str,
    problems: list[str],
    report: Path | None = None,
) -> Delivery | None:
    """E-mail the review to the campaigns' recipients (SMTP, else the outbox) and audit
    it; no recipient or a failed send is added to `problems`. Each recipient list reads
    it in its campaign's `locale`: one message per locale, the review written, drawn and
    printed in it; the deliveries are returned as one."""
    if not review.recipients:
        problems.append(
            f"weekly review {review.period.name}: nothing sent, no recipients: none of the "
            f"{len(review.campaigns)} active campaigns lists `recipients` in its spec"
        )
        return None
    deliveries = []
    for locale, recipients in review.recipients_by_locale(review.locale).items():
        if locale == review.locale:
            localized, drawn, said, printed = review, charts, measured, report
        else:
            localized = review.in_locale(locale)
            drawn = draw_charts(localized)
            said = measured_lines(review.period, settings, locale)
            printed = None
            if report is not None:
                printed = write_review_file(localized, drawn, report.parent, said, True)
        sent = deliver_one(
            conn, localized, drawn, said, settings, actor, problems, printed, recipients
        )
        if sent is not None:
            deliveries.append(sent)
    return merged_delivery(deliveries)


def deliver_one(
    conn: Connection,
    review: Review,
    charts: list[Chart],
    measured: list[str],
    settings: Settings,
    actor: str,
    problems: list[str],
    report: Path | None,
    recipients: list[str],
) -> Delivery | None:
    """One message, in the review's locale to `recipients`, sent and audited; a failure
    or a refused recipient is added to `problems`."""
    pdf = None if report is None else print_report_pdf(report)
    message = compose_email(review, charts, settings.smtp_sender, measured, pdf, recipients)
    config = SmtpConfig.from_settings(settings)
    try:
        if config is None:
            stem = review.period.name
            if review.locale != settings.locale:
                stem = f"{stem}.{review.locale}"
            delivery = write_email_to_outbox(message, settings.output_dir / "outbox", stem)
        else:
            delivery = send_email(message, recipients, config)
    except Exception as error:
        where = "the outbox" if config is None else f"{config.host}:{config.port}"
        problems.append(f"weekly review {review.period.name}: sending to {where} failed: {error}")
        audit_email(conn, review.period.name, actor, {"error": type(error).__name__, "to": where})
        return None
    if delivery.refused:
        problems.append(
            f"weekly review {review.period.name}: the server refused "
            f"{', '.join(sorted(delivery.refused))}"
        )
    audit_email(conn, review.period.name, actor, delivery.audit_detail())
    return delivery


def merged_delivery(deliveries: list[Delivery]) -> Delivery | None:
    """The messages of the locales as one delivery (the first one's transport, path and
    server; every recipient, refusal and message id)."""
    if len(deliveries) <= 1:
        return deliveries[0] if deliveries else None
    first = deliveries[0]
    return replace(
        first,
        recipients=[address for item in deliveries for address in item.recipients],
        message_id=" ".join(item.message_id for item in deliveries),
        refused={key: value for item in deliveries for key, value in item.refused.items()},
    )


if __name__ == "__main__":
    import sys

    print(weekly_review_flow(sys.argv[1], send="--send" in sys.argv[2:]))
