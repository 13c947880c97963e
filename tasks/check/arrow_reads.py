"""The data-quality check's rows, read as Arrow columns rather than one Python object per value.

Great Expectations validates pandas frames; a week of touches at scale is ~830,000 rows
× 9 columns, and reading them through the DB-API (a tuple per row, an object per value,
then `DataFrame.from_records`) cost most of the check's data-quality time. An ADBC
driver (SQLite's or PostgreSQL's) hands the result over as Arrow columns instead, which
pandas takes without a Python object per value.

`RowReader.frame` reads one query of `sql/` either way and returns the same frame: the
ADBC path normalises what Arrow types differently from the DB-API's Python values
(integers of any width become int64, as Python ints do; PostgreSQL's `numeric` becomes
Decimal objects; a column NULL in every row and an empty result are untyped), so
`data_quality._typed` sees what it always saw.

ADBC reads on a connection of its own, opened from the engine's URL, in autocommit: each
query sees what was committed when it started, as the check's reads did before (Python's
sqlite3 reads outside a transaction; PostgreSQL's read-committed transaction takes a
snapshot per statement). It does not see writes the SQLAlchemy connection has not
committed, so a caller that validates its own uncommitted rows reads with `arrow=False`.
On SQLite the driver runs in a child process (`sqlite_arrow_child.py` says why: two
copies of SQLite must not share a database file within one process).

The DB-API path remains where ADBC cannot go: an in-memory SQLite database (private to
its connection), another back end, and the rare SQLite result whose column changes type
after the driver's first batch (SQLite types values, not columns; the driver types a
column by its first batch).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import pandas as pd
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL

from pdca.db import postgres_options
from tasks.common.sqlfiles import query

if TYPE_CHECKING:
    import pyarrow as pa

READ_ROWS = 100_000
"""Rows turned into a frame at a time on the DB-API path (bounds the objects alive)."""

SQLITE_BATCH_ROWS = 200_000
"""Rows per Arrow batch from SQLite: the driver types each column by the first batch, so a
large batch both reads faster and lets a column whose first rows are NULL find its type."""

SQLITE_ARROW_MIN_TOUCHES = 200_000
"""A period's touches from which the check reads a SQLite database through the ADBC child.
Starting the child (a process importing pyarrow and the driver) costs 0.3-0.4 s a check,
and below this the DB-API reads as fast or faster (measured on idle cores, data quality as
a whole, medians of 5, DB-API against child: a UCI month of 3,598 touches 0.44 s against
0.77 s; the demo week, 11,430 touches, 1.27 s against 1.53 s; a week of 166,666 touches
1.84 s against 1.91 s)."""

PARAMSTYLE_DIALECTS = {
    "sqlite": lambda: sqlite.dialect(paramstyle="qmark"),
    "postgresql": lambda: postgresql.psycopg.dialect(paramstyle="numeric_dollar"),
}
"""How each ADBC driver takes bind parameters: `?` in order (SQLite), `$1 …` (PostgreSQL)."""


class RowReader:
    """Reads `sql/` queries for one data-quality check, through ADBC when it can.

    Use as a context manager: the ADBC connection, opened on the first read, is closed
    at the end."""

    def __init__(
        self, conn: Connection, *, arrow: bool = True, sqlite_batch_rows: int = SQLITE_BATCH_ROWS
    ) -> None:
        self.conn = conn
        self.sqlite_batch_rows = sqlite_batch_rows
        self.dialect = conn.dialect.name
        self.arrow = arrow and adbc_target(conn) is not None
        self._adbc: Any = None
        self._ahead: _ReadAhead | None = None

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        # a caller that stopped taking frames (an error) leaves its read-ahead thread
        # reading: it ends before the connection it reads on is closed
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = None
        if self._adbc is not None:
            self._adbc.close()
            self._adbc = None

    def frame(self, name: str, params: dict) -> pd.DataFrame:
        """The rows of `sql/<name>.sql` as an untyped frame (extra `params` are ignored)."""
        if self.arrow:
            try:
                return arrow_frame(self._read_arrow(name, params))
            except Exception as error:
                if not is_type_mismatch(error):
                    raise
                # a SQLite column whose values change type: read it as Python values
        return records_frame(self.conn, name, params)

    def frames(self, reads: Sequence[tuple[str, dict]], ahead_rows: int) -> Iterator[pd.DataFrame]:
        """The frames of `reads` (`sql/` query name, parameters) in order, as `frame` reads
        them; through ADBC, each is read on a thread of its own while the caller works on
        the ones before, until `ahead_rows` rows wait untaken (the next frame is always
        read). The database works on the next reads while the caller validates what it
        has (on 2 cores, a week's applications, decisions and loans are read while its
        touches are validated); memory holds at most `ahead_rows` rows more than the
        caller keeps, plus one frame. On the DB-API path the reads use the caller's
        connection, which must not serve two threads: they are read when taken."""
        if not self.arrow:
            for name, params in reads:
                yield self.frame(name, params)
            return
        ahead = self._ahead = _ReadAhead(self._read_arrow, reads, ahead_rows)
        try:
            for name, params in reads:
                table = ahead.take()
                if isinstance(table, BaseException):
                    if not is_type_mismatch(table):
                        raise table
                    yield records_frame(self.conn, name, params)
                else:
                    yield arrow_frame(table)
        finally:
            ahead.stop()

    def _read_arrow(self, name: str, params: dict) -> pa.Table:
        sql, values = adbc_statement(name, self.dialect, params)
        if self.dialect == "sqlite":
            return self._connection().read(sql, values, self.sqlite_batch_rows)
        with closing(self._connection().cursor()) as cursor:
            cursor.execute(sql, values)
            return cursor.fetch_arrow_table()

    def _connection(self) -> Any:
        if self._adbc is None:
            self._adbc = open_adbc(self.conn)
        return self._adbc


class _ReadAhead:
    """`RowReader.frames`' reading thread: reads each query in order and hands over the
    Arrow table, or the exception the read raised (the caller decides: fall back or raise);
    it waits while `ahead_rows` rows are read and not yet taken."""

    def __init__(
        self,
        read: Callable[[str, dict], pa.Table],
        reads: Sequence[tuple[str, dict]],
        ahead_rows: int,
    ) -> None:
        self.read, self.reads, self.ahead_rows = read, list(reads), ahead_rows
        self.ready: deque[pa.Table | BaseException] = deque()
        self.waiting_rows = 0
        self.stopped = False
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="pdca-dq-read-ahead", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for name, params in self.reads:
            with self.condition:
                self.condition.wait_for(lambda: self.stopped or self.waiting_rows < self.ahead_rows)
                if self.stopped:
                    return
            try:
                table: pa.Table | BaseException = self.read(name, params)
            except BaseException as error:  # handed to the caller, who raises it
                table = error
            with self.condition:
                self.ready.append(table)
                if not isinstance(table, BaseException):
                    self.waiting_rows += table.num_rows
                self.condition.notify_all()

    def take(self) -> pa.Table | BaseException:
        """The next read's table (or exception), waiting for it."""
        with self.condition:
            self.condition.wait_for(lambda: bool(self.ready))
            table = self.ready.popleft()
            if not isinstance(table, BaseException):
                self.waiting_rows -= table.num_rows
            self.condition.notify_all()
            return table

    def stop(self) -> None:
        """Stop reading (the caller is done or failed) and wait for the read under way,
        which uses the reader's connection, to end."""
        with self.condition:
            self.stopped = True
            self.condition.notify_all()
        self.thread.join()


def arrow_pays(conn: Connection, window: dict, min_touches: int = SQLITE_ARROW_MIN_TOUCHES) -> bool:
    """Whether the reads of the data-quality `window` (`:campaign_id`, `:starts_at`,
    `:ends_at`) should go through ADBC: always on PostgreSQL, whose driver connects in
    this process; on SQLite only when the period has at least `min_touches` touches, the
    size from which the child's start pays for itself (counted from an index first)."""
    if conn.dialect.name != "sqlite":
        return True
    touches = conn.execute(query("dq_touch_count", "sqlite"), window).scalar_one()
    return touches >= min_touches


def adbc_target(conn: Connection) -> str | None:
    """What an ADBC driver connects to for `conn`'s database: SQLite's file path, or a libpq
    URI (the SQLAlchemy URL without its `+psycopg` driver part, with pdca's session options:
    `pdca.db.POSTGRES_OPTIONS`); None where ADBC cannot
    reach the same data (an in-memory SQLite database, another back end)."""
    url: URL = conn.engine.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database
        if database in (None, "", ":memory:") or url.query:
            return None
        return str(Path(database).resolve())
    if backend == "postgresql":
        address = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
        query = {**url.query, "options": postgres_options(url)}
        # percent-encoded: libpq reads a '+' in a URI as itself, not as a space
        return f"{address}?{urlencode(query, doseq=True, quote_via=quote)}"
    return None


def open_adbc(conn: Connection) -> Any:
    """An autocommit ADBC connection to `conn`'s PostgreSQL database, or for SQLite a
    `SqliteChild` process reading it with `conn`'s page cache and temporary store (so its
    queries, the funnel's application counts sort, run as they would on `conn`)."""
    target = adbc_target(conn)
    if target is None:
        raise ValueError(f"no ADBC driver reaches {conn.engine.url!r}")
    if conn.dialect.name == "postgresql":
        import adbc_driver_postgresql.dbapi as driver

        return driver.connect(target, autocommit=True)
    pragmas = [conn.exec_driver_sql(f"pragma {name}").scalar() for name in SQLITE_PRAGMAS]
    return SqliteChild(target, *(int(value) for value in pragmas))


SQLITE_PRAGMAS = ("cache_size", "temp_store")


class SqliteChild:
    """ADBC's SQLite driver in a child process (`sqlite_arrow_child.py` says why): one per
    check, started on its first read, ended by `close`."""

    def __init__(self, database: str, cache_size: int, temp_store: int) -> None:
        script = Path(__file__).with_name("sqlite_arrow_child.py")
        command = [sys.executable, str(script), database, str(cache_size), str(temp_store)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, sql: str, values: tuple, batch_rows: int) -> pa.Table:
        """The result of `sql` with `values` bound, as one Arrow table."""
        import pyarrow as pa

        request = {"sql": sql, "params": list(values), "batch_rows": batch_rows}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        answer = self.process.stdout.read(1)
        if answer == b"T":
            return pa.ipc.open_stream(self.process.stdout).read_all()
        if answer == b"E":
            raise ChildReadError(json.loads(self.process.stdout.readline()))
        raise ChildReadError(f"the SQLite reader ended (exit status {self.process.wait()})")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.stdout.close()
        self.process.wait()


class ChildReadError(RuntimeError):
    """A query the SQLite reader could not answer, with the driver's message."""


def adbc_statement(name: str, dialect: str, params: dict) -> tuple[str, tuple]:
    """`sql/<name>.sql` with its `:name` binds in the ADBC driver's style, and their values
    in order, each as SQLAlchemy would bind it (on SQLite a timestamp is the stored text
    'YYYY-MM-DD HH:MM:SS.ffffff', so text comparison stays exact)."""
    target = PARAMSTYLE_DIALECTS[dialect]()
    compiled = query(name, dialect).compile(dialect=target)
    values = []
    for parameter in compiled.positiontup or ():
        value = params[parameter]
        kind = compiled.binds[parameter].type.dialect_impl(target)
        process = kind.bind_processor(target)
        values.append(value if process is None or value is None else process(value))
    return compiled.string, tuple(values)


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow result as the DB-API path would have framed it: integers as int64 (a
    Python int's type; int64 with a NULL becomes float64 either way), PostgreSQL's
    `numeric` (a sum of bigints; ADBC passes it on as text) as Decimal objects, a column
    NULL in every row as objects (None; SQLite's driver would type it int64, PostgreSQL's
    by the column) and an empty result as untyped columns."""
    import pyarrow as pa

    if table.num_rows == 0:
        return pd.DataFrame(columns=table.column_names)
    frame = table.cast(pa.schema([_as_dbapi(f) for f in table.schema])).to_pandas()
    for name, column in zip(table.column_names, table.columns, strict=True):
        if column.null_count == table.num_rows:
            values = [None] * table.num_rows
        elif getattr(column.type, "type_name", None) == "numeric":
            values = [None if v is None else Decimal(v) for v in column.to_pylist()]
        else:
            continue
        frame[name] = pd.Series(values, dtype=object, index=frame.index)
    return frame


def _as_dbapi(field: pa.Field) -> pa.Field:
    import pyarrow as pa

    return pa.field(field.name, pa.int64()) if pa.types.is_integer(field.type) else field


def records_frame(conn: Connection, name: str, params: dict) -> pd.DataFrame:
    """The rows of `sql/<name>.sql` through the DB-API: the driver's tuples, in parts of
    READ_ROWS so that a week's rows never all exist as Python objects at once (a `text()`
    query has no result processors, so SQLAlchemy's Rows would only wrap the tuples, and
    pandas reads Rows 4x more slowly)."""
    result = conn.execute(query(name, conn.dialect.name), params)
    columns = list(result.keys())
    parts = []
    with closing(result):
        while rows := result.cursor.fetchmany(READ_ROWS):
            parts.append(pd.DataFrame.from_records(rows, columns=columns))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def is_type_mismatch(error: Exception) -> bool:
    """Whether `error` is SQLite's driver refusing a value whose type differs from what it
    inferred for the column from the first batch."""
    return isinstance(error, ChildReadError) and "[SQLite] Type mismatch" in str(error)
