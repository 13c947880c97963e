"""The weekly review in its readers' languages: who reads it in which locale, and the
sentences the review writes around its figures (subtitle, what was measured).

Each campaign's recipient list reads the review in the campaign's spec `locale`, else in
the setting `PDCA_LOCALE`'s, which is also the language of the report file.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING, Any

from tasks.common import formatting
from tasks.common.i18n import LOCALES, translator
from tasks.common.periods import Period

if TYPE_CHECKING:
    from tasks.review.review import Review, ReviewedCampaign


def recipients_by_locale(
    campaigns: Iterable[ReviewedCampaign], default: str
) -> dict[str, list[str]]:
    """locale → addresses (`Review.recipients_by_locale`), each list as `review_recipients`
    sorts it; the locales in their `LOCALES` order."""
    chosen: dict[str, set[str]] = {}
    spelled: dict[str, str] = {}
    for campaign in campaigns:
        for address in campaign.recipients:
            key = address.strip().lower()
            spelled.setdefault(key, address.strip())
            chosen.setdefault(key, set()).add(campaign.locale or default)
    groups: dict[str, list[str]] = {}
    for key, locales in chosen.items():
        locale = default if default in locales else sorted(locales)[0]
        groups.setdefault(locale, []).append(spelled[key])
    return {locale: sorted(groups[locale], key=str.lower) for locale in LOCALES if locale in groups}


def measured_lines(period: Period, settings: Any, locale: str = "en") -> list[str]:
    """What the review's numbers are, for the report's footer (the contract's definitions
    with the thresholds in force), in `locale`."""
    _ = translator(locale)
    fmt = formatting.Formatter(locale)
    last_day = date.fromordinal(period.end.toordinal() - 1)
    values = {
        "period": period.name,
        "start": fmt.day(period.start),
        "end": fmt.day(last_day),
        "days": settings.attribution_window_days,
        "ftp": f"{settings.ftp_rate:g}",
        "lgd": f"{settings.lgd:g}",
        "warn": f"{settings.tolerance_warn:.0%}",
        "fail": f"{settings.tolerance_fail:.0%}",
        "z": f"{settings.anomaly_z:g}",
        "weeks": settings.anomaly_window_weeks,
        "volume": settings.anomaly_min_volume,
    }
    lines = [
        _(
            "Period %(period)s: local days %(start)s to %(end)s in each campaign's "
            "time zone; campaigns whose dates overlap it."
        ),
        _(
            "Touches, delivered, responded and cost count by sent_at; applications by "
            "applied_at (attributed, %(days)s-day window); approved, disbursements and amounts "
            "are those of the period's applications. Hold-out members count in none."
        ),
        _(
            "CAC = cost / disbursements. ROI = (net interest − cost − expected loss) / cost, "
            "with FTP rate %(ftp)s and LGD %(lgd)s."
        ),
        _(
            "overdue_rate_30 = loans with latest dpd ≥ 30 / loans with a snapshot ≥ 30 days "
            "after disbursement, as of the period's end."
        ),
        _(
            "Status: on track within ±%(warn)s of target, at risk within ±%(fail)s, off track "
            "beyond (the plan's bands where it sets them); lower is better for cac, "
            "overdue_rate_30 and complaint_rate."
        ),
        _(
            "Anomaly: a week ≥ %(z)s standard deviations from its trailing %(weeks)s-week "
            "mean, with at least %(volume)s in its volume."
        ),
        _(
            "Every figure comes from the campaign's stored check result of the period "
            "(checked_at shown per campaign) and the weekly rollups it wrote."
        ),
    ]
    return [line % values for line in lines]


def subtitle(review: Review) -> str:
    """The period's days and how many campaigns are active in it."""
    _ = translator(review.locale)
    fmt = formatting.Formatter(review.locale)
    count = len(review.campaigns)
    last_day = date.fromordinal(review.period.end.toordinal() - 1)
    campaigns = (
        _("%(count)s active campaign") if count == 1 else _("%(count)s active campaigns")
    ) % {"count": count}
    dates = _("%(start)s to %(end)s") % {
        "start": fmt.day(review.period.start),
        "end": fmt.day(last_day),
    }
    return f"{dates} · {campaigns}"
