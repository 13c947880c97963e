"""`pdca demo` from the user's side: one command, a loaded database, where it is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tasks.common.feeds import FEEDS

PDCA = str(Path(sys.executable).parent / "pdca")

pytestmark = pytest.mark.slow  # the demo's full world: 50,000 customers × 8 weeks


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, prefect_home: Path):
    """Run the demo as `make run` does — default size, 50,000 customers × 8 weeks (about
    20 s, Prefect's embedded API included) — once for the whole module."""
    workdir = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    env.pop("PDCA_DATABASE_URL", None)
    result = subprocess.run(
        [PDCA, "demo"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return workdir, result


class TestDemo:
    def test_succeeds_and_says_where_the_database_is(self, demo_run):
        workdir, result = demo_run
        assert result.returncode == 0, result.stderr[-3000:]
        database = workdir / "var" / "pdca.db"
        assert f"database: {database.resolve()}" in result.stdout
        assert database.exists()

    def test_every_feed_is_loaded_and_only_the_bad_rows_quarantined(self, demo_run):
        workdir, _ = demo_run
        engine = create_engine(f"sqlite:///{workdir / 'var' / 'pdca.db'}")
        with engine.connect() as conn:
            for feed in FEEDS.values():
                loaded = conn.execute(text(f"select count(*) from {feed.table}")).scalar()
                assert loaded > 0, f"{feed.name}: nothing loaded"
            per_feed = dict(
                conn.execute(text("select feed, count(*) from quarantine group by feed")).all()
            )
            imports = conn.execute(
                text("select feed, rows_in, rows_loaded, rows_quarantined from imports")
            ).all()
        assert set(per_feed) == set(FEEDS), per_feed
        for feed, rows, loaded, quarantined in imports:
            assert loaded + quarantined == rows, f"{feed}: {loaded} + {quarantined} != {rows}"
            assert quarantined == per_feed[feed]

    def test_plans_and_dispatches_the_first_cycle_day(self, demo_run):
        workdir, result = demo_run
        assert "plan demo-sme-2026 2026-W18: version 1" in result.stdout, result.stdout
        engine = create_engine(f"sqlite:///{workdir / 'var' / 'pdca.db'}")
        with engine.connect() as conn:
            sent = conn.execute(text("select count(*) from outbox where status = 'sent'")).scalar()
            journaled = conn.execute(text("select count(*) from simulated_sends")).scalar()
        assert sent > 0 and sent == journaled, (sent, journaled)

    def test_checks_the_last_week_of_history(self, demo_run):
        workdir, result = demo_run
        assert "check demo-sme-2026 2026-W17: trusted" in result.stdout, result.stdout
        engine = create_engine(f"sqlite:///{workdir / 'var' / 'pdca.db'}")
        with engine.connect() as conn:
            stored = conn.execute(text("select period, trusted from check_results")).all()
        assert stored == [("2026-W17", 1)]
        assert (workdir / "var" / "data-docs" / "index.html").is_file()

    def test_the_experiment_decides(self, demo_run):
        """Eight weeks of a campaign against a 10 % hold-out that nothing was sent to: the
        contacted arms apply many times more often, and the sequential test says so
        (`treatment_wins` for A and B against the hold-out), in the JSON and the line."""
        workdir, result = demo_run
        engine = create_engine(f"sqlite:///{workdir / 'var' / 'pdca.db'}")
        with engine.connect() as conn:
            stored = conn.execute(text("select result from check_results")).scalar()
        experiments = json.loads(stored)["experiments"]
        decisions = {(e["control"], e["treatment"]): e["decision"] for e in experiments}
        assert decisions[("holdout", "A")] == "treatment_wins", experiments
        assert decisions[("holdout", "B")] == "treatment_wins", experiments
        for comparison in experiments:
            assert comparison["sequential_p_value_adjusted"] is not None
            if comparison["decision"] == "treatment_wins":
                assert comparison["sequential_p_value_adjusted"] < 0.05
                assert comparison["cs_low"] > 0, comparison
        assert "A vs holdout treatment_wins, B vs holdout treatment_wins" in result.stdout

    def test_acts_on_the_checked_week_and_the_dispatch_follows(self, demo_run):
        workdir, result = demo_run
        assert "act demo-sme-2026 2026-W17: " in result.stdout, result.stdout
        engine = create_engine(f"sqlite:///{workdir / 'var' / 'pdca.db'}")
        with engine.connect() as conn:
            approved = conn.execute(
                text("select action_id, type from actions where status = 'approved'")
            ).all()
            versions = conn.execute(text("select max(version) from sop_versions")).scalar()
            rules = conn.execute(text("select summary from outreach_batches")).scalar()
        assert approved, "the demo's check should lead to at least one adjustment"
        assert versions == 1 + len(approved)
        applied = {f"{kind} {action_id}" for action_id, kind in approved}
        assert applied <= set(json.loads(rules)["rules"]), (applied, rules)

    def test_prints_the_reports_it_wrote(self, demo_run):
        workdir, result = demo_run
        lines = {
            line.split(": ", 1)[0].strip(): line.split(": ", 1)[1]
            for line in result.stdout.splitlines()
            if line.strip().startswith(("weekly review: ", "adjustment report: "))
        }
        review = Path(lines["weekly review"])
        assert review == (workdir / "var" / "reports" / "weekly-review-2026-W17.html").resolve()
        assert review.is_file()
        assert 'id="kpis"' in review.read_text(), "the weekly review's KPI summary"
        assert Path(lines["adjustment report"]).is_file()

    def test_is_deterministic_by_seed(self, demo_run, tmp_path, prefect_home):
        """Same seed, same data: the feed files of a second run are byte-identical."""
        workdir, _ = demo_run
        from pdca.synthetic.demo_history import write_demo_feeds

        again = write_demo_feeds(tmp_path)
        for feed in FEEDS:
            first = (workdir / "var" / "demo" / "feeds" / f"{feed}.csv").read_bytes()
            assert again.feed(feed).read_bytes() == first, f"{feed} differs for the same seed"


@pytest.fixture(scope="module")
def demo_60000(tmp_path_factory: pytest.TempPathFactory, prefect_home: Path):
    """`pdca demo --customers 60000` (about a minute, two on busy cores): the size whose
    next-week plan was once infeasible (an approved shift into im, full at its capacity and
    over the overdue ceiling, with the low-risk channels full)."""
    workdir = tmp_path_factory.mktemp("demo-60000")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    env.pop("PDCA_DATABASE_URL", None)
    result = subprocess.run(
        [PDCA, "demo", "--customers", "60000"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return workdir, result


class TestDemoAt60000Customers:
    """The size whose next-week plan was infeasible. The LP's numbers of that run are a
    unit test (tests/tasks/plan/test_budget.py, TestDemoWeekAfterTheCheckedOne); here the
    whole demo at that size must complete and plan the week after the checked one."""

    def test_plans_the_next_week(self, demo_60000):
        workdir, result = demo_60000
        assert result.returncode == 0, result.stderr[-3000:]
        assert "plan demo-sme-2026 2026-W18: version 1" in result.stdout, result.stdout
        engine = create_engine(f"sqlite:///{workdir / 'var' / 'pdca.db'}")
        with engine.connect() as conn:
            inputs = conn.execute(
                text("select inputs from plans where period = '2026-W18' and is_current")
            ).scalar_one()
            split = dict(
                conn.execute(
                    text(
                        "select b.channel, b.amount from budgets b join plans p "
                        "on p.plan_id = b.plan_id where p.period = '2026-W18' and p.is_current"
                    )
                ).all()
            )
        engine.dispose()
        assert split and all(amount >= 0 for amount in split.values()), split
        assert sum(split.values()) > 0, split
        assert json.loads(inputs)["notes"], "a plan says how its split came about"


class TestActBackfill:
    """Acting on the three weeks before the demo's, after the demo acted on its week (runs
    last: it adds actions to the demo's database): one `pdca backfill act`, a week at a
    time, as an engineer would catch up on them."""

    def test_proposes_nothing_twice_and_only_improvements(self, demo_run, prefect_home):
        workdir, result = demo_run
        assert result.returncode == 0, result.stderr[-3000:]
        env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
        env.pop("PDCA_DATABASE_URL", None)
        argv = ["backfill", "act", "--campaign", "demo-sme-2026", "--from", "2026-W14"]
        acted = subprocess.run(
            [PDCA, *argv, "--to", "2026-W16", "--concurrency", "1", "--auto-approve"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert acted.returncode == 0, acted.stderr[-3000:]
        for week in ("2026-W14", "2026-W15", "2026-W16"):
            assert f"act demo-sme-2026 {week}: Completed" in acted.stdout, acted.stdout
        engine = create_engine(f"sqlite:///{workdir / 'var' / 'pdca.db'}")
        with engine.connect() as conn:
            actions = conn.execute(
                text(
                    "select period, type, scope, status, expected_impact from actions "
                    "where type != 'hold' order by action_id"
                )
            ).all()
        rules = [
            (kind, json.dumps(json.loads(scope), sort_keys=True)) for _, kind, scope, *_ in actions
        ]
        assert len(rules) == len(set(rules)), f"a rule changed twice: {actions}"
        for period, kind, _, status, impact in actions:
            if kind == "tighten_admission" and status == "approved":
                found = re.search(r"overdue_rate_30 ([\d.]+) % → ([\d.]+) %", impact)
                assert found, (period, impact)
                assert float(found[2]) < float(found[1]), (period, impact)
