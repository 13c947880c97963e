"""Fan-out across campaigns on Dask, from the operator's side: the scheduled check of three
campaigns run once on the default runner (one after another, in this process) and once
with `PDCA_DASK_ADDRESS` naming a real local Dask cluster of two worker processes.

The world: the small demo world (2,000 customers, four weeks from 2026-03-02) whose
customers are split, with their touches, applications, complaints and surveys, into three
campaigns of the demo's spec. The same scheduled run must give the same outcomes and the
same stored results both ways, and the Dask run's campaign tasks must have run on both
workers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from flows.fanout import DASK_EXTRA, campaign_task_runner, same_database
from flows.operations import scheduled_check_flow
from pdca.errors import UserError
from pdca.models import CheckResult, WeeklyRollup
from pdca.settings import Settings, get_settings
from pdca.synthetic.demo_history import CAMPAIGN_ID
from tasks.common.campaigns import apply_spec, load_spec
from tests.flows.test_operations import SMALL, SmallWorld, build_small_world, snapshot
from tests.scenario import (
    database,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
)

CAMPAIGNS = [CAMPAIGN_ID, f"{CAMPAIGN_ID}-north", f"{CAMPAIGN_ID}-south"]
"""The demo campaign and two copies of its spec, each with a third of its customers."""
AS_OF = datetime(2026, 3, 22, 22, 30, tzinfo=UTC)
"""Monday 2026-03-23 06:30 in Shanghai: the scheduled check looks at 2026-W12."""
MOVED = ("touches", "applications", "complaints", "surveys")
"""The tables whose rows carry a campaign: a customer's rows move with the customer."""


def split_into_campaigns(world: SmallWorld, request: pytest.FixtureRequest) -> None:
    """The copies of the demo's spec applied, and each customer's rows moved to campaign
    number (the customer id's last digit mod 3): three campaigns with data of their own."""
    spec = load_spec(request.getfixturevalue("demo_worlds").feeds(SMALL).spec)
    with world.engine.begin() as conn:
        for number, campaign_id in enumerate(CAMPAIGNS[1:], start=1):
            apply_spec(conn, spec.model_copy(update={"id": campaign_id}), actor="test")
            for table in MOVED:
                conn.execute(
                    text(
                        f"update {table} set campaign_id = :moved where campaign_id = :demo "
                        "and cast(substr(customer_id, -1) as integer) % 3 = :number"
                    ),
                    {"moved": campaign_id, "demo": CAMPAIGN_ID, "number": number},
                )


@pytest.fixture(scope="module")
def three_campaigns(request, tmp_path_factory, prefect_env) -> Iterator[SmallWorld]:  # noqa: F811
    world = build_small_world(tmp_path_factory.mktemp("fanout-world"), request)
    split_into_campaigns(world, request)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PDCA_OUTPUT_DIR", str(world.folder / "out"))
        patch.delenv("PREFECT_API_URL", raising=False)  # the embedded API
        patch.delenv("PDCA_DASK_ADDRESS", raising=False)
        with database(world.url):
            yield world
    world.engine.dispose()


def stored(world: SmallWorld) -> dict[str, dict[str, list[tuple]]]:
    """Each campaign's check results and weekly rollups, without run times and ids."""
    return {
        campaign_id: {
            "check_results": snapshot(world.engine, CheckResult, campaign_id),
            "weekly_rollups": snapshot(world.engine, WeeklyRollup, campaign_id),
        }
        for campaign_id in CAMPAIGNS
    }


@pytest.mark.slow
class TestScheduledCheckOnDask:
    def test_same_results_as_the_default_runner_and_both_workers_used(
        self, three_campaigns, monkeypatch
    ):
        from distributed import Client, LocalCluster, get_task_stream

        started = time.perf_counter()
        default_rows = scheduled_check_flow(as_of=AS_OF)
        default_stored = stored(three_campaigns)
        default_seconds = time.perf_counter() - started
        assert [row["campaign"] for row in default_rows] == CAMPAIGNS
        assert all(row["state"] == "Completed" for row in default_rows), default_rows
        assert all(parts["weekly_rollups"] for parts in default_stored.values()), (
            "a campaign without data proves nothing"
        )

        # the workers are processes started now: they read this environment's PDCA_*
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            monkeypatch.setenv("PDCA_DASK_ADDRESS", cluster.scheduler_address)
            get_settings.cache_clear()
            started = time.perf_counter()
            with get_task_stream(client) as stream:
                dask_rows = scheduled_check_flow(as_of=AS_OF)
            dask_seconds = time.perf_counter() - started
            assert len(stream.data) == len(CAMPAIGNS), "one Dask task per campaign"
            assert all(record["key"].startswith("run_campaign_stage") for record in stream.data)
            workers = {record["worker"] for record in stream.data}
            assert workers == set(client.scheduler_info()["workers"]), workers
        print(
            f"scheduled check of 3 campaigns: {default_seconds:.1f} s default, "
            f"{dask_seconds:.1f} s on 2 Dask workers (their start-up included)"
        )
        assert dask_rows == default_rows
        assert stored(three_campaigns) == default_stored


class TestTaskRunner:
    def test_default_is_one_campaign_after_another(self):
        from prefect.task_runners import ThreadPoolTaskRunner

        runner = campaign_task_runner(Settings(dask_address=None))
        assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1

    def test_an_address_gives_the_dask_task_runner(self):
        from prefect_dask import DaskTaskRunner

        runner = campaign_task_runner(Settings(dask_address="tcp://10.0.0.5:8786"))
        assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://10.0.0.5:8786"

    def test_without_the_extra_the_error_says_how_to_install_it(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "prefect_dask", None)  # as if not installed
        with pytest.raises(UserError, match=DASK_EXTRA.replace("[", r"\[")):
            campaign_task_runner(Settings(dask_address="tcp://10.0.0.5:8786"))

    def test_a_worker_on_another_database_refuses_the_work(self, monkeypatch):
        monkeypatch.setenv("PDCA_DATABASE_URL", "sqlite:///worker.db")
        get_settings.cache_clear()
        try:
            with pytest.raises(RuntimeError, match="same PDCA_\\* settings"):
                same_database("sqlite:///flow.db")
            same_database("sqlite:///worker.db")
        finally:
            get_settings.cache_clear()

    def test_a_task_lost_as_a_whole_fails_its_campaign_only(self):
        from flows.operations import as_outcome
        from tasks.ops.operations import Outcome, StageRun

        run = StageRun("check", CAMPAIGN_ID, "2026-W12")
        lost = as_outcome(run, RuntimeError("worker lost\ntraceback follows"))
        assert (lost.ok, lost.state, lost.message) == (False, "RuntimeError", "worker lost")
        done = Outcome(run, True, "Completed")
        assert as_outcome(run, done) is done
