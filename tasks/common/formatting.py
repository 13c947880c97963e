"""Numbers for people: one way to write each kind of figure, with its unit.

The JSON keeps full precision; what people read (Prefect artifacts, the CLI's lines) goes
through here, so a count is never `74.0`, a rate never `0.0523`, an amount never
`1.681e+06`. The kind of a metric is known from its contract name.

Every function takes the reader's `locale` (`en`, the default, or `zh-CN`): the digits
and separators are the same in both (CLDR's `#,##0.###` for en and zh), the rest follows
the locale's conventions: `5.2 %` / `5.2%`, `1,234 CNY` / `¥1,234`, `2026-03-23` /
`2026年3月23日`, `n/a` / `暂无`. The units stay what they are in every locale (ROI `31.5×`,
complaint rate in ‰, counts whole). `Formatter(locale)` binds a locale for the templates.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Any

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
    """How a locale writes what is not digits."""

    unknown: str
    percent: str
    per_mille: str
    symbols: dict[str, str]
    """Currency code → the symbol written before the amount (else the code after it)."""
    date: str
    """A `date.strftime` pattern, with `{day}` and `{month}` for the unpadded numbers."""


STYLES = {
    "en": LocaleStyle("n/a", "{} %", "{} ‰", {}, "%Y-%m-%d"),
    "zh-CN": LocaleStyle("暂无", "{}%", "{}‰", {"CNY": "¥"}, "%Y年{month}月{day}日"),
}
"""The two locales of `tasks.common.i18n.LOCALES`."""


def style(locale: str = "en") -> LocaleStyle:
    """The locale's style; an unknown locale is an error, not silently English."""
    try:
        return STYLES[locale]
    except KeyError:
        raise ValueError(f"unsupported locale {locale!r}: use one of {', '.join(STYLES)}") from None


def number(value: float | None, digits: int = 2, locale: str = "en") -> str:
    """A plain number with thousands separators; `n/a` when it cannot be known."""
    if not _known(value):
        return style(locale).unknown
    return f"{value:,.{digits}f}"


def count(value: float | None, locale: str = "en") -> str:
    """A whole count: `1,234`."""
    return style(locale).unknown if not _known(value) else f"{round(value):,}"


def money(value: float | None, currency: str = "", locale: str = "en") -> str:
    """An amount: `1,681,234` (whole units above 100, else two decimals), with currency:
    `1,681,234 CNY` in English, `¥1,681,234` in Chinese."""
    written = style(locale)
    if not _known(value):
        return written.unknown
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    symbol = written.symbols.get(currency)
    if symbol:
        return f"-{symbol}{text[1:]}" if text.startswith("-") else f"{symbol}{text}"
    return f"{text} {currency}".strip()


def percent(value: float | None, digits: int = 1, locale: str = "en") -> str:
    """A share of 1 in %: 0.0523 → `5.2 %` (`5.2%` in Chinese)."""
    written = style(locale)
    return (
        written.unknown
        if not _known(value)
        else written.percent.format(f"{value * 100:.{digits}f}")
    )


def per_mille(value: float | None, locale: str = "en") -> str:
    """A rate already per 1,000: `3.42 ‰`."""
    written = style(locale)
    return written.unknown if not _known(value) else written.per_mille.format(f"{value:.2f}")


def multiple(value: float | None, locale: str = "en") -> str:
    """A return as a multiple: `31.5×`."""
    return style(locale).unknown if not _known(value) else f"{value:,.1f}×"


def p_value(value: float | None, locale: str = "en") -> str:
    """A p-value: three decimals, `< 0.001` below that."""
    if not _known(value):
        return style(locale).unknown
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


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
    if not _known(value):
        return style(locale).unknown
    return style(locale).percent.format(f"{value * 100:+.1f}").replace("-", "−")


def day(value: date | datetime | str | None, locale: str = "en") -> str:
    """A day: `2026-03-23` in English, `2026年3月23日` in Chinese; text is kept as it is."""
    if value is None:
        return style(locale).unknown
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.date()
    pattern = style(locale).date.format(month=value.month, day=value.day)
    return value.strftime(pattern)


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
