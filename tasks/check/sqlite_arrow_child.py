"""A child process that reads a SQLite database through ADBC and answers in Arrow IPC.

Why a process of its own: the ADBC SQLite driver links its own copy of SQLite, and two
copies of SQLite in one process must not open the same database file (sqlite.org,
"How To Corrupt An SQLite Database File", 2.2.1): POSIX locks belong to the process, so
one copy closing the file drops the other's locks, and neither sees the other's WAL
index bookkeeping (a second connection of the ADBC copy reads rows committed since
through Python's `sqlite3` as they were before). Across processes SQLite shares a
database safely, as it does between pdca's commands.

Protocol (stdin / stdout, run as `python sqlite_arrow_child.py DATABASE CACHE_SIZE
TEMP_STORE`): each request is one JSON line `{"sql": ..., "params": [...],
"batch_rows": n}`; each answer is `T` and one Arrow IPC stream of the result, or `E` and
one JSON line with the error's text. The child ends when stdin closes. It imports only
the driver and pyarrow, so it starts in a quarter of a second.
"""

from __future__ import annotations

import json
import os
import sys


def serve(database: str, cache_size: int, temp_store: int) -> None:
    # the driver's low-level API: its DB-API module imports pandas, which would double
    # the child's start (0.45 s → 0.25 s), and nothing here needs it
    import adbc_driver_manager
    import adbc_driver_sqlite
    import pyarrow as pa

    out = sys.stdout.buffer
    with (
        adbc_driver_sqlite.connect(database) as db,
        adbc_driver_manager.AdbcConnection(db) as connection,  # ADBC's default: autocommit
    ):
        for pragma, value in (("cache_size", cache_size), ("temp_store", temp_store)):
            _query(connection, f"pragma {pragma}={int(value)}", [], 1)
        for line in sys.stdin.buffer:
            request = json.loads(line)
            try:
                table = _query(connection, request["sql"], request["params"], request["batch_rows"])
            except Exception as error:  # the parent decides: fall back, or raise
                out.write(b"E" + json.dumps(f"{type(error).__name__}: {error}").encode() + b"\n")
                out.flush()
                continue
            out.write(b"T")
            with pa.ipc.new_stream(out, table.schema) as writer:
                writer.write_table(table)
            out.flush()


def _query(connection, sql: str, params: list, batch_rows: int):
    """The result of `sql` with `params` bound to its `?` in order, as one Arrow table."""
    import adbc_driver_manager
    import pyarrow as pa

    with adbc_driver_manager.AdbcStatement(connection) as statement:
        statement.set_options(**{"adbc.sqlite.query.batch_rows": str(int(batch_rows))})
        statement.set_sql_query(sql)
        if params:
            columns = [pa.array([value]) for value in params]
            statement.bind(pa.record_batch(columns, names=[str(i) for i in range(len(params))]))
        stream, _ = statement.execute_query()
        return pa.RecordBatchReader.from_stream(stream).read_all()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    sys.stdout.flush()
    os._exit(0)  # the connection is closed; the interpreter's teardown (~0.25 s) is not needed
