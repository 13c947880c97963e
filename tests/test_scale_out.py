"""Scaling out, for real: Prefect's own database on PostgreSQL, pdca's on PostgreSQL, two
process workers on the `pdca` pool (README "Scaling out").

Three `pdca backfill check` commands (3 campaigns × 6 weeks) start the `check/check`
deployment 18 times; the runs spread over both workers (each worker's log names the runs
it took), and one worker is killed outright (with its flow-run processes, as when its
machine dies) while a run of its is running. That run never finishes; `pdca rerun check`
completes it on the other worker, and every (campaign, week) has exactly one check result.
The worlds are tiny: the cost is Prefect's (server, deployment, a process per run).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from pdca.db import make_engine
from pdca.models import CheckResult
from pdca.settings import PROJECT_ROOT
from pdca.synthetic.demo_history import CAMPAIGN_ID
from tests.prefect_server import start_prefect_server, start_worker
from tests.worlds import World

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PDCA = Path(sys.executable).parent / "pdca"
TINY = World(customers=300, weeks=2)
CAMPAIGNS = (CAMPAIGN_ID, "scale-out-b", "scale-out-c")
FIRST, LAST = "2026-W10", "2026-W15"
WEEKS = [f"2026-W{number}" for number in range(10, 16)]
SUBMITTED = re.compile(r"submitting flow run '([0-9a-f-]{36})'")
ABORTED = re.compile(r"Aborted submission of flow run '([0-9a-f-]{36})'")


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


def submitted(worker) -> set[str]:
    """The flow runs a worker took, by its log. Both workers may reach for the same
    scheduled run; the server lets one move it to Pending and the other logs that it
    aborted its submission, so a run counts only for the worker that did not abort."""
    log = worker.log.read_text(errors="replace")
    return set(SUBMITTED.findall(log)) - set(ABORTED.findall(log))


def states(server, run_ids) -> dict[str, object]:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(server.api_url) as client:
        return {run_id: client.read_flow_run(run_id).state for run_id in run_ids}


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory, postgres):
    """pdca's world and Prefect's database on the session's PostgreSQL, the server, the
    pool and the check deployment; the environment of the workers and commands."""
    from tasks.common.campaigns import apply_spec, load_spec

    folder = tmp_path_factory.mktemp("scale-out")
    demo_worlds = request.getfixturevalue("demo_worlds")
    url = demo_worlds.database(request, folder, "postgres", TINY)
    spec = demo_worlds.feeds(TINY).spec.read_text()
    engine = make_engine(url)
    for campaign in CAMPAIGNS[1:]:  # the same campaign under other ids: no rows of its own
        path = folder / f"{campaign}.yaml"
        path.write_text(spec.replace(f"id: {CAMPAIGN_ID}", f"id: {campaign}"))
        with engine.begin() as conn:
            apply_spec(conn, load_spec(path))
    prefect_db = f"prefect_scale_{os.getpid()}"
    with psycopg.connect(postgres.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'create database "{prefect_db}"')
    database = postgres.url(prefect_db).replace("+psycopg", "+asyncpg")
    server = start_prefect_server(folder / "prefect", PREFECT_API_DATABASE_CONNECTION_URL=database)
    try:
        ok(server.cli("work-pool", "create", "pdca", "--type", "process", "--overwrite"))
        ok(
            server.cli(
                "--no-prompt",
                "deploy",
                "--name",
                "check",
                cwd=PROJECT_ROOT,
                PDCA_CHECKOUT=str(PROJECT_ROOT),
            )
        )
        env = {
            "PDCA_DATABASE_URL": url,
            "PDCA_OUTPUT_DIR": str(folder / "out"),
            "PDCA_CHECKOUT": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",  # a killed worker's log has every run it took
        }
        yield server, env, engine, folder
    finally:
        engine.dispose()
        server.stop()


def test_backfill_spreads_over_two_workers_and_a_rerun_completes_a_killed_ones_runs(cluster):
    server, env, engine, folder = cluster
    workers = {
        name: start_worker(server, cwd=folder, name=name, limit=2, **env) for name in ("a", "b")
    }
    backfills = []
    try:
        for campaign in CAMPAIGNS:
            argv = ["backfill", "check", "--campaign", campaign, "--from", FIRST, "--to", LAST]
            backfills.append(
                subprocess.Popen(
                    [str(PDCA), *argv, "--concurrency", "3"],
                    cwd=folder,
                    env=server.env(**env),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        kill_mid_run(server, workers["b"])
        by_a, left_runs = wait_for_the_rest(server, workers["a"], workers["b"], backfills)
        for command in backfills:  # each waits for a run no worker will finish: give up
            command.send_signal(signal.SIGINT)
        for command in backfills:
            try:
                command.wait(timeout=30)
            except subprocess.TimeoutExpired:
                command.kill()
        taken = {name: submitted(worker) for name, worker in workers.items()}
        assert taken["a"] and taken["b"], taken  # both workers ran some
        assert not taken["a"] & taken["b"], "a run taken by both workers"
        assert left_runs, "the killed worker left no run unfinished"
        left = sorted(
            {(run.parameters["campaign_id"], run.parameters["period"]) for run in left_runs}
        )
        reruns = [
            subprocess.Popen(
                [str(PDCA), "rerun", "check", "--campaign", campaign, "--period", period],
                cwd=folder,
                env=server.env(**env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for campaign, period in left
        ]  # fmt: skip
        for rerun, (campaign, period) in zip(reruns, left, strict=True):
            out, _ = rerun.communicate(timeout=300)
            assert rerun.returncode == 0, (out[-3000:], workers["a"].log_tail())
            assert f"check {campaign} {period}: Completed" in out
    finally:
        for command in backfills:
            if command.poll() is None:
                command.kill()
        for worker in workers.values():
            worker.stop()
    assert submitted(workers["a"]) - taken["a"], "the reruns ran on the surviving worker"
    assert by_a, "worker a completed no run of the backfills"
    with engine.connect() as conn:
        counts = conn.execute(
            select(CheckResult.campaign_id, CheckResult.period, func.count()).group_by(
                CheckResult.campaign_id, CheckResult.period
            )
        ).all()
    assert sorted(counts) == sorted((c, w, 1) for c in CAMPAIGNS for w in WEEKS)


def kill_mid_run(server, worker, timeout: float = 240.0) -> None:
    """SIGKILL the worker and its flow-run processes as soon as a run of its is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        taken = submitted(worker)
        current = states(server, taken)
        if any(state is not None and state.is_running() for state in current.values()):
            os.killpg(worker.process.pid, signal.SIGKILL)
            for pid in flow_run_processes(taken):  # in sessions of their own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            worker.process.wait(timeout=10)
            return
        time.sleep(0.3)
    raise AssertionError(f"worker b ran nothing:\n{worker.log_tail()}")


def flow_run_processes(run_ids: set[str]) -> list[int]:
    """The processes running these flow runs (their environment names the run)."""
    wanted = {f"PREFECT__FLOW_RUN_ID={run_id}".encode() for run_id in run_ids}
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = set(environ.read_bytes().split(b"\0"))
        except OSError:
            continue
        if variables & wanted:
            found.append(int(environ.parent.name))
    return found


def wait_for_the_rest(server, survivor, killed, backfills, timeout: float = 400.0):
    """Wait until the 18 runs exist and every one the killed worker did not take is
    final; (the ids the survivor completed, the killed worker's runs left unfinished:
    crashed, or stuck in a running state that nothing will ever end)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with SyncPrefectClient(server.api_url) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["check"])),
                limit=200,
            )
        by_killed = submitted(killed)
        others = [run for run in runs if str(run.id) not in by_killed]
        if len(runs) >= len(CAMPAIGNS) * len(WEEKS) and all(
            run.state is not None and run.state.is_final() for run in others
        ):
            assert all(run.state.is_completed() for run in others), [
                (run.name, run.state.name, run.state.message)
                for run in others
                if not run.state.is_completed()
            ]
            left = [
                run
                for run in runs
                if str(run.id) in by_killed and not (run.state and run.state.is_completed())
            ]
            return {str(run.id) for run in others} & submitted(survivor), left
        time.sleep(1)
    outputs = [command.stdout.read() if command.poll() is not None else "" for command in backfills]
    raise AssertionError(f"runs left unfinished:\n{survivor.log_tail()}\n{outputs}")
