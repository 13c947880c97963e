"""Reruns and backfills from the user's side: `pdca rerun` and `pdca backfill`, in-process
(no PREFECT_API_URL: the embedded API) on a small demo world in SQLite.

The deployment path (`run_deployment` through a server and a worker) is exercised by
tests/test_deployments.py. A second dispatch running at the same time as another is
refused by the dispatch lock: tests/flows/test_dispatch.py::TestConcurrentDispatch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import DateTime, Engine, func, select
from sqlalchemy.engine import make_url

import flows.check
from pdca.db import make_engine
from pdca.models import AuditEntry, CheckResult, WeeklyRollup
from pdca.synthetic.demo_history import CAMPAIGN_ID
from tests.prefect_server import seed_prefect_home
from tests.scenario import (
    database,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
)
from tests.worlds import World

pytestmark = pytest.mark.usefixtures("prefect_env")

UNTRUSTED_WEEK = "2026-W10"
"""The small demo world's first week: its deliberately bad rows put the quarantine above
the 1 % limit, so its check is untrusted (a data-quality failure)."""
FAULTY_WEEK = "2026-W12"
SMALL = World(customers=2000, weeks=4)
"""Built once per session (tests/worlds.py); the events and deployment tests use it too."""


@dataclass
class SmallWorld:
    url: str
    engine: Engine
    folder: Path


def build_small_world(folder: Path, request: pytest.FixtureRequest) -> SmallWorld:
    """The demo campaign with 2,000 customers over 4 weeks from 2026-03-02, loaded through
    the feed importers (with the demo's quarantined rows), in a SQLite file of its own."""
    url = request.getfixturevalue("demo_worlds").database(request, folder, "sqlite", SMALL)
    return SmallWorld(url, make_engine(url), folder)


@pytest.fixture(scope="module")
def small_world(request, tmp_path_factory) -> Iterator[SmallWorld]:
    world = build_small_world(tmp_path_factory.mktemp("ops-world"), request)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PDCA_OUTPUT_DIR", str(world.folder / "out"))
        patch.delenv("PREFECT_API_URL", raising=False)  # in-process: the embedded API
        with database(world.url):
            yield world
    world.engine.dispose()


def snapshot(engine: Engine, model, campaign_id: str = CAMPAIGN_ID) -> list[tuple]:
    """Every row of the campaign in `model`'s table, without timestamps and surrogate ids
    (a rerun deletes and re-inserts, so those two are new by design), sorted."""
    table = model.__table__
    columns = [
        column
        for column in table.columns
        if not isinstance(column.type, DateTime) and column.autoincrement is not True
    ]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(table.c.campaign_id == campaign_id)).all()
    return sorted(tuple(repr(value) for value in row) for row in rows)


def audit_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditEntry.action, func.count()).group_by(AuditEntry.action)
        ).all()
    return dict(rows)


def check_periods(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                select(CheckResult.period).where(CheckResult.campaign_id == CAMPAIGN_ID)
            ).scalars()
        )


def state(engine: Engine) -> dict:
    return {
        "check_results": snapshot(engine, CheckResult),
        "weekly_rollups": snapshot(engine, WeeklyRollup),
    }


class TestRerun:
    def test_rerun_replaces_and_never_duplicates(self, small_world, capfd):
        argv = ["rerun", "check", "--campaign", CAMPAIGN_ID, "--period", UNTRUSTED_WEEK]
        code, out, err = run_main(argv, capfd)
        assert code == 0, err[-2000:]
        assert f"check {CAMPAIGN_ID} {UNTRUSTED_WEEK}: Completed" in out
        first, audit_first = state(small_world.engine), audit_counts(small_world.engine)
        assert first["check_results"] and first["weekly_rollups"], "the check stored nothing"

        code, out, err = run_main(argv, capfd)
        assert code == 0, err[-2000:]
        second, audit_second = state(small_world.engine), audit_counts(small_world.engine)
        for table in first:
            assert second[table] == first[table], f"{table} changed on a rerun"
        assert check_periods(small_world.engine).count(UNTRUSTED_WEEK) == 1
        # the audit trail records every run (who/what/when) and nothing else
        assert audit_second == {**audit_first, "check.run": audit_first["check.run"] + 1}


class TestBackfill:
    def test_a_failed_period_is_reported_and_the_rest_still_run(
        self, small_world, capfd, monkeypatch
    ):
        validate = flows.check.validate_period_data

        def faulty(conn, spec, period):
            if str(period) == FAULTY_WEEK:
                raise RuntimeError(f"injected fault: {period} feeds unreadable")
            return validate(conn, spec, period)

        monkeypatch.setattr(flows.check, "validate_period_data", faulty)
        before = check_periods(small_world.engine)
        argv = ["backfill", "check", "--campaign", CAMPAIGN_ID]
        argv += ["--from", "2026-W11", "--to", "2026-W13", "--concurrency", "2"]
        code, out, err = run_main(argv, capfd)

        assert code == 1, (out, err[-2000:])
        lines = [line for line in out.splitlines() if line.startswith("check ")]
        assert [line.split(":")[0] for line in lines] == [
            f"check {CAMPAIGN_ID} 2026-W11",
            f"check {CAMPAIGN_ID} 2026-W12",
            f"check {CAMPAIGN_ID} 2026-W13",
        ], out
        assert "Completed" in lines[0] and "Completed" in lines[2], out
        assert "Failed" in lines[1] and "injected fault" in lines[1], out
        assert "2 of 3 runs completed; failed: 2026-W12" in err
        stored = set(check_periods(small_world.engine)) - set(before)
        assert stored == {"2026-W11", "2026-W13"}


RETRIED_FLUSH = re.compile(
    r"[^\n]*Error flushing \d+ events \(\d+ to retry, 0 dropped\)\n"
    r"Traceback \(most recent call last\):\n(?:(?!\d\d:\d\d:\d\d\.\d{3} \|)[^\n]*\n)*"
)
"""A log record of the embedded API's task-run recorder that could not write a batch of
events and put all of them back to write again (seen once in a full suite on busy cores):
Prefect's own retry, with its traceback, up to the next log record."""


def without_retried_flushes(stderr: str) -> str:
    """`stderr` without the embedded API's retried writes (RETRIED_FLUSH): any other
    traceback is a failure the user would see."""
    return RETRIED_FLUSH.sub("", stderr)


class TestBackfillInAFreshProcess:
    """What an engineer types: `pdca backfill` in a new process, at the default concurrency.

    In a fresh process the checks' threads are the first to use Great Expectations: two of
    them once registered the same suite at once and every period failed.
    """

    @pytest.mark.slow
    def test_every_period_completes_and_is_tagged_backfill(self, small_world, tmp_path):
        import sqlite3
        import subprocess
        import sys

        with (  # the backup API: the world's engine may still hold pages in its WAL
            sqlite3.connect(make_url(small_world.url).database) as source,
            sqlite3.connect(tmp_path / "pdca.db") as copy,
        ):
            source.backup(copy)
        home = seed_prefect_home(tmp_path / "prefect-home")  # migrated: a fresh *process*
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        env |= {
            "PDCA_DATABASE_URL": f"sqlite:///{tmp_path / 'pdca.db'}",
            "PDCA_OUTPUT_DIR": str(tmp_path / "out"),
            "PREFECT_HOME": str(home),
        }
        argv = ["backfill", "check", "--campaign", CAMPAIGN_ID, "--from", "2026-W10"]
        pdca = Path(sys.executable).parent / "pdca"
        done = subprocess.run(
            [str(pdca), *argv, "--to", "2026-W13"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert "4 of 4 runs completed" in done.stdout, done.stdout + done.stderr[-3000:]
        assert done.returncode == 0
        assert "Traceback" not in without_retried_flushes(done.stderr), done.stderr
        with sqlite3.connect(home / "prefect.db") as prefect_db:
            tags = prefect_db.execute(
                "select tags from flow_run where name like 'check %'"
            ).fetchall()
        assert len(tags) == 4 and all('"backfill"' in row[0] for row in tags), tags


class TestUsage:
    """Bad usage is refused with one line and exit code 2, before any flow runs."""

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["rerun", "review", "--campaign", "c", "--period", "2026-W10"], "unknown stage"),
            (["rerun", "check", "--campaign", "c"], "give --period"),
            (["rerun", "dispatch", "--campaign", "c", "--period", "2026-W10"], "give --date"),
            (["rerun", "check", "--campaign", "c", "--period", "2026-W99"], "no ISO week"),
            (
                ["backfill", "check", "--campaign", "c", "--from", "2026-W10", "--to", "2026-03"],
                "both must be a week",
            ),
            (
                ["backfill", "plan", "--campaign", "c", "--from", "2026-05", "--to", "2026-03"],
                "is after --to",
            ),
            (
                ["backfill", "dispatch", "--campaign", "c", "--from", "2026-W10", "--to", "x"],
                "expected a date",
            ),
        ],
    )
    def test_refused(self, argv, message, capfd):
        code, out, err = run_main(argv, capfd)
        assert code == 2, err
        assert out == ""
        (line,) = [line for line in err.splitlines() if line.startswith("pdca: error: ")]
        assert message in line


class TestEmbeddedApiSettings:
    """A command's flow runs send heartbeats only to a server: on the embedded API every
    sync flow run would wait out the heartbeat thread's sleep step for nothing."""

    def test_no_heartbeats_on_the_embedded_api(self, monkeypatch):
        from prefect.settings import get_current_settings

        from flows.operations import embedded_api_settings

        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        with embedded_api_settings():
            assert get_current_settings().flows.heartbeat_frequency is None

    def test_heartbeats_kept_with_a_server(self, monkeypatch):
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
            get_current_settings,
            temporary_settings,
        )

        from flows.operations import embedded_api_settings

        server = {PREFECT_API_URL: "http://127.0.0.1:1/api", PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}
        with temporary_settings(updates=server), embedded_api_settings():
            assert get_current_settings().flows.heartbeat_frequency == 180
