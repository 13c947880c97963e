"""Quarantine of the feed import: the rows it refuses, each with its line, field and reason.

A rejected row keeps its text as the file had it (`raw`), so that it can be fixed and the
file imported again; a rerun replaces what the earlier import of the same file left.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, delete

from pdca.models import QuarantinedRow
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


class QuarantineWriter:
    """Writes rejected rows for one file, replacing what an earlier import of it left."""

    def __init__(self, conn: Connection, feed: str, file: str, import_id: int) -> None:
        self.conn, self.feed, self.file, self.import_id = conn, feed, file, import_id
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
                "reason": [r.reason for r in rejected],
                "raw": [r.raw for r in rejected],
                "occurred_at": pd.to_datetime(
                    [r.occurred_at for r in rejected], errors="coerce"
                ).astype("datetime64[us]"),
            }
        )
        bulk_insert(self.conn, QuarantinedRow.__table__, list(frame.columns), frame)
