"""Step 5 of the import (`tasks.data.importing`): a chunk through a stage table, in SQL.

Keys already loaded from an earlier chunk of the same file and references to rows that are
not loaded are refused in the database; the rest upserts into the feed's table.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import (
    Column as SqlColumn,
)
from sqlalchemy import (
    Connection,
    Integer,
    MetaData,
    ScalarSelect,
    Select,
    Table,
    and_,
    delete,
    exists,
    insert,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from pdca.models import Base
from tasks.common.feeds import SOURCE_COLUMN, Feed
from tasks.data.import_parsing import LINE
from tasks.data.inserts import frame_rows, insert_rows
from tasks.data.quarantine import Rejected, csv_line


class StagedLoader:
    """Loads typed chunks of one feed through a temporary stage table, in SQL.

    The stage holds one chunk at a time; `seen` holds the keys of the chunks already
    loaded from this file, so that a key repeated far apart in the file is still caught.
    A table that records its rows' source feed (`source_feed`) gets `source` there: the
    feed being imported unless a feed writes another's table (uci-bank's applications).
    """

    def __init__(self, conn: Connection, feed: Feed, source: str | None = None) -> None:
        self.conn = conn
        self.feed = feed
        self.target: Table = Base.metadata.tables[feed.table]
        self.columns = list(feed.column_names)
        self.constants = (
            {SOURCE_COLUMN: source or feed.name} if SOURCE_COLUMN in self.target.c else {}
        )
        self.stored = [*self.columns, *self.constants]
        """What is written: the feed's columns, then the constants."""
        metadata = MetaData()
        self.stage = Table(
            f"stage_{feed.table}",
            metadata,
            *(SqlColumn(name, self.target.c[name].type) for name in self.stored),
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
        frame = typed.assign(**self.constants) if self.constants else typed
        return frame_rows(frame, [*self.stored, LINE])

    def load(self, stage_rows: list[tuple]) -> list[Rejected]:
        """Stage the rows, reject repeats and dangling references, upsert the rest."""
        self._empty_stage()
        insert_rows(self.conn, self.stage, [*self.stored, LINE], stage_rows)
        rejected = self._reject_repeated_keys() + self._reject_dangling_references()
        self.conn.execute(self._upsert())
        self.conn.execute(
            insert(self.seen).from_select(
                [*self.feed.key, LINE],
                select(*(self.stage.c[k] for k in self.feed.key), self.stage.c[LINE]),
            )
        )
        return rejected

    def _empty_stage(self) -> None:
        """The stage emptied for the next chunk: PostgreSQL's `truncate` drops the temporary
        table's pages at once, where `delete` marks 100,000 rows dead one by one (0.37 s a
        chunk); SQLite's unconditional `delete` already truncates."""
        if self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql(f"truncate {self.stage.name}")
        else:
            self.conn.execute(delete(self.stage))

    def repeated_keys(self) -> Select:
        """The staged rows whose key an earlier chunk of the file loaded: the line, the
        line of the first occurrence, the row's values (one probe of `seen` each)."""
        first = self._first_line()
        return select(self.stage.c[LINE], first.label("first"), *self._raw_columns()).where(
            first.is_not(None)
        )

    def _first_line(self) -> ScalarSelect:
        """Per staged row, the line where the file first had its key (null if new): a
        scalar subquery, one probe of `seen`'s key index per staged row.

        Not a join: autovacuum never analyses a temporary table, so PostgreSQL's planner
        took `seen` for small and hashed it whole on every chunk. A file's seventh to tenth
        chunks hashed 600,000-900,000 keys to look up 100,000 (0.36-0.68 s each); the
        hundredth chunk of a 10-million-row file would hash 9.9 million. The probe stays
        a lookup (about 0.2 s a chunk), whatever the file's size.
        """
        same_key = and_(*(self.seen.c[k] == self.stage.c[k] for k in self.feed.key))
        return select(self.seen.c[LINE]).where(same_key).limit(1).scalar_subquery()

    def _reject_repeated_keys(self) -> list[Rejected]:
        found = self.conn.execute(self.repeated_keys()).all()
        if not found:
            return []
        self.conn.execute(delete(self.stage).where(self._first_line().is_not(None)))
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
            # a join, which the planner chooses knowing the referenced table's size
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
        return csv_line("" if value is None else str(value) for value in values)

    def _upsert(self):
        dialect_insert = (
            postgresql.insert if self.conn.dialect.name == "postgresql" else (sqlite.insert)
        )
        source = select(*(self.stage.c[name] for name in self.stored)).where(true())
        statement = dialect_insert(self.target).from_select(self.stored, source)
        updates = {
            name: statement.excluded[name] for name in self.stored if name not in self.feed.key
        }
        return statement.on_conflict_do_update(index_elements=list(self.feed.key), set_=updates)
