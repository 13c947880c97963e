"""Numbers for people: one way to write each kind of figure, with its unit.

The JSON keeps full precision; what people read (Prefect artifacts, the CLI's lines) goes
through here, so a count is never `74.0`, a rate never `0.0523`, an amount never
`1.681e+06`. The kind of a metric is known from its contract name.

Every function takes the reader's `locale` (`en`, the default, or `zh-CN`) and writes by
Babel (CLDR's digits, grouping, signs, currency symbols and date formats: `5.2%`,
`¥1,234`, `US$500`, `2026年3月23日` in Chinese). English keeps the forms pdca's readers know
where they differ from CLDR's English: `5.2 %` (a space), `1,234 CNY` (the code after),
`2026-03-23` (ISO). The units stay what they are in every locale (ROI `31.5×`, complaint
rate in ‰, counts whole); "n/a" is a message of the catalog (`暂无`). Rounding is Babel's
(ICU's): half to even on the number as written, 2.675 → `2.68`. `Formatter(locale)` binds
a locale for the templates.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent

from tasks.common.i18n import N_, babel_locale, translator

MONEY = frozenset(
    {
        "cost",
        "cac",
        "disbursed_amount",
        "net_interest",
        "expected_loss",
        "loan_balance",
        "ltv",
        "amount",
        "budget",
    }
)
"""Metrics in currency units."""
COUNTS = frozenset(
    {
        "touches",
        "delivered",
        "responded",
        "applications",
        "approved",
        "disbursements",
        "complaints",
        "loans",
        "seasoned_loans",
        "overdue_loans",
        "new_customers",
        "rejections",
    }
)
"""Metrics that count things: whole numbers."""
PERCENTAGES = frozenset(
    {
        "reach_rate",
        "response_rate",
        "application_rate",
        "approval_rate",
        "disbursement_rate",
        "overdue_rate_30",
        "npl_rate",
        "churn_rate",
        "share",
    }
)
"""Shares of 1, written in %."""
PER_MILLE = frozenset({"complaint_rate"})
"""Already per 1,000 (complaints per 1,000 delivered), written in ‰."""
MULTIPLES = frozenset({"roi", "ltv_cac"})
"""Returns on a cost, written as a multiple (ROI 31.5 → `31.5×`)."""


@dataclass(frozen=True)
class LocaleStyle:
    """How a locale writes what is not digits: CLDR patterns for Babel, `{decimals}` where
    the fraction digits go (`.0`, `.00` or nothing)."""

    locale: Locale
    unknown: str
    percent: str
    """A share of 1 (`%` multiplies by 100)."""
    per_mille: str
    """A rate per 1,000 (`‰` multiplies by 1,000)."""
    signed_percent: str
    money: str
    """`¤` the currency's symbol, `¤¤` its ISO code."""
    date: str
    """A CLDR date pattern or one of the locale's named formats (`long`)."""


PATTERNS = {
    "en": {  # pdca's English (CLDR's `#,##0%`, `¤#,##0.00` with `CN¥`, `MMM d, y` differ)
        "percent": "#,##0{decimals} %",
        "per_mille": "#,##0{decimals} ‰",
        "signed_percent": "+#,##0{decimals} %;−#,##0{decimals} %",
        "money": "#,##0{decimals} ¤¤",
        "date": "yyyy-MM-dd",
    },
    "zh-CN": {  # CLDR's zh: percent `#,##0%`, currency `¤#,##0.00`, long date `y年M月d日`
        "percent": "#,##0{decimals}%",
        "per_mille": "#,##0{decimals}‰",
        "signed_percent": "+#,##0{decimals}%;−#,##0{decimals}%",
        "money": "¤#,##0{decimals}",
        "date": "long",
    },
}
"""The two locales of `tasks.common.i18n.LOCALES`; the signed change's minus is U+2212."""
# Translators: a figure that cannot be known (no data, or a rate of nothing).
UNKNOWN = N_("n/a")


@lru_cache
def style(locale: str = "en") -> LocaleStyle:
    """The locale's style; an unknown locale is an error, not silently English."""
    cldr = babel_locale(locale)  # raises ValueError naming the locales
    return LocaleStyle(cldr, translator(locale)(UNKNOWN), **PATTERNS[locale])


def _decimals(pattern: str, digits: int) -> str:
    """`pattern` with `digits` fraction digits: `#,##0{decimals} %`, 1 → `#,##0.0 %`."""
    return pattern.format(decimals="." + "0" * digits if digits > 0 else "")


def number(value: float | None, digits: int = 2, locale: str = "en") -> str:
    """A plain number with thousands separators; `n/a` when it cannot be known."""
    written = style(locale)
    if not _known(value):
        return written.unknown
    return format_decimal(value, _decimals("#,##0{decimals}", digits), written.locale)


def count(value: float | None, locale: str = "en") -> str:
    """A whole count: `1,234` (rounded first, so that −0.3 is `0`, not `-0`)."""
    return number(value if not _known(value) else round(value), 0, locale)


def money(value: float | None, currency: str = "", locale: str = "en") -> str:
    """An amount: `1,681,234` (whole units from 100, else two decimals), with currency:
    `1,681,234 CNY` in English, `¥1,681,234` (CLDR's symbol: `US$500` …) in Chinese."""
    written = style(locale)
    if not _known(value):
        return written.unknown
    digits = 0 if abs(value) >= 100 else 2
    if not currency:
        return number(value, digits, locale)
    pattern = _decimals(written.money, digits)
    return format_currency(value, currency, pattern, written.locale, currency_digits=False)


def percent(value: float | None, digits: int = 1, locale: str = "en") -> str:
    """A share of 1 in %: 0.0523 → `5.2 %` (`5.2%` in Chinese)."""
    written = style(locale)
    if not _known(value):
        return written.unknown
    return format_percent(value, _decimals(written.percent, digits), written.locale)


def per_mille(value: float | None, locale: str = "en") -> str:
    """A rate already per 1,000: `3.42 ‰`."""
    written = style(locale)
    if not _known(value):
        return written.unknown
    share = Decimal(str(value)) / 1000  # exact: Babel's ‰ multiplies it back
    return format_percent(share, _decimals(written.per_mille, 2), written.locale)


def multiple(value: float | None, locale: str = "en") -> str:
    """A return as a multiple: `31.5×`."""
    return style(locale).unknown if not _known(value) else f"{number(value, 1, locale)}×"


def p_value(value: float | None, locale: str = "en") -> str:
    """A p-value: three decimals, `< 0.001` below that."""
    written = style(locale)
    if not _known(value):
        return written.unknown
    shown = 0.001 if value < 0.001 else value
    text = format_decimal(shown, "0.000", written.locale)
    return f"< {text}" if value < 0.001 else text


def metric(name: str, value: float | None, currency: str = "", locale: str = "en") -> str:
    """`value` of the contract metric `name`, in the metric's own unit."""
    if name in COUNTS:
        return count(value, locale)
    if name in MONEY:
        return money(value, currency, locale)
    if name in PERCENTAGES:
        return percent(value, locale=locale)
    if name in PER_MILLE:
        return per_mille(value, locale)
    if name in MULTIPLES:
        return multiple(value, locale)
    return number(value, locale=locale)


def signed_percent(value: float | None, locale: str = "en") -> str:
    """A relative change: `+12.5 %`, `−3.0 %`."""
    written = style(locale)
    if not _known(value):
        return written.unknown
    return format_percent(value, _decimals(written.signed_percent, 1), written.locale)


def day(value: date | datetime | str | None, locale: str = "en") -> str:
    """A day: `2026-03-23` in English, `2026年3月23日` in Chinese; text is kept as it is."""
    written = style(locale)
    if value is None:
        return written.unknown
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.date()
    return format_date(value, written.date, written.locale)


def moment(value: datetime | None, locale: str = "en") -> str:
    """A time of day on a day: `2026-03-23 10:05 UTC` / `2026年3月23日 10:05 UTC` (the zone
    named when the value has one)."""
    if value is None:
        return style(locale).unknown
    zone = value.strftime(" %Z") if value.tzinfo is not None else ""
    return f"{day(value, locale)} {value:%H:%M}{zone}"


class Formatter:
    """This module with a locale bound: `Formatter("zh-CN").money(1234, "CNY")`. The
    templates' `fmt`; the metric kinds (`MONEY`, `COUNTS` …) read through unchanged."""

    def __init__(self, locale: str = "en") -> None:
        style(locale)
        self.locale = locale

    def __getattr__(self, name: str) -> Any:
        value = getattr(sys.modules[__name__], name)
        if callable(value) and not isinstance(value, type) and name.islower():
            return partial(value, locale=self.locale)
        return value


def _known(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))
