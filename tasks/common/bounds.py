"""Bounds on every value pdca accepts from outside: feed rows, campaign specs, periods.

A value outside these bounds is refused where it enters (a feed row goes to quarantine with
its line, field and reason; a spec or a period is refused with exit 2), so that nothing
downstream meets a year 0, an infinite amount, a NUL byte or a 200 KB "phone number". The
rules, as `docs/security.md` states them:

- timestamps and dates: ISO 8601 text (no words such as `now`), within `Bounds.earliest` ..
  `Bounds.latest` after conversion to UTC (settings `PDCA_TIMESTAMP_MIN`/`_MAX`, default
  1970-01-01 .. 2100-12-31);
- numbers: finite (`inf`, `1e400`, `nan` refused); integers within the 32-bit `Integer`
  columns the models declare;
- text: no control characters (no feed column holds free text, so a line break is as wrong
  as a NUL), at most the column's declared length and at most `Bounds.max_field_chars`;
- a phone number: an optional `+`, then digits, spaces and dashes, 6 to 20 digits;
- an e-mail address: one `@`, no spaces, and a dot in the domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""The range of the models' `Integer` columns (PostgreSQL `integer`)."""

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""C0 control characters and DEL: NUL, line breaks, tabs, escapes."""

PHONE = re.compile(r"^\+?[0-9][0-9 -]*$")
PHONE_DIGITS = (6, 20)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

ISO_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?$"
)
"""The shape of an ISO 8601 date or timestamp; pandas would also read `now` or `today`."""

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (see `neutralise`)."""


@dataclass(frozen=True)
class Bounds:
    """The plausible range of feed values; the defaults are the settings' defaults."""

    earliest: datetime = datetime(1970, 1, 1)
    latest: datetime = datetime(2100, 12, 31, 23, 59, 59, 999999)
    max_field_chars: int = 4096

    @classmethod
    def of_days(cls, first: date, last: date, max_field_chars: int = 4096) -> Bounds:
        """Bounds from the first and last day allowed, both included (as settings give)."""
        return cls(
            datetime.combine(first, time.min), datetime.combine(last, time.max), max_field_chars
        )

    def describe(self) -> str:
        return f"{self.earliest:%Y-%m-%d} to {self.latest:%Y-%m-%d}"


def is_phone(value: str) -> bool:
    """The documented phone rule: optional +, digits, spaces, dashes; 6 to 20 digits."""
    digits = sum(character.isdigit() for character in value)
    return bool(PHONE.match(value)) and PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]


def is_email(value: str) -> bool:
    return bool(EMAIL.match(value))


def has_control(value: str) -> bool:
    return bool(CONTROL.search(value))


def mask_contact(value: str) -> str:
    """A phone number or e-mail address with enough left to recognise it, no more.

    An address keeps its first character and its domain (`j***@example.com`); anything
    else keeps its last four characters (`***5678`).
    """
    if not value:
        return value
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return "***" + value[-4:] if len(value) > 4 else "***"


def neutralise(value: str) -> str:
    """A text cell a spreadsheet will show as text: a leading `'` before a formula start.

    The feed import removes that `'` again (`unneutralise`), so an export imports back.
    """
    return "'" + value if value.startswith(FORMULA_START) else value


def unneutralise(value: str) -> str:
    """The inverse of `neutralise`, for a value read from a feed file."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value
