"""Export: a table written back in its feed's format, and the phone channel's call list.

An exported feed imports back unchanged (timestamps in UTC with their offset, booleans
`true`/`false`, floats written exactly). The call list is the one place a customer's
phone number leaves pdca, so every export is written to the audit log, naming the OS user
who ran it and the file's absolute path.

Exports are opened in spreadsheets, so no text cell may read as a formula: a text value
starting with `=`, `+`, `-`, `@`, a tab or a CR gets a leading `'`
(`tasks.common.bounds.neutralise`; the import removes it again, so the round trip holds).
Only text columns are touched: in a feed, the columns of kind `str`, `phone` and `email`
(ids, codes, `reject_reason`, phone numbers, addresses); in the call list, every column
but `scheduled_at`. Numbers (a negative `outstanding`, say) and timestamps stay as they are.
"""

from __future__ import annotations

import csv
import getpass
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, insert, select

from pdca.errors import UserError
from pdca.models import AuditEntry, Base, Campaign, Customer, OutboxEntry, OutreachBatch
from tasks.common.bounds import neutralise
from tasks.common.feeds import FEEDS, Feed
from tasks.common.periods import local_midnight_utc

CHUNK = 100_000
CALL_LIST_COLUMNS = (
    "customer_id",
    "phone",
    "segment",
    "variant",
    "window",
    "scheduled_at",
    "status",
)
CALL_LIST_TEXT = tuple(name for name in CALL_LIST_COLUMNS if name != "scheduled_at")
"""The call list's text columns: the ones neutralised for spreadsheets."""


@dataclass(frozen=True)
class DateRange:
    """Local days `first` to `last`, both included; either end may be open."""

    first: date | None = None
    last: date | None = None

    def utc_bounds(self, timezone: str):
        start = local_midnight_utc(self.first, timezone) if self.first else None
        end = local_midnight_utc(self.last + timedelta(days=1), timezone) if self.last else None
        return start, end


def export_feed(
    conn: Connection,
    feed_name: str,
    path: Path,
    *,
    campaign_id: str | None = None,
    days: DateRange = DateRange(),
    default_timezone: str = "UTC",
    actor: str | None = None,
) -> int:
    """Write the feed's rows (of one campaign, within local days) to `path`; returns rows.

    `actor` names who exported in the audit log; by default the OS user."""
    if feed_name not in FEEDS:
        raise UserError(
            f"unknown feed {feed_name!r}; expected one of {', '.join(FEEDS)} or call-list"
        )
    feed = FEEDS[feed_name]
    table = Base.metadata.tables[feed.table]
    statement = select(*(table.c[name] for name in feed.column_names))
    timezone = default_timezone
    if campaign_id is not None:
        if "campaign_id" not in table.c:
            raise UserError(f"feed {feed_name!r} has no campaign_id; export it without --campaign")
        timezone = _campaign_timezone(conn, campaign_id)
        statement = statement.where(table.c.campaign_id == campaign_id)
    start, end = days.utc_bounds(timezone)
    if (start or end) and feed.occurred_at:
        moment = table.c[feed.occurred_at]
        if start:
            statement = statement.where(moment >= start)
        if end:
            statement = statement.where(moment < end)
    statement = statement.order_by(*(table.c[name] for name in feed.key))
    _check_target(path)
    rows = _write_chunks(conn, statement, feed, path)
    _audit(conn, actor, f"export.{feed_name}", path, {"rows": rows, "campaign": campaign_id})
    return rows


def export_call_list(
    conn: Connection,
    campaign_id: str,
    path: Path,
    *,
    days: DateRange = DateRange(),
    actor: str | None = None,
) -> int:
    """The phone channel's sends for the relationship managers: who to call, and when."""
    _check_target(path)
    timezone = _campaign_timezone(conn, campaign_id)
    statement = (
        select(
            OutboxEntry.customer_id,
            Customer.phone,
            Customer.segment,
            OutboxEntry.variant,
            OutreachBatch.window,
            OutboxEntry.scheduled_at,
            OutboxEntry.status,
        )
        .join(OutreachBatch, OutreachBatch.batch_id == OutboxEntry.batch_id)
        .join(Customer, Customer.customer_id == OutboxEntry.customer_id)
        .where(
            OutreachBatch.campaign_id == campaign_id,
            OutboxEntry.channel == "phone",
            OutboxEntry.status.in_(("pending", "sending", "sent", "held")),
        )
        .order_by(OutboxEntry.scheduled_at, OutboxEntry.customer_id)
    )
    if days.first:
        statement = statement.where(OutreachBatch.send_date >= days.first)
    if days.last:
        statement = statement.where(OutreachBatch.send_date <= days.last)
    frame = pd.DataFrame(conn.execute(statement).all(), columns=list(CALL_LIST_COLUMNS))
    frame["scheduled_at"] = _iso_local(frame["scheduled_at"], timezone)
    for name in CALL_LIST_TEXT:
        frame[name] = frame[name].map(_text_cell)
    with _open_target(path) as handle:
        frame.to_csv(handle, index=False)
    _audit(conn, actor, "export.call-list", path, {"rows": len(frame), "campaign": campaign_id})
    return len(frame)


def _check_target(path: Path) -> None:
    """Refuse, before any query runs, a path that cannot be the CSV file to write."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give the CSV file to write")


def _open_target(path: Path):
    """The file to write, its folder created; an OS refusal is one line, not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", newline="", encoding="utf-8")
    except OSError as error:
        raise UserError(f"{path}: cannot write the file ({error.strerror})") from None


def _write_chunks(conn: Connection, statement, feed: Feed, path: Path) -> int:
    rows = 0
    with _open_target(path) as handle:
        csv.writer(handle).writerow(feed.column_names)
        result = conn.execute(statement.execution_options(yield_per=CHUNK))
        for part in result.partitions(CHUNK):
            frame = pd.DataFrame(part, columns=list(feed.column_names))
            for column in feed.columns:
                frame[column.name] = _feed_text(frame[column.name], column.kind)
            frame.to_csv(handle, index=False, header=False)
            rows += len(frame)
    return rows


def _feed_text(values: pd.Series, kind: str) -> pd.Series:
    """A column as the feed writes it: ISO 8601 UTC timestamps, true/false, exact floats."""
    if kind == "datetime":
        stamps = pd.to_datetime(values)
        text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
        return text.where(stamps.notna(), "")
    if kind == "date":
        return pd.to_datetime(values).dt.strftime("%Y-%m-%d").fillna("")
    if kind == "bool":
        # True == 1 as a dict key: one entry covers a boolean and an integer 0/1
        return values.map({True: "true", False: "false"}).fillna("")
    if kind == "int":
        return values.astype("Int64").astype("str").replace("<NA>", "")
    if kind == "float":
        return values.map(lambda value: "" if pd.isna(value) else repr(float(value)))
    return values.map(_text_cell)


def _text_cell(value) -> str:
    """A text value as a spreadsheet-safe cell: missing as empty, a formula neutralised.

    A CR (possible only in rows stored before the import refused control characters) is
    written as a line break: the CSV writer quotes a field holding `\\n` but not one holding
    a bare `\\r`, which would split the row in two for any reader."""
    if value is None or pd.isna(value):
        return ""
    return neutralise(str(value)).replace("\r\n", "\n").replace("\r", "\n")


def _iso_local(values: pd.Series, timezone: str) -> pd.Series:
    stamps = pd.to_datetime(values).dt.tz_localize("UTC").dt.tz_convert(timezone)
    return stamps.dt.strftime("%Y-%m-%dT%H:%M:%S%z")


def _campaign_timezone(conn: Connection, campaign_id: str) -> str:
    timezone = conn.execute(
        select(Campaign.timezone).where(Campaign.campaign_id == campaign_id)
    ).scalar()
    if timezone is None:
        raise UserError(f"unknown campaign {campaign_id!r}")
    return timezone


def _audit(conn: Connection, actor: str | None, action: str, path: Path, detail: dict) -> None:
    """Who exported what where: the OS user (unless the caller names the actor) and the
    file's absolute path, so that a file of phone numbers found later can be traced."""
    conn.execute(
        insert(AuditEntry).values(
            actor=actor or os_user(), action=action, subject=str(path.resolve()), detail=detail
        )
    )
    conn.commit()


def os_user() -> str:
    """The operating-system account running pdca (`unknown` where none can be found)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
