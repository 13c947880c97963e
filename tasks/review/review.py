"""The weekly review: what managers read about every campaign active in a period.

The review computes nothing the check stage has not already judged: it reads each active
campaign's stored check result (`check_results`; the flow runs the check first where there
is none) and shapes it for people — KPIs against target, the funnel, channel CAC/ROI,
asset quality, experiments, the bottleneck, data quality — beside what only the database
holds: the trailing weeks' trend (the check's `weekly_rollups`), the period's adjustments
(`actions`) and the SOP changes made for it (`sop_versions`). So every number in the
review is the number the check and act stages worked from.

Only aggregates reach the review: no customer row is read here, so no phone number or
e-mail address can reach the report, the artifact or the e-mail.

Everything here is a plain function over a `Connection` or plain data; the flow
(`flows.weekly_review`) wraps them as tasks. Templates are `reports/weekly_review.*.j2`
on the shared base layout and macros, rendered by `tasks.common.reports` (autoescape on for
`.html.j2`: a campaign name is user text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, insert, select

from pdca.models import AuditEntry, Campaign
from pdca.models import CheckResult as CheckRow
from tasks.act.actions import period_actions
from tasks.act.sop import sop_versions
from tasks.check.check import read_rollups
from tasks.check.findings import stage_rates
from tasks.check.result import (
    Anomaly,
    Bottleneck,
    CheckResult,
    ExperimentResult,
    FunnelRow,
    Kpi,
    RejectReason,
    summarise,
)
from tasks.common import formatting, metrics
from tasks.common.i18n import N_, translator
from tasks.common.jsonable import jsonable, jsonable_records
from tasks.common.periods import Period
from tasks.common.reports import record_report, render
from tasks.review.charts import (
    CHANNEL_SIZE,
    FUNNEL_SIZE,
    TREND_SIZE,
    Chart,
    channel_chart,
    chart,
    funnel_chart,
    trend_chart,
)
from tasks.review.locales import measured_lines as measured_lines  # re-exported
from tasks.review.locales import recipients_by_locale, subtitle
from tasks.review.summary import Summary, overdue_exposure, scope_figures, summarise_review

REPORT_KIND = "weekly_review"
HTML_TEMPLATE = "weekly_review.html.j2"
TEXT_TEMPLATE = "weekly_review.txt.j2"

FUNNEL_STAGES = (
    ("touches", None),
    ("delivered", "reach_rate"),
    ("responded", "response_rate"),
    ("applications", "application_rate"),
    ("approved", "approval_rate"),
    ("disbursements", "disbursement_rate"),
)
"""The funnel's counts in order, each with the rate that led to it (`stage_rates`)."""

NO_CHECK = N_("no check result for %(period)s: the check could not run")

_ACTION_REF = re.compile(r", action (\d+)$")

CHANNEL_COLUMNS = (
    "channel",
    "touches",
    "delivered",
    "applications",
    "disbursements",
    "disbursed_amount",
    "cost",
    "cac",
    "roi",
)


@dataclass(frozen=True)
class ReviewedCampaign:
    """A campaign whose dates overlap the period, with the spec fields the review uses."""

    campaign_id: str
    name: str
    start: date
    end: date
    timezone: str
    recipients: tuple[str, ...]
    max_overdue_rate_30: float | None
    locale: str | None = None
    """The spec's `locale`: the language its recipients read the review in (None: the
    setting `PDCA_LOCALE`'s)."""


@dataclass
class CampaignReview:
    """One campaign's part of the review, every value ready for a template."""

    campaign: ReviewedCampaign
    checked: bool
    checked_at: datetime | None = None
    trusted: bool | None = None
    kpis: list[Kpi] = field(default_factory=list)
    funnel: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)
    trend: pd.DataFrame = field(default_factory=pd.DataFrame)
    anomalies: list[Anomaly] = field(default_factory=list)
    asset_quality: list[dict[str, Any]] = field(default_factory=list)
    experiments: list[ExperimentResult] = field(default_factory=list)
    bottleneck: Bottleneck | None = None
    reject_reasons: list[RejectReason] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    sop_changes: list[dict[str, Any]] = field(default_factory=list)
    data_quality: dict[str, Any] = field(default_factory=dict)
    exposure: dict[str, float] = field(default_factory=dict)
    """Scope label → outstanding of loans 30+ days past due (`summary.overdue_exposure`)."""
    figures: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Scope label → the period's funnel totals (`summary.scope_figures`)."""
    note: str | None = None
    """Why the campaign has no check result to show, when it has none."""
    note_args: dict[str, str] = field(default_factory=dict)

    def note_in(self, locale: str) -> str | None:
        """The note in `locale`."""
        if not self.note_args:
            return self.note
        return translator(locale)(NO_CHECK) % self.note_args

    @property
    def campaign_id(self) -> str:
        return self.campaign.campaign_id

    @property
    def name(self) -> str:
        return self.campaign.name

    @property
    def bottleneck_stage(self) -> str:
        """The bottleneck's stage, or 'none'."""
        return (self.bottleneck.stage if self.bottleneck else None) or "none"

    def status_counts(self) -> dict[str, int]:
        """How many of the campaign-scope KPIs are on track, at risk, off track."""
        counts = dict.fromkeys(("on_track", "at_risk", "off_track"), 0)
        for kpi in self.campaign_kpis():
            if kpi.status in counts:
                counts[kpi.status] += 1
        return counts

    def campaign_kpis(self) -> list[Kpi]:
        """The KPIs of the campaign as a whole (no channel or segment in their scope)."""
        return [kpi for kpi in self.kpis if kpi.is_campaign_wide]


@dataclass
class Review:
    """The whole review of a period."""

    period: Period
    campaigns: list[CampaignReview]
    trend_weeks: list[str]
    generated_at: datetime
    currency: str = ""
    locale: str = "en"
    """The language the review is written in (the setting `PDCA_LOCALE`, or a recipient
    list's: `in_locale`)."""

    def summary(self) -> Summary:
        """The first screen: KPI cards, ranked exceptions, decisions, changes."""
        exposures = {part.campaign_id: part.exposure for part in self.campaigns}
        figures = {part.campaign_id: part.figures for part in self.campaigns}
        return summarise_review(self.campaigns, exposures, self.currency, figures, self.locale)

    def in_locale(self, locale: str) -> Review:
        """The same review, written in `locale`."""
        return replace(self, locale=locale)

    def recipients_by_locale(self, default: str) -> dict[str, list[str]]:
        """locale → the addresses that read the review in it: each campaign's recipient
        list in the campaign's `locale` (else `default`); an address on lists of two
        locales reads it in `default` when one of them is, else in the first by name."""
        return recipients_by_locale((review.campaign for review in self.campaigns), default)

    @property
    def recipients(self) -> list[str]:
        return review_recipients(review.campaign for review in self.campaigns)

    def overview_kpis(self) -> list[Kpi]:
        """Every campaign's campaign-scope KPIs, the campaign named in the scope."""
        return [
            replace(kpi, scope={"campaign": review.name})
            for review in self.campaigns
            for kpi in review.campaign_kpis()
        ]


# --- which campaigns, which results ------------------------------------------------------


def active_campaigns(conn: Connection, period: Period) -> list[ReviewedCampaign]:
    """The campaigns whose dates overlap the period (start and end days inclusive), by id.

    The dates are the spec's local days and the period's days are local too, so the
    overlap needs no time zone.
    """
    last_day = date.fromordinal(period.end.toordinal() - 1)
    rows = conn.execute(
        select(
            Campaign.campaign_id,
            Campaign.name,
            Campaign.start_date,
            Campaign.end_date,
            Campaign.timezone,
            Campaign.spec,
        )
        .where(Campaign.start_date <= last_day, Campaign.end_date >= period.start)
        .order_by(Campaign.campaign_id)
    ).all()
    return [
        ReviewedCampaign(
            campaign_id=row.campaign_id,
            name=row.name,
            start=row.start_date,
            end=row.end_date,
            timezone=row.timezone,
            recipients=tuple((row.spec or {}).get("recipients") or ()),
            max_overdue_rate_30=((row.spec or {}).get("risk") or {}).get("max_overdue_rate_30"),
            locale=(row.spec or {}).get("locale"),
        )
        for row in rows
    ]


def stored_checks(
    conn: Connection, campaign_ids: Sequence[str], period: str
) -> dict[str, tuple[CheckResult, datetime]]:
    """campaign id → (stored check result, checked_at) of the period, where there is one."""
    if not campaign_ids:
        return {}
    rows = conn.execute(
        select(CheckRow.campaign_id, CheckRow.result, CheckRow.checked_at).where(
            CheckRow.campaign_id.in_(list(campaign_ids)), CheckRow.period == period
        )
    ).all()
    return {row.campaign_id: (CheckResult.from_json(row.result), row.checked_at) for row in rows}


def review_recipients(campaigns: Iterable[ReviewedCampaign]) -> list[str]:
    """The union of the campaigns' `recipients`, each address once (case-insensitively),
    sorted: one e-mail goes to everyone who follows any of the campaigns."""
    seen: dict[str, str] = {}
    for campaign in campaigns:
        for address in campaign.recipients:
            seen.setdefault(address.strip().lower(), address.strip())
    return sorted(seen.values(), key=str.lower)


# --- one campaign's review ------------------------------------------------------------------


def review_campaign(
    conn: Connection,
    campaign: ReviewedCampaign,
    period: Period,
    stored: tuple[CheckResult, datetime] | None,
    trend_weeks: Sequence[str],
    attribution_days: int = 14,
) -> CampaignReview:
    """The campaign's review from its stored check result and what the database adds.

    The trend leaves out the trailing weeks before the campaign started: zeros there are
    not a trend."""
    review = CampaignReview(campaign=campaign, checked=stored is not None)
    running = [name for name in trend_weeks if Period.parse(name).end > campaign.start]
    review.trend = weekly_trend(conn, campaign.campaign_id, running)
    review.actions = period_actions(conn, campaign.campaign_id, period.name)
    review.sop_changes = sop_changes(conn, campaign, period, review.actions)
    if stored is None:
        review.note_args = {"period": period.name}
        review.note = NO_CHECK % review.note_args
        return review
    check, review.checked_at = stored
    review.trusted = bool(check.trusted)
    review.kpis = list(check.kpis)
    review.funnel = funnel_stages(check.funnel)
    review.channels = channel_cac_roi(check.funnel)
    review.anomalies = list(check.anomalies)
    review.asset_quality = asset_quality(review.kpis, campaign.max_overdue_rate_30)
    review.experiments = list(check.experiments)
    review.bottleneck = check.bottleneck
    review.reject_reasons = check.overall_reject_reasons
    review.data_quality = data_quality_summary(check)
    review.figures = scope_figures(check.funnel)
    review.exposure = overdue_exposure(
        conn, campaign.campaign_id, campaign.timezone, period, attribution_days
    )
    return review


def trend_week_names(period: Period, trailing: int) -> list[str]:
    """The `trailing` ISO weeks before the period's first week, then the period's weeks."""
    first = period.weeks()[0]
    before = [first.shifted(-steps).name for steps in range(trailing, 0, -1)]
    return before + [week.name for week in period.weeks()]


def weekly_trend(conn: Connection, campaign_id: str, weeks: Sequence[str]) -> pd.DataFrame:
    """The campaign's weekly totals and rates over `weeks`, from the stored rollups.

    One row per week in `weeks`' order; a week with no rollup (no activity, or never
    checked) has zero counts and no rates.
    """
    rows = metrics.rollup(read_rollups(conn, campaign_id, weeks), ["week"])
    frame = pd.DataFrame({"week": list(weeks)}).merge(rows, on="week", how="left")
    for column in metrics.COUNTS:
        frame[column] = frame[column].fillna(0)
    return frame


def funnel_stages(funnel_rows: Sequence[FunnelRow]) -> list[dict[str, Any]]:
    """The period's funnel summed over channel, segment and variant: each stage's count and
    the rate from the stage before it (the contract's rates; delivered → applications is
    the application_rate, not applications / responded)."""
    totals = _totals(funnel_rows)
    rates = stage_rates(totals)
    return [
        {
            "label": count,
            "count": _template_number(totals[count]),
            "rate_name": rate,
            "rate": _template_number(rates[rate]) if rate else None,
        }
        for count, rate in FUNNEL_STAGES
    ]


def channel_cac_roi(funnel_rows: Sequence[FunnelRow]) -> list[dict[str, Any]]:
    """Per channel: volumes, cost, CAC (cost per disbursement) and ROI, from the check's
    funnel rows summed to the channel (the contract's definitions, via `metrics.rollup`)."""
    if not funnel_rows:
        return []
    frame = metrics.rollup(_funnel_frame(funnel_rows), ["channel"])
    frame = frame[(frame["touches"] > 0) | (frame["applications"] > 0)]
    return jsonable_records(frame[list(CHANNEL_COLUMNS)])


def asset_quality(kpis: Sequence[Kpi], limit: float | None) -> list[dict[str, Any]]:
    """overdue_rate_30 at each scope the check measured it, with its target and the spec's
    risk limit (`max_overdue_rate_30`): `above_limit` says whether the scope breaches it."""
    return [
        {
            "scope": kpi.scope,
            "actual": kpi.actual,
            "target": kpi.target,
            "limit": limit,
            "above_limit": None if kpi.actual is None or limit is None else kpi.actual > limit,
            "status": kpi.status,
            "flagged": kpi.off_track,
        }
        for kpi in kpis
        if kpi.metric == "overdue_rate_30"
    ]


def data_quality_summary(check: CheckResult) -> dict[str, Any]:
    """Trust, and what broke it: the failed suites with their failed expectations and the
    feeds quarantined above the limit (never the failing values themselves: they can be
    customer data)."""
    summary = summarise(check)
    failed = [
        {"name": suite.name, "failed": ", ".join(suite.failed)} for suite in summary.failed_suites
    ]
    quarantine = [
        {
            "feed": entry.feed,
            "rows_in": entry.rows_in,
            "rows_quarantined": entry.rows_quarantined,
            "share": entry.share,
            "max_share": entry.max_share,
        }
        for entry in summary.failed_quarantine
    ]
    return {
        "trusted": bool(summary.trusted),
        "suites": len(check.data_quality.suites),
        "suites_failed": failed,
        "quarantine_failed": quarantine,
    }


def sop_changes(
    conn: Connection,
    campaign: ReviewedCampaign,
    period: Period,
    actions: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The campaign's SOP versions made for the period: those whose own changelog entries
    apply one of the period's `actions` (the act stage writes a period's lessons after the
    period has ended, naming the action in the entry: '…, action 12'), and those created
    during the period. Each: version, created_at, changes (the version's own entries)."""
    starts_at, ends_at = period.utc_bounds(campaign.timezone)
    action_ids = {action.get("action_id") for action in actions}
    changes = []
    for record in sop_versions(conn, campaign.campaign_id):
        own = record.changes()
        for_period = any(_action_id(entry) in action_ids for entry in own) or any(
            isinstance(entry, Mapping) and entry.get("period") == period.name for entry in own
        )
        created = record.created_at
        if for_period or (created is not None and starts_at <= created < ends_at):
            changes.append(
                {
                    "version": record.version,
                    "created_at": created,
                    "changes": [changelog_text(entry) for entry in own],
                }
            )
    return changes


def _action_id(entry: Any) -> int | None:
    """The action a changelog entry applied ('…, action 12' at the end of its `action`)."""
    if not isinstance(entry, Mapping):
        return None
    match = _ACTION_REF.search(str(entry.get("action") or ""))
    return int(match.group(1)) if match else None


def changelog_text(entry: Any) -> str:
    """One changelog entry as a line: 'v3 2026-03-23: <action> — <reason>' for the act
    stage's entries; any other entry as its text or its fields."""
    if not isinstance(entry, Mapping):
        return str(entry)
    if "action" in entry:
        head = f"v{entry.get('version')} {entry.get('date') or ''}".strip()
        reason = f" — {entry['reason']}" if entry.get("reason") else ""
        return f"{head}: {entry['action']}{reason}"
    return "; ".join(f"{key}: {value}" for key, value in entry.items())


# --- charts ---------------------------------------------------------------------------------


def draw_campaign_charts(review: CampaignReview, period: Period, locale: str = "en") -> list[Chart]:
    """The funnel, the trend with its anomalies, and the channels' CAC/ROI, for a campaign
    with a check result (one without has nothing to draw); titles and labels in `locale`."""
    if not review.checked:
        return []
    _ = translator(locale)
    stem, name = review.campaign_id, review.name
    period_weeks = [week.name for week in period.weeks()]
    words = {"name": name, "period": period.name}
    return [
        chart(
            f"funnel-{stem}",
            _("Funnel, %(name)s, %(period)s") % words,
            funnel_chart(review.funnel, _("Funnel %(period)s: %(name)s") % words, locale),
            FUNNEL_SIZE,
        ),
        chart(
            f"trend-{stem}",
            _("Weekly trend with anomalies, %(name)s") % words,
            trend_chart(
                review.trend,
                review.anomalies,
                _("Weekly trend (shaded: %(period)s; ringed: anomalies): %(name)s") % words,
                period_weeks=period_weeks,
                locale=locale,
            ),
            TREND_SIZE,
        ),
        chart(
            f"channels-{stem}",
            _("Channel CAC and ROI, %(name)s, %(period)s") % words,
            channel_chart(review.channels, _("Channels %(period)s: %(name)s") % words, locale),
            CHANNEL_SIZE,
        ),
    ]


# --- rendering ------------------------------------------------------------------------------


def render_review(
    review: Review,
    charts: Sequence[Chart],
    image_src: Mapping[str, str],
    *,
    measured: Sequence[str],
    template: str = HTML_TEMPLATE,
) -> str:
    """The review rendered with `template`; images are referenced by `image_src` (chart
    name → `data:` URI for the file, `cid:` for the e-mail)."""
    by_campaign: dict[str, list[Chart]] = {}
    for item in charts:
        by_campaign.setdefault(item.name.split("-", 1)[1], []).append(item)
    _ = translator(review.locale)
    generated_at = review.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    if review.locale != "en":
        generated_at = formatting.moment(review.generated_at, review.locale)
    return render(
        template,
        review.locale,
        title=_("Weekly review %(period)s") % {"period": review.period.name},
        subtitle=subtitle(review),
        generated_at=generated_at,
        measured=list(measured),
        review=review,
        period=review.period,
        campaigns=review.campaigns,
        charts=by_campaign,
        image_src=image_src,
    )


# --- writing and recording ------------------------------------------------------------------


def report_path(folder: Path, period: Period, locale: str | None = None) -> Path:
    """Where the period's review is written: one file per period, replaced by a rerun; a
    copy in another `locale` (for a recipient list that reads it) beside it."""
    suffix = f".{locale}" if locale else ""
    return folder / f"weekly-review-{period.name}{suffix}.html"


def write_report(path: Path, document: str) -> Path:
    """Write the HTML file (via a temporary name, so a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(document, encoding="utf-8")
    partial.replace(path)
    return path.resolve()


def record_review(conn: Connection, period: str, path: Path, actor: str) -> None:
    """The report's row in `reports` (a rerun replaces the period's earlier one) and an
    audit entry, in one transaction."""
    record_report(conn, REPORT_KIND, None, period, path)
    conn.execute(
        insert(AuditEntry).values(
            actor=actor,
            action="review.write",
            subject=f"{REPORT_KIND}:{period}",
            detail={"path": str(path)},
        )
    )
    conn.commit()


def _totals(funnel_rows: Sequence[FunnelRow]) -> pd.Series:
    if not funnel_rows:
        return pd.Series(dict.fromkeys(metrics.COUNTS, 0))
    return metrics.rollup(_funnel_frame(funnel_rows), []).iloc[0]


def _funnel_frame(funnel_rows: Sequence[FunnelRow]) -> pd.DataFrame:
    """The check's funnel rows as the frame `metrics.rollup` sums; a row stored before
    `decided` was counted takes its applications as decided (its rates stay as they were,
    as migration 0005 does for the stored weekly rollups)."""
    frame = pd.DataFrame([row.to_json() for row in funnel_rows])
    if "decided" in frame.columns:
        frame["decided"] = frame["decided"].fillna(frame["applications"])
    return frame


def _template_number(value: Any) -> int | float | None:
    """A number as the templates format it: a whole number as an int (`1,100`, never
    `1,100.0` or `70.0`), None where it cannot be known (the JSON cleaner's NaN rule)."""
    number = jsonable(value)
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number
