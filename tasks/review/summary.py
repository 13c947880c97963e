"""The review's first screen: how each campaign is doing and what the reader has to do.

A manager reads the review for one minute. What that minute needs is computed here, from
the `CampaignReview`s the rest of the review is built on (so the summary shows no number
the detail does not):

- the KPI cards: the business KPIs and the asset-quality KPIs of each campaign as a whole,
  side by side, each with target, actual, status and its last eight weeks as a sparkline
  (the weekly rollups the check wrote);
- the exceptions: every KPI off track or at risk, at any scope, ranked by what it costs or
  risks in money (`exception_cost`), each with one line of diagnosis;
- the decisions waiting: proposed actions with the command that decides them;
- what changed: the period's decided and applied actions (a guardrail's pause among them)
  and the SOP versions made for it.

Every figure is formatted by `tasks.common.formatting`, so the HTML, the text part and the
Prefect artifact write it the same way; every sentence is said in the review's locale
(`tasks.common.i18n`: English, or Chinese by the catalog).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from tasks.check.result import Kpi
from tasks.common import formatting, metrics
from tasks.common.i18n import N_, translator
from tasks.common.metrics import ALL_LOANS_SINCE
from tasks.common.periods import Period
from tasks.common.scopes import format_scope
from tasks.common.sqlfiles import query

BUSINESS = (
    "disbursements",
    "disbursed_amount",
    "applications",
    "application_rate",
    "approval_rate",
    "response_rate",
    "reach_rate",
    "cac",
    "roi",
    "cost",
    "new_customers",
    "ltv",
    "ltv_cac",
    "nps",
)
"""Business KPIs, in the order a card shows them."""
ASSET_QUALITY = ("overdue_rate_30", "npl_rate", "complaint_rate", "loan_balance", "churn_rate")
"""Asset-quality KPIs, in the order a card shows them."""
FAMILIES = (
    (
        N_("Business"),
        ("disbursements", "disbursed_amount", "new_customers", "loan_balance", "roi", "cost"),
    ),
    (N_("Risk"), ("overdue_rate_30", "npl_rate", "complaint_rate")),
    (
        N_("Channel"),
        (
            "touches",
            "delivered",
            "applications",
            "application_rate",
            "approval_rate",
            "response_rate",
            "reach_rate",
            "cac",
            "ltv",
            "ltv_cac",
        ),
    ),
    (N_("Customer"), ("nps", "churn_rate")),
)
"""The seeds' four KPI families, in the order the first screen lays them out two by two
(business beside risk, the asset quality of equal weight; channel beside customer), each
KPI in its family's order."""
RISK_METRICS = frozenset({"overdue_rate_30", "npl_rate"})
"""KPIs whose exception is a risk: ranked by the overdue exposure of their scope."""
LOWER_IS_BETTER = metrics.LOWER_IS_BETTER | {"cost"}
"""The check's lower-is-better KPIs, and the cost (a gap above its target is money lost)."""
SPARK_WEEKS = 8
SPARK_BARS = "▁▂▃▄▅▆▇█"
EXCEPTION_STATUSES = ("off_track", "at_risk")
JUDGED = frozenset({"on_track", "at_risk", "off_track"})
ACTIONS_COMMAND = "pdca actions {verb} {action_id} --by NAME"


@dataclass(frozen=True)
class KpiCard:
    """One campaign-wide KPI as the first screen shows it."""

    metric: str
    target: str
    actual: str
    status: str
    spark: str
    """The last eight weeks as bars (`▁▃▅█`), empty when the rollups do not carry it."""


@dataclass(frozen=True)
class CampaignCards:
    campaign_id: str
    name: str
    business: list[KpiCard]
    asset_quality: list[KpiCard]
    note: str | None = None
    locale: str = "en"

    @property
    def families(self) -> list[tuple[str, list[KpiCard]]]:
        """The cards by the seeds' four KPI families, side by side on the first screen:
        business, channel and customer from the business card, risk (asset quality) as
        its own, with the same weight. A KPI of no family joins the business one. The
        families' names in the cards' locale."""
        _ = translator(self.locale)
        cards = [*self.business, *self.asset_quality]
        placed = {metric for _family, members in FAMILIES for metric in members}
        grouped = []
        for label, members in FAMILIES:
            chosen = [card for card in cards if card.metric in members]
            if label == "Business":
                chosen += [card for card in self.business if card.metric not in placed]
            ordered = sorted(chosen, key=lambda c, m=members: _place(m, c.metric))
            grouped.append((_(label), ordered))
        return grouped

    @property
    def judged(self) -> bool:
        """Whether any KPI has a status against a target: else the cards say nothing and
        the campaign takes one line."""
        return any(card.status in JUDGED for card in [*self.business, *self.asset_quality])


@dataclass(frozen=True)
class Exception_:
    """A KPI off track or at risk, with what it costs (money) or risks (exposure)."""

    campaign_id: str
    campaign: str
    metric: str
    scope: str
    status: str
    kind: str
    """`money` (a shortfall or an overspend) or `risk` (overdue exposure)."""
    amount: float | None
    """In the currency; None when it cannot be put in money (ranked last)."""
    diagnosis: str
    locale: str = "en"

    def amount_text(self, currency: str) -> str:
        return "—" if self.amount is None else formatting.money(self.amount, currency, self.locale)


@dataclass(frozen=True)
class Decision:
    action_id: int
    campaign: str
    type: str
    scope: str
    rationale: str
    expected_impact: str
    approve: str
    reject: str


@dataclass(frozen=True)
class Change:
    campaign: str
    what: str


@dataclass(frozen=True)
class Summary:
    cards: list[CampaignCards]
    exceptions: list[Exception_]
    decisions: list[Decision]
    changes: list[Change]
    currency: str
    locale: str = "en"


# --- KPI cards ------------------------------------------------------------------------------


def sparkline(values: Sequence[float | None]) -> str:
    """Bars for a series, lowest `▁` to highest `█`; a missing week is a space. Text, so it
    reads the same in the HTML, the e-mail's text part and the Prefect artifact."""
    known = [value for value in values if _known(value)]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low
    bars = []
    for value in values:
        if not _known(value):
            bars.append(" ")
        else:
            step = 0 if span == 0 else round((value - low) / span * (len(SPARK_BARS) - 1))
            bars.append(SPARK_BARS[step])
    return "".join(bars)


def kpi_card(kpi: Kpi, trend: pd.DataFrame, currency: str, locale: str = "en") -> KpiCard:
    """A campaign-wide KPI with its sparkline from the weekly trend, when it has one."""
    series: list[float | None] = []
    if kpi.metric in trend.columns:
        series = [_float(value) for value in trend[kpi.metric].tail(SPARK_WEEKS)]
    return KpiCard(
        metric=kpi.metric,
        target=formatting.metric(kpi.metric, kpi.target, currency, locale)
        if kpi.target is not None
        else "—",
        actual=formatting.metric(kpi.metric, kpi.actual, currency, locale),
        status=kpi.status,
        spark=sparkline(series),
    )


def campaign_cards(review: Any, currency: str, locale: str = "en") -> CampaignCards:
    """A campaign's business and asset-quality KPIs as a whole, in the cards' order (a KPI
    of neither list joins the business card: no KPI the plan set is left out)."""
    wide = {kpi.metric: kpi for kpi in review.campaign_kpis()}
    known = set(BUSINESS) | set(ASSET_QUALITY)
    order = [*BUSINESS, *(name for name in wide if name not in known)]
    business = [
        kpi_card(wide[name], review.trend, currency, locale) for name in order if name in wide
    ]
    quality = [
        kpi_card(wide[name], review.trend, currency, locale)
        for name in ASSET_QUALITY
        if name in wide
    ]
    note = review.note_in(locale) if hasattr(review, "note_in") else review.note
    return CampaignCards(review.campaign_id, review.name, business, quality, note, locale)


# --- exceptions -----------------------------------------------------------------------------


def overdue_exposure(
    conn: Connection, campaign_id: str, timezone: str, period: Period, attribution_days: int = 14
) -> dict[str, float]:
    """Scope label → the outstanding of the campaign's loans 30+ days past due at the
    period's end (`sql/review_overdue_exposure.sql`): the whole campaign, each channel and
    each segment, the scopes the check judges overdue_rate_30 at. Aggregates only."""
    _, ends_at = period.utc_bounds(timezone)
    result = conn.execute(
        query("review_overdue_exposure", conn.dialect.name),
        {
            "campaign_id": campaign_id,
            "starts_at": ALL_LOANS_SINCE,
            "ends_at": ends_at,
            "attribution_days": attribution_days,
            "as_of_end_date": period.end,
        },
    )
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    if frame.empty:
        return {}
    frame["overdue_outstanding"] = pd.to_numeric(frame["overdue_outstanding"]).fillna(0.0)
    exposure = {"campaign": float(frame["overdue_outstanding"].sum())}
    for key in ("channel", "segment"):
        for value, total in frame.groupby(key)["overdue_outstanding"].sum().items():
            exposure[scope_key({key: value})] = float(total)
    return exposure


def exception_cost(
    kpi: Kpi, same_scope: Mapping[str, float | None], exposure: float | None
) -> tuple[str, float | None]:
    """What an off-track KPI costs or risks, in money: (kind, amount).

    money: a money KPI's shortfall (or overspend, for cost); a count's shortfall times
    what one of it brought in (disbursed amount per disbursement or per application); a
    rate's relative shortfall times the scope's disbursed amount (what the funnel lost at
    that rate); CAC's excess times the disbursements; ROI's shortfall times the cost (the
    net income missed). risk: the scope's overdue exposure, the outstanding of its loans at
    30+ days past due. None where the scope's figures cannot put it in money.
    """
    if kpi.metric in RISK_METRICS:
        return "risk", exposure
    target, actual = kpi.target, kpi.actual
    if not (_known(target) and _known(actual)):
        return "money", None
    gap = (actual - target) if kpi.metric in LOWER_IS_BETTER else (target - actual)
    gap = max(gap, 0.0)
    disbursed = same_scope.get("disbursed_amount")
    amount: float | None
    if kpi.metric in formatting.MONEY and kpi.metric != "cac":
        amount = gap
    elif kpi.metric == "cac":
        amount = _times(gap, same_scope.get("disbursements"))
    elif kpi.metric == "roi":
        amount = _times(gap, same_scope.get("cost"))
    elif kpi.metric in ("disbursements", "approved", "new_customers"):
        amount = _times(gap, _per(disbursed, same_scope.get("disbursements")))
    elif kpi.metric == "applications":
        amount = _times(gap, _per(disbursed, same_scope.get("applications")))
    elif kpi.metric == "complaint_rate":
        amount = None
    else:
        amount = _times(gap / target if target else None, disbursed)
    return "money", amount


def diagnosis(kpi: Kpi, kind: str, amount: float | None, currency: str, locale: str = "en") -> str:
    """One line: the KPI against its target and what the gap means in money."""
    from tasks.common.terms import term

    _ = translator(locale)
    fmt = formatting.Formatter(locale)
    head = _("%(metric)s %(actual)s against target %(target)s") % {
        "metric": term(kpi.metric, locale),
        "actual": fmt.metric(kpi.metric, kpi.actual, currency),
        "target": fmt.metric(kpi.metric, kpi.target, currency),
    }
    if kpi.variance_pct is not None:
        head += f" ({fmt.signed_percent(kpi.variance_pct)})"
    if amount is None and kind == "risk":
        return head + _(": the outstanding of the loans at risk is not known")
    if amount is None:
        return head + _(": not measurable in money")
    money = {"money": fmt.money(amount, currency)}
    if kind == "risk":
        return head + _(": %(money)s outstanding in loans 30+ days past due") % money
    if kpi.metric in ("cost", "cac"):
        return head + _(": %(money)s spent above plan") % money
    if kpi.metric == "roi":
        return head + _(": %(money)s net income short of plan") % money
    return head + _(": about %(money)s disbursed short of plan") % money


def scope_figures(funnel_rows: Sequence[Any]) -> dict[str, dict[str, float | None]]:
    """Scope label → the period's funnel totals and rates there (the whole campaign, each
    channel, each segment), from the check's funnel rows: what an exception's cost is
    worked out from, whether or not the plan set a KPI on them."""
    if not funnel_rows:
        return {}
    frame = pd.DataFrame([row.to_json() for row in funnel_rows])
    figures: dict[str, dict[str, float | None]] = {}
    for key in (None, "channel", "segment"):
        rolled = metrics.rollup(frame, [key] if key else [])
        for record in rolled.to_dict("records"):
            label = scope_key({key: record[key]} if key else {})
            figures[label] = {name: _float(value) for name, value in record.items()}
    return figures


def campaign_exceptions(
    review: Any,
    exposure: Mapping[str, float],
    currency: str,
    figures: Mapping[str, Mapping[str, float | None]] | None = None,
    locale: str = "en",
) -> list[Exception_]:
    """Every KPI of the campaign off track or at risk, at any scope, with its cost (worked
    out from the scope's funnel `figures`, the KPIs' actuals where the funnel has none)."""
    by_scope: dict[str, dict[str, float | None]] = {
        label: dict(values) for label, values in (figures or {}).items()
    }
    for kpi in review.kpis:
        by_scope.setdefault(scope_key(kpi.scope), {}).setdefault(kpi.metric, kpi.actual)
    found = []
    for kpi in review.kpis:
        if kpi.status not in EXCEPTION_STATUSES:
            continue
        key = scope_key(kpi.scope)
        kind, amount = exception_cost(kpi, by_scope.get(key, {}), exposure.get(key))
        found.append(
            Exception_(
                campaign_id=review.campaign_id,
                campaign=review.name,
                metric=kpi.metric,
                scope=key,
                status=kpi.status,
                kind=kind,
                amount=amount,
                diagnosis=diagnosis(kpi, kind, amount, currency, locale),
                locale=locale,
            )
        )
    return found


def ranked(exceptions: Sequence[Exception_]) -> list[Exception_]:
    """Largest cost or risk first; those not measurable in money last, off track before at
    risk; then by campaign, metric and scope so the order is stable."""
    return sorted(
        exceptions,
        key=lambda item: (
            item.amount is None,
            -(item.amount or 0.0),
            item.status != "off_track",
            item.campaign_id,
            item.metric,
            item.scope,
        ),
    )


def scope_key(scope: Mapping[str, Any] | None) -> str:
    """A scope as one label: 'campaign' for the whole campaign, else 'channel=sms' …"""
    return format_scope({k: v for k, v in (scope or {}).items() if v}) or "campaign"


# --- decisions and changes ------------------------------------------------------------------


def pending_decisions(review: Any) -> list[Decision]:
    """The campaign's proposed actions, with the commands that decide them."""
    return [
        Decision(
            action_id=action["action_id"],
            campaign=review.name,
            type=action["type"],
            scope=scope_key(action.get("scope")),
            rationale=str(action.get("rationale") or ""),
            expected_impact=str(action.get("expected_impact") or ""),
            approve=ACTIONS_COMMAND.format(verb="approve", action_id=action["action_id"]),
            reject=ACTIONS_COMMAND.format(verb="reject", action_id=action["action_id"]),
        )
        for action in review.actions
        if action.get("status") == "proposed"
    ]


def changes_since_last_week(review: Any, locale: str = "en") -> list[Change]:
    """Every decided action of the period, whatever its type (an applied `pause` from a
    guardrail shows like any other), then the SOP versions made for the period."""
    from tasks.common.terms import scope_words, term

    _ = translator(locale)
    changes = []
    for action in review.actions:
        status = action.get("status")
        if status in (None, "proposed"):
            continue
        who = _(" by %(who)s") % {"who": action["decided_by"]} if action.get("decided_by") else ""
        what = _("action %(id)s %(type)s (%(scope)s): %(status)s") % {
            "id": action.get("action_id"),
            "type": term(action.get("type"), locale),
            "scope": scope_words(scope_key(action.get("scope")), locale),
            "status": term(status, locale),
        }
        changes.append(Change(review.name, what + who))
    for sop in review.sop_changes:
        changes.append(Change(review.name, _("SOP version %(version)s") % sop))
    return changes


def summarise_review(
    campaigns: Sequence[Any],
    exposures: Mapping[str, Mapping[str, float]],
    currency: str,
    figures: Mapping[str, Mapping[str, Mapping[str, float | None]]] | None = None,
    locale: str = "en",
) -> Summary:
    """The first screen of the review of `campaigns` (`CampaignReview`s); `exposures`:
    campaign id → scope label → overdue exposure; `figures`: campaign id → `scope_figures`;
    its words and figures in `locale`."""
    exceptions = [
        found
        for review in campaigns
        for found in campaign_exceptions(
            review,
            exposures.get(review.campaign_id, {}),
            currency,
            (figures or {}).get(review.campaign_id),
            locale,
        )
    ]
    return Summary(
        cards=[campaign_cards(review, currency, locale) for review in campaigns],
        exceptions=ranked(exceptions),
        decisions=[item for review in campaigns for item in pending_decisions(review)],
        changes=[item for review in campaigns for item in changes_since_last_week(review, locale)],
        currency=currency,
        locale=locale,
    )


def _known(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _per(total: float | None, count: float | None) -> float | None:
    return total / count if _known(total) and _known(count) and count else None


def _times(left: float | None, right: float | None) -> float | None:
    return left * right if _known(left) and _known(right) else None


def _place(metrics: tuple[str, ...], metric: str) -> int:
    return metrics.index(metric) if metric in metrics else len(metrics)
