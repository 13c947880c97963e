"""Benchmark: the default season, `pdca simulate` (13 weeks, 50,000 customers), on SQLite.

Run: `.venv/bin/python bench/bench_simulate.py [--weeks W] [--customers N]`. Runs the season
in this process (as the command does), in a fresh folder, and prints:
- its wall time (target, issue 16: under 10 minutes on 2 cores for the default season);
- Prefect's own share: the embedded API's start-up, plus, per flow and per task run the
  season made (counted from the API afterwards), the cost of an empty flow and of an empty
  task measured warm in the same process — what the same work would cost without Prefect;
- how many flow and task runs the season made;
- where the time went: each flow's runs, the back office's files loaded through the
  importer, the world's own work (its draws and its files), and the preparation.
"""

import argparse
import functools
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPEATS = 20
TASK_REPEATS = 200

STEPS = (
    ("flows.plan", "plan_flow"),
    ("flows.dispatch", "dispatch_flow"),
    ("flows.check", "check_flow"),
    ("flows.act", "act_flow"),
    ("flows.weekly_review", "weekly_review_flow"),
    ("pdca.simulation.season", "load_files"),
    ("pdca.simulation.season", "read_sends"),
    ("pdca.simulation.backoffice", "BackOffice.observe"),
    ("pdca.simulation.backoffice", "BackOffice.organic"),
    ("pdca.simulation.feeds", "DailyFiles.write_day"),
    ("pdca.simulation.season", "prepare"),
)
"""The season's steps timed (each is looked up by name when called, so wrapping works)."""


def time_steps() -> dict[str, list[float]]:
    """Wrap every step of `STEPS` to add its wall time to the returned {name: [s, calls]}."""
    spent: dict[str, list[float]] = {}
    for module_name, path in STEPS:
        owner = importlib.import_module(module_name)
        *classes, name = path.split(".")
        for part in classes:
            owner = getattr(owner, part)
        spent[path] = [0.0, 0]

        def wrap(function, record=spent[path]):
            @functools.wraps(function)
            def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    record[0] += time.perf_counter() - started
                    record[1] += 1

            return timed

        setattr(owner, name, wrap(getattr(owner, name)))
    return spent


def empty_costs() -> tuple[float, float, float]:
    """(start-up, seconds per empty flow run, seconds per empty task run), warm."""
    from prefect import flow, task

    @task
    def nothing() -> None:
        return None

    @flow
    def bare() -> None:
        return None

    @flow
    def with_tasks() -> None:
        for _ in range(TASK_REPEATS):
            nothing()

    started = time.perf_counter()
    bare()
    start_up = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(REPEATS):
        bare()
    per_flow = (time.perf_counter() - started) / REPEATS
    started = time.perf_counter()
    with_tasks()
    per_task = max(0.0, (time.perf_counter() - started - per_flow) / TASK_REPEATS)
    return start_up, per_flow, per_task


def runs_made(tag: str) -> tuple[int, int]:
    """How many flow runs and task runs carry `tag` (the season's)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        flows_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
        flows = client.count_flow_runs(flow_run_filter=flows_filter)
        tasks, offset = 0, 0
        while True:
            page = client.read_task_runs(flow_run_filter=flows_filter, limit=200, offset=offset)
            tasks += len(page)
            offset += len(page)
            if len(page) < 200:
                return flows, tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=13)
    parser.add_argument("--customers", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdca-bench-") as tmp:
        os.environ.update(
            PDCA_DATABASE_URL=f"sqlite:///{tmp}/pdca.db",
            PDCA_OUTPUT_DIR=f"{tmp}/var",
            PREFECT_HOME=f"{tmp}/prefect",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            GX_ANALYTICS_ENABLED="false",
        )
        from flows.operations import embedded_api_settings

        with embedded_api_settings():  # as the season's runs: no heartbeats on the embedded API
            start_up, per_flow, per_task = empty_costs()
        from pdca.simulation.season import SeasonOptions, run_season
        from pdca.simulation.verdict import verdict

        spent = time_steps()
        started = time.perf_counter()
        season = run_season(SeasonOptions(weeks=args.weeks, customers=args.customers))
        document = verdict(season)
        seconds = time.perf_counter() - started + start_up
        flows, tasks = runs_made("simulation")
    prefect = start_up + flows * per_flow + tasks * per_task
    found = sum(truth["found"] for truth in document["truths"])
    held = sum(invariant["held"] for invariant in document["invariants"])
    print(f"season: {args.weeks} weeks, {args.customers:,} customers")
    print(f"wall time                      : {seconds:8.1f} s  (target < 600 s)")
    print(f"Prefect's start-up             : {start_up:8.1f} s")
    print(f"flow runs / task runs          : {flows:8,} / {tasks:,}")
    print(f"empty flow run / task run      : {per_flow:8.3f} s / {per_task:.3f} s")
    share = prefect / seconds
    print(f"Prefect's own overhead         : {prefect:8.1f} s  ({share:.0%} of the run)")
    print(f"truths found                   : {found} of {len(document['truths'])}")
    print(f"invariants held                : {held} of {len(document['invariants'])}")
    for invariant in document["invariants"]:
        if not invariant["held"]:
            details = {k: v for k, v in invariant.items() if k not in ("name", "held")}
            print(f"  BROKEN {invariant['name']}: {details}")
    print("where the time went (wall s, calls):")
    for path, (step_seconds, calls) in sorted(spent.items(), key=lambda item: -item[1][0]):
        print(f"  {path:<29}: {step_seconds:8.1f} s  {calls:5,}")


if __name__ == "__main__":
    main()
