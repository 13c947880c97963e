"""Feed import through Python, on SQLite and PostgreSQL: typed rows in, bad rows quarantined.

Every test that imports a file also checks the contract's bookkeeping: loaded +
quarantined = data rows in the file, and the quarantine table holds exactly the
quarantined rows, each with its line (the header is line 1), field, reason and raw text.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, insert, select

from pdca.errors import UserError
from pdca.models import Application, Base, Customer, Import, Loan, QuarantinedRow
from tasks.common.campaigns import apply_spec, load_spec
from tasks.common.feeds import FEEDS
from tasks.data.import_parsing import LINE
from tasks.data.import_staging import StagedLoader
from tasks.data.importing import ImportResult, import_feed

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sme-spring-2026.yaml"
CAMPAIGN = "sme-spring-2026"  # time zone Asia/Shanghai (UTC+8, no daylight saving)
FEED_TABLES = [feed.table for feed in FEEDS.values()]
SURROGATE_KEYS = {"quarantine_id", "import_id"}
"""Columns that number rows per import; everything else must survive a rerun unchanged."""


def header(feed: str) -> str:
    return ",".join(FEEDS[feed].column_names)


def write_feed(folder: Path, feed: str, lines: list[str], name: str | None = None) -> Path:
    """A feed file: the contract's header, then `lines` as they are (no quoting)."""
    path = folder / (name or f"{feed}.csv")
    path.write_text("\n".join([header(feed), *lines]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """The example campaign, customers c1 and c2, applications a1 and a2, loan l1."""
    with engine.begin() as conn:
        apply_spec(conn, load_spec(EXAMPLE))
        conn.execute(
            insert(Customer),
            [
                {
                    "customer_id": customer,
                    "segment": "sme",
                    "credit_score": 700,
                    "marketing_consent": True,
                    "do_not_contact": False,
                }
                for customer in ("c1", "c2")
            ],
        )
        conn.execute(
            insert(Application),
            [
                {
                    "application_id": application,
                    "customer_id": "c1",
                    "campaign_id": CAMPAIGN,
                    "channel": "sms",
                    "applied_at": datetime(2026, 3, 3),
                    "product_code": "sme-revolving",
                    "amount_requested": 50000.0,
                }
                for application in ("a1", "a2")
            ],
        )
        conn.execute(
            insert(Loan).values(
                loan_id="l1",
                application_id="a1",
                disbursed_at=datetime(2026, 3, 5),
                amount=40000.0,
                apr=12.5,
                term_months=12,
            )
        )
    return engine


def run_import(engine: Engine, feed: str, path: Path, **options: Any) -> ImportResult:
    with engine.connect() as conn:
        return import_feed(conn, feed, path, **options)


def data_rows(path: Path) -> int:
    """Physical lines after the header, blank ones included: what the contract counts."""
    return len(path.read_bytes().splitlines()) - 1


def file_lines(path: Path) -> dict[int, str]:
    """Line number → text as the file has it (undecodable bytes shown as U+FFFD)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    return dict(enumerate(text.splitlines(), 1))


def quarantined(conn: Connection, path: Path) -> list[QuarantinedRow]:
    table = QuarantinedRow.__table__
    return conn.execute(select(table).where(table.c.file == str(path)).order_by("line")).all()


def assert_import(
    engine: Engine,
    result: ImportResult,
    path: Path,
    expected: list[tuple[int, str, str]],
) -> None:
    """Every row accounted for, and quarantine holds exactly `expected`: (line, field,
    fragment of the reason), each with the line's raw text."""
    rows = data_rows(path)
    assert result.rows == rows, f"{path.name}: the import saw {result.rows} rows, file has {rows}"
    assert result.loaded + result.quarantined == rows, (
        f"{path.name}: loaded {result.loaded} + quarantined {result.quarantined} != {rows} rows"
    )
    assert result.quarantined == len(expected), (
        f"{path.name}: expected {len(expected)} quarantined rows, got {result.quarantined} "
        f"({result.reasons})"
    )
    with engine.connect() as conn:
        found = quarantined(conn, path)
    actual = [(row.line, row.field, row.reason) for row in found]
    assert [(line, field) for line, field, _ in actual] == [
        (line, field) for line, field, _ in expected
    ], f"{path.name}: quarantine (line, field, reason) is {actual}, expected {expected}"
    lines = file_lines(path)
    for row, (line, _field, fragment) in zip(found, expected, strict=True):
        assert fragment in row.reason, (
            f"{path.name} line {line}: reason {row.reason!r} should mention {fragment!r}"
        )
        assert row.raw == lines[line], (
            f"{path.name} line {line}: raw {row.raw!r} is not the file's text {lines[line]!r}"
        )
        assert row.feed == result.feed and row.import_id == result.import_id


def assert_typed(actual: tuple, expected: tuple) -> None:
    """Same values, and each of the same Python type (bool is not int, date not datetime)."""
    assert tuple(actual) == expected, f"read back {tuple(actual)}, expected {expected}"
    types = [(type(a).__name__, type(e).__name__) for a, e in zip(actual, expected, strict=True)]
    assert all(a == e for a, e in types), f"types read back vs expected: {types}"


def read_back(engine: Engine, feed: str, keys: list[tuple]) -> list[tuple]:
    table = Base.metadata.tables[FEEDS[feed].table]
    key_columns = [table.c[name] for name in FEEDS[feed].key]
    with engine.connect() as conn:
        rows = conn.execute(
            select(*(table.c[name] for name in FEEDS[feed].column_names)).order_by(*key_columns)
        ).all()
    width = len(FEEDS[feed].key)
    return [tuple(row) for row in rows if tuple(row[:width]) in keys]


def table_contents(conn: Connection, name: str) -> list[tuple]:
    """A table's full contents without surrogate ids, sorted: comparable across imports."""
    table = Base.metadata.tables[name]
    columns = [column for column in table.c if column.name not in SURROGATE_KEYS]
    return sorted(
        (tuple(row) for row in conn.execute(select(*columns)).all()),
        key=lambda row: tuple((value is None, str(value)) for value in row),
    )


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {name: table_contents(conn, name) for name in [*FEED_TABLES, "quarantine"]}


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    """A naive-UTC timestamp in March 2026."""
    return datetime(2026, 3, day, hour, minute)


# --- each feed loads, typed -------------------------------------------------------------

VALID: dict[str, list[tuple[str, tuple]]] = {
    "customers": [
        (
            "c10,sme,north,650,5000.5,0.3,retail,+8613800000000,a@b.cn,true,false,"
            "2026-03-02T12:00:00+08:00",
            (
                "c10",
                "sme",
                "north",
                650,
                5000.5,
                0.3,
                "retail",
                "+8613800000000",
                "a@b.cn",
                True,
                False,
                at(4),
            ),
        ),
        (
            "c11,retail,,300,,,,,,1,0,",
            ("c11", "retail", None, 300, None, None, None, None, None, True, False, None),
        ),
        (
            "c12,sme,south,900,0,0,,,,FALSE,TRUE,2026-03-02T12:00:00Z",
            ("c12", "sme", "south", 900, 0.0, 0.0, None, None, None, False, True, at(12)),
        ),
    ],
    "touches": [
        (
            "t1,sme-spring-2026,c1,sms,A,2026-03-02T12:00:00+08:00,true,false,0.05",
            ("t1", CAMPAIGN, "c1", "sms", "A", at(4), True, False, 0.05),
        ),
        (  # no offset: the campaign's time zone, Asia/Shanghai
            "t2,sme-spring-2026,c2,phone,holdout,2026-03-02T12:00:00,false,false,0",
            ("t2", CAMPAIGN, "c2", "phone", "holdout", at(4), False, False, 0.0),
        ),
        (
            "t3,sme-spring-2026,c1,email,B,2026-03-02 04:30:00-00:00,1,1,1.5",
            ("t3", CAMPAIGN, "c1", "email", "B", at(4, 30), True, True, 1.5),
        ),
    ],
    "applications": [
        (
            "a10,c1,sme-spring-2026,sms,2026-03-03T10:00:00,sme-revolving,50000",
            ("a10", "c1", CAMPAIGN, "sms", at(2, day=3), "sme-revolving", 50000.0),
        ),
        (  # not attributed: no campaign, so no campaign time zone; the default (UTC)
            "a11,c2,,branch,2026-03-03T10:00:00,sme-revolving,20000.5",
            ("a11", "c2", None, "branch", at(10, day=3), "sme-revolving", 20000.5),
        ),
    ],
    "decisions": [
        (
            "a1,2026-03-04T09:30:00+08:00,approved,,40000,12.5",
            ("a1", at(1, 30, day=4), "approved", None, 40000.0, 12.5),
        ),
        (
            "a2,2026-03-04T09:30:00Z,rejected,low_score,,",
            ("a2", at(9, 30, day=4), "rejected", "low_score", None, None),
        ),
    ],
    "loans": [
        (
            "l10,a1,2026-03-05T10:00:00+08:00,40000,12.5,12",
            ("l10", "a1", at(2, day=5), 40000.0, 12.5, 12),
        ),
        (
            "l11,a2,2026-03-05T10:00:00+08:00,1000.25,0,36",
            ("l11", "a2", at(2, day=5), 1000.25, 0.0, 36),
        ),
    ],
    "repayments": [
        ("l1,2026-04-05,0,39000", ("l1", date(2026, 4, 5), 0, 39000.0)),
        ("l1,2026-05-05,31,38000.5", ("l1", date(2026, 5, 5), 31, 38000.5)),
    ],
    "complaints": [
        (  # no offset: the campaign's time zone
            "k1,c1,sme-spring-2026,2026-03-06T20:00:00,too_many_calls",
            ("k1", "c1", CAMPAIGN, at(12, day=6), "too_many_calls"),
        ),
        (
            "k2,c2,,2026-03-06T20:00:00+00:00,pricing",
            ("k2", "c2", None, at(20, day=6), "pricing"),
        ),
    ],
    "surveys": [
        (  # no offset: the campaign's time zone
            "s1,c1,sme-spring-2026,2026-03-06T20:00:00,10,would recommend",
            ("s1", "c1", CAMPAIGN, at(12, day=6), 10, "would recommend"),
        ),
        (
            "s2,c2,,2026-03-06T20:00:00+00:00,0,",
            ("s2", "c2", None, at(20, day=6), 0, None),
        ),
    ],
}


class TestEachFeedLoads:
    @pytest.mark.parametrize("feed", list(VALID))
    def test_success_rows_read_back_typed(self, seeded: Engine, tmp_path: Path, feed: str):
        path = write_feed(tmp_path, feed, [line for line, _ in VALID[feed]])
        result = run_import(seeded, feed, path)
        assert_import(seeded, result, path, [])
        assert result.loaded == len(VALID[feed])
        width = len(FEEDS[feed].key)
        expected = sorted((row for _, row in VALID[feed]), key=lambda row: row[:width])
        actual = read_back(seeded, feed, [row[:width] for row in expected])
        assert len(actual) == len(expected), f"{feed}: read back {actual}"
        for got, want in zip(actual, expected, strict=True):
            assert_typed(got, want)

    def test_success_import_is_recorded(self, seeded: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "touches", [line for line, _ in VALID["touches"]])
        result = run_import(seeded, "touches", path)
        with seeded.connect() as conn:
            record = conn.execute(select(Import)).one()
        assert (record.feed, record.file, record.status) == ("touches", str(path), "loaded")
        assert (record.rows_in, record.rows_loaded, record.rows_quarantined) == (3, 3, 0)
        assert result.summary() == f"touches: 3 rows in {path}: 3 loaded, 0 quarantined"

    @pytest.mark.parametrize(
        ("zone", "expected"),
        [("UTC", at(12)), ("Asia/Shanghai", at(4)), ("Europe/Lisbon", at(12))],
    )
    def test_success_no_campaign_reads_the_default_time_zone(
        self, engine: Engine, tmp_path: Path, zone: str, expected: datetime
    ):
        path = write_feed(tmp_path, "customers", ["c1,sme,,650,,,,,,1,0,2026-03-02T12:00:00"])
        result = run_import(engine, "customers", path, default_timezone=zone)
        assert_import(engine, result, path, [])
        [row] = read_back(engine, "customers", [("c1",)])
        assert row[-1] == expected, f"12:00 in {zone} read as {row[-1]}, expected {expected} UTC"

    def test_success_campaign_zone_beats_the_default(self, seeded: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "touches", [VALID["touches"][1][0]])
        result = run_import(seeded, "touches", path, default_timezone="Europe/Lisbon")
        assert_import(seeded, result, path, [])
        [row] = read_back(seeded, "touches", [("t2",)])
        assert row[5] == at(4), "a touch without offset is read in its campaign's zone"

    def test_success_header_only_loads_nothing(self, seeded: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "touches", [])
        result = run_import(seeded, "touches", path)
        assert (result.rows, result.loaded, result.quarantined) == (0, 0, 0)


# --- row-level faults go to quarantine --------------------------------------------------

GOOD = {feed: rows[0][0] for feed, rows in VALID.items()}

ROW_FAULTS = [
    # (case, feed, bad line, field, fragment of the reason)
    (
        "credit score out of range",
        "customers",
        "c20,sme,north,1200,5000,0.3,retail,,,true,false,",
        "credit_score",
        "credit_score: must be between [300.0, 900.0]",
    ),
    (
        "negative income",
        "customers",
        "c20,sme,north,650,-1,0.3,retail,,,true,false,",
        "monthly_income",
        "monthly_income: must be between [0.0, ]",
    ),
    (
        "unknown channel",
        "touches",
        "t20,sme-spring-2026,c1,fax,A,2026-03-02T12:00:00,true,false,0.05",
        "channel",
        "channel: must be in set",
    ),
    (
        "negative cost",
        "touches",
        "t20,sme-spring-2026,c1,sms,A,2026-03-02T12:00:00,true,false,-0.05",
        "cost",
        "cost: must be between [0.0, ]",
    ),
    (
        "not a number",
        "customers",
        "c20,sme,north,650,lots,0.3,retail,,,true,false,",
        "monthly_income",
        "monthly_income: not a number",
    ),
    (
        "not a number in an integer column",
        "customers",
        "c20,sme,north,high,5000,0.3,retail,,,true,false,",
        "credit_score",
        "credit_score: not an integer",
    ),
    (
        "not a boolean",
        "touches",
        "t20,sme-spring-2026,c1,sms,A,2026-03-02T12:00:00,yes,false,0.05",
        "delivered",
        "delivered: not a boolean (true/false or 1/0)",
    ),
    (
        "bad timestamp",
        "touches",
        "t20,sme-spring-2026,c1,sms,A,2026-02-30T12:00:00,true,false,0.05",
        "sent_at",
        "sent_at: not an ISO 8601 timestamp",
    ),
    (
        "timestamp that is not one",
        "decisions",
        "a2,yesterday,approved,,40000,12.5",
        "decided_at",
        "decided_at: not an ISO 8601 timestamp",
    ),
    (
        "bad date",
        "repayments",
        "l1,2026-13-01,0,100",
        "as_of",
        "as_of: not a date (YYYY-MM-DD)",
    ),
    (
        "missing required value",
        "customers",
        "c20,,north,650,5000,0.3,retail,,,true,false,",
        "segment",
        "segment: must not be null",
    ),
    (
        "missing required boolean",
        "customers",
        "c20,sme,north,650,5000,0.3,retail,,,,false,",
        "marketing_consent",
        "marketing_consent: must not be null",
    ),
    (
        "missing required timestamp",
        "complaints",
        "k20,c1,sme-spring-2026,,pricing",
        "received_at",
        "received_at: must not be null",
    ),
    (
        "key that is not an identifier",
        "customers",
        "-c20,sme,north,650,5000,0.3,retail,,,true,false,",
        "customer_id",
        "customer_id: must match regex",
    ),
    (
        "unknown customer",
        "touches",
        "t20,sme-spring-2026,zz,sms,A,2026-03-02T12:00:00,true,false,0.05",
        "customer_id",
        "unknown customer_id 'zz' (not in customers)",
    ),
    (
        "unknown campaign",
        "touches",
        "t20,no-such-campaign,c1,sms,A,2026-03-02T12:00:00,true,false,0.05",
        "campaign_id",
        "unknown campaign_id 'no-such-campaign' (not in campaigns)",
    ),
    (
        "unknown customer of an application",
        "applications",
        "a20,zz,,sms,2026-03-03T10:00:00,sme-revolving,100",
        "customer_id",
        "unknown customer_id 'zz' (not in customers)",
    ),
    (
        "unknown application of a decision",
        "decisions",
        "a99,2026-03-04T09:30:00Z,approved,,40000,12.5",
        "application_id",
        "unknown application_id 'a99' (not in applications)",
    ),
    (
        "unknown application of a loan",
        "loans",
        "l20,a99,2026-03-05T10:00:00+08:00,40000,12.5,12",
        "application_id",
        "unknown application_id 'a99' (not in applications)",
    ),
    (
        "unknown loan of a repayment",
        "repayments",
        "l99,2026-04-05,0,100",
        "loan_id",
        "unknown loan_id 'l99' (not in loans)",
    ),
    (
        "unknown customer of a complaint",
        "complaints",
        "k20,zz,,2026-03-06T20:00:00Z,pricing",
        "customer_id",
        "unknown customer_id 'zz' (not in customers)",
    ),
    (
        "survey score above 10",
        "surveys",
        "s20,c1,,2026-03-06T20:00:00Z,11,",
        "score",
        "score: must be between",
    ),
    (
        "survey score that is not whole",
        "surveys",
        "s20,c1,,2026-03-06T20:00:00Z,7.5,",
        "score",
        "score",
    ),
    (
        "survey answered before the plausible range",
        "surveys",
        "s20,c1,,1890-03-06T20:00:00Z,7,",
        "answered_at",
        "outside the plausible range",
    ),
    (
        "unknown customer of a survey",
        "surveys",
        "s20,zz,,2026-03-06T20:00:00Z,7,",
        "customer_id",
        "unknown customer_id 'zz' (not in customers)",
    ),
    (
        "rejected without reject_reason",
        "decisions",
        "a2,2026-03-04T09:30:00Z,rejected,,,",
        "reject_reason",
        'reject_reason: must not be null when decision=="rejected"',
    ),
    (
        "approved without apr",
        "decisions",
        "a2,2026-03-04T09:30:00Z,approved,,40000,",
        "apr",
        'apr: must not be null when decision=="approved"',
    ),
    (
        "decision outside its set",
        "decisions",
        "a2,2026-03-04T09:30:00Z,maybe,,,",
        "decision",
        "decision: must be in set ['approved', 'rejected']",
    ),
    (
        "hold-out touch delivered",
        "touches",
        "t20,sme-spring-2026,c1,sms,holdout,2026-03-02T12:00:00,true,false,0",
        "delivered",
        "delivered: must be in set ['False'] when variant==\"holdout\"",
    ),
    (
        "hold-out touch with a cost",
        "touches",
        "t20,sme-spring-2026,c1,sms,holdout,2026-03-02T12:00:00,false,false,0.05",
        "cost",
        'cost: must be between [0.0, 0.0] when variant=="holdout"',
    ),
    (
        "requested amount not positive",
        "applications",
        "a20,c1,,sms,2026-03-03T10:00:00,sme-revolving,0",
        "amount_requested",
        "amount_requested: must be between (0.0, ]",
    ),
    (
        "requested amount missing (the applications feed carries it)",
        "applications",
        "a20,c1,,sms,2026-03-03T10:00:00,sme-revolving,",
        "amount_requested",
        "amount_requested: must not be null",
    ),
    (
        "negative days past due",
        "repayments",
        "l1,2026-06-05,-1,100",
        "dpd",
        "dpd: must be between [0.0, ]",
    ),
    (
        "term out of range",
        "loans",
        "l20,a1,2026-03-05T10:00:00+08:00,40000,12.5,0",
        "term_months",
        "term_months: must be between [1.0, 600.0]",
    ),
    (
        "too few fields",
        "customers",
        "c20,sme,north",
        "(row)",
        "expected 12 fields, found 3",
    ),
    (
        "too many fields",
        "touches",
        "t20,sme-spring-2026,c1,sms,A,2026-03-02T12:00:00,true,false,0.05,extra",
        "(row)",
        "expected 9 fields, found 10",
    ),
]


class TestRowFaultsAreQuarantined:
    @pytest.mark.parametrize(
        ("feed", "bad", "field", "reason"),
        [pytest.param(*case[1:], id=case[0]) for case in ROW_FAULTS],
    )
    def test_failure(
        self, seeded: Engine, tmp_path: Path, feed: str, bad: str, field: str, reason: str
    ):
        path = write_feed(tmp_path, feed, [GOOD[feed], bad])
        result = run_import(seeded, feed, path)
        assert_import(seeded, result, path, [(3, field, reason)])
        assert result.loaded == 1

    def test_success_rows_record_their_feed(self, seeded: Engine, tmp_path: Path):
        """An applications row says it came from the applications feed, which carries every
        field: the check holds a missing amount against it (unlike the UCI file's)."""
        path = write_feed(tmp_path, "applications", [GOOD["applications"]])
        assert run_import(seeded, "applications", path).loaded == 1
        key = GOOD["applications"].split(",")[0]
        with seeded.connect() as conn:
            source = conn.execute(
                select(Application.source_feed).where(Application.application_id == key)
            ).scalar_one()
        assert source == "applications"

    def test_failure_keeps_the_rows_own_time(self, seeded: Engine, tmp_path: Path):
        bad = "t20,sme-spring-2026,c1,fax,A,2026-03-02T12:00:00,true,false,0.05"
        path = write_feed(tmp_path, "touches", [bad])
        run_import(seeded, "touches", path)
        with seeded.connect() as conn:
            [row] = quarantined(conn, path)
        assert row.occurred_at == at(4), "occurred_at is the row's sent_at, in UTC"

    def test_failure_every_reason_of_a_row(self, seeded: Engine, tmp_path: Path):
        bad = "c20,sme,north,abc,5000,0.3,retail,,,yes,false,"
        path = write_feed(tmp_path, "customers", [bad])
        run_import(seeded, "customers", path)
        with seeded.connect() as conn:
            [row] = quarantined(conn, path)
        assert "credit_score: not an integer" in row.reason
        assert "marketing_consent: not a boolean" in row.reason

    def test_failure_blank_line(self, seeded: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "touches", [VALID["touches"][0][0], "", VALID["touches"][2][0]])
        result = run_import(seeded, "touches", path)
        assert_import(seeded, result, path, [(3, "(row)", "empty line")])
        assert result.loaded == 2

    def test_failure_quoted_field_count(self, seeded: Engine, tmp_path: Path):
        """A quoted comma is part of the value, not a separator: the row is fine."""
        line = 'c20,"sme, retail",north,650,,,,,,1,0,'
        path = write_feed(tmp_path, "customers", [line])
        result = run_import(seeded, "customers", path)
        assert_import(seeded, result, path, [])
        assert read_back(seeded, "customers", [("c20",)])[0][1] == "sme, retail"


class TestDuplicateKeys:
    def test_failure_within_a_chunk_first_wins(self, seeded: Engine, tmp_path: Path):
        path = write_feed(
            tmp_path,
            "customers",
            [
                "c20,sme,north,650,,,,,,1,0,",
                "c21,sme,north,651,,,,,,1,0,",
                "c20,sme,north,700,,,,,,1,0,",
            ],
        )
        result = run_import(seeded, "customers", path)
        assert_import(seeded, result, path, [(4, "customer_id", "duplicate key, first at line 2")])
        assert read_back(seeded, "customers", [("c20",)])[0][3] == 650

    def test_failure_across_chunks_first_wins(self, seeded: Engine, tmp_path: Path):
        lines = [
            "t1,sme-spring-2026,c1,sms,A,2026-03-02T12:00:00,true,false,0.05",
            "t2,sme-spring-2026,c1,sms,A,2026-03-02T12:00:00,true,false,0.05",
            "t3,sme-spring-2026,c1,sms,A,2026-03-02T12:00:00,true,false,0.05",
            "t1,sme-spring-2026,c2,im,B,2026-03-02T13:00:00,true,true,0.07",
            "t4,sme-spring-2026,c1,sms,A,2026-03-02T12:00:00,true,false,0.05",
        ]
        path = write_feed(tmp_path, "touches", lines)
        result = run_import(seeded, "touches", path, chunk_rows=2)
        assert_import(seeded, result, path, [(5, "touch_id", "duplicate key, first at line 2")])
        [first] = read_back(seeded, "touches", [("t1",)])
        assert first[2:4] == ("c1", "sms"), "the first occurrence stays loaded"

    @pytest.mark.parametrize("chunk_rows", [1, 2, 100])
    def test_failure_compound_key(self, seeded: Engine, tmp_path: Path, chunk_rows: int):
        lines = ["l1,2026-04-05,0,100", "l1,2026-04-06,0,90", "l1,2026-04-05,3,80"]
        path = write_feed(tmp_path, "repayments", lines)
        result = run_import(seeded, "repayments", path, chunk_rows=chunk_rows)
        assert_import(
            seeded, result, path, [(4, "loan_id+as_of", "duplicate key, first at line 2")]
        )

    def test_success_first_valid_occurrence_wins_whatever_the_chunk_size(
        self, seeded: Engine, tmp_path: Path
    ):
        """A key whose first row breaks a rule loads from its next valid row, whether the two
        rows meet in one chunk or in two."""
        lines = [
            "c20,sme,north,650,,,,,,1,0,",
            "c21,sme,north,1200,,,,,,1,0,",  # out of range: quarantined
            "c21,sme,north,700,,,,,,1,0,",  # valid, same key
        ]
        path = write_feed(tmp_path, "customers", lines)
        outcomes = {}
        for chunk_rows in (2, 100):
            with seeded.begin() as conn:
                conn.execute(Customer.__table__.delete().where(Customer.customer_id.like("c2%")))
            result = run_import(seeded, "customers", path, chunk_rows=chunk_rows)
            outcomes[chunk_rows] = (
                result.loaded,
                result.quarantined,
                read_back(seeded, "customers", [("c20",), ("c21",)]),
            )
        assert outcomes[2] == outcomes[100], f"by chunk_rows: {outcomes}"
        loaded, quarantined_rows, rows = outcomes[100]
        assert (loaded, quarantined_rows) == (2, 1)
        assert [row[3] for row in rows] == [650, 700]


class TestRepeatedKeyLookup:
    """However many keys the file has loaded, a chunk looks each staged key up in `seen` by
    its index: as a join, PostgreSQL hashed the whole temporary table on every chunk
    (a 10-million-row file's last chunk would hash 9.9 million keys for 100,000)."""

    def test_each_staged_key_is_a_probe_of_the_seen_index(self, engine: Engine):
        with engine.connect() as conn:
            loader = StagedLoader(conn, FEEDS["touches"])
            conn.execute(
                insert(loader.seen), [{"touch_id": f"t{n}", LINE: n} for n in range(20_000)]
            )
            staged = [staged_touch(n, line=20_000 + n) for n in range(19_990, 20_010)]
            conn.execute(insert(loader.stage), staged)
            found = conn.execute(loader.repeated_keys()).all()
            plan = query_plan(conn, loader.repeated_keys())
            loader.close()
        assert sorted((line, first) for line, first, *_ in found) == [
            (20_000 + n, n) for n in range(19_990, 20_000)
        ]
        if engine.dialect.name == "postgresql":
            assert "Hash" not in plan and "Seq Scan on seen_touches" not in plan, plan
            assert "Index" in plan and "seen_touches_pkey" in plan, plan
        else:
            assert "SCAN seen_touches" not in plan, plan
            assert re.search(r"SEARCH seen_touches USING .*INDEX", plan), plan


def staged_touch(number: int, line: int) -> dict[str, Any]:
    return {
        "touch_id": f"t{number}",
        "campaign_id": CAMPAIGN,
        "customer_id": "c1",
        "channel": "sms",
        "variant": "A",
        "sent_at": at(12),
        "delivered": True,
        "responded": False,
        "cost": 0.05,
        LINE: line,
    }


def query_plan(conn: Connection, statement) -> str:
    """The back end's plan of `statement`, as text."""
    sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "postgresql":
        return "\n".join(row[0] for row in conn.exec_driver_sql(f"explain {sql}"))
    return "\n".join(row[-1] for row in conn.exec_driver_sql(f"explain query plan {sql}"))


class TestInvalidUtf8InsideTheFile:
    def test_failure_row_past_the_upfront_check(self, engine: Engine, tmp_path: Path):
        """The up-front check reads 64 KiB; a bad byte after it is one row's fault."""
        good = [f"c{i:05d},sme,north,{300 + i % 600},5000,0.3,retail,,,1,0," for i in range(1500)]
        path = tmp_path / "customers.csv"
        body = "\n".join([header("customers"), *good]).encode() + b"\n"
        assert len(body) > 65536, "the valid rows must fill the 64 KiB the check reads"
        path.write_bytes(body + b"c99999,sm\xe9,north,650,5000,0.3,retail,,,1,0,\n")
        result = run_import(engine, "customers", path)
        assert_import(engine, result, path, [(1502, "segment", "not valid UTF-8")])
        assert result.loaded == 1500


# --- idempotency ------------------------------------------------------------------------


class TestIdempotency:
    def test_success_same_file_twice_changes_nothing(self, seeded: Engine, tmp_path: Path):
        files = {
            feed: write_feed(tmp_path, feed, [line for line, _ in VALID[feed]] + extra)
            for feed, extra in [
                ("customers", ["c20,sme,north,1200,,,,,,1,0,", "c21,sme"]),
                ("touches", ["t20,sme-spring-2026,zz,sms,A,2026-03-02T12:00:00,1,0,1", ""]),
                ("applications", []),
                ("decisions", ["a2,2026-03-04T09:30:00Z,rejected,,,"]),
                ("loans", []),
                ("repayments", ["l1,2026-04-05,0,1"]),
                ("complaints", []),
                ("surveys", ["s9,c1,,2026-03-06T20:00:00Z,12,"]),
            ]
        }
        first = {feed: run_import(seeded, feed, path, chunk_rows=2) for feed, path in files.items()}
        before = snapshot(seeded)
        second = {
            feed: run_import(seeded, feed, path, chunk_rows=2) for feed, path in files.items()
        }
        after = snapshot(seeded)
        for name in before:
            assert after[name] == before[name], (
                f"table {name} changed on the second import:\nbefore {before[name]}\n"
                f"after  {after[name]}"
            )
        for feed in files:
            assert (first[feed].loaded, first[feed].quarantined) == (
                second[feed].loaded,
                second[feed].quarantined,
            )
        assert len(before["quarantine"]) == 7

    def test_success_changed_row_updates_its_key(self, seeded: Engine, tmp_path: Path):
        original = write_feed(tmp_path, "customers", [line for line, _ in VALID["customers"]])
        run_import(seeded, "customers", original)
        changed = write_feed(
            tmp_path,
            "customers",
            ["c10,retail,south,700,6000,0.1,food,,,false,true,2026-03-02T13:00:00+08:00"],
            name="customers-fix.csv",
        )
        result = run_import(seeded, "customers", changed)
        assert (result.loaded, result.quarantined) == (1, 0)
        assert_typed(
            read_back(seeded, "customers", [("c10",)])[0],
            ("c10", "retail", "south", 700, 6000.0, 0.1, "food", None, None, False, True, at(5)),
        )
        with seeded.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Customer)).scalar() == 5

    def test_success_fixed_file_clears_its_quarantine(self, seeded: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "customers", ["c20,sme,north,1200,,,,,,1,0,"])
        run_import(seeded, "customers", path)
        write_feed(tmp_path, "customers", ["c20,sme,north,800,,,,,,1,0,"])
        result = run_import(seeded, "customers", path)
        assert_import(seeded, result, path, [])


# --- file-level faults: refused up front, nothing written -------------------------------

CUSTOMERS_HEADER = header("customers").encode()
GOOD_CUSTOMER = b"c20,sme,north,650,,,,,,1,0,\n"

FILE_FAULTS = [
    # (case, file bytes, fragments of the message beside the file name)
    (
        "missing column",
        CUSTOMERS_HEADER.replace(b",email", b"") + b"\n" + b"c20,sme,north,650,,,,,1,0,\n",
        ["line 1", "missing column(s) email"],
    ),
    (
        "misnamed column",
        CUSTOMERS_HEADER.replace(b"credit_score", b"score") + b"\n" + GOOD_CUSTOMER,
        ["line 1", "missing column(s) credit_score", "unknown column(s) score"],
    ),
    (
        "wrong delimiter",
        CUSTOMERS_HEADER.replace(b",", b";") + b"\n" + GOOD_CUSTOMER.replace(b",", b";"),
        ["line 1", "separated by ';'"],
    ),
    ("empty file", b"", ["line 1", "empty file"]),
    ("blank file", b"\n\n  \n", ["line 1", "empty file"]),
    (
        "not UTF-8 in the header",
        CUSTOMERS_HEADER.replace(b"region", b"r\xe9gion") + b"\n" + GOOD_CUSTOMER,
        ["line 1", "not UTF-8", "0xe9"],
    ),
    (
        "not UTF-8 near the start",
        CUSTOMERS_HEADER + b"\n" + GOOD_CUSTOMER + b"c21,sme,M\xfcnchen,650,,,,,,1,0,\n",
        ["line 3", "not UTF-8", "0xfc"],
    ),
    (
        "column named twice",
        CUSTOMERS_HEADER + b",region\n" + GOOD_CUSTOMER,
        ["line 1"],
    ),
]


def assert_nothing_written(engine: Engine) -> None:
    with engine.connect() as conn:
        counts = {
            name: conn.execute(
                select(func.count()).select_from(Base.metadata.tables[name])
            ).scalar()
            for name in [*FEED_TABLES, "quarantine", "imports"]
        }
    assert counts == dict.fromkeys(counts, 0), f"a refused file wrote rows: {counts}"


class TestFileFaultsAreRefused:
    @pytest.mark.parametrize(
        ("content", "fragments"),
        [pytest.param(*case[1:], id=case[0]) for case in FILE_FAULTS],
    )
    def test_failure(self, engine: Engine, tmp_path: Path, content: bytes, fragments: list[str]):
        path = tmp_path / "customers.csv"
        path.write_bytes(content)
        with pytest.raises(UserError) as caught:
            run_import(engine, "customers", path)
        message = str(caught.value)
        assert message.startswith(f"{path}: "), f"message does not name the file: {message!r}"
        for fragment in fragments:
            assert fragment in message, f"message {message!r} should mention {fragment!r}"
        assert "\n" not in message, f"one line expected: {message!r}"
        assert_nothing_written(engine)

    def test_failure_missing_file(self, engine: Engine, tmp_path: Path):
        path = tmp_path / "nowhere.csv"
        with pytest.raises(UserError, match="no such file") as caught:
            run_import(engine, "customers", path)
        assert str(path) in str(caught.value)
        assert_nothing_written(engine)

    def test_failure_unknown_feed(self, engine: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "customers", [GOOD_CUSTOMER.decode().strip()])
        with pytest.raises(UserError, match="unknown feed 'prospects'") as caught:
            run_import(engine, "prospects", path)
        assert "customers" in str(caught.value), "the message lists the known feeds"
        assert_nothing_written(engine)

    def test_success_bom_and_crlf(self, engine: Engine, tmp_path: Path):
        """Excel's UTF-8 (a byte-order mark, CRLF line ends) is UTF-8 all the same."""
        path = tmp_path / "customers.csv"
        path.write_bytes(
            b"\xef\xbb\xbf" + CUSTOMERS_HEADER + b"\r\n" + GOOD_CUSTOMER.replace(b"\n", b"\r\n")
        )
        result = run_import(engine, "customers", path)
        assert (result.rows, result.loaded, result.quarantined) == (1, 1, 0)


# --- integer columns on every back end ---------------------------------------------------


class TestIntegerColumns:
    """A bad value in an integer column is one row's fault, never the import's, everywhere."""

    @pytest.mark.parametrize(
        ("feed", "bad", "field", "reason"),
        [
            pytest.param(
                "loans",
                "l20,a1,2026-03-05T10:00:00+08:00,40000,12.5,12.5",
                "term_months",
                "term_months: not an integer",
                id="fractional",
            ),
            pytest.param(
                "repayments",
                "l1,2026-06-05,3000000000,100",
                "dpd",
                "dpd",
                id="beyond 32 bits",
            ),
            pytest.param(
                "customers",
                "c20,sme,north,1e20,5000,0.3,retail,,,true,false,",
                "credit_score",
                "credit_score",
                id="beyond 64 bits",
            ),
        ],
    )
    def test_failure(
        self, seeded: Engine, tmp_path: Path, feed: str, bad: str, field: str, reason: str
    ):
        path = write_feed(tmp_path, feed, [GOOD[feed], bad])
        result = run_import(seeded, feed, path)
        assert_import(seeded, result, path, [(3, field, reason)])
        assert result.loaded == 1

    def test_success_whole_float_text_is_an_integer(self, seeded: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "loans", ["l20,a1,2026-03-05T10:00:00+08:00,40000,12.5,12.0"])
        result = run_import(seeded, "loans", path)
        assert_import(seeded, result, path, [])
        assert read_back(seeded, "loans", [("l20",)])[0][-1] == 12
