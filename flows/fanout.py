"""Fan-out across campaigns: where a flow's per-campaign tasks run.

The scheduled flows and the weekly review do the same work for each campaign. That work is
one Prefect task per campaign, submitted to a task runner chosen here from the settings:

- `PDCA_DASK_ADDRESS` unset (the default): a one-thread pool, so the campaigns are worked
  through one after another in the flow's process, as they always were;
- `PDCA_DASK_ADDRESS=tcp://scheduler:8786`: a `prefect_dask.DaskTaskRunner` on that Dask
  cluster (`pip install pdca[dask]`), so the campaigns run side by side on its workers.

The task is the same function either way. What it is given must pickle (a Dask worker is
another process, often another machine): ids, periods and URLs, never a connection or an
engine; each task opens its own. A Dask worker reads its own `PDCA_*` settings, as a
Prefect worker does, and reports to the Prefect API this flow run reports to.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from prefect import Task
from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pdca.errors import UserError
from pdca.settings import Settings, get_settings

DASK_EXTRA = "pip install pdca[dask]"
"""What installs the Dask task runner (the optional extra of pyproject.toml)."""


def campaign_task_runner(settings: Settings) -> TaskRunner:
    """A fresh task runner for per-campaign tasks: Dask when an address is set, else one
    thread (the campaigns one after another, the behaviour without Dask)."""
    if not settings.dask_address:
        return ThreadPoolTaskRunner(max_workers=1)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:
        raise UserError(
            f"PDCA_DASK_ADDRESS is set ({settings.dask_address}) but the Dask task runner is "
            f"not installed: {DASK_EXTRA}"
        ) from error
    return DaskTaskRunner(address=settings.dask_address)


@contextmanager
def reporting_to_this_api() -> Iterator[None]:
    """Task runs submitted in this block report to the API this flow run uses.

    A Dask worker is another process: with no PREFECT_API_URL it would start an embedded
    API of its own. Naming this run's API (a server, or the temporary one of the embedded
    default, on loopback: Dask workers on this machine then) keeps every run in one place."""
    context = FlowRunContext.get()
    if context is None or context.client is None:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: str(context.client.api_url)}):
        yield


def fan_out(
    task: Task, calls: Sequence[dict[str, Any]], settings: Settings | None = None
) -> list[Any]:
    """Run `task` once per parameter set in `calls` on the campaign task runner; the results
    in the calls' order. A call whose task failed (or whose Dask worker was lost) gives
    its exception, not a result: the caller turns it into that campaign's problem, and the
    other campaigns' work stands."""
    if not calls:
        return []
    runner = campaign_task_runner(settings or get_settings())
    elsewhere = not isinstance(runner, ThreadPoolTaskRunner)  # in other processes: Dask
    with runner, reporting_to_this_api() if elsewhere else nullcontext():
        futures = [runner.submit(task, parameters=dict(call)) for call in calls]
        return [settled(future) for future in futures]


def same_database(database_url: str) -> None:
    """Refuse to work on another database than the flow run's: a Dask worker reads
    its own PDCA_DATABASE_URL, and one started without it would write to its default."""
    here = get_settings().database_url
    if here != database_url:
        raise RuntimeError(
            f"this worker's PDCA_DATABASE_URL is {here}, the flow run's {database_url}: "
            "start the Dask workers with the same PDCA_* settings"
        )


def settled(future: Any) -> Any:
    """A future's result, or the exception that ended it."""
    try:
        return future.result(raise_on_failure=False)
    except Exception as error:  # a lost worker, a result that did not come back
        return error
