"""Rows into a table as fast as each driver allows: COPY on PostgreSQL, executemany elsewhere.

Used by the feed import (stage tables, quarantine) and by dispatch's outbox.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Table


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
