"""The benchmarks' database back ends: a SQLite file, or PostgreSQL.

`--backend postgresql` starts a throw-away PostgreSQL server on a loopback port, as the
tests do (tests/pg_server.py: initdb in a temporary folder, fsync off), and stops it at
the end. A benchmark builds its data the fast way into SQLite as before and copies every
table into a migrated PostgreSQL database with `COPY` (not timed), so that both back ends
are measured on the same rows.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BACKENDS = ("sqlite", "postgresql")


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="sqlite",
        help="pdca's database: a SQLite file, or a PostgreSQL server the benchmark starts.",
    )


@contextmanager
def postgres_server() -> Iterator[object]:
    """A throw-away PostgreSQL server for the `with` block (tests/pg_server.py)."""
    from tests.pg_server import start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def libpq(url: str) -> str:
    """The SQLAlchemy URL as psycopg's own connection string."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_database(server, name: str, template: str | None = None) -> str:
    """A new database on `server` (a copy of `template` when given); its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(libpq(server.url()), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}"')
        copy = f' template "{template}"' if template else ""
        conn.execute(f'create database "{name}"{copy}')
    return server.url(name)


def copy_sqlite_to_postgres(sqlite_path: Path, url: str) -> dict[str, int]:
    """Every table of a migrated SQLite database into the PostgreSQL database at `url`
    (migrated here, its seeded rows replaced), in foreign-key order, by `COPY`; serial
    ids continue after the copied ones; the tables are vacuumed and analysed, as
    autovacuum leaves a database that has been in use. Returns the rows copied per table."""
    import psycopg

    from pdca.db import upgrade
    from pdca.models import Base

    upgrade(url)
    source = sqlite3.connect(sqlite_path)
    copied: dict[str, int] = {}
    with psycopg.connect(libpq(url)) as conn:
        # the rows as they are: no trigger fires (the applications' would mark every
        # copied experiment member stale, migration 0008)
        conn.execute("set session_replication_role = replica")
        # the migrations seed reference tables (channels …): the copy brings the same rows
        conn.execute("truncate " + ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables))
        for table in Base.metadata.sorted_tables:
            names = [column.name for column in table.columns]
            columns = ", ".join(f'"{name}"' for name in names)
            rows = source.execute(f'select {columns} from "{table.name}"')
            count = 0
            with conn.cursor().copy(f'copy "{table.name}" ({columns}) from stdin') as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
            copied[table.name] = count
            for column in table.primary_key.columns:
                if column.autoincrement is True or (
                    column.autoincrement == "auto" and column.type.python_type is int
                ):
                    conn.execute(
                        "select setval(pg_get_serial_sequence(%s, %s), "
                        f'coalesce((select max("{column.name}") from "{table.name}"), 0) + 1, '
                        "false) where pg_get_serial_sequence(%s, %s) is not null",
                        (f'"{table.name}"', column.name, f'"{table.name}"', column.name),
                    )
        conn.commit()
        conn.autocommit = True
        # vacuumed, not only analysed: until the visibility map is set, an index-only scan
        # reads the table's rows too, and the check's baseline `GROUP BY` took 1.00, 0.86,
        # then 0.28 s in three turns as autovacuum caught up with the copy (2026-12-06)
        conn.execute("vacuum (analyze)")
    source.close()
    return copied
