"""Benchmark: a warm `pdca check` of the demo week, on the local server and on the embedded API.

Run: `.venv/bin/python bench/bench_warm.py [--customers 50000] [--weeks 8] [--runs 3]`. It
builds the demo (`pdca demo`, the demo's defaults unless told), then times, in the same
run, the whole `pdca check --json` of the week the demo checked:

- the embedded default (no PREFECT_API_URL, no local server): Prefect's ephemeral API
  started and stopped by the command;
- with the local server running (`pdca server start`, its start-up timed for the record).

Each is run once to warm up (the embedded API's first use migrates its database; the OS
caches the pages) and then `--runs` times; the median is reported. The work is the check
flow run's own duration (its start to its end, as the API recorded it, read back from the
API's database); the rest of the whole command is the fixed cost: interpreter, imports,
Prefect's start-up, reading the arguments.

Target (issue 17): the warm `pdca check` with the local server within its work + 3 s; the
last line is `ratio: X (target: work + 3 s)` with X = whole / (work + 3 s), at most 1.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PDCA = str(Path(sys.executable).parent / "pdca")
ALLOWANCE_SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pdca(env: dict[str, str], folder: Path, *argv: str, ok=(0,)) -> tuple[float, str, str]:
    """Run `pdca ARGV`; its wall time, stdout and stderr (exits if its code is not in ok)."""
    started = time.perf_counter()
    done = subprocess.run([PDCA, *argv], env=env, cwd=folder, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in ok:
        raise SystemExit(f"pdca {' '.join(argv)}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout, done.stderr


def flow_seconds(database: Path, name: str) -> float:
    """The last flow run called `name`: end − start, from the API's own SQLite database."""
    with sqlite3.connect(database) as conn:
        start, end = conn.execute(
            "select start_time, end_time from flow_run where name = ? order by created desc",
            (name,),
        ).fetchone()
    return (_moment(end) - _moment(start)).total_seconds()


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" ", "T"))


def timed_checks(env, folder, argv, runs: int, database: Path, name: str) -> tuple[float, float]:
    """One warm-up, then `runs` timed checks: the medians of the whole and of the work."""
    pdca(env, folder, *argv, ok=(0, 1))
    wholes, works = [], []
    for _ in range(runs):
        whole, _, _ = pdca(env, folder, *argv, ok=(0, 1))
        wholes.append(whole)
        works.append(flow_seconds(database, name))
    return statistics.median(wholes), statistics.median(works)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdca-bench-warm-") as tmp:
        folder = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PDCA_"))}
        env |= {
            "PYTHONPATH": str(ROOT),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "GX_ANALYTICS_ENABLED": "false",
            "PDCA_DATABASE_URL": f"sqlite:///{folder / 'pdca.db'}",
            "PDCA_OUTPUT_DIR": str(folder / "out"),
            "PDCA_SERVER_PORT": str(free_port()),
            "PREFECT_HOME": str(folder / "embedded-home"),
        }
        built, out, _ = pdca(
            env, folder, "demo", "--customers", str(args.customers), "--weeks", str(args.weeks)
        )
        found = re.search(r"^\s*check (\S+) (\d{4}-W\d\d)", out, re.MULTILINE)
        if found is None:
            raise SystemExit(f"no check line in the demo's summary:\n{out}")
        campaign, week = found.groups()
        argv = ["check", "--campaign", campaign, "--period", week, "--json"]
        name = f"check {campaign} {week}"
        embedded = timed_checks(
            env, folder, argv, args.runs, folder / "embedded-home" / "prefect.db", name
        )
        started, _, _ = pdca(env, folder, "server", "start")
        try:
            _, _, err = pdca(env, folder, *argv, ok=(0, 1))
            if "using the local Prefect server" not in err:
                raise SystemExit(f"the check did not use the local server:\n{err[-2000:]}")
            server_db = folder / "out" / "prefect-server" / "prefect.db"
            local = timed_checks(env, folder, argv, args.runs, server_db, name)
        finally:
            pdca(env, folder, "server", "stop")
    print(f"demo: {args.customers:,} customers × {args.weeks} weeks, built in {built:.0f} s")
    print(f"check of {campaign} {week}; runs per figure: {args.runs} (median), 1 warm-up")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for label, (whole, work) in (("embedded API", embedded), ("local server", local)):
        print(
            f"{label:<13} whole {whole:6.2f} s  work {work:6.2f} s  "
            f"fixed cost {whole - work:6.2f} s"
        )
    print(f"local server start-up (once, for the record): {started:.2f} s")
    whole, work = local
    print(f"saved per command: {embedded[0] - whole:.2f} s")
    print(f"ratio: {whole / (work + ALLOWANCE_SECONDS):.2f} (target: work + 3 s)")


if __name__ == "__main__":
    main()
