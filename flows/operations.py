"""Operations: reruns and backfills of a stage, and the scheduled runs of the stages.

Reruns and backfills (`pdca rerun`, `pdca backfill`) go through the stage's deployment
when PREFECT_API_URL names a Prefect server, so the runs appear in the UI and run on the
workers beside the scheduled ones; without one they run in this process, on the embedded
API or on the local server of `pdca server start` (which only records this machine's
runs: it has no deployments and no workers). Either way each period's outcome is
reported and a failed period does not stop the others (tasks/ops/operations.py).

The scheduled flows exist because a deployment's parameters are fixed when it is made,
while a scheduled run must work on "today" or "the week of yesterday" for every campaign
active then. Each resolves its runs in the campaigns' own time zones and gives each
campaign a task that calls the stage flow as a subflow, so the UI shows the stage run under
the scheduled one; the tasks run one after another, or on Dask (flows/fanout.py).
`as_of` (an ISO time; naive is UTC) replaces the clock: a run for a chosen day, e.g. to
catch up a missed schedule or in a test.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from flows.fanout import fan_out, same_database
from pdca.db import make_engine
from pdca.local_server import local_server_adopted
from pdca.settings import get_settings
from tasks.ops.operations import (
    DEPLOYMENTS,
    FLOWS,
    Outcome,
    RunReport,
    StageRun,
    campaigns,
    due_runs,
    local_day,
    review_period_for,
    run_all,
)

POLL_SECONDS = 2.0
"""How often a deployment run's state is read while waiting for it."""


@contextmanager
def embedded_api_settings() -> Iterator[None]:
    """Prefect's settings for the flow runs of one command.

    On the embedded API the flow runs send no heartbeats: that API lives only as long as
    the command, nothing watches it for crashed runs, and every sync flow run (subflows
    too) ends by waiting out the heartbeat thread's 1 s sleep step, about a second each.
    With a server (PREFECT_API_URL) they stay on: its zombie detection needs them. The
    local server (`pdca server start`) only records this process's runs: off there too."""
    if server_configured() and not local_server_adopted():
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def server_configured() -> bool:
    """Whether Prefect points at a server (PREFECT_API_URL, from the environment or the
    active profile) rather than the embedded API."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def deployments_in_use() -> bool:
    """Whether reruns and backfills start deployments: with a server named by
    PREFECT_API_URL, not with the local one (no deployments, no workers there)."""
    return server_configured() and not local_server_adopted()


def stage_flow(stage: str):
    """The stage's flow object, imported when first needed (act may be absent)."""
    module, name = FLOWS[stage]
    return getattr(importlib.import_module(module), name)


def outcome_of(run: StageRun, state: State) -> Outcome:
    """A finished (or paused) flow run's state as an outcome."""
    message = "" if state.is_completed() else (state.message or "")
    flow_run_id = state.state_details.flow_run_id
    return Outcome(
        run,
        ok=state.is_completed(),
        state=state.name or str(state.type),
        message=message.strip().splitlines()[-1] if message.strip() else "",
        flow_run_id=str(flow_run_id) if flow_run_id else None,
    )


def run_in_process(run: StageRun, purpose: str = "scheduled") -> Outcome:
    """Call the stage flow here (embedded API) and wait for its final state; the run is
    tagged with its purpose (`rerun`, `backfill`, `scheduled`) as a deployment run is."""
    from prefect import tags

    with tags("pdca", purpose):
        state = stage_flow(run.stage)(**run.parameters, return_state=True)
    return outcome_of(run, state)


def run_through_deployment(run: StageRun, purpose: str) -> Outcome:
    """Start the stage's deployment with the run's parameters and wait for it to finish:
    a worker runs it, the UI shows it. A run that pauses (act, waiting for a manager) is
    said on stderr at once, with the run's address and the command that decides it."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    flow_run = run_deployment(
        DEPLOYMENTS[run.stage], parameters=run.parameters, timeout=0, tags=["pdca", purpose]
    )
    announced = False
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run.id).state
            if state is not None and state.is_final():
                return outcome_of(run, state)
            if state is not None and state.is_paused() and not announced:
                announce_pause(run, str(flow_run.id))
                announced = True
            time.sleep(POLL_SECONDS)


def announce_pause(run: StageRun, flow_run_id: str) -> None:
    """One line on stderr: the run waits for people, where, and how to answer it."""
    from prefect.utilities.urls import url_for

    where = url_for("flow-run", obj_id=flow_run_id) or f"flow run {flow_run_id}"
    print(
        f"{run.stage} {run.campaign_id} {run.key}: Paused, waiting for decisions at {where}; "
        f"see them with `pdca actions list --campaign {run.campaign_id} --period {run.key} "
        "--status proposed` and decide with `pdca actions approve|reject ID... --by NAME`",
        file=sys.stderr,
        flush=True,
    )


def start_api() -> None:
    """Make sure the API answers before runs start in parallel: the embedded one starts
    on first use, and two threads must not both start it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.hello()


def run_stage_runs(runs: list[StageRun], concurrency: int, purpose: str) -> RunReport:
    """Reruns and backfills (`purpose`, the runs' tag): through the deployments with a
    server, else in-process."""
    start_api()
    runner = run_through_deployment if deployments_in_use() else run_in_process
    return run_all(runs, partial(runner, purpose=purpose), concurrency)


# --- the scheduled stage runs ---------------------------------------------------------------


@task(
    name="campaign-stage-run",
    task_run_name="{run.stage} {run.campaign_id} {run.key}",
    cache_policy=NO_CACHE,
)
def run_campaign_stage(run: StageRun, database_url: str) -> Outcome:
    """One campaign's scheduled stage run, as a subflow, wherever the task runs (this
    process, or a Dask worker: flows/fanout.py); a failed run is an outcome, not an error."""
    same_database(database_url)
    return run_all([run], run_in_process, concurrency=1).outcomes[0]


def run_due(stage: str, campaign_ids: list[str] | None, as_of: datetime | None) -> list[dict]:
    """Run `stage` for every campaign due at `as_of` (default: now), one task per campaign
    (its stage run a subflow): one after another, or on Dask with PDCA_DASK_ADDRESS. A
    table artifact lists the outcomes, and the scheduled run fails if any did."""
    logger = get_run_logger()
    url = get_settings().database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        runs = due_runs(stage, campaigns(conn), as_of, only=campaign_ids)
    engine.dispose()
    if not runs:
        logger.info("no campaign is due for %s", stage)
    results = fan_out(run_campaign_stage, [{"run": run, "database_url": url} for run in runs])
    report = RunReport([as_outcome(run, result) for run, result in zip(runs, results, strict=True)])
    rows = [
        {
            "campaign": outcome.run.campaign_id,
            "key": outcome.run.key,
            "state": outcome.state,
            "message": outcome.message,
        }
        for outcome in report.outcomes
    ]
    create_table_artifact(
        key=f"scheduled-{stage}",
        table=rows or [{"campaign": "(none due)", "key": "", "state": "", "message": ""}],
        description=f"Scheduled {stage}: {report.summary()}",
    )
    if not report.ok:
        raise RuntimeError(f"scheduled {stage}: {report.summary()}")
    return rows


def as_outcome(run: StageRun, result: Outcome | BaseException) -> Outcome:
    """A per-campaign task's result as that run's outcome; a task that failed as a whole
    (a lost Dask worker, another database) fails its run only."""
    if isinstance(result, Outcome):
        return result
    first_line = (str(result).splitlines() or [""])[0]
    return Outcome(run, False, type(result).__name__, first_line)


@flow(name="scheduled-plan", flow_run_name="scheduled plan")
def scheduled_plan_flow(
    campaign_ids: list[str] | None = None, as_of: datetime | None = None
) -> list[dict]:
    """Plan the month of today for every campaign running in it (all, or `campaign_ids`)."""
    return run_due("plan", campaign_ids, as_of)


@flow(name="scheduled-dispatch", flow_run_name="scheduled dispatch")
def scheduled_dispatch_flow(
    campaign_ids: list[str] | None = None, as_of: datetime | None = None
) -> list[dict]:
    """Dispatch today's due windows (local day) of every campaign running today."""
    return run_due("dispatch", campaign_ids, as_of)


@flow(name="scheduled-check", flow_run_name="scheduled check")
def scheduled_check_flow(
    campaign_ids: list[str] | None = None, as_of: datetime | None = None
) -> list[dict]:
    """Check the ISO week of yesterday (local) of every campaign running in it."""
    return run_due("check", campaign_ids, as_of)


@flow(name="scheduled-review", flow_run_name="scheduled weekly review")
def scheduled_review_flow(
    timezone: str = "Asia/Shanghai", send: bool = True, as_of: datetime | None = None
) -> Any:
    """The weekly review of the last complete ISO week (in `timezone`, the schedule's)."""
    from flows.weekly_review import weekly_review_flow

    period = review_period_for(local_day(timezone, as_of))
    return weekly_review_flow(period=str(period), send=send, return_state=True)  # its state


if __name__ == "__main__":
    print(scheduled_check_flow())
