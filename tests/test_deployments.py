"""prefect.yaml for real: deploy everything to a Prefect server, start a process worker,
and run the check stage through its deployment (`pdca rerun check` with PREFECT_API_URL
set) on a small demo world in a SQLite file. The worker's environment carries the
database URL and the checkout to the flow-run process, as in production."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from pdca.models import Action, CheckResult
from pdca.settings import PROJECT_ROOT
from pdca.synthetic.demo_history import CAMPAIGN_ID
from tests.flows.test_act import failing_sms_and_b_wins, store_check
from tests.flows.test_operations import build_small_world
from tests.prefect_server import start_worker

pytestmark = pytest.mark.slow

PDCA = Path(sys.executable).parent / "pdca"
WEEK = "2026-W11"


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


@pytest.fixture(scope="module")
def deployed(prefect_server):
    """The pool and every deployment of prefect.yaml on the session's server."""
    ok(prefect_server.cli("work-pool", "create", "pdca", "--type", "process", "--overwrite"))
    ok(
        prefect_server.cli(
            "--no-prompt", "deploy", "--all", cwd=PROJECT_ROOT, PDCA_CHECKOUT=str(PROJECT_ROOT)
        )
    )
    return prefect_server


def test_deployments_schedules_and_limits(deployed):
    from prefect.client.orchestration import get_client

    with deployed.use(), get_client(sync_client=True) as client:
        check = client.read_deployment_by_name("check/check")
        dispatch = client.read_deployment_by_name("dispatch/dispatch")
        weekdays = client.read_deployment_by_name("scheduled-dispatch/weekdays")
        act = client.read_deployment_by_name("act/act")
    assert check.work_pool_name == "pdca" and check.parameters["period"] == "2026-W17"
    assert act.parameters["auto_approve"] is False
    assert dispatch.global_concurrency_limit is not None
    assert dispatch.global_concurrency_limit.limit == 1
    crons = sorted((s.schedule.cron, s.schedule.timezone) for s in weekdays.schedules)
    assert crons == [("5 12 * * 1-5", "Asia/Shanghai"), ("5 19 * * 1-5", "Asia/Shanghai")]


def test_rerun_check_runs_on_a_worker_and_lands_in_the_database(deployed, tmp_path, request):
    world = build_small_world(tmp_path, request)
    env = {"PDCA_DATABASE_URL": world.url, "PDCA_OUTPUT_DIR": str(tmp_path / "out")}
    worker = start_worker(
        deployed, pool="pdca", cwd=tmp_path, PDCA_CHECKOUT=str(PROJECT_ROOT), **env
    )
    try:
        rerun = subprocess.run(
            [str(PDCA), "rerun", "check", "--campaign", CAMPAIGN_ID, "--period", WEEK],
            cwd=tmp_path,
            env=deployed.env(**env),
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        worker.stop()
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr[-3000:], worker.log_tail())
    assert f"check {CAMPAIGN_ID} {WEEK}: Completed" in rerun.stdout
    flow_run_id = rerun.stdout.split("(flow run ")[1].split(")")[0]

    with world.engine.connect() as conn:
        stored = conn.execute(
            select(CheckResult.result).where(
                CheckResult.campaign_id == CAMPAIGN_ID, CheckResult.period == WEEK
            )
        ).scalar_one()
    world.engine.dispose()
    assert stored["campaign"] == CAMPAIGN_ID and stored["funnel"], stored.keys()

    from prefect.client.orchestration import get_client

    with deployed.use(), get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    assert flow_run.state.is_completed()
    assert flow_run.work_pool_name == "pdca", "not run by the pool's worker"
    assert flow_run.name == f"check {CAMPAIGN_ID} {WEEK}"
    assert set(flow_run.tags) >= {"rerun", "stage"}


def test_act_deployment_pauses_for_approval_and_records_the_decision(deployed, tmp_path, request):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run

    world = build_small_world(tmp_path, request)
    store_check(world.engine, failing_sms_and_b_wins(WEEK), campaign_id=CAMPAIGN_ID)
    env = {
        "PDCA_DATABASE_URL": world.url,
        "PDCA_OUTPUT_DIR": str(tmp_path / "out"),
        "PDCA_ACT_APPROVAL_POLL_SECONDS": "1",
    }
    worker = start_worker(
        deployed, pool="pdca", cwd=tmp_path, PDCA_CHECKOUT=str(PROJECT_ROOT), **env
    )
    try:
        with deployed.use(), get_client(sync_client=True) as client:
            run = run_deployment(
                "act/act",
                parameters={"campaign_id": CAMPAIGN_ID, "period": WEEK},
                timeout=0,
            )
            wait_for(client, run.id, lambda state: state.is_paused(), worker)
            resume_flow_run(
                run.id,
                run_input={"decision": "approve", "reviewer": "Mei Chen", "comment": "ship B"},
            )
            final = wait_for(client, run.id, lambda state: state.is_final(), worker)
    finally:
        worker.stop()
    assert final.is_completed(), (final, worker.log_tail())
    with world.engine.connect() as conn:
        decided = conn.execute(
            select(Action.type, Action.status, Action.decided_by, Action.comment).where(
                Action.campaign_id == CAMPAIGN_ID, Action.period == WEEK
            )
        ).all()
    world.engine.dispose()
    assert decided == [("promote_variant", "approved", "Mei Chen", "ship B")]


def test_rerun_act_says_it_waits_and_pdca_actions_approve_resumes_it(deployed, tmp_path, request):
    """What ops do without the UI: `pdca rerun act` says at once that the run waits for a
    decision and how to give it; `pdca actions approve` resumes the paused run with the
    form's input, and the run records the decision itself."""
    import time

    world = build_small_world(tmp_path, request)
    store_check(world.engine, failing_sms_and_b_wins(WEEK), campaign_id=CAMPAIGN_ID)
    env = {
        "PDCA_DATABASE_URL": world.url,
        "PDCA_OUTPUT_DIR": str(tmp_path / "out"),
        "PDCA_ACT_APPROVAL_POLL_SECONDS": "1",
    }
    worker = start_worker(
        deployed, pool="pdca", cwd=tmp_path, PDCA_CHECKOUT=str(PROJECT_ROOT), **env
    )

    def pdca(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(PDCA), *argv],
            cwd=tmp_path,
            env=deployed.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )

    rerun_err = tmp_path / "rerun.err"
    argv = ["rerun", "act", "--campaign", CAMPAIGN_ID, "--period", WEEK]
    with rerun_err.open("w") as err:
        rerun = subprocess.Popen(
            [str(PDCA), *argv],
            cwd=tmp_path,
            env=deployed.env(**env),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "Paused, waiting for decisions" not in rerun_err.read_text():
            assert time.monotonic() < deadline, (rerun_err.read_text()[-3000:], worker.log_tail())
            assert rerun.poll() is None, rerun_err.read_text()[-3000:]
            time.sleep(1)
        assert "pdca actions list --campaign" in rerun_err.read_text()
        listed = ok(pdca("actions", "list", "--status", "proposed"))
        (action_id,) = [int(line.split()[0]) for line in listed.splitlines()]
        approved = ok(pdca("actions", "approve", str(action_id), "--by", "Mei Chen"))
        out, _ = rerun.communicate(timeout=300)
    finally:
        if rerun.poll() is None:
            rerun.kill()
        worker.stop()
    assert "resumed act run" in approved, approved
    assert rerun.returncode == 0, (out, rerun_err.read_text()[-3000:], worker.log_tail())
    assert f"act {CAMPAIGN_ID} {WEEK}: Completed" in out
    with world.engine.connect() as conn:
        decided = conn.execute(
            select(Action.type, Action.status, Action.decided_by).where(
                Action.campaign_id == CAMPAIGN_ID, Action.period == WEEK
            )
        ).all()
    world.engine.dispose()
    assert decided == [("promote_variant", "approved", "Mei Chen")]


def wait_for(client, flow_run_id, reached, worker, timeout: float = 300.0):
    """The run's state once `reached(state)` holds; fails with the worker's log if not."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.read_flow_run(flow_run_id).state
        if state is not None and reached(state):
            return state
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not get there:\n{worker.log_tail()}")
