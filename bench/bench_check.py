"""Benchmark: the check of one week at the end of a 12-week, 10,000,000-touch history.

Run: `.venv/bin/python bench/bench_check.py [--touches N] [--keep DIR]
[--backend sqlite|postgresql] [--no-dbapi] [--turns N]`. On PostgreSQL (a throw-away server the
benchmark starts, bench/backends.py) the history is built in SQLite as below and copied
into a migrated PostgreSQL database (untimed), and everything is measured there. It
builds the history straight into a migrated SQLite database (customers, touches, applications,
decisions, loans, repayments and complaints in the demo's proportions; building takes a few
minutes), stores the whole-week rollups and the experiment's members (migration 0008) of the
first eleven weeks as the weekly checks of those weeks would have, and then measures the
baseline and the check's steps in turns (`--turns`, 3 by default: the machine's speed moves
by half within minutes here) and prints each turn's figures, then their medians:

- the baseline: one hand-written funnel `GROUP BY` over the last week's touches alone
  (channel × variant; and, for reference, with the customers' segment joined in, which is
  the grain the check reports);
- the check of the last week in a child process (its peak RSS), arranged as
  `flows/check.py` runs it: the four measurements (funnel, experiment, asset quality,
  reject reasons) on the flow's workers (one per core, up to four; longest first), each
  on its own connection of the flow's engine, timed as a whole (and each its own time),
  then the steps after them; Great Expectations separately, alone (all run twice
  and the second timed, as the baseline is); and, for the record, the flow's arrangement
  with Great Expectations beside the measurements;
- the whole `pdca check --json` command (Prefect start-up included), for the record.

Targets (issue 6): the check without GE within 3× the single-week `GROUP BY`; GE on the
week's rows under 5 s (issue 17: under 3 s on SQLite, its rows read as Arrow, which the
printed target follows; the same step reading them through the DB-API is timed beside
it); peak RSS under 2 GiB; the same 3× on PostgreSQL (issue 17). The last line is
`ratio: X (target: <= 3)`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backends import (  # noqa: E402
    add_backend_option,
    copy_sqlite_to_postgres,
    create_database,
    postgres_server,
)
from bench.machine import loop_seconds  # noqa: E402
from bench.peak import own_peak_kib, run_measured  # noqa: E402

CAMPAIGN = "bench-check"
START = date(2026, 1, 5)  # a Monday: weeks 2026-W02 … 2026-W13
WEEKS = 12
LAST_WEEK = "2026-W13"
OFFSET = timedelta(hours=8)  # Asia/Shanghai, no daylight saving time
CUSTOMERS_PER_TOUCH = 0.2
SPEC = f"""
id: {CAMPAIGN}
name: check benchmark
product: sme-revolving
start: {START}
end: 2026-06-30
timezone: Asia/Shanghai
channels: [phone, sms, im, app_push, email]
budget_total: 100000000
risk: {{max_overdue_rate_30: 0.03, min_credit_score: 600, apr_cap: 24.0}}
contact_policy:
  max_touches_per_7d: 2
  quiet_hours: "21:00-09:00"
  windows: {{noon: "12:00-13:30", evening: "19:00-21:00"}}
experiment: {{metric: application_rate, variants: {{A: 0.45, B: 0.45}}, holdout: 0.10}}
"""
CHANNELS = np.array(["phone", "sms", "im", "app_push", "email"])
CHANNEL_SHARE = [0.08, 0.37, 0.25, 0.18, 0.12]
COST = np.array([8.0, 0.05, 0.03, 0.01, 0.02])
DELIVERY = np.array([0.62, 0.95, 0.90, 0.80, 0.92])
RESPONSE = np.array([0.34, 0.045, 0.06, 0.028, 0.022])
APPLY = np.array([0.09, 0.03, 0.035, 0.02, 0.015])
SEGMENTS = np.array(["sme", "salaried", "farmer", "student"])
VARIANTS = np.array(["A", "B", "holdout"])
REASONS = np.array(["score_too_low", "debt_ratio_too_high", "income_unverified", "fraud_check"])


# --- building the history -------------------------------------------------------------------


def stamp(seconds: np.ndarray) -> np.ndarray:
    """Seconds since START (local) → stored naive-UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    base = np.datetime64(datetime.combine(START, datetime.min.time()) - OFFSET, "us")
    moments = base + (seconds * 1e6).astype("timedelta64[us]")
    return np.char.replace(np.datetime_as_string(moments, unit="us"), "T", " ")


def build(path: Path, touches: int) -> dict[str, int]:
    """The migrated database with the 12-week history; returns the row counts."""
    from pdca.db import _tune_sqlite, upgrade

    upgrade(f"sqlite:///{path}")
    env = {**os.environ, "PDCA_DATABASE_URL": f"sqlite:///{path}"}
    spec = path.parent / "spec.yaml"
    spec.write_text(SPEC)
    pdca = str(Path(sys.executable).parent / "pdca")
    subprocess.run([pdca, "campaign", "apply", str(spec)], env=env, check=True, capture_output=True)
    rng = np.random.default_rng(12)
    customers = int(touches * CUSTOMERS_PER_TOUCH)
    conn = sqlite3.connect(path)
    _tune_sqlite(conn, None)
    conn.execute("pragma foreign_keys=off")
    indexes = conn.execute(
        "select name, sql from sqlite_master where type = 'index' and sql is not null "
        "and tbl_name in ('touches', 'applications', 'decisions', 'loans', 'repayments')"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"drop index {name}")
    segment = SEGMENTS[rng.choice(4, customers, p=[0.42, 0.33, 0.15, 0.10])]
    variant_of = VARIANTS[rng.choice(3, customers, p=[0.45, 0.45, 0.10])]
    with conn:
        conn.executemany(
            "insert into customers values (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                (
                    f"c{i:08d}",
                    segment[i],
                    "north",
                    700,
                    9000.0,
                    0.3,
                    "retail",
                    None,
                    None,
                    True,
                    False,
                    "2025-01-01 00:00:00.000000",
                )
                for i in range(customers)
            ),
        )
    counts = {
        "customers": customers,
        "touches": 0,
        "applications": 0,
        "decisions": 0,
        "loans": 0,
        "repayments": 0,
        "complaints": 0,
    }
    per_week = touches // WEEKS
    for week in range(WEEKS):
        with conn:
            _week(conn, rng, week, per_week, variant_of, counts)
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("analyze")
    conn.commit()
    conn.close()
    return counts


def _week(conn, rng, week: int, n: int, variant_of, counts: dict[str, int]) -> None:
    """One week of touches with the applications, decisions, loans, repayments and
    complaints they lead to; sends on weekdays in the noon and evening windows."""
    customer = rng.integers(0, len(variant_of), n)
    channel = rng.choice(5, n, p=CHANNEL_SHARE)
    variant = variant_of[customer]
    holdout = variant == "holdout"
    day = week * 7 + rng.integers(0, 5, n)
    evening = rng.random(n) < 0.55
    clock = np.where(
        evening, 19 * 3600 + rng.integers(0, 7200, n), 12 * 3600 + rng.integers(0, 5400, n)
    )
    seconds = day * 86400 + clock + rng.random(n)
    delivered = (rng.random(n) < DELIVERY[channel]) & ~holdout
    responded = delivered & (rng.random(n) < RESPONSE[channel])
    cost = np.where(holdout, 0.0, COST[channel])
    sent_at = stamp(seconds)
    first = counts["touches"]
    conn.executemany(
        "insert into touches values (?,?,?,?,?,?,?,?,?)",
        zip(
            (f"t{first + i:09d}" for i in range(n)),
            [CAMPAIGN] * n,
            (f"c{c:08d}" for c in customer),
            CHANNELS[channel].tolist(),
            variant.tolist(),
            sent_at.tolist(),
            delivered.tolist(),
            responded.tolist(),
            cost.tolist(),
            strict=True,
        ),
    )
    counts["touches"] += n
    lift = np.where(variant == "B", 1.15, 1.0)
    applies = np.flatnonzero(delivered & (rng.random(n) < APPLY[channel] * lift))
    m = len(applies)
    applied = seconds[applies] + rng.uniform(600, 5 * 86400, m)
    app_ids = [f"a{counts['applications'] + i:09d}" for i in range(m)]
    attributed = rng.random(m) < 0.75
    conn.executemany(
        "insert into applications (application_id, customer_id, campaign_id, channel, "
        "applied_at, product_code, amount_requested, source_feed) "
        "values (?,?,?,?,?,?,?,'applications')",
        zip(
            app_ids,
            (f"c{c:08d}" for c in customer[applies]),
            np.where(attributed, CAMPAIGN, None).tolist(),
            CHANNELS[channel[applies]].tolist(),
            stamp(applied).tolist(),
            ["sme-revolving"] * m,
            rng.uniform(5_000, 200_000, m).round(2).tolist(),
            strict=True,
        ),
    )
    counts["applications"] += m
    approved = rng.random(m) < 0.6
    decided = applied + rng.uniform(3600, 3 * 86400, m)
    amount = rng.uniform(5_000, 150_000, m).round(2)
    apr = rng.uniform(9, 20, m).round(2)
    conn.executemany(
        "insert into decisions values (?,?,?,?,?,?)",
        zip(
            app_ids,
            stamp(decided).tolist(),
            np.where(approved, "approved", "rejected").tolist(),
            np.where(approved, None, REASONS[rng.integers(0, 4, m)]).tolist(),
            np.where(approved, amount, None).tolist(),
            np.where(approved, apr, None).tolist(),
            strict=True,
        ),
    )
    counts["decisions"] += m
    drawn = np.flatnonzero(approved & (rng.random(m) < 0.8))
    k = len(drawn)
    disbursed = decided[drawn] + rng.uniform(3600, 5 * 86400, k)
    loan_ids = [f"l{counts['loans'] + i:09d}" for i in range(k)]
    conn.executemany(
        "insert into loans values (?,?,?,?,?,?)",
        zip(
            loan_ids,
            [app_ids[i] for i in drawn],
            stamp(disbursed).tolist(),
            amount[drawn].tolist(),
            apr[drawn].tolist(),
            rng.choice([6, 12, 24, 36], k).tolist(),
            strict=True,
        ),
    )
    counts["loans"] += k
    as_of = (START + timedelta(days=int(week * 7 + 35))).isoformat()
    dpd = rng.choice([0, 35, 95], k, p=[0.95, 0.03, 0.02])
    conn.executemany(
        "insert into repayments values (?,?,?,?)",
        zip(
            loan_ids,
            [as_of] * k,
            dpd.tolist(),
            (amount[drawn] * 0.8).round(2).tolist(),
            strict=True,
        ),
    )
    counts["repayments"] += k
    complains = np.flatnonzero(delivered & (rng.random(n) < 0.0003))
    conn.executemany(
        "insert into complaints values (?,?,?,?,?)",
        zip(
            (f"k{counts['complaints'] + i:08d}" for i in range(len(complains))),
            (f"c{c:08d}" for c in customer[complains]),
            [CAMPAIGN] * len(complains),
            stamp(seconds[complains] + 86400).tolist(),
            ["too_many_messages"] * len(complains),
            strict=True,
        ),
    )
    counts["complaints"] += len(complains)


def plan_targets(path: Path) -> None:
    """A current plan for the last week with campaign-level targets, so variance runs."""
    conn = sqlite3.connect(path)
    with conn:
        plan_id = conn.execute(
            "insert into plans (campaign_id, period, version, is_current, created_at, inputs) "
            "values (?, ?, 1, 1, '2026-03-01 00:00:00.000000', '{}') returning plan_id",
            (CAMPAIGN, LAST_WEEK),
        ).fetchone()[0]
        targets = {
            "touches": 850_000,
            "delivered": 700_000,
            "applications": 25_000,
            "approval_rate": 0.6,
            "disbursements": 12_000,
            "disbursed_amount": 9e8,
            "cac": 500.0,
            "roi": 0.5,
            "overdue_rate_30": 0.03,
            "complaint_rate": 0.3,
        }
        for metric, value in targets.items():
            conn.execute(
                "insert into targets (plan_id, metric, channel, segment, target, "
                "tolerance_warn, tolerance_fail, lower_is_better, evidence) "
                "values (?, ?, null, null, ?, 0.05, 0.15, ?, '{}')",
                (plan_id, metric, value, metric in ("cac", "overdue_rate_30", "complaint_rate")),
            )
    conn.close()


def store_earlier_rollups(url: str) -> float:
    """The first eleven weeks' rollups and experiment members, as their own weekly checks
    would have stored them."""
    from pdca.db import make_engine
    from pdca.settings import get_settings
    from tasks.check.check import trailing_weeks
    from tasks.check.experiments.members import refresh_members
    from tasks.common.periods import Period

    started = time.perf_counter()
    engine = make_engine(url)
    settings = get_settings()
    with engine.connect() as conn:
        trailing_weeks(conn, CAMPAIGN, Period.parse(LAST_WEEK), WEEKS - 1)
        refresh_members(
            conn,
            CAMPAIGN,
            *Period.parse(LAST_WEEK).shifted(-1).utc_bounds("Asia/Shanghai"),
            attribution_days=settings.attribution_window_days,
            covariate_days=settings.experiment_cuped_days,
        )
        conn.commit()
    engine.dispose()
    return time.perf_counter() - started


# --- measuring ------------------------------------------------------------------------------


def baselines(path: Path, url: str | None = None) -> tuple[float, float, int]:
    """The hand-written funnel GROUP BY over the last week's touches (channel × variant), and
    the same with the customers' segment joined in; each run twice, the second timed.
    On PostgreSQL (`url`) the same statements there."""
    from tasks.common.periods import Period

    starts_at, ends_at = (
        moment.strftime("%Y-%m-%d %H:%M:%S.%f")
        for moment in Period.parse(LAST_WEEK).utc_bounds("Asia/Shanghai")
    )
    plain = """
        select channel, variant, count(*), sum(delivered), sum(responded), sum(cost)
        from touches
        where campaign_id = ? and sent_at >= ? and sent_at < ? and variant <> 'holdout'
        group by channel, variant"""
    segmented = """
        select t.channel, c.segment, t.variant, count(*), sum(t.delivered),
               sum(t.responded), sum(t.cost)
        from touches as t left join customers as c on t.customer_id = c.customer_id
        where t.campaign_id = ? and t.sent_at >= ? and t.sent_at < ? and t.variant <> 'holdout'
        group by t.channel, c.segment, t.variant"""
    if url is not None:
        return _baselines_postgres(url, plain, segmented)
    rows = (
        sqlite3.connect(path)
        .execute(
            "select count(*) from touches where campaign_id = ? and sent_at >= ? and sent_at < ?",
            (CAMPAIGN, starts_at, ends_at),
        )
        .fetchone()[0]
    )
    timings = []
    for sql in (plain, segmented):
        conn = sqlite3.connect(path)
        for _ in range(2):
            started = time.perf_counter()
            conn.execute(sql, (CAMPAIGN, starts_at, ends_at)).fetchall()
            elapsed = time.perf_counter() - started
        timings.append(elapsed)
        conn.close()
    return timings[0], timings[1], rows


def as_postgres(sql: str) -> str:
    """A baseline statement for PostgreSQL: its binds, and its booleans summed as integers."""
    sql = re.sub(r"sum\(((?:t\.)?(?:delivered|responded))\)", r"sum(\1::int)", sql)
    return sql.replace("?", "%s")


def _baselines_postgres(url: str, plain: str, segmented: str) -> tuple[float, float, int]:
    """`baselines` on PostgreSQL: the same statements, the week's bounds as timestamps."""
    import psycopg

    from bench.backends import libpq
    from tasks.common.periods import Period

    bounds = (CAMPAIGN, *Period.parse(LAST_WEEK).utc_bounds("Asia/Shanghai"))
    timings = []
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute(
            "select count(*) from touches where campaign_id = %s and sent_at >= %s "
            "and sent_at < %s",
            bounds,
        ).fetchone()[0]
        for sql in (plain, segmented):
            for _ in range(2):
                started = time.perf_counter()
                conn.execute(as_postgres(sql), bounds).fetchall()
                elapsed = time.perf_counter() - started
            timings.append(elapsed)
    return timings[0], timings[1], rows


def steps_in_child(url: str, folder: Path, dbapi: bool = True) -> dict:
    """The check's steps timed one by one in a fresh process (`--child`); `dbapi`: also
    the data-quality step reading its rows through the DB-API, for comparison."""
    env = {
        **os.environ,
        "PDCA_DATABASE_URL": url,
        "PDCA_OUTPUT_DIR": str(folder / "out"),
        "PREFECT_HOME": str(folder / "prefect"),
    }
    argv = [sys.executable, __file__, "--child", *([] if dbapi else ["--no-dbapi"])]
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr[-4000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(dbapi: bool) -> None:
    """Runs each task of the check flow as a plain function, timing each."""
    from flows import check as stage
    from pdca.db import set_page_cache
    from pdca.settings import get_settings
    from tasks.check.result import CheckResult
    from tasks.common import value_metrics
    from tasks.common.campaigns import get_campaign_spec
    from tasks.common.periods import Period

    period = Period.parse(LAST_WEEK)
    timings: dict[str, float] = {}

    def timed(name, function, *args):
        started = time.perf_counter()
        value = function(*args)
        timings[name] = time.perf_counter() - started
        return value

    import great_expectations  # noqa: F401  (its 3-4 s import is not the validation's cost)

    from tasks.check import arrow_reads, gx_runs

    split = {"reading rows": 0.0, "validating": 0.0}

    def accumulate(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                split[name] += time.perf_counter() - started

        return wrapper

    # where the data-quality step spends its time: waiting for its SQL reads (which run
    # ahead of the validations, RowReader.frames) vs GE's validation
    arrow_reads.RowReader.frame = accumulate("reading rows", arrow_reads.RowReader.frame)
    arrow_reads._ReadAhead.take = accumulate("reading rows", arrow_reads._ReadAhead.take)
    gx_runs.validate_suite = accumulate("validating", gx_runs.validate_suite)

    engine = stage.check_engine(get_settings().database_url)
    measuring = {
        "count_funnel": stage.count_funnel.fn,  # the flow's order: longest first
        "judge_experiment": stage.judge_experiment.fn,
        "measure_asset_quality": stage.measure_asset_quality.fn,
        "find_top_reject_reasons": stage.find_top_reject_reasons.fn,
        "measure_customer_value": stage.measure_customer_value.fn,
    }
    # twice, the second timed: the baseline is timed warm too (its second run), and the
    # first pass brings the pages of customers, applications and loans into the OS cache
    for _ in range(2):
        split.update({"reading rows": 0.0, "validating": 0.0})
        with ExitStack() as stack:
            conn = stack.enter_context(engine.connect())
            spec = get_campaign_spec(conn, CAMPAIGN)
            set_page_cache(conn, stage.FUNNEL_PAGE_CACHE_MIB)
            # the flow's arrangement: each measurement on its own connection, all at once
            # (the flow's ThreadPoolTaskRunner; the funnel on the connection that saves)
            others = [stack.enter_context(engine.connect()) for _ in range(len(measuring) - 1)]
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=stage.MEASURING_TASKS) as pool:
                runs = {
                    name: pool.submit(timed, name, function, connection, spec, period)
                    for (name, function), connection in zip(
                        measuring.items(), [conn, *others], strict=True
                    )
                }
            measured, tests, (book, churn), _, values = (run.result() for run in runs.values())
            timings["measuring, at once"] = time.perf_counter() - started
            started = time.perf_counter()  # as the flow joins them (flows/check.py)
            families = value_metrics.join_churn(values, churn, stage.WEEK_GRAIN)
            measured.weeks = stage.with_week_kpis(
                measured.weeks, stage.join_kpi_counts(book, families), stage.inside_weeks(period)
            )
            overdue = stage.period_book(book, period)
            timings["joining the measurements"] = time.perf_counter() - started
            kpis, targets = timed(
                "compare_with_targets",
                stage.compare_with_targets.fn,
                conn,
                spec,
                period,
                measured,
                overdue,
                families,
            )
            anomalies = timed("find_anomalies", stage.find_anomalies.fn, measured, period)
            timed("find_bottleneck", stage.find_bottleneck.fn, measured, targets, kpis)
            quality = timed("great_expectations", stage.validate_period_data.fn, conn, spec, period)
            result = {
                "campaign": CAMPAIGN,
                "period": LAST_WEEK,
                "trusted": quality.trusted,
                "anomalies": anomalies,
                "experiments": tests,
                "kpis": kpis,
            }
            check = CheckResult.from_json(result)
            timed("save_check", stage.save_check.fn, conn, check, measured)
    timed_split = dict(split)  # the timed pass's; the run below is timed as a whole
    # for comparison: the same data-quality step reading its rows through the DB-API (one
    # Python object per value), as it did before it read them as Arrow
    split.update({"reading rows": 0.0, "validating": 0.0})
    dbapi_pass = _dbapi_data_quality(engine, spec, period, split) if dbapi else None
    # for the record: the flow's own arrangement, Great Expectations beside the measurements
    with ExitStack() as stack:
        connections = [stack.enter_context(engine.connect()) for _ in range(len(measuring) + 1)]
        spec = get_campaign_spec(connections[0], CAMPAIGN)
        set_page_cache(connections[0], stage.FUNNEL_PAGE_CACHE_MIB)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=stage.MEASURING_TASKS) as pool:
            for function, connection in zip(measuring.values(), connections, strict=False):
                pool.submit(function, connection, spec, period)
            stage.validate_period_data.fn(connections[-1], spec, period)
        with_ge = time.perf_counter() - started
    peak = own_peak_kib()
    print(
        json.dumps(
            {
                "timings": timings,
                "split": timed_split,
                "peak_kib": peak,
                "trusted": quality.trusted,
                "with_ge": with_ge,
                "dbapi": dbapi_pass,
                "workers": stage.MEASURING_TASKS,
            }
        )
    )


def _dbapi_data_quality(engine, spec, period, split: dict[str, float]) -> dict[str, float]:
    """The data-quality step reading its rows through the DB-API: its time as a whole and
    `split`, where the step's reads and validations accumulate."""
    from flows.check import quality_options
    from pdca.settings import get_settings
    from tasks.check import data_quality

    options = quality_options(get_settings())
    with engine.connect() as conn:
        started = time.perf_counter()
        data_quality.assess(conn, spec, period, **options, arrow_reads=False)
        return {"whole": time.perf_counter() - started, **split}


def whole_command(url: str, folder: Path) -> tuple[float, int]:
    env = {
        **os.environ,
        "PDCA_DATABASE_URL": url,
        "PDCA_OUTPUT_DIR": str(folder / "out"),
        "PREFECT_HOME": str(folder / "prefect"),
    }
    pdca = str(Path(sys.executable).parent / "pdca")
    argv = [pdca, "check", "--campaign", CAMPAIGN, "--period", LAST_WEEK, "--json"]
    with (folder / "check.err").open("w") as stderr:
        elapsed, peak, code = run_measured(
            argv, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=stderr
        )
    if code not in (0, 1):
        raise SystemExit((folder / "check.err").read_text()[-4000:])
    return elapsed, peak


STEPS_ALONE = (
    "measuring, at once",
    "joining the measurements",
    "compare_with_targets",
    "find_anomalies",
    "find_bottleneck",
    "save_check",
)
"""The check's steps without Great Expectations, in the flow's order: their sum is the
figure compared with the `GROUP BY`."""


def median_steps(turns: list[dict]) -> dict:
    """The turns' `steps_in_child` figures, each the median of the turns (the peak RSS
    their largest)."""

    def median_of(key: str, name: str) -> float:
        return statistics.median(turn[key][name] for turn in turns)

    first = turns[0]
    dbapi = first["dbapi"]
    return {
        "workers": first["workers"],
        "timings": {name: median_of("timings", name) for name in first["timings"]},
        "split": {name: median_of("split", name) for name in first["split"]},
        "dbapi": None if dbapi is None else {name: median_of("dbapi", name) for name in dbapi},
        "with_ge": statistics.median(turn["with_ge"] for turn in turns),
        "peak_kib": max(turn["peak_kib"] for turn in turns),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--touches", type=int, default=10_000_000)
    parser.add_argument(
        "--turns", type=int, default=3, help="the baseline and the check's steps, in turns"
    )
    parser.add_argument("--keep", type=Path, help="Build (or reuse) the database here.")
    parser.add_argument(
        "--no-dbapi",
        action="store_true",
        help="Leave out the data-quality step's comparison pass through the DB-API (a week of "
        "100 M touches as Python objects takes more memory than the step itself).",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_backend_option(parser)
    args = parser.parse_args()
    if args.child:
        child(dbapi=not args.no_dbapi)
        return
    with ExitStack() as resources:
        tmp = resources.enter_context(tempfile.TemporaryDirectory(prefix="pdca-bench-check-"))
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "history.db"
        url = f"sqlite:///{path}"
        if not path.exists():
            started = time.perf_counter()
            counts = build(path, args.touches)
            plan_targets(path)
            rollups = store_earlier_rollups(url)
            print(
                f"built in {time.perf_counter() - started:.0f} s "
                f"(earlier weeks' rollups {rollups:.0f} s): {counts}"
            )
        measured_url = None
        if args.backend == "postgresql":
            server = resources.enter_context(postgres_server())
            measured_url = create_database(server, "history")
            started = time.perf_counter()
            copy_sqlite_to_postgres(path, measured_url)
            print(f"copied into PostgreSQL in {time.perf_counter() - started:.0f} s")
            url = measured_url
        speed = [loop_seconds()]
        turns = []
        for number in range(1, args.turns + 1):
            plain, segmented, rows = baselines(path, measured_url)
            steps = steps_in_child(url, folder, dbapi=not args.no_dbapi)
            turns.append((plain, segmented, steps))
            without_ge = sum(steps["timings"][name] for name in STEPS_ALONE)
            print(
                f"turn {number}: GROUP BY {plain:.2f} s (with the segment {segmented:.2f} s); "
                f"check without GE {without_ge:.2f} s ({without_ge / plain:.1f}×); "
                f"GE {steps['timings']['great_expectations']:.2f} s",
                flush=True,
            )
        speed.append(loop_seconds())
        whole, whole_peak = whole_command(url, folder)
    plain = statistics.median(turn[0] for turn in turns)
    segmented = statistics.median(turn[1] for turn in turns)
    steps = median_steps([turn[2] for turn in turns])
    timings = steps["timings"]
    without_ge = sum(timings[name] for name in STEPS_ALONE)
    print(f"backend: {args.backend}; last week {LAST_WEEK}: {rows:,} touches of {args.touches:,}")
    print(f"turns: {len(turns)}, each figure below their median (peak RSS: their largest)")
    print(f"baseline GROUP BY channel × variant (week)  : {plain:7.2f} s")
    print(f"baseline GROUP BY with segment joined (week): {segmented:7.2f} s")
    print(f"measuring workers (the flow's, one per core up to 4): {steps['workers']}")
    for name, seconds in timings.items():
        if name in STEPS_ALONE or name == "great_expectations":
            print(f"  check step {name:<30}: {seconds:7.2f} s")
        else:
            print(f"    measuring {name:<29}: {seconds:7.2f} s (its own time, at once)")
    print(
        f"check without Great Expectations            : {without_ge:7.2f} s "
        f"= {without_ge / plain:.1f}× the channel × variant GROUP BY, "
        f"{without_ge / segmented:.1f}× the segmented one (target <= 3×)"
    )
    print(
        f"Great Expectations on the week's rows       : {timings['great_expectations']:7.2f} s"
        f" (target < {3 if args.backend == 'sqlite' else 5} s)"
    )
    print(
        f"  of which waiting for its rows (SQL)       : {steps['split']['reading rows']:7.2f} s, "
        f"GE's validation {steps['split']['validating']:.2f} s"
    )
    dbapi = steps["dbapi"]
    if dbapi is None:
        print("  the same, rows read through the DB-API      : not run (--no-dbapi)")
    else:
        print(
            f"  the same, rows read through the DB-API      : {dbapi['whole']:7.2f} s, "
            f"of which waiting for rows {dbapi['reading rows']:.2f} s (before the Arrow reads)"
        )
    print(
        "machine speed (a fixed Python loop, bench/machine.py): "
        f"{speed[0]:.2f} s before the steps, {speed[1]:.2f} s after"
    )
    print(f"the flow's arrangement, measuring and GE at once: {steps['with_ge']:7.2f} s")
    print(
        f"peak RSS of the check's steps               : {steps['peak_kib'] / 1024:7.0f} MiB"
        " (target < 2048)"
    )
    print(
        f"whole `pdca check --json` (Prefect incl.)    : {whole:7.2f} s, "
        f"peak RSS {whole_peak / 1024:.0f} MiB"
    )
    print(f"ratio: {without_ge / plain:.2f} (target: <= 3, the channel × variant GROUP BY)")


if __name__ == "__main__":
    main()
