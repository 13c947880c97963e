"""Typing and validating one chunk of a feed: steps 2–4 of the import (`tasks.data.importing`).

Each column is parsed by its kind (`tasks.common.feeds`), the feed's Great Expectations
suite judges the rows that parsed, and a key repeated within the chunk keeps its first
valid occurrence; every refused row becomes a `Rejected` naming its field and reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from pdca.models import Base
from tasks.common.bounds import (
    CONTROL,
    INT32_MAX,
    INT32_MIN,
    ISO_TIMESTAMP,
    Bounds,
    is_email,
    is_phone,
    unneutralise,
)
from tasks.common.feeds import Feed, with_carried_flags
from tasks.data.quality import row_failures
from tasks.data.quarantine import Rejected, csv_line

LINE = "_line"
"""The stage tables' column holding each row's line number in the file."""

INT_MIN, INT_MAX = INT32_MIN, INT32_MAX
OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
TRUE_WORDS = {"true": True, "1": True, "false": False, "0": False}


def validate_chunk(
    feed: Feed,
    rows: list[list[str]],
    lines: list[int],
    header: list[str],
    timezones: dict[str, str],
    default_timezone: str,
    delimiter: str = ",",
    bounds: Bounds = Bounds(),
) -> tuple[pd.DataFrame, list[Rejected]]:
    """Steps 2–4 of the module docstring: parse, apply the suite, drop repeated keys.

    Repeats are judged among the rows that passed everything else, so "the first valid
    occurrence wins" whether two rows meet in one chunk or in two.
    """
    frame = pd.DataFrame(
        {
            name: pd.Series(pa.array(values, type=pa.string()), dtype="str")
            for name, values in zip(header, zip(*rows, strict=True), strict=True)
        }
        if rows
        else {name: pd.Series([], dtype="str") for name in header}
    )
    frame[LINE] = lines
    typed, errors = parse_chunk(feed, frame, timezones, default_timezone, bounds)
    bad = errors.groupby("index", sort=False).agg({"field": "first", "reason": "; ".join})
    checked = typed.drop(index=bad.index)[list(feed.column_names)]
    # a feed of its own carries every field of its table (the suites ask, see NOT_CARRIED)
    checked = with_carried_flags(checked, feed.table, feed.name)
    failures = row_failures(feed.name, checked, keys=feed.key)
    bad = pd.concat([bad, _failure_frame(failures)])
    bad = pd.concat([bad, _repeated_keys(typed.drop(index=bad.index), feed.key)])
    occurred = typed[feed.occurred_at] if feed.occurred_at else None
    rejected = [
        Rejected(
            int(frame.at[index, LINE]),
            str(row.field),
            str(row.reason),
            csv_line(frame.loc[index, header], delimiter),
            None if occurred is None or pd.isna(occurred.at[index]) else occurred.at[index],
        )
        for index, row in bad.iterrows()
    ]
    return typed.drop(index=bad.index), rejected


def _failure_frame(failures: dict) -> pd.DataFrame:
    """Rule failures as (field, reason) rows indexed like the chunk."""
    return pd.DataFrame(
        {
            "field": [rules[0].split(":", 1)[0] for rules in failures.values()],
            "reason": ["; ".join(rules) for rules in failures.values()],
        },
        index=list(failures),
    )


def _repeated_keys(valid: pd.DataFrame, key: tuple[str, ...]) -> pd.DataFrame:
    """Rows whose key an earlier valid row of the chunk already has, naming that row."""
    if not key:
        return pd.DataFrame({"field": [], "reason": []})
    columns = list(key)
    repeated = valid.duplicated(columns, keep="first")
    if not repeated.any():
        return pd.DataFrame({"field": [], "reason": []})
    first_line = valid.drop_duplicates(columns).set_index(columns)[LINE]
    keys = valid.loc[repeated, columns]
    firsts = first_line.reindex(
        pd.MultiIndex.from_frame(keys) if len(columns) > 1 else keys.iloc[:, 0]
    ).to_numpy()
    return pd.DataFrame(
        {
            "field": "+".join(columns),
            "reason": [f"duplicate key, first at line {line}" for line in firsts],
        },
        index=keys.index,
    )


def parse_chunk(
    feed: Feed,
    frame: pd.DataFrame,
    timezones: dict[str, str],
    default_timezone: str,
    bounds: Bounds = Bounds(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed columns for `frame` (strings, with LINE), and a frame of parse errors.

    Empty strings become missing values (the suite decides whether missing is allowed);
    a non-empty value that does not parse, or lies outside `bounds`
    (`tasks.common.bounds`), is an error naming its field.
    """
    typed = pd.DataFrame({LINE: frame[LINE].to_numpy()}, index=frame.index)
    errors: list[pd.DataFrame] = []
    for column in feed.columns:
        text, too_long, limit = _within_size(feed, column.name, frame[column.name], bounds)
        present = text != ""
        if column.kind == "datetime":
            zones = _zones(feed, frame, timezones, default_timezone)
            values, broken, reason = _parse_datetime(text, present, zones, bounds)
        else:
            values, broken, reason = _PARSERS[column.kind](text, present, bounds)
        typed[column.name] = values
        if isinstance(reason, str):
            reason = pd.Series(reason, index=frame.index, dtype=object)
        if column.name.endswith("_id"):  # ids travel in keys, URLs and file names
            spaced = present & ~broken & text.str.contains(r"\s")
            broken, reason = broken | spaced, reason.where(~spaced, "an id holds no whitespace")
        reason = reason.where(~too_long, f"longer than {limit} characters")
        broken = broken | too_long
        if broken.any():
            errors.append(
                pd.DataFrame(
                    {
                        "index": frame.index[broken],
                        "field": column.name,
                        "reason": (f"{column.name}: " + reason[broken].astype(str)).to_numpy(),
                    }
                )
            )
    error_frame = (
        pd.concat(errors, ignore_index=True)
        if errors
        else pd.DataFrame({"index": [], "field": [], "reason": []})
    )
    return typed, error_frame


def _within_size(
    feed: Feed, name: str, text: pd.Series, bounds: Bounds
) -> tuple[pd.Series, pd.Series, int]:
    """The column with its oversized values blanked, which those were, and the limit.

    The limit is the column's declared length (PostgreSQL refuses a longer value in the
    middle of a COPY) and at most `bounds.max_field_chars`.
    """
    limit = bounds.max_field_chars
    table = Base.metadata.tables.get(feed.table)
    if table is not None and name in table.c:
        declared = getattr(table.c[name].type, "length", None)
        limit = min(limit, declared or limit)
    too_long = text.str.len() > limit
    return (text.where(~too_long, "") if too_long.any() else text), too_long, limit


Parsed = tuple[pd.Series, pd.Series, "str | pd.Series"]
"""A column parsed: its typed values, which present values did not parse, and why not
(one reason for all, or one per row)."""


def _parse_str(text: pd.Series, present: pd.Series, bounds: Bounds) -> Parsed:
    """Text as written (less the export's `'` before a formula), without control characters."""
    values = text.map(unneutralise).where(present, None)
    garbled = present & text.str.contains("\ufffd", regex=False)
    control = present & text.str.contains(CONTROL)
    reason = pd.Series("not valid UTF-8 text", index=text.index, dtype=object)
    reason = reason.where(~control, "contains a control character (NUL, line break, tab…)")
    return values, garbled | control, reason


def _parse_pattern(check: Callable[[str], bool], rule: str):
    """A text kind with a rule of its own (`phone`, `email`) on top of `_parse_str`'s."""

    def parse(text: pd.Series, present: pd.Series, bounds: Bounds) -> Parsed:
        values, broken, reason = _parse_str(text, present, bounds)
        fits = text.map(unneutralise).map(check).astype(bool)
        wrong = present & ~broken & ~fits
        return values, broken | wrong, reason.where(~wrong, rule)

    return parse


def _parse_float(text: pd.Series, present: pd.Series, bounds: Bounds) -> Parsed:
    """Finite numbers only: `inf`, `1e400` and `nan` are refused, not stored."""
    values = pd.to_numeric(text.where(present, None), errors="coerce")
    infinite = present & values.notna() & ~np.isfinite(values.astype(float))
    values = values.where(~infinite)
    reason = pd.Series("not a number", index=text.index, dtype=object)
    return values, present & values.isna(), reason.where(~infinite, "not a finite number")


def _parse_int(text: pd.Series, present: pd.Series, bounds: Bounds) -> Parsed:
    """Whole and within the database's 32-bit integer columns, else the row's fault."""
    values = pd.to_numeric(text.where(present, None), errors="coerce")
    usable = values.isna() | ((values == values.round()) & values.between(INT_MIN, INT_MAX))
    broken = present & (values.isna() | ~usable)
    return values.where(usable).astype("Int64"), broken, f"not an integer in [{INT_MIN}, {INT_MAX}]"


def _parse_bool(text: pd.Series, present: pd.Series, bounds: Bounds) -> Parsed:
    values = text.str.lower().map(TRUE_WORDS).astype("boolean")
    return values, present & values.isna(), "not a boolean (true/false or 1/0)"


def _parse_date(text: pd.Series, present: pd.Series, bounds: Bounds) -> Parsed:
    parsed = pd.to_datetime(text.where(present, None), format="%Y-%m-%d", errors="coerce")
    outside = parsed.notna() & ~parsed.between(bounds.earliest, bounds.latest)
    parsed = parsed.where(~outside)
    values = parsed.dt.strftime("%Y-%m-%d")  # a date, not a midnight timestamp
    reason = pd.Series("not a date (YYYY-MM-DD)", index=text.index, dtype=object)
    return values, present & parsed.isna(), reason.where(~outside, _outside(bounds))


def _parse_datetime(
    text: pd.Series, present: pd.Series, zones: pd.Series, bounds: Bounds
) -> Parsed:
    """ISO 8601 only (never `now`), within `bounds` once converted to UTC."""
    shaped = present & text.str.match(ISO_TIMESTAMP, na=False)
    values = to_utc(text.where(shaped, None), zones)
    outside = values.notna() & ~values.between(bounds.earliest, bounds.latest)
    values = values.where(~outside)
    reason = pd.Series(
        "not an ISO 8601 timestamp (or not a valid local time)", index=text.index, dtype=object
    )
    return values, present & values.isna(), reason.where(~outside, _outside(bounds))


def _outside(bounds: Bounds) -> str:
    return f"outside the plausible range {bounds.describe()} (UTC)"


_PARSERS: dict[str, Callable[[pd.Series, pd.Series, Bounds], Parsed]] = {
    "str": _parse_str,
    "int": _parse_int,
    "float": _parse_float,
    "bool": _parse_bool,
    "date": _parse_date,
    "phone": _parse_pattern(
        is_phone, "not a phone number (optional +, then digits, spaces or dashes; 6-20 digits)"
    ),
    "email": _parse_pattern(is_email, "not an e-mail address (one @, a dot in the domain)"),
}
"""The parser of each column kind but `datetime`, which also needs the rows' time zones."""


def _zones(
    feed: Feed, frame: pd.DataFrame, timezones: dict[str, str], default_timezone: str
) -> pd.Series:
    """Each row's time zone: its campaign's (`feed.timezone_from`), else the default."""
    if feed.timezone_from:
        return frame[feed.timezone_from].map(timezones).fillna(default_timezone)
    return pd.Series(default_timezone, index=frame.index)


def to_utc(values: pd.Series, zones: pd.Series) -> pd.Series:
    """ISO 8601 strings → naive UTC timestamps; strings without offset are read in `zones`."""
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    present = values.notna()
    if not present.any():
        return result
    aware = present & values.str.contains(OFFSET, na=False)
    if aware.any():
        parsed = pd.to_datetime(values[aware], utc=True, format="ISO8601", errors="coerce")
        result[aware] = parsed.dt.tz_localize(None).astype("datetime64[us]")
    naive = present & ~aware
    for zone, rows in zones[naive].groupby(zones[naive]).groups.items():
        parsed = pd.to_datetime(values[rows], format="ISO8601", errors="coerce")
        localised = parsed.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        result[rows] = localised.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    return result
