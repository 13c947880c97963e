"""Quarantine of the feed import: the rows it refuses, each with its line, field and reason.

A rejected row keeps its text as the file had it (`raw`), so that it can be fixed and the
file imported again, except for what must not be kept: customers' phone numbers and e-mail
addresses are masked, a NUL byte is shown escaped and an oversized row is cut (`safe_raw`).
A rerun replaces what the earlier import of the same file left.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, delete

from pdca.models import QuarantinedRow
from tasks.common.bounds import mask_contact
from tasks.common.feeds import FEEDS
from tasks.data.inserts import bulk_insert


@dataclass
class Rejected:
    """One quarantined row: where it is, which field is at fault and why."""

    line: int
    field: str
    reason: str
    raw: str
    occurred_at: datetime | None = None


def csv_line(row: Iterable[str], delimiter: str = ",") -> str:
    """A row as the CSV line that would hold it, for the quarantine's `raw` column."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow(list(row))
    return buffer.getvalue()


RAW_MAX_CHARS = 2000
"""Most characters of a row's text kept in `raw`; a 200 KB field is named, not stored."""

CONTACT_LIKE = re.compile(r"^(?:\+?[0-9][0-9 -]{5,}|[^@\s]+@[^@\s]+)$")
"""A field of a misshapen row that could be a phone number or an address: masked too."""


def safe_raw(raw: str, contact: tuple[int, ...], width: int, delimiter: str = ",") -> str:
    """A rejected row's text as `quarantine.raw` keeps it: contact data masked, NUL shown
    as `\\x00` (PostgreSQL text cannot hold it), and cut at `RAW_MAX_CHARS`.

    `contact` are the positions of the phone and e-mail columns; in a row without the
    header's width, every field shaped like a phone number or an address is masked.
    """
    if contact and raw:
        try:  # a field may hold a quoted line break: read the text as a file would be
            fields = next(csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter), [])
        except csv.Error:
            fields = [raw]
        if len(fields) == width:
            fields = [mask_contact(f) if i in contact else f for i, f in enumerate(fields)]
        else:
            fields = [mask_contact(f) if CONTACT_LIKE.match(f) else f for f in fields]
        raw = csv_line(fields, delimiter)
    raw = raw.replace("\x00", "\\x00")
    if len(raw) > RAW_MAX_CHARS:
        raw = f"{raw[:RAW_MAX_CHARS]}… [cut: {len(raw)} characters]"
    return raw


class QuarantineWriter:
    """Writes rejected rows for one file, replacing what an earlier import of it left.

    `file` is the file's resolved path, so two spellings of one file share their rows.
    """

    def __init__(
        self,
        conn: Connection,
        feed: str,
        file: str,
        import_id: int,
        header: list[str] | None = None,
        delimiter: str = ",",
    ) -> None:
        self.conn, self.feed, self.file, self.import_id = conn, feed, file, import_id
        self.delimiter, self.width = delimiter, len(header or ())
        kinds = {c.name: c.kind for c in FEEDS[feed].columns} if feed in FEEDS else {}
        self.contact = tuple(
            i for i, name in enumerate(header or ()) if kinds.get(name) in ("phone", "email")
        )
        table = QuarantinedRow.__table__
        conn.execute(delete(table).where(table.c.feed == feed, table.c.file == file))

    def write(self, rejected: list[Rejected]) -> None:
        if not rejected:
            return
        frame = pd.DataFrame(
            {
                "import_id": self.import_id,
                "feed": self.feed,
                "file": self.file,
                "line": [r.line for r in rejected],
                "field": [r.field for r in rejected],
                "reason": [r.reason[:RAW_MAX_CHARS] for r in rejected],
                "raw": [
                    safe_raw(r.raw, self.contact, self.width, self.delimiter) for r in rejected
                ],
                "occurred_at": pd.to_datetime(
                    [r.occurred_at for r in rejected], errors="coerce"
                ).astype("datetime64[us]"),
            }
        )
        bulk_insert(self.conn, QuarantinedRow.__table__, list(frame.columns), frame)
