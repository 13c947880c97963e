"""Periods of the contract: ISO week `2026-W12`, month `2026-03`, quarter `2026-Q1`.

A period is a range of local calendar days; what falls in it depends on the campaign's
time zone, so `utc_bounds` turns it into the naive-UTC interval the database stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pdca.errors import UserError

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")

FIRST_YEAR, LAST_YEAR = 1970, 2100
"""The years a period may fall in: those of the plausible feed timestamps (the default of
`PDCA_TIMESTAMP_MIN`/`_MAX`); `0000-01` or `9999-Q4` is a typo, not a period."""


@dataclass(frozen=True, order=True)
class Period:
    """Local days `start` (inclusive) to `end` (exclusive), named as the user wrote it."""

    start: date
    end: date
    name: str
    kind: str  # "week", "month" or "quarter"

    @classmethod
    def parse(cls, text: str) -> Period:
        """`2026-W12`, `2026-03` or `2026-Q1`; anything else is a UserError."""
        text = text.strip()
        year = re.match(r"^(\d{4})-", text)
        if year and not FIRST_YEAR <= int(year[1]) <= LAST_YEAR:
            raise UserError(f"period {text!r}: the year must be within {FIRST_YEAR}..{LAST_YEAR}")
        if match := _WEEK.match(text):
            year, week = int(match[1]), int(match[2])
            try:
                start = date.fromisocalendar(year, week, 1)
            except ValueError:
                raise UserError(f"period {text!r}: {year} has no ISO week {week}") from None
            return cls(start, start + timedelta(days=7), text, "week")
        if match := _MONTH.match(text):
            year, month = int(match[1]), int(match[2])
            if not 1 <= month <= 12:
                raise UserError(f"period {text!r}: month must be 01..12")
            return cls(date(year, month, 1), _add_months(date(year, month, 1), 1), text, "month")
        if match := _QUARTER.match(text):
            year, quarter = int(match[1]), int(match[2])
            start = date(year, 3 * quarter - 2, 1)
            return cls(start, _add_months(start, 3), text, "quarter")
        raise UserError(
            f"period {text!r}: expected an ISO week (2026-W12), a month (2026-03) "
            "or a quarter (2026-Q1)"
        )

    @classmethod
    def week_of(cls, day: date) -> Period:
        year, week, _ = day.isocalendar()
        return cls.parse(f"{year}-W{week:02d}")

    def utc_bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """The period as naive UTC datetimes [start, end) for the campaign's time zone."""
        return local_midnight_utc(self.start, timezone), local_midnight_utc(self.end, timezone)

    def weeks(self) -> list[Period]:
        """The ISO weeks that overlap this period, in order."""
        weeks, day = [], self.start - timedelta(days=self.start.weekday())
        while day < self.end:
            weeks.append(Period.week_of(day))
            day += timedelta(days=7)
        return weeks

    def shifted(self, steps: int) -> Period:
        """The period `steps` periods of the same kind later (earlier when negative)."""
        try:
            if self.kind == "week":
                return Period.week_of(self.start + timedelta(days=7 * steps))
            months = 1 if self.kind == "month" else 3
            start = _add_months(self.start, months * steps)
        except (ValueError, OverflowError):
            raise UserError(
                f"period {self.name!r} shifted by {steps}: outside {FIRST_YEAR}..{LAST_YEAR}"
            ) from None
        name = (
            f"{start.year}-{start.month:02d}"
            if self.kind == "month"
            else f"{start.year}-Q{(start.month - 1) // 3 + 1}"
        )
        return Period.parse(name)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def __str__(self) -> str:
        return self.name


def local_midnight_utc(day: date, timezone: str) -> datetime:
    """Midnight at the start of `day` in `timezone`, as naive UTC."""
    local = datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone))
    return local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)
