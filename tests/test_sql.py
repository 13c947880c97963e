"""Every query in `sql/` renders, runs on a seeded SQLite and PostgreSQL database, and lints.

STYLE: "Every .sql file is executed by a test against the seeded test database". The
seed is a small demo history (pdca.synthetic.demo_history) loaded through the real feed import, once
per back end for this module. A new query whose parameters are not in `PARAMETERS` fails
here with its name: add a test value for each.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, create_engine, text

from pdca.db import make_engine
from pdca.settings import PROJECT_ROOT
from pdca.synthetic.demo_history import CAMPAIGN_ID
from tasks.check.experiments.members import refresh_members
from tasks.common.sqlfiles import (
    DIALECTS,
    SQL_DIR,
    _environment,
    names,
    query,
    render,
    strip_comments,
)
from tasks.do.assignment import HALF, cut, hash_binds, hash_parameters
from tests.worlds import World

BIN = Path(sys.executable).parent
QUERIES = names()
DEMO_START = date(2026, 3, 2)  # a Monday; three weeks of history

DISPATCH_HASHES = {
    "window": (f"{CAMPAIGN_ID}:window", [HALF]),
    "channel": (f"{CAMPAIGN_ID}:channel", [HALF]),
    "variant": (CAMPAIGN_ID, [cut(0.4), cut(0.8)]),
}
"""The hashes dispatch_stage.sql draws: bound on PostgreSQL (`PARAMETERS`), registered on
the connection on SQLite (`hash_binds`), as dispatch does."""

PARAMETERS = {
    # the metric queries
    "campaign_id": CAMPAIGN_ID,
    "starts_at": datetime(2026, 3, 1, 16),
    "ends_at": datetime(2026, 3, 22, 16),
    "attribution_days": 14,
    "experiment_starts_at": datetime(2026, 3, 1),
    "refold_from_at": datetime(2026, 3, 8, 16),
    "sums_from_at": datetime(2026, 3, 1),
    "sums_to_at": datetime(2026, 3, 23),
    "covariate_days": 90,
    "ftp_rate": 0.03,
    "lgd": 0.6,
    "as_of_end_date": date(2026, 6, 1),
    "period_start_date": date(2026, 3, 2),
    # dispatch_audience.sql
    "batch_id": 1,
    "min_credit_score": 600,
    "max_debt_ratio": 0.8,
    "excluded_industries": ["p2p-lending", "crypto"],
    "cap_starts_at": datetime(2026, 3, 16, 16),
    "complaints_since_at": datetime(2025, 12, 22, 16),
    "max_touches_per_7d": 2,
    # dispatch_stage.sql, rendered with every step (and the binds of its hashes, below)
    "window_index": 0,
    "segment_0": "sme",
    "segment_propensity_0": 0.1,
    "average_propensity": 0.06,
    "tier_a_score": 720,
    "tier_b_score": 660,
    "low_frequency_cap": 1,
    "tier_a_channel": "phone",
    "tier_b_channel": "sms",
    "tier_b_alternate": "im",
    "tier_c_channel": None,
    "segment_credit_score_0_scope": "farmer",
    "segment_credit_score_0": 700,
    "segment_debt_ratio_0_scope": "sme",
    "segment_debt_ratio_0": 0.5,
    "channel_credit_score_0_scope": "phone",
    "channel_credit_score_0": 740,
    "channel_debt_ratio_0_scope": "sms",
    "channel_debt_ratio_0": 0.4,
    "drawn_variant_0": "A",
    "drawn_variant_1": "B",
    "retired_variant_0": "B",
    "promoted_variant_0": "A",
    # dq_quarantine.sql: the local days of the metric queries' UTC window
    "start_date": date(2026, 3, 2),
    "end_date": date(2026, 3, 23),
}
"""A test value for every parameter any query takes; lists bind as expanding `in` lists."""
PARAMETERS.update(hash_parameters(DISPATCH_HASHES))


# --- the seeded databases ---------------------------------------------------------------


WORLD = World(customers=3_000, weeks=3, seed=11, start=DEMO_START)
"""The demo history every query runs on (tests/worlds.py loads it once per session)."""


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, demo_worlds
) -> Iterator[Engine]:
    """A migrated database per back end with the demo history loaded, for the module."""
    folder = tmp_path_factory.mktemp("sql-seeded")
    engine = make_engine(demo_worlds.database(request, folder, request.param, WORLD))
    with engine.begin() as conn:  # the experiment's members, stored as a check stores them
        refresh_members(
            conn,
            PARAMETERS["campaign_id"],
            datetime(2026, 3, 8, 16),
            PARAMETERS["ends_at"],
            attribution_days=PARAMETERS["attribution_days"],
            covariate_days=PARAMETERS["covariate_days"],
        )
    yield engine
    engine.dispose()


# --- every query runs -------------------------------------------------------------------


def bound(name: str, dialect: str):
    """The query with its list parameters expanding, and its parameter values."""
    statement = query(name, dialect)
    wanted = list(statement.compile().params)
    missing = [parameter for parameter in wanted if parameter not in PARAMETERS]
    assert not missing, f"sql/{name}.sql: no test value for {missing}; add them to PARAMETERS"
    lists = [bindparam(p, expanding=True) for p in wanted if isinstance(PARAMETERS[p], list)]
    return statement.bindparams(*lists), {p: PARAMETERS[p] for p in wanted}


@pytest.mark.parametrize("name", QUERIES)
def test_query_runs_on_the_seeded_database(seeded: Engine, name: str) -> None:
    statement, values = bound(name, seeded.dialect.name)
    with seeded.connect() as conn:
        hash_binds(conn, DISPATCH_HASHES)  # SQLite: the functions dispatch_stage.sql calls
        result = conn.execute(statement, values)
        columns, rows = list(result.keys()), result.fetchall()
    assert rows, f"sql/{name}.sql returned no rows on the seeded {seeded.dialect.name} database"
    assert len(set(columns)) == len(columns), f"sql/{name}.sql: duplicate columns {columns}"
    assert all(column == column.lower() for column in columns), columns


@pytest.mark.parametrize("name", QUERIES)
def test_query_states_its_grain_and_parameters(name: str) -> None:
    """STYLE: a header comment naming the query, its grain and its parameters."""
    source = (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")
    header = source.split("\nwith\n", 1)[0]
    assert header.startswith(f"-- {name}:"), f"sql/{name}.sql: header must open '-- {name}:'"
    assert "Grain:" in header and "Parameters:" in header, f"sql/{name}.sql: grain/parameters"
    last = source.rstrip().rsplit("\n", 1)[-1]
    assert re.fullmatch(r"select \* from [a-z_]+", last), f"sql/{name}.sql ends {last!r}"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", QUERIES)
def test_renders_without_jinja_or_comments(name: str, dialect: str) -> None:
    sql = render(name, dialect)
    assert "{{" not in sql and "{%" not in sql and "--" not in sql


class TestSqlFiles:
    def test_add_days_is_exact_on_sqlite(self) -> None:
        """The macro keeps the stored microseconds (SQLite's own %f keeps milliseconds)."""
        expression = render_expression('add_days("x", ":days")', "sqlite")
        engine = create_engine("sqlite://")
        with engine.connect() as conn:
            shifted = conn.execute(
                text(f"select {expression} from (select :x as x)"),
                {"x": "2026-03-18 10:00:00.000500", "days": -14},
            ).scalar_one()
        engine.dispose()
        assert shifted == "2026-03-04 10:00:00.000500"

    def test_unknown_query_and_dialect(self) -> None:
        with pytest.raises(ValueError, match="no query"):
            query("../pyproject", "sqlite")
        with pytest.raises(ValueError, match="dialect"):
            query("funnel_touches", "oracle")

    @pytest.mark.parametrize(
        ("sql", "expected"),
        [
            ("select 1 -- one\n", "select 1\n"),
            ("select '--not a comment'\n", "select '--not a comment'\n"),
            ("-- :starts_at\nselect /* :x */ 1\n", "select  1\n"),
            ("select 'it''s' -- x\n", "select 'it''s'\n"),
        ],
    )
    def test_strip_comments(self, sql: str, expected: str) -> None:
        assert strip_comments(sql) == expected

    def test_timestamp_and_date_parameters_are_typed(self) -> None:
        params = query("funnel_applications", "sqlite").compile().binds
        assert params["starts_at"].type.__class__.__name__ == "DateTime"
        assert params["as_of_end_date"].type.__class__.__name__ == "Date"


class TestSqlitePlans:
    """The check's per-touch and per-customer probes read indexes, never rows, and sort
    nothing per probe (migration 0004; bench/bench_check.py measures what it is worth).
    Planned on a freshly migrated database, without ANALYZE statistics, as users have."""

    @pytest.fixture(scope="class")
    def plans(self, sqlite_template: Path) -> dict[str, str]:
        import sqlite3

        conn = sqlite3.connect(sqlite_template)
        values = {name: str(value) for name, value in PARAMETERS.items()}
        plans = {}
        for name in (
            "funnel_touches",
            "experiment_members",
            "experiment_member_outcomes",
            "experiment_member_arms",
            "experiment_member_sums",
            "funnel_applications",
            "dq_touches",
            "dq_applications",
            "loan_book",
        ):
            rows = conn.execute(f"explain query plan {render(name, 'sqlite')}", values)
            plans[name] = "\n".join(row[3] for row in rows)
        plans["overdue_by_channel_segment"] = "\n".join(
            row[3]
            for row in conn.execute(
                f"explain query plan {render('overdue_by_channel_segment', 'sqlite')}", values
            )
        )
        conn.close()
        return plans

    def test_the_segment_of_each_touch_comes_from_the_covering_index(self, plans) -> None:
        assert "COVERING INDEX ix_customers_customer_id_segment" in plans["funnel_touches"]

    def test_attribution_probes_each_events_variant_once(self, plans) -> None:
        """attributed_events.sql reads each event's variant twice (the hold-out test, the
        output); its fenced step probes the customer's first touch once per event in each
        branch (campaign, touch), not once per read."""
        plan = plans["dq_applications"]
        probe = (
            "SEARCH t USING COVERING INDEX "
            "ix_touches_customer_id_sent_at_touch_id_campaign_id_delivered_variant"
        )
        assert "MATERIALIZE assigned" in plan
        assert plan.count(f"{probe} (customer_id=?)") == 2, plan

    def test_the_loan_books_attribution_reads_no_touch_row(self, plans) -> None:
        """The loan book attributes every loan of the campaign's history on every check: the
        last delivered touch before each application and the variant of the customer's
        first touch in the campaign both come from the index alone (migration 0013), no
        lookup of a touch's row in the table."""
        searches = [line for line in plans["loan_book"].splitlines() if "SEARCH t " in line]
        assert searches, plans["loan_book"]
        assert all("USING COVERING INDEX" in line for line in searches), searches

    def test_the_periods_touches_are_read_from_the_index_alone(self, plans) -> None:
        """Data quality reads every column of the period's touches: one range scan of the
        covering index (migration 0012), no lookup of each touch's row."""
        assert plans["dq_touches"] == (
            "SEARCH t USING COVERING INDEX ix_touches_campaign_id_sent_at_customer_id_variant_"
            "touch_id_delivered_channel_responded_cost (campaign_id=? AND sent_at>? AND sent_at<?)"
        )

    def test_the_cumulative_members_scan_the_index_and_probe_each_member_once(self, plans) -> None:
        """One range scan of the campaign's touches from the index alone; the fenced steps
        run each application probe once per member (not once per sum that reads it)."""
        plan = plans["experiment_members"]
        scan = "SEARCH t USING COVERING INDEX ix_touches_campaign_id_sent_at_customer_id_variant"
        assert scan in plan, plan
        probes = plan.count("USING COVERING INDEX ix_applications_customer_id_applied_at")
        assert probes == 2, plan

    def test_a_check_counts_the_new_members_alone_and_sums_the_stored_from_an_index(
        self, plans
    ) -> None:
        """The fold probes the store's key per customer of its range and the applications
        twice per member counted; the arms sum hours by the sums' key, and read members
        (from the store's covering index alone) only in the hours a boundary cuts."""
        plan = plans["experiment_member_outcomes"]
        assert "SEARCH m USING PRIMARY KEY (campaign_id=? AND customer_id=?)" in plan, plan
        assert "SEARCH m USING INDEX ix_experiment_members_stale (campaign_id=?)" in plan, plan
        probes = plan.count("USING COVERING INDEX ix_applications_customer_id_applied_at")
        assert probes == 2, plan
        arms = plans["experiment_member_arms"]
        hours = "USING INDEX sqlite_autoindex_experiment_member_sums_1 (campaign_id=? AND"
        assert hours in arms, arms
        cut = "SEARCH m USING COVERING INDEX ix_experiment_members_arms (campaign_id=? AND"
        assert cut in arms, arms

    @pytest.mark.parametrize(
        "name",
        [
            "experiment_members",
            "experiment_member_outcomes",
            "funnel_applications",
            "overdue_by_channel_segment",
        ],
    )
    def test_no_sort_per_probe(self, plans, name: str) -> None:
        assert "RIGHT PART OF ORDER BY" not in plans[name], plans[name]

    def test_attribution_walks_back_in_the_index_alone(self, plans) -> None:
        index = (
            "COVERING INDEX ix_touches_customer_id_sent_at_touch_id_campaign_id_delivered_variant"
        )
        assert index in plans["funnel_applications"]
        assert "COVERING INDEX ix_customers_customer_id_segment" in plans["funnel_applications"]


def render_expression(expression: str, dialect: str) -> str:
    """One macro call rendered for `dialect`, as a query file would render it."""
    return _environment(dialect).from_string("{{ " + expression + " }}").render()


# --- sqlfluff ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lint_report() -> dict[str, list[dict]]:
    """`sqlfluff lint sql` as the Makefile runs it, violations by file name."""
    result = subprocess.run(
        [str(BIN / "sqlfluff"), "lint", "sql", "--format", "json", "--nofail"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip(), result.stderr
    return {
        Path(entry["filepath"]).name: entry["violations"] for entry in json.loads(result.stdout)
    }


@pytest.mark.parametrize("name", QUERIES)
def test_sqlfluff_lint(lint_report: dict[str, list[dict]], name: str) -> None:
    violations = lint_report.get(f"{name}.sql", [])
    assert not violations, "\n".join(
        f"sql/{name}.sql:{v.get('start_line_no')}: {v.get('code')} {v.get('description')}"
        for v in violations
    )
