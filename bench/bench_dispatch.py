"""Benchmark: dispatch one window for a 1,000,000-customer base on SQLite.

Run: `.venv/bin/python bench/bench_dispatch.py [--customers N]`. Prints, from one run:
- the bare statement: one `insert … select` of the same audience (sql/dispatch_audience.sql,
  eligible customers only) into a plain table — the database's share of the work;
- pdca's dispatch of the window (audience, routing, assignment, wording, outbox,
  simulated send with its journal, touches), in a child process for its peak RSS.
Target (issue 3): dispatch within 10× the bare statement and under 60 s; peak RSS < 2 GiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pdca.db import _tune_sqlite, upgrade  # noqa: E402
from tasks.sqlfiles import render  # noqa: E402

CAMPAIGN = "bench-2026"
DAY = "2026-03-03"  # a Tuesday
AT = "2026-03-03T04:01:00"  # noon window, Asia/Shanghai, in UTC
SPEC = f"""
id: {CAMPAIGN}
name: dispatch benchmark
product: sme-revolving
start: 2026-03-02
end: 2026-03-31
timezone: Asia/Shanghai
channels: [phone, sms, im, app_push, email]
budget_total: 100000000
risk: {{max_overdue_rate_30: 0.03, min_credit_score: 600, apr_cap: 24.0,
        excluded_industries: [p2p-lending, crypto]}}
contact_policy:
  max_touches_per_7d: 2
  quiet_hours: "21:00-09:00"
  windows: {{noon: "12:00-13:30"}}
experiment: {{metric: application_rate, variants: {{A: 0.45, B: 0.45}}, holdout: 0.10}}
"""


def build_database(folder: Path, customers: int) -> Path:
    """Customers, the campaign and a plan whose budget does not limit the window."""
    path = folder / "base.db"
    upgrade(f"sqlite:///{path}")
    rng = np.random.default_rng(3)
    score = np.clip(rng.normal(690, 60, customers), 300, 900).astype(int)
    consent = rng.random(customers) < 0.9
    dnc = rng.random(customers) < 0.02
    industries = np.array(["retail", "farming", "services", "crypto"])
    industry = industries[rng.choice(4, customers, p=[0.5, 0.25, 0.24, 0.01])]
    debt = np.round(rng.beta(2, 5, customers), 3)
    segments = np.array(["sme", "salaried", "farmer", "student"])
    segment = segments[rng.integers(0, 4, customers)]
    rows = [
        (
            f"c{i:07d}",
            segment[i],
            "north",
            int(score[i]),
            5000.0,
            float(debt[i]),
            industry[i],
            f"+86 138 {i:04d} {i % 10000:04d}",
            f"c{i}@example.com",
            bool(consent[i]),
            bool(dnc[i]),
            "2026-01-01 00:00:00.000000",
        )
        for i in range(customers)
    ]
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("insert into customers values (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.close()
    env = {**os.environ, "PDCA_DATABASE_URL": f"sqlite:///{path}"}
    spec = folder / "spec.yaml"
    spec.write_text(SPEC)
    subprocess.run(
        [str(Path(sys.executable).parent / "pdca"), "campaign", "apply", str(spec)],
        env=env,
        check=True,
        capture_output=True,
    )
    conn = sqlite3.connect(path)
    with conn:
        plan_id = conn.execute(
            "insert into plans (campaign_id, period, version, is_current, created_at, inputs) "
            "values (?, '2026-03', 1, 1, '2026-03-01 00:00:00.000000', '{}') returning plan_id",
            (CAMPAIGN,),
        ).fetchone()[0]
        for channel in ("phone", "sms", "im", "app_push", "email"):
            conn.execute(
                "insert into budgets (plan_id, channel, amount, touches, daily_capacity, "
                "explanation) values (?, ?, ?, ?, null, '{}')",
                (plan_id, channel, 1e7, customers * 22),
            )
    conn.close()
    return path


def bare_seconds(base: Path, folder: Path) -> tuple[float, int]:
    """One insert … select of the eligible audience, on a copy of the database."""
    shutil.copy(base, folder / "bare.db")
    conn = sqlite3.connect(folder / "bare.db")
    _tune_sqlite(conn, None)
    audience = render("dispatch_audience", "sqlite").replace(
        ":excluded_industries", "('p2p-lending', 'crypto')"
    )
    conn.execute("create table bare_outbox (customer_id text, segment text, credit_score int)")
    params = {
        "campaign_id": CAMPAIGN,
        "batch_id": -1,
        "min_credit_score": 600,
        "max_debt_ratio": 0.7,
        "cap_starts_at": "2026-02-24 16:00:00.000000",
        "complaints_since_at": "2025-12-03 16:00:00.000000",
        "max_touches_per_7d": 2,
    }
    started = time.perf_counter()
    with conn:
        conn.execute(
            "insert into bare_outbox select customer_id, segment, credit_score from ("
            + audience
            + ") where exclusion_reason is null",
            params,
        )
    elapsed = time.perf_counter() - started
    rows = conn.execute("select count(*) from bare_outbox").fetchone()[0]
    conn.close()
    return elapsed, rows


def dispatch_seconds(base: Path, folder: Path) -> tuple[float, int, str]:
    shutil.copy(base, folder / "pdca.db")
    env = {
        **os.environ,
        "PDCA_DATABASE_URL": f"sqlite:///{folder / 'pdca.db'}",
        "PREFECT_HOME": str(folder / "prefect"),
    }
    pdca = str(Path(sys.executable).parent / "pdca")
    command = [pdca, "dispatch", "--campaign", CAMPAIGN, "--date", DAY, "--at", AT, "--json"]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=folder)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(result.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    import json

    totals = json.loads(result.stdout)["totals"]
    sent = sum(sum(v.values()) for v in totals["sends"].values())
    detail = f"sent {sent:,}, hold-out {totals['holdout']:,}, audience {totals['audience']:,}"
    return elapsed, peak, detail


def prefect_overhead(folder: Path) -> float:
    """The CLI's fixed cost for a flow command: a flow that does nothing, run twice in the
    same PREFECT_HOME (the first migrates Prefect's database; the second, timed, is the
    warm start the dispatch then gets too)."""
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect")}
    code = "from prefect import flow\nflow(lambda: None)()\n"
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdca-bench-") as tmp:
        folder = Path(tmp)
        base = build_database(folder, args.customers)
        bare, eligible = bare_seconds(base, folder)
        overhead = prefect_overhead(folder)
        ours, peak_kib, detail = dispatch_seconds(base, folder)
    print(f"customers: {args.customers:,}; eligible in the audience: {eligible:,}")
    print(f"bare insert … select of the audience : {bare:8.2f} s")
    print(f"pdca dispatch (CLI, whole window)    : {ours:8.2f} s  ({detail})")
    print(f"  of which Prefect's start-up         : {overhead:8.2f} s (an empty flow, same home)")
    print(f"ratio                                : {ours / bare:8.1f}× (target <= 10×, < 60 s)")
    print(f"ratio without Prefect's start-up     : {(ours - overhead) / bare:8.1f}×")
    print(f"peak RSS of the dispatch             : {peak_kib / 1024:8.0f} MiB (target < 2048)")


if __name__ == "__main__":
    main()
