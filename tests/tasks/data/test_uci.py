"""The uci-bank feed: the real UCI Bank Marketing file as customers, touches, applications.

The full file is imported once per back end (SQLite always; PostgreSQL marked slow, a few
seconds); small hand-made files pin down the year rollover and the row-level faults.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, func, select

from pdca.db import make_engine, upgrade
from pdca.errors import UserError
from pdca.models import Application, Base, Campaign, Customer, QuarantinedRow, Touch
from tasks.common.feeds import NOT_CARRIED
from tasks.data.importing import ImportResult
from tasks.data.uci import import_uci_bank
from tests.conftest import UCI_FILE
from tests.scenario import SLOW_BACKENDS

UCI_HEADER = (
    '"age";"job";"marital";"education";"default";"balance";"housing";"loan";"contact";'
    '"day";"month";"duration";"campaign";"pdays";"previous";"poutcome";"y"'
)
DERIVED_TABLES = ["campaigns", "customers", "touches", "applications", "quarantine"]
SURROGATE_KEYS = {"quarantine_id", "import_id"}


def uci_row(
    day: int | str,
    month: str,
    *,
    y: str = "no",
    job: str = "admin.",
    duration: int = 100,
    calls: int = 2,
    age: int | str = 40,
) -> str:
    return (
        f'{age};"{job}";"married";"secondary";"no";100;"yes";"no";"unknown";{day};"{month}";'
        f'{duration};{calls};-1;0;"unknown";"{y}"'
    )


def write_uci(folder: Path, rows: list[str], name: str = "bank.csv") -> Path:
    path = folder / name
    path.write_text("\n".join([UCI_HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def run_uci(engine: Engine, path: Path, **options) -> ImportResult:
    with engine.connect() as conn:
        return import_uci_bank(conn, path, **options)


def table_contents(engine: Engine, name: str) -> list[tuple]:
    """A table sorted by every column but its surrogate ids: comparable across imports."""
    table = Base.metadata.tables[name]
    columns = [column for column in table.c if column.name not in SURROGATE_KEYS]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns)).all()
    return sorted(
        (tuple(row) for row in rows),
        key=lambda row: tuple((value is None, str(value)) for value in row),
    )


def count(engine: Engine, model, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def touch_dates(engine: Engine) -> dict[str, tuple[str, datetime]]:
    """touch_id → (campaign, sent_at in naive UTC)."""
    with engine.connect() as conn:
        rows = conn.execute(select(Touch.touch_id, Touch.campaign_id, Touch.sent_at)).all()
    return {row.touch_id: (row.campaign_id, row.sent_at) for row in rows}


def assert_accounted(result: ImportResult, path: Path) -> None:
    rows = len(path.read_bytes().splitlines()) - 1
    assert result.rows == rows and result.loaded + result.quarantined == rows, (
        f"{path.name}: {rows} data rows, the import saw {result.rows}: "
        f"{result.loaded} loaded + {result.quarantined} quarantined"
    )


# --- the real file ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=SLOW_BACKENDS)
def uci_loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, ImportResult]]:
    """A fresh database on each back end with the full UCI file imported once."""
    if not UCI_FILE.is_file():
        pytest.skip(f"the UCI file is not at {UCI_FILE}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('uci') / 'pdca.db'}"
        upgrade(url)
    else:
        server = request.getfixturevalue("postgres")
        name = f"pdca_uci_{os.getpid()}"
        with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'create database "{name}" template pdca_template')
        url = server.url(name)
    engine = make_engine(url)
    result = run_uci(engine, UCI_FILE)
    yield engine, result
    engine.dispose()


class TestRealFile:
    def test_every_row_loads(self, uci_loaded) -> None:
        engine, result = uci_loaded
        assert (result.rows, result.loaded, result.quarantined) == (45_211, 45_211, 0)
        assert count(engine, Customer) == 45_211
        assert count(engine, Touch) == 45_211
        assert count(engine, QuarantinedRow) == 0

    def test_campaigns_by_year(self, uci_loaded) -> None:
        engine, _ = uci_loaded
        with engine.connect() as conn:
            rows = conn.execute(
                select(Touch.campaign_id, func.count())
                .group_by(Touch.campaign_id)
                .order_by(Touch.campaign_id)
            ).all()
            campaigns = conn.execute(
                select(Campaign.campaign_id, Campaign.start_date, Campaign.end_date).order_by(
                    Campaign.campaign_id
                )
            ).all()
        assert dict(rows) == {"uci-2008": 27_729, "uci-2009": 14_862, "uci-2010": 2_620}
        assert [tuple(row) for row in campaigns] == [
            ("uci-2008", date(2008, 5, 5), date(2008, 12, 27)),
            ("uci-2009", date(2009, 1, 28), date(2009, 12, 31)),
            ("uci-2010", date(2010, 1, 6), date(2010, 11, 17)),
        ]

    def test_applications_are_the_yes_rows(self, uci_loaded) -> None:
        engine, _ = uci_loaded
        expected = sum(
            line.rstrip().endswith('"yes"')
            for line in UCI_FILE.read_text(encoding="utf-8").splitlines()[1:]
        )
        assert expected == 5_289
        assert count(engine, Application) == 5_289
        with engine.connect() as conn:
            off_day = conn.execute(
                select(func.count())
                .select_from(Application)
                .join(Touch, Touch.touch_id == Application.application_id)
                .where(
                    (Application.applied_at != Touch.sent_at)
                    | (Application.campaign_id != Touch.campaign_id)
                )
            ).scalar_one()
        assert off_day == 0, "each application is on its touch's day, in its campaign"

    def test_first_and_last_rows(self, uci_loaded) -> None:
        engine, _ = uci_loaded
        with engine.connect() as conn:
            first, last = conn.execute(
                select(Touch)
                .where(Touch.touch_id.in_(["uci-1", "uci-45211"]))
                .order_by(Touch.sent_at)
            ).all()
            segment = conn.execute(
                select(Customer.segment).where(Customer.customer_id == "uci-1")
            ).scalar_one()
        # row 1: 5 may 2008, management, 261 s, 1 call; noon in Lisbon (WEST) is 11:00 UTC
        assert (first.campaign_id, first.sent_at, first.channel) == (
            "uci-2008",
            datetime(2008, 5, 5, 11, 0),
            "phone",
        )
        assert (first.delivered, first.responded, first.cost) == (True, True, 5.0)
        assert segment == "management"
        # last row: 17 nov 2010, winter time, noon in Lisbon is noon UTC
        assert (last.campaign_id, last.sent_at) == ("uci-2010", datetime(2010, 11, 17, 12, 0))

    def test_second_import_changes_nothing(self, uci_loaded) -> None:
        engine, first = uci_loaded
        before = {name: table_contents(engine, name) for name in DERIVED_TABLES}
        second = run_uci(engine, UCI_FILE)
        after = {name: table_contents(engine, name) for name in DERIVED_TABLES}
        for name in DERIVED_TABLES:
            assert after[name] == before[name], f"table {name} changed on the second import"
        assert (second.rows, second.loaded, second.quarantined) == (
            first.rows,
            first.loaded,
            first.quarantined,
        )


# --- small files ------------------------------------------------------------------------


class TestYearRollover:
    def test_success_month_going_back_starts_a_year(self, sqlite_url: str, tmp_path: Path):
        path = write_uci(
            tmp_path,
            [uci_row(5, "may"), uci_row(3, "dec"), uci_row(7, "jan"), uci_row(7, "jan", y="yes")],
        )
        engine = make_engine(sqlite_url)
        result = run_uci(engine, path)
        assert_accounted(result, path)
        assert touch_dates(engine) == {
            "uci-1": ("uci-2008", datetime(2008, 5, 5, 11)),
            "uci-2": ("uci-2008", datetime(2008, 12, 3, 12)),
            "uci-3": ("uci-2009", datetime(2009, 1, 7, 12)),
            "uci-4": ("uci-2009", datetime(2009, 1, 7, 12)),
        }
        assert count(engine, Application) == 1
        assert count(engine, Campaign) == 2

    def test_success_same_month_does_not_roll_over(self, sqlite_url: str, tmp_path: Path):
        path = write_uci(tmp_path, [uci_row(20, "may"), uci_row(5, "may"), uci_row(1, "jun")])
        engine = make_engine(sqlite_url)
        run_uci(engine, path)
        years = {touch: sent.year for touch, (_, sent) in touch_dates(engine).items()}
        assert years == {"uci-1": 2008, "uci-2": 2008, "uci-3": 2008}

    @pytest.mark.parametrize("chunk_rows", [1, 2, 100])
    def test_success_rollover_across_chunks(self, sqlite_url: str, tmp_path: Path, chunk_rows: int):
        months = ["nov", "dec", "jan", "feb", "jan"]
        path = write_uci(tmp_path, [uci_row(1, month) for month in months])
        engine = make_engine(sqlite_url)
        run_uci(engine, path, chunk_rows=chunk_rows)
        campaigns = {touch: campaign for touch, (campaign, _) in touch_dates(engine).items()}
        assert campaigns == {
            "uci-1": "uci-2008",
            "uci-2": "uci-2008",
            "uci-3": "uci-2009",
            "uci-4": "uci-2009",
            "uci-5": "uci-2010",
        }

    def test_success_derived_values(self, sqlite_url: str, tmp_path: Path):
        path = write_uci(
            tmp_path,
            [
                uci_row(5, "may", duration=59, calls=3, job="retired"),
                uci_row(6, "may", duration=60),
            ],
        )
        engine = make_engine(sqlite_url)
        run_uci(engine, path)
        with engine.connect() as conn:
            touches = conn.execute(
                select(Touch.touch_id, Touch.responded, Touch.cost, Touch.delivered).order_by(
                    Touch.touch_id
                )
            ).all()
            segments = conn.execute(select(Customer.segment).order_by(Customer.customer_id)).all()
        assert [tuple(row) for row in touches] == [
            ("uci-1", False, 15.0, True),
            ("uci-2", True, 10.0, True),
        ]
        assert [row[0] for row in segments] == ["retired", "admin."]

    def test_success_applications_say_their_feed_has_no_amount(
        self, sqlite_url: str, tmp_path: Path
    ):
        """The file knows that a client subscribed, not for how much: the application has
        no amount and records its source, whose missing fields the check does not fault."""
        path = write_uci(tmp_path, [uci_row(5, "may", y="yes")])
        engine = make_engine(sqlite_url)
        run_uci(engine, path)
        with engine.connect() as conn:
            stored = conn.execute(
                select(Application.amount_requested, Application.source_feed)
            ).all()
        assert [tuple(row) for row in stored] == [(None, "uci-bank")]
        assert NOT_CARRIED["uci-bank"]["applications"] == ("amount_requested",)


class TestBadRows:
    def test_failure_unknown_month_is_quarantined(self, engine: Engine, tmp_path: Path):
        path = write_uci(tmp_path, [uci_row(5, "may"), uci_row(6, "foo"), uci_row(7, "jan")])
        result = run_uci(engine, path)
        assert_accounted(result, path)
        assert (result.loaded, result.quarantined) == (2, 1)
        with engine.connect() as conn:
            [row] = conn.execute(select(QuarantinedRow.__table__)).all()
        assert (row.feed, row.file, row.line, row.field) == ("uci-bank", str(path), 3, "month")
        assert "month: must be in set" in row.reason
        assert touch_dates(engine) == {
            "uci-1": ("uci-2008", datetime(2008, 5, 5, 11)),
            "uci-3": ("uci-2009", datetime(2009, 1, 7, 12)),
        }, "the bad row neither loads nor moves the year"

    def test_failure_raw_text_keeps_the_files_delimiter(self, sqlite_url: str, tmp_path: Path):
        """Rejected by a rule or by its field count, a row's raw text is `;`-separated."""
        path = write_uci(tmp_path, [uci_row(6, "foo"), "40;admin.;married"])
        engine = make_engine(sqlite_url)
        run_uci(engine, path)
        with engine.connect() as conn:
            raws = (
                conn.execute(select(QuarantinedRow.raw).order_by(QuarantinedRow.line))
                .scalars()
                .all()
            )
        assert raws == [
            "40;admin.;married;secondary;no;100;yes;no;unknown;6;foo;100;2;-1;0;unknown;no",
            "40;admin.;married",
        ]

    @pytest.mark.parametrize(
        ("row", "field", "reason"),
        [
            (uci_row(5, "may", age="old"), "age", "age: not an integer"),
            (uci_row(32, "may"), "day", "day: must be between [1.0, 31.0]"),
            (uci_row(5, "may", y="maybe"), "y", "y: must be in set"),
            ("40;admin.;married", "(row)", "expected 17 fields, found 3"),
        ],
        ids=["age not a number", "day out of range", "y outside yes/no", "wrong field count"],
    )
    def test_failure_row_faults(
        self, sqlite_url: str, tmp_path: Path, row: str, field: str, reason: str
    ):
        path = write_uci(tmp_path, [uci_row(5, "may"), row])
        engine = make_engine(sqlite_url)
        result = run_uci(engine, path)
        assert_accounted(result, path)
        with engine.connect() as conn:
            found = [
                (r.line, r.field, r.reason) for r in conn.execute(select(QuarantinedRow.__table__))
            ]
        assert [(line, f) for line, f, _ in found] == [(3, field)], found
        assert reason in found[0][2], f"reason {found[0][2]!r} should mention {reason!r}"

    @pytest.mark.parametrize("chunk_rows", [1, 100])
    def test_failure_impossible_date_is_quarantined(
        self, sqlite_url: str, tmp_path: Path, chunk_rows: int
    ):
        """31 jun passes the day range but is no date: that row is quarantined, and its
        real month still counts for the year rollover."""
        rows = [uci_row(5, "may"), uci_row(31, "jun"), uci_row(1, "feb"), uci_row(2, "may")]
        path = write_uci(tmp_path, rows)
        engine = make_engine(sqlite_url)
        result = run_uci(engine, path, chunk_rows=chunk_rows)
        assert_accounted(result, path)
        assert (result.loaded, result.quarantined) == (3, 1)
        with engine.connect() as conn:
            [row] = conn.execute(select(QuarantinedRow.__table__)).all()
        assert (row.line, row.field, row.reason) == (3, "day", "day: 31 jun is not a date")
        assert row.raw == rows[1].replace('"', "")
        assert {touch: campaign for touch, (campaign, _) in touch_dates(engine).items()} == {
            "uci-1": "uci-2008",
            "uci-3": "uci-2009",
            "uci-4": "uci-2009",
        }

    def test_success_rerun_of_a_file_with_bad_rows(self, sqlite_url: str, tmp_path: Path):
        path = write_uci(tmp_path, [uci_row(5, "may"), uci_row(6, "foo"), ""])
        engine = make_engine(sqlite_url)
        run_uci(engine, path)
        before = {name: table_contents(engine, name) for name in DERIVED_TABLES}
        run_uci(engine, path)
        assert {name: table_contents(engine, name) for name in DERIVED_TABLES} == before
        assert len(before["quarantine"]) == 2


class TestFileFaults:
    def test_failure_comma_separated(self, sqlite_url: str, tmp_path: Path):
        path = tmp_path / "bank.csv"
        path.write_text(
            UCI_HEADER.replace(";", ",") + "\n" + uci_row(5, "may").replace(";", ",") + "\n"
        )
        engine = make_engine(sqlite_url)
        with pytest.raises(UserError, match=r"line 1: fields are separated by ','") as caught:
            run_uci(engine, path)
        assert str(path) in str(caught.value)
        assert count(engine, Campaign) == 0 and count(engine, Customer) == 0

    def test_failure_missing_file(self, sqlite_url: str, tmp_path: Path):
        engine = make_engine(sqlite_url)
        with pytest.raises(UserError, match="no such file"):
            run_uci(engine, tmp_path / "bank-full.csv")
