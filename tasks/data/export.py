"""Export: a table written back in its feed's format, and the phone channel's call list.

An exported feed imports back unchanged (timestamps in UTC with their offset, booleans
`true`/`false`, floats written exactly). The call list is the one place a customer's
phone number leaves pdca, so every export is written to the audit log.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, insert, select

from pdca.errors import UserError
from pdca.models import AuditEntry, Base, Campaign, Customer, OutboxEntry, OutreachBatch
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
    actor: str = "cli",
) -> int:
    """Write the feed's rows (of one campaign, within local days) to `path`; returns rows."""
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
    rows = _write_chunks(conn, statement, feed, path)
    _audit(conn, actor, f"export.{feed_name}", path, {"rows": rows, "campaign": campaign_id})
    return rows


def export_call_list(
    conn: Connection,
    campaign_id: str,
    path: Path,
    *,
    days: DateRange = DateRange(),
    actor: str = "cli",
) -> int:
    """The phone channel's sends for the relationship managers: who to call, and when."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    _audit(conn, actor, "export.call-list", path, {"rows": len(frame), "campaign": campaign_id})
    return len(frame)


def _write_chunks(conn: Connection, statement, feed: Feed, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
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
    return values.fillna("")


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


def _audit(conn: Connection, actor: str, action: str, path: Path, detail: dict) -> None:
    conn.execute(
        insert(AuditEntry).values(actor=actor, action=action, subject=str(path), detail=detail)
    )
    conn.commit()
