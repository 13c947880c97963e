"""Feed import: CSV → validated, typed chunks → staged upsert; bad rows to quarantine.

The file streams through in chunks (`import_chunk_rows`), each in its own transaction, so
a 10-million-row file never sits in memory and a failure keeps every chunk already
committed. A rerun of the same file converges: rows upsert by key, quarantine rows
replace by (feed, file, line). Per chunk:

1. shape: a row with the wrong number of fields is quarantined as it stands
   (`tasks.data.import_reading`);
2. parse: each column by its kind (`tasks.common.feeds`); a value that does not parse, or
   lies outside the bounds of `tasks.common.bounds` (plausible timestamps, finite numbers,
   no control characters, fields within their size, phone and e-mail rules), is
   quarantined with its field (`tasks.data.import_parsing`, as are steps 3 and 4);
3. duplicates within the chunk: the first occurrence wins, later ones are quarantined;
4. rules: the feed's Great Expectations suite; the rows a critical expectation names are
   quarantined with the rule;
5. in the database: the survivors go to a temporary stage table; keys seen in an earlier
   chunk of this file and references to rows that are not loaded are quarantined there,
   in SQL; the rest upserts into the feed's table with one `insert … select`
   (`tasks.data.import_staging`).

So loaded + quarantined = rows in the file, always. The refused rows are written by
`tasks.data.quarantine`; the `Import` row and the audit entry by `tasks.data.import_ledger`.
This module wires the steps together, reading and validating the next chunk while the
current one is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd
from sqlalchemy import Connection

from pdca.errors import UserError
from tasks.common.bounds import Bounds
from tasks.common.feeds import FEEDS, Feed
from tasks.data.import_ledger import (
    ImportResult,
    campaign_timezones,
    count_rows,
    fail_import,
    finish_import,
    record_progress,
    start_import,
)
from tasks.data.import_parsing import LINE, validate_chunk
from tasks.data.import_reading import open_feed_file, read_chunks
from tasks.data.import_staging import StagedLoader
from tasks.data.quarantine import QuarantineWriter, Rejected, csv_line

T = TypeVar("T")


@dataclass
class PreparedChunk:
    """A chunk read and validated, ready for the database (built off the main thread)."""

    rows: list[list[str]]
    lines: list[int]
    typed: pd.DataFrame
    rejected: list[Rejected]
    stage_rows: list[tuple]

    @property
    def size(self) -> int:
        return len(self.rows) + sum(r.field == "(row)" for r in self.rejected)


def prefetch(produce: Callable[[], T | None]) -> Iterator[T]:
    """Yield `produce()` until it returns None, always computing the next one ahead.

    One worker thread: while the caller writes chunk k to the database (SQLite and
    psycopg release the GIL inside a statement), chunk k+1 is read and validated.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdca-prefetch") as pool:
        future = pool.submit(produce)
        while (item := future.result()) is not None:
            future = pool.submit(produce)
            yield item


def import_feed(
    conn: Connection,
    feed_name: str,
    path: Path,
    *,
    chunk_rows: int = 100_000,
    default_timezone: str = "UTC",
    actor: str = "cli",
    bounds: Bounds = Bounds(),
) -> ImportResult:
    """Import one CSV feed file; see the module docstring for the steps.

    Values outside `bounds` (`tasks.common.bounds`) are quarantined like any bad value.
    """
    if feed_name not in FEEDS:
        raise UserError(f"unknown feed {feed_name!r}; expected one of {', '.join(FEEDS)}")
    feed = FEEDS[feed_name]
    handle = open_feed_file(path, feed.column_names)
    file = str(path.resolve())  # one file, one ledger: however its path was spelled
    result = ImportResult(
        feed=feed_name,
        file=str(path),
        import_id=start_import(conn, feed_name, file),
        stored_file=file,
    )
    loader = StagedLoader(conn, feed)
    quarantine = QuarantineWriter(conn, feed_name, file, result.import_id, handle.header)
    timezones = campaign_timezones(conn)
    chunks = read_chunks(handle, len(handle.header), chunk_rows)

    def prepare() -> PreparedChunk | None:
        chunk = next(chunks, None)
        if chunk is None:
            return None
        rows, lines, rejected = chunk
        typed, invalid = validate_chunk(
            feed, rows, lines, handle.header, timezones, default_timezone, bounds=bounds
        )
        return PreparedChunk(rows, lines, typed, rejected + invalid, loader.rows_of(typed))

    try:
        with handle:
            for chunk in prefetch(prepare):
                rejected = chunk.rejected
                if len(chunk.typed):
                    refused = loader.load(chunk.stage_rows)
                    rejected += with_source(refused, chunk.rows, chunk.lines, chunk.typed, feed)
                quarantine.write(rejected)
                count_rows(result, chunk.size, rejected)
                record_progress(conn, result)
                conn.commit()
        loader.close()
        finish_import(conn, result, actor)
    except Exception as error:
        fail_import(conn, result, f"{type(error).__name__}: {error}")
        raise
    return result


def with_source(
    rejected: list[Rejected],
    rows: list[list[str]],
    lines: list[int],
    typed: pd.DataFrame,
    feed: Feed,
) -> list[Rejected]:
    """Rows rejected in the database, with their text as the file had it and their time."""
    if not rejected:
        return rejected
    position = {line: index for index, line in enumerate(lines)}
    occurred = typed.set_index(LINE)[feed.occurred_at] if feed.occurred_at else None
    for row in rejected:
        row.raw = csv_line(rows[position[row.line]])
        if occurred is not None and pd.notna(occurred.get(row.line)):
            row.occurred_at = occurred[row.line]
    return rejected
