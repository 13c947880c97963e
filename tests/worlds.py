"""Demo worlds built once per test session, whichever modules ask for them.

A world is the synthetic demo history of `pdca.synthetic.demo_history` with given
parameters (customers, weeks, seed, first day), loaded through the feed importers as
`pdca demo` loads it. Several modules want the same world, and each used to generate its
feeds and import them itself; here the feeds are written once per parameter set under the
session's tmp dir, imported once per parameter set and back end into a template database,
and every module that mutates the world gets its own copy of that template:

- SQLite: the template file copied through SQLite's backup API (safe under WAL);
- PostgreSQL: `create database ... template ...`, which copies files, not rows.

A copy is byte for byte what a fresh load would have produced, so a module sees the same
data, audit rows and sequence values as when it loaded the world itself.

    @pytest.fixture(scope="module")
    def history(request, tmp_path_factory, demo_worlds: Worlds) -> str:
        folder = tmp_path_factory.mktemp("history")
        return demo_worlds.database(request, folder, "sqlite", World(3_000, weeks=6))

`demo_worlds` is the session fixture of `tests/conftest.py`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg
import pytest

from pdca.db import make_engine
from pdca.synthetic.demo_history import DemoFiles, write_demo_feeds


@dataclass(frozen=True)
class World:
    """The parameters of `write_demo_feeds` that tell one demo world from another."""

    customers: int
    weeks: int
    seed: int = 7
    start: date = date(2026, 3, 2)

    @property
    def slug(self) -> str:
        """A name for files and databases: `c3000_w6_s7_20260302`."""
        return f"c{self.customers}_w{self.weeks}_s{self.seed}_{self.start:%Y%m%d}"


_copies = itertools.count()


@dataclass
class Worlds:
    """The session's worlds: feeds per `World`, loaded templates per (`World`, back end)."""

    root: Path
    _feeds: dict[World, DemoFiles] = field(default_factory=dict)
    _templates: dict[tuple[World, str], str] = field(default_factory=dict)

    def feeds(self, world: World) -> DemoFiles:
        """The world's feed files and spec, written on first use."""
        if world not in self._feeds:
            self._feeds[world] = write_demo_feeds(
                self.root / "feeds" / world.slug,
                customers=world.customers,
                weeks=world.weeks,
                seed=world.seed,
                start=world.start,
            )
        return self._feeds[world]

    def database(
        self, request: pytest.FixtureRequest, folder: Path, backend: str, world: World
    ) -> str:
        """A database of the caller's own on `backend` with `world` loaded: its URL.

        `request` is the caller's (the PostgreSQL server starts only if a caller needs it);
        a SQLite copy is written into `folder`."""
        template = self._template(request, backend, world)
        if backend == "sqlite":
            path = folder / "pdca.db"
            _sqlite_copy(Path(template), path)
            return f"sqlite:///{path}"
        server = request.getfixturevalue("postgres")
        name = f"pdca_{world.slug}_{os.getpid()}_{next(_copies)}"
        _pg_create(server, name, template)
        return server.url(name)

    def _template(self, request: pytest.FixtureRequest, backend: str, world: World) -> str:
        """The loaded template for (`world`, `backend`): a file path or a database name."""
        key = (world, backend)
        if key not in self._templates:
            self._templates[key] = self._load_template(request, backend, world)
        return self._templates[key]

    def _load_template(self, request: pytest.FixtureRequest, backend: str, world: World) -> str:
        from tests.scenario import load_demo

        if backend == "sqlite":
            path = self.root / "templates" / f"{world.slug}.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
            url, made = f"sqlite:///{path}", str(path)
        else:
            server = request.getfixturevalue("postgres")
            made = f"pdca_world_{world.slug}_{os.getpid()}"
            _pg_create(server, made, "pdca_template")
            url = server.url(made)
        engine = make_engine(url)
        try:
            load_demo(engine, self.feeds(world))
        finally:
            # no connection may stay open: PostgreSQL refuses to copy a template in use
            engine.dispose()
        if backend != "sqlite":
            _pg_settle(url)
        return made


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy a SQLite database whole, including what still sits in its write-ahead log."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _pg_settle(url: str) -> None:
    """VACUUM ANALYZE the freshly loaded template, as autovacuum would soon after a load.

    A copy inherits the template's statistics but not its activity counters, so autovacuum
    never analyzes the copied tables: without this the planner meets 20,000 customers with
    no statistics at all, and the check's queries take minutes instead of seconds."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("vacuum analyze")


def _pg_create(server, name: str, template: str) -> None:
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{template}"')
