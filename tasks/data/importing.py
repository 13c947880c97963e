"""Feed import: CSV → validated, typed chunks → staged upsert; bad rows to quarantine.

The file streams through in chunks (`import_chunk_rows`), each in its own transaction, so
a 10-million-row file never sits in memory and a failure keeps every chunk already
committed. A rerun of the same file converges: rows upsert by key, quarantine rows
replace by (feed, file, line). Per chunk:

1. shape: a row with the wrong number of fields is quarantined as it stands;
2. parse: each column by its kind (`tasks.common.feeds`); a value that does not parse is
   quarantined with its field;
3. duplicates within the chunk: the first occurrence wins, later ones are quarantined;
4. rules: the feed's Great Expectations suite; the rows a critical expectation names are
   quarantined with the rule;
5. in the database: the survivors go to a temporary stage table; keys seen in an earlier
   chunk of this file and references to rows that are not loaded are quarantined there,
   in SQL; the rest upserts into the feed's table with one `insert … select`.

So loaded + quarantined = rows in the file, always.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import (
    Column as SqlColumn,
)
from sqlalchemy import (
    Connection,
    Integer,
    MetaData,
    Table,
    and_,
    delete,
    exists,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from pdca.errors import UserError
from pdca.models import AuditEntry, Base, Campaign, Import, QuarantinedRow
from tasks.common.feeds import FEEDS, Feed
from tasks.data.quality import row_failures

T = TypeVar("T")

LINE = "_line"
"""The stage tables' column holding each row's line number in the file."""

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
TRUE_WORDS = {"true": True, "1": True, "false": False, "0": False}
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass
class Rejected:
    """One quarantined row: where it is, which field is at fault and why."""

    line: int
    field: str
    reason: str
    raw: str
    occurred_at: datetime | None = None


@dataclass
class ImportResult:
    feed: str
    file: str
    import_id: int
    rows: int = 0
    loaded: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.feed}: {self.rows} rows in {self.file}: {self.loaded} loaded, "
            f"{self.quarantined} quarantined"
        )


# --- reading ----------------------------------------------------------------------------


def open_feed_file(path: Path, expected: tuple[str, ...], delimiter: str = ",") -> io.TextIOBase:
    """Open `path` positioned after its header; refuse what cannot be a feed of this shape.

    Checked up front, before anything is written: the file exists, is not empty, starts
    as UTF-8 text, uses the expected delimiter and has exactly the expected columns.
    """
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    head = path.open("rb").read(65536)
    if not head.strip():
        raise UserError(f"{path}: line 1: empty file, expected a header row")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the sample's end
            line = head[: error.start].count(b"\n") + 1
            raise UserError(
                f"{path}: line {line}: not UTF-8 text (byte 0x{head[error.start]:02x}); "
                "save the file as UTF-8"
            ) from None
    handle = path.open(encoding="utf-8-sig", errors="replace", newline="")
    header = next(csv.reader([handle.readline()], delimiter=delimiter), [])
    header = [name.strip() for name in header]
    if len(header) == 1 and len(expected) > 1:
        other = next((d for d in ";\t|," if d != delimiter and d in header[0]), None)
        if other:
            handle.close()
            raise UserError(
                f"{path}: line 1: fields are separated by {other!r}, expected {delimiter!r}"
            )
    missing = [name for name in expected if name not in header]
    unknown = [name for name in header if name not in expected]
    if missing or unknown:
        handle.close()
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        raise UserError(f"{path}: line 1: {'; '.join(parts)}")
    if len(set(header)) != len(header):
        handle.close()
        raise UserError(f"{path}: line 1: a column name appears twice")
    handle.header = header  # type: ignore[attr-defined]
    return handle


def read_chunks(
    handle: io.TextIOBase, width: int, chunk_rows: int, delimiter: str = ","
) -> Iterator[tuple[list[list[str]], list[int], list[Rejected]]]:
    """Rows of `width` fields with their line numbers, `chunk_rows` at a time.

    A row with another number of fields (a blank line included) is rejected here: its
    columns cannot be trusted to mean what the header says.
    """
    reader = csv.reader(handle, delimiter=delimiter)
    while True:
        rows: list[list[str]] = []
        lines: list[int] = []
        rejected: list[Rejected] = []
        for row in islice(reader, chunk_rows):
            if len(row) == width:
                rows.append(row)
                lines.append(reader.line_num + 1)  # the header was line 1
            else:
                reason = "empty line" if not row else f"expected {width} fields, found {len(row)}"
                rejected.append(
                    Rejected(reader.line_num + 1, "(row)", reason, _raw(row, delimiter))
                )
        if not rows and not rejected:
            return
        yield rows, lines, rejected


def _raw(row: Iterable[str], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow(list(row))
    return buffer.getvalue()


# --- parsing ----------------------------------------------------------------------------


def parse_chunk(
    feed: Feed,
    frame: pd.DataFrame,
    timezones: dict[str, str],
    default_timezone: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed columns for `frame` (strings, with LINE), and a frame of parse errors.

    Empty strings become missing values (the suite decides whether missing is allowed);
    a non-empty value that does not parse is an error naming its field.
    """
    typed = pd.DataFrame({LINE: frame[LINE].to_numpy()}, index=frame.index)
    errors: list[pd.DataFrame] = []
    for column in feed.columns:
        text = frame[column.name]
        present = text != ""
        if column.kind == "str":
            values = text.where(present, None)
            broken = values.str.contains("\ufffd", regex=False, na=False)
            reason = "not valid UTF-8 text"
        elif column.kind in ("int", "float"):
            values = pd.to_numeric(text.where(present, None), errors="coerce")
            broken = present & values.isna()
            reason = "not a number"
            if column.kind == "int":
                # whole and within the database's 32-bit integer columns, else the row's fault
                usable = values.isna() | (
                    (values == values.round()) & values.between(INT_MIN, INT_MAX)
                )
                broken |= present & ~usable
                values = values.where(usable).astype("Int64")
                reason = f"not an integer in [{INT_MIN}, {INT_MAX}]"
        elif column.kind == "bool":
            values = text.str.lower().map(TRUE_WORDS).astype("boolean")
            broken = present & values.isna()
            reason = "not a boolean (true/false or 1/0)"
        elif column.kind == "date":
            parsed = pd.to_datetime(text.where(present, None), format="%Y-%m-%d", errors="coerce")
            broken = present & parsed.isna()
            values = parsed.dt.strftime("%Y-%m-%d")  # a date, not a midnight timestamp
            reason = "not a date (YYYY-MM-DD)"
        else:
            zones = (
                frame[feed.timezone_from].map(timezones).fillna(default_timezone)
                if feed.timezone_from
                else pd.Series(default_timezone, index=frame.index)
            )
            values = to_utc(text.where(present, None), zones)
            broken = present & values.isna()
            reason = "not an ISO 8601 timestamp (or not a valid local time)"
        typed[column.name] = values
        if broken.any():
            errors.append(
                pd.DataFrame(
                    {
                        "index": frame.index[broken],
                        "field": column.name,
                        "reason": f"{column.name}: {reason}",
                    }
                )
            )
    error_frame = (
        pd.concat(errors, ignore_index=True)
        if errors
        else pd.DataFrame({"index": [], "field": [], "reason": []})
    )
    return typed, error_frame


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


# --- the database side ------------------------------------------------------------------


class StagedLoader:
    """Loads typed chunks of one feed through a temporary stage table, in SQL.

    The stage holds one chunk at a time; `seen` holds the keys of the chunks already
    loaded from this file, so that a key repeated far apart in the file is still caught.
    """

    def __init__(self, conn: Connection, feed: Feed) -> None:
        self.conn = conn
        self.feed = feed
        self.target: Table = Base.metadata.tables[feed.table]
        self.columns = list(feed.column_names)
        metadata = MetaData()
        self.stage = Table(
            f"stage_{feed.table}",
            metadata,
            *(SqlColumn(name, self.target.c[name].type) for name in self.columns),
            SqlColumn(LINE, Integer),
            prefixes=["TEMPORARY"],
        )
        self.seen = Table(
            f"seen_{feed.table}",
            metadata,
            *(SqlColumn(name, self.target.c[name].type, primary_key=True) for name in feed.key),
            SqlColumn(LINE, Integer),
            prefixes=["TEMPORARY"],
        )
        metadata.drop_all(conn, checkfirst=True)
        metadata.create_all(conn)
        self._metadata = metadata

    def close(self) -> None:
        self._metadata.drop_all(self.conn, checkfirst=True)

    def rows_of(self, typed: pd.DataFrame) -> list[tuple]:
        """The stage table's rows for a typed chunk, as the driver binds them."""
        return frame_rows(typed, [*self.columns, LINE])

    def load(self, stage_rows: list[tuple]) -> list[Rejected]:
        """Stage the rows, reject repeats and dangling references, upsert the rest."""
        self.conn.execute(delete(self.stage))
        insert_rows(self.conn, self.stage, [*self.columns, LINE], stage_rows)
        rejected = self._reject_repeated_keys() + self._reject_dangling_references()
        self.conn.execute(self._upsert())
        self.conn.execute(
            insert(self.seen).from_select(
                [*self.feed.key, LINE],
                select(*(self.stage.c[k] for k in self.feed.key), self.stage.c[LINE]),
            )
        )
        return rejected

    def _reject_repeated_keys(self) -> list[Rejected]:
        stage, seen = self.stage, self.seen
        same_key = and_(*(seen.c[k] == stage.c[k] for k in self.feed.key))
        found = self.conn.execute(
            select(stage.c[LINE], seen.c[LINE].label("first"), *self._raw_columns()).join(
                seen, same_key
            )
        ).all()
        if not found:
            return []
        self.conn.execute(delete(stage).where(exists().where(same_key)))
        key = "+".join(self.feed.key)
        return [
            Rejected(row[0], key, f"duplicate key, first at line {row[1]}", self._raw(row[2:]))
            for row in found
        ]

    def _reject_dangling_references(self) -> list[Rejected]:
        rejected: list[Rejected] = []
        for reference in self.feed.references:
            table = Base.metadata.tables[reference.table]
            column = self.stage.c[reference.column]
            dangling = and_(
                column.is_not(None),
                ~exists().where(table.c[reference.target] == column),
            )
            found = self.conn.execute(
                select(self.stage.c[LINE], column, *self._raw_columns()).where(dangling)
            ).all()
            if found:
                self.conn.execute(delete(self.stage).where(dangling))
                rejected += [
                    Rejected(
                        row[0],
                        reference.column,
                        f"unknown {reference.column} {row[1]!r} (not in {reference.table})",
                        self._raw(row[2:]),
                    )
                    for row in found
                ]
        return rejected

    def _raw_columns(self):
        return [self.stage.c[name] for name in self.columns]

    def _raw(self, values) -> str:
        return _raw("" if value is None else str(value) for value in values)

    def _upsert(self):
        dialect_insert = (
            postgresql.insert if self.conn.dialect.name == "postgresql" else (sqlite.insert)
        )
        source = select(*self._raw_columns()).where(true())
        statement = dialect_insert(self.target).from_select(self.columns, source)
        updates = {
            name: statement.excluded[name] for name in self.columns if name not in self.feed.key
        }
        return statement.on_conflict_do_update(index_elements=list(self.feed.key), set_=updates)


def bulk_insert(conn: Connection, table: Table, columns: list[str], frame: pd.DataFrame) -> None:
    """Insert a frame's rows as fast as the driver allows."""
    insert_rows(conn, table, columns, frame_rows(frame, columns))


def frame_rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """A frame's rows as tuples of plain Python values, None for missing.

    Timestamps become text in SQLAlchemy's SQLite format, which PostgreSQL also reads, so
    both back ends store what SQLAlchemy itself would have written.
    """
    return list(zip(*(_plain_values(frame[name]) for name in columns), strict=True))


def insert_rows(conn: Connection, table: Table, columns: list[str], rows: list[tuple]) -> None:
    """COPY on PostgreSQL, executemany elsewhere: the fastest path each driver offers."""
    if not rows:
        return
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"copy {table.name} ({names}) from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    conn.exec_driver_sql(f"insert into {table.name} ({names}) values ({marks})", rows)


def _plain_values(series: pd.Series) -> list:
    """A column as Python values the drivers bind directly, with None for missing."""
    if pd.api.types.is_datetime64_any_dtype(series):
        text = pd.Series(
            np.datetime_as_string(series.to_numpy(dtype="datetime64[us]"), unit="us"),
            index=series.index,
        ).str.replace("T", " ", n=1, regex=False)
        # object first: a str column's missing value is NaN, which PostgreSQL refuses
        return text.astype(object).where(series.notna(), None).tolist()
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=object, na_value=None)
        return values.tolist()
    return series.astype(object).where(series.notna(), None).tolist()


# --- one import -------------------------------------------------------------------------


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


def campaign_timezones(conn: Connection) -> dict[str, str]:
    return dict(conn.execute(select(Campaign.campaign_id, Campaign.timezone)).all())


def start_import(conn: Connection, feed: str, file: str) -> int:
    import_id = conn.execute(
        insert(Import)
        .values(feed=feed, file=file, started_at=_now(), status="running")
        .returning(Import.import_id)
    ).scalar_one()
    conn.commit()
    return import_id


def record_progress(conn: Connection, result: ImportResult, status: str = "running") -> None:
    conn.execute(
        update(Import)
        .where(Import.import_id == result.import_id)
        .values(
            rows_in=result.rows,
            rows_loaded=result.loaded,
            rows_quarantined=result.quarantined,
            status=status,
            finished_at=None if status == "running" else _now(),
        )
    )


def finish_import(conn: Connection, result: ImportResult, actor: str) -> None:
    record_progress(conn, result, status="loaded")
    conn.execute(
        insert(AuditEntry).values(
            actor=actor,
            action="feed.import",
            subject=f"{result.feed}:{result.file}",
            detail={
                "rows": result.rows,
                "loaded": result.loaded,
                "quarantined": result.quarantined,
                "import_id": result.import_id,
            },
        )
    )
    conn.commit()


def fail_import(conn: Connection, result: ImportResult, message: str) -> None:
    conn.rollback()
    record_progress(conn, result, status="failed")
    conn.execute(update(Import).where(Import.import_id == result.import_id).values(message=message))
    conn.commit()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def validate_chunk(
    feed: Feed,
    rows: list[list[str]],
    lines: list[int],
    header: list[str],
    timezones: dict[str, str],
    default_timezone: str,
    delimiter: str = ",",
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
    typed, errors = parse_chunk(feed, frame, timezones, default_timezone)
    bad = errors.groupby("index", sort=False).agg({"field": "first", "reason": "; ".join})
    failures = row_failures(
        feed.name, typed.drop(index=bad.index)[list(feed.column_names)], keys=feed.key
    )
    bad = pd.concat([bad, _failure_frame(failures)])
    bad = pd.concat([bad, _repeated_keys(typed.drop(index=bad.index), feed.key)])
    occurred = typed[feed.occurred_at] if feed.occurred_at else None
    rejected = [
        Rejected(
            int(frame.at[index, LINE]),
            str(row.field),
            str(row.reason),
            _raw(frame.loc[index, header], delimiter),
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
) -> ImportResult:
    """Import one CSV feed file; see the module docstring for the steps."""
    if feed_name not in FEEDS:
        raise UserError(f"unknown feed {feed_name!r}; expected one of {', '.join(FEEDS)}")
    feed = FEEDS[feed_name]
    handle = open_feed_file(path, feed.column_names)
    file = str(path)
    result = ImportResult(feed=feed_name, file=file, import_id=start_import(conn, feed_name, file))
    loader = StagedLoader(conn, feed)
    quarantine = QuarantineWriter(conn, feed_name, file, result.import_id)
    timezones = campaign_timezones(conn)
    chunks = read_chunks(handle, len(handle.header), chunk_rows)

    def prepare() -> PreparedChunk | None:
        chunk = next(chunks, None)
        if chunk is None:
            return None
        rows, lines, rejected = chunk
        typed, invalid = validate_chunk(
            feed, rows, lines, handle.header, timezones, default_timezone
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
                _count(result, chunk.size, rejected)
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
        row.raw = _raw(rows[position[row.line]])
        if occurred is not None and pd.notna(occurred.get(row.line)):
            row.occurred_at = occurred[row.line]
    return rejected


def _count(result: ImportResult, rows: int, rejected: list[Rejected]) -> None:
    result.rows += rows
    result.quarantined += len(rejected)
    result.loaded += rows - len(rejected)
    for row in rejected:
        reason = re.sub(r"line \d+|'[^']*'", "…", row.reason.split("; ")[0])
        result.reasons[reason] = result.reasons.get(reason, 0) + 1
