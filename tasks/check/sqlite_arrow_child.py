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
the driver and pyarrow, so it starts in a fraction of a second.
"""

from __future__ import annotations

import json
import sys


def serve(database: str, cache_size: int, temp_store: int) -> None:
    import adbc_driver_sqlite.dbapi as driver
    import pyarrow as pa

    out = sys.stdout.buffer
    with driver.connect(database, autocommit=True) as connection:
        with connection.cursor() as cursor:
            cursor.execute(f"pragma cache_size={int(cache_size)}")
            cursor.execute(f"pragma temp_store={int(temp_store)}")
        for line in sys.stdin.buffer:
            request = json.loads(line)
            try:
                with connection.cursor() as cursor:
                    cursor.adbc_statement.set_options(
                        **{"adbc.sqlite.query.batch_rows": str(int(request["batch_rows"]))}
                    )
                    cursor.execute(request["sql"], tuple(request["params"]))
                    table = cursor.fetch_arrow_table()
            except Exception as error:  # the parent decides: fall back, or raise
                out.write(b"E" + json.dumps(f"{type(error).__name__}: {error}").encode() + b"\n")
                out.flush()
                continue
            out.write(b"T")
            with pa.ipc.new_stream(out, table.schema) as writer:
                writer.write_table(table)
            out.flush()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
