"""Shared fixtures: a fresh, migrated database per test on SQLite and on real PostgreSQL,
the session's demo worlds, and the marks every test gets from what it uses.

`db_url` is parametrised over both back ends, so every test that takes it runs twice;
the PostgreSQL server starts once per session (on first use) and stops at the end.
A test that needs a server process (PostgreSQL, a Prefect server, also the temporary one
a flow run starts) is marked `slow` here, whatever its module says, so
`pytest -m "not slow"` (`make test-quick`) never starts one.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from pdca.db import make_engine, upgrade
from tests.pg_server import PostgresServer, start_postgres
from tests.prefect_server import TEMPLATE_ROOT, seed_prefect_home
from tests.scenario import drain_prefect_events
from tests.worlds import Worlds

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect reads its settings when first imported (by a test module, before any fixture
# runs): the embedded API's start-up allowance must be in the environment by then, or a
# fresh PREFECT_HOME migrating on busy cores exceeds the default 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
UCI_FILE = SHARED_DATA / "uci-bank-marketing" / "bank-full.csv"

_counter = itertools.count()

SERVER_FIXTURES = {"postgres": "postgres", "prefect_server": None, "prefect_home": None}
"""Fixtures that start a server process → the mark they imply besides `slow`. `prefect_home`
(and `prefect_env` on it) is for tests that run flows: without PREFECT_API_URL, Prefect
starts a temporary API server (a uvicorn process) for them and waits until it is up."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow` (and `postgres`) on every test that needs a server process: the PostgreSQL
    parameter of `db_url` and of the fixtures built on `BACKENDS` carry the `postgres`
    mark already; a test that asks for a server fixture by name gets it here."""
    for item in items:
        marks = {mark.name for mark in item.iter_markers()}
        for fixture, implied in SERVER_FIXTURES.items():
            if fixture in item.fixturenames and implied and implied not in marks:
                item.add_marker(implied)
                marks.add(implied)
        needs_server = "postgres" in marks or any(f in item.fixturenames for f in SERVER_FIXTURES)
        if needs_server and "slow" not in marks:
            item.add_marker(pytest.mark.slow)
    items.sort(key=_module_rank)


LONGEST_FIRST = (
    "tests/test_scale_out.py",  # 18 checks on two workers, each a flow-run process
    "tests/flows/test_check_uci.py",  # 31 monthly checks of the UCI history
    "tests/simulation/test_simulate_cli.py",  # two short seasons, day by day
    "tests/test_deployments.py",  # a real server, a worker and a flow-run process per test
    "tests/flows/test_demo.py",  # the demo at 50,000 and 60,000 customers
    "tests/flows/test_check.py",  # the 20,000-customer check world on both back ends
    "tests/tasks/check/test_data_quality.py",  # 80 GE validations, both back ends
    "tests/test_schedules.py",
    "tests/flows/test_operations.py",
    "tests/flows/test_dispatch.py",
    "tests/test_cli.py",
    "tests/test_local_server.py",  # `pdca server start`, flow commands against it
    "tests/flows/test_weekly_review.py",
    "tests/flows/test_fanout.py",  # three checks twice: in process, on a 2-worker Dask cluster
    "tests/test_automations.py",
    "tests/tasks/data/test_fuzz.py",
    "tests/tasks/ops/test_events.py",
    "tests/flows/test_act.py",
    "tests/tasks/data/test_quality.py",
)
"""The modules that take longest (measured with --durations), started first: with a module
kept on one worker (`--dist loadfile`) and handed out in this order (`make test` passes
`--no-loadscope-reorder`; xdist would otherwise start the modules with the most tests
first, and the few-but-long ones last), each free worker takes the longest module left,
and the many short ones fill the gaps at the end."""


def _module_rank(item: pytest.Item) -> int:
    """The module's place in LONGEST_FIRST, the rest after it in collection order (the sort
    is stable, and every worker sorts the same collection the same way)."""
    path = Path(str(item.path)).relative_to(Path(__file__).resolve().parents[1]).as_posix()
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("create database pdca_template")
        upgrade(server.url("pdca_template"))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def prefect_template_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where `seed_prefect_home` keeps the run's one migrated Prefect database: the run's
    base temp folder (under pytest-xdist, the parent of the workers' own, which they share).
    Nothing is migrated until a test asks for a Prefect home."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TEMPLATE_ROOT, str(root))
        yield


@pytest.fixture(scope="module", autouse=True)
def prefect_events_drained() -> Iterator[None]:
    """After each module, Prefect's events worker (a flow's, in this process) is stopped,
    so that its websocket's pings never draw from the global `random` module while a
    later module's Hypothesis test draws its examples (tests/scenario.py:
    `drain_prefect_events`)."""
    yield
    drain_prefect_events()


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An isolated PREFECT_HOME for the flows the tests run (never the user's ~/.prefect),
    its database migrated already (tests/prefect_server.py: seed_prefect_home)."""
    return seed_prefect_home(tmp_path_factory.mktemp("prefect-home"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh migrated database on each back end."""
    if request.param == "sqlite":
        path = tmp_path / "pdca.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"pdca_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'create database "{name}" template pdca_template')
    return server.url(name)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh migrated SQLite database, for tests whose subject is not the back end."""
    path = tmp_path / "pdca.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def demo_worlds(tmp_path_factory: pytest.TempPathFactory) -> Worlds:
    """Each demo world generated and loaded once per session (tests/worlds.py)."""
    return Worlds(tmp_path_factory.mktemp("worlds"))


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """A real Prefect server for the session (tests/prefect_server.py): `.api_url`,
    `.home`; `with prefect_server.use():` points this process's flows and clients at it,
    `prefect_server.env()` a subprocess's."""
    from tests.prefect_server import start_prefect_server

    server = start_prefect_server(tmp_path_factory.mktemp("prefect-server"))
    try:
        yield server
    finally:
        server.stop()
