"""The data-quality check reads its rows as Arrow (ADBC) and judges exactly as it did when it
read them as Python values through the DB-API, on SQLite and PostgreSQL.

The world is test_data_quality's clean week plus the values whose types differ most
between the two paths: NULLs (a missing amount, APR and reason; a column NULL in every
row), timestamps (text on SQLite, `timestamp` on PostgreSQL; with and without a fraction
of a second), a repayment snapshot's date, integers (term, days past due; the funnel's
counts and sums), text (channels, ids with punctuation) and booleans.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, insert, update

from pdca.models import Application, Decision, Loan, Repayment, Touch
from tasks.check import arrow_reads
from tasks.check.arrow_reads import (
    RowReader,
    adbc_statement,
    adbc_target,
    arrow_frame,
    arrow_pays,
)
from tasks.check.data_quality import _typed, assess
from tasks.common.periods import Period
from tests.scenario import DAY, local_utc, touch
from tests.tasks.check.test_data_quality import (
    NEXT_DAY,
    WEEK,
    application,
    approval,
    build_world,
    loan,
    rejection,
)

QUERIES = [
    "dq_touches",
    "dq_funnel_applications",
    "dq_applications",
    "dq_decisions",
    "dq_loans",
    "dq_repayments",
    "dq_complaints",
]


def spoil(conn: Connection, campaign_id: str) -> None:
    """Rows whose values the two paths type differently, several of them failing suites."""
    conn.execute(
        insert(Touch),
        [
            touch("t4:x.y-z", "c4", local_utc(DAY, 22, 15, 7), campaign_id=campaign_id),
            touch(
                "t5",
                "c4",
                local_utc(DAY, 10) + timedelta(microseconds=123456),
                campaign_id=campaign_id,
                channel="email",
                delivered=False,
                cost=0.0,
            ),
        ],
    )
    conn.execute(
        insert(Application),
        [
            application("a3", "c4", local_utc(DAY, 23), campaign_id=campaign_id)
            | {"channel": "im"},
            application("a4", "c3", local_utc(NEXT_DAY, 11), campaign_id=campaign_id),
        ],
    )
    conn.execute(
        update(Application).where(Application.application_id == "a3").values(amount_requested=None)
    )
    conn.execute(
        insert(Decision),
        [
            approval("a3", local_utc(NEXT_DAY, 9), apr=30.0),
            rejection("a4", local_utc(DAY, 9), None),
        ],
    )
    conn.execute(update(Decision).where(Decision.application_id == "a3").values(apr=None))
    conn.execute(insert(Loan), [loan("l2", "a4", local_utc(NEXT_DAY, 12))])
    conn.execute(
        insert(Repayment),
        [
            {"loan_id": "l2", "as_of": DAY + timedelta(days=2), "dpd": 31, "outstanding": 0.5},
            {"loan_id": "l1", "as_of": DAY + timedelta(days=4), "dpd": 0, "outstanding": 9e3},
        ],
    )


@pytest.fixture
def spoilt(engine: Engine):
    with engine.begin() as conn:
        spec = build_world(conn)
        spoil(conn, spec.id)
    return engine, spec


def window(spec, period: str = WEEK) -> dict:
    parsed = Period.parse(period)
    starts_at, ends_at = parsed.utc_bounds(spec.timezone)
    return {
        "campaign_id": spec.id,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "attribution_days": 14,
        "as_of_end_date": parsed.end,
    }


def frames(engine: Engine, spec, *, arrow: bool, period: str = WEEK) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn, RowReader(conn, arrow=arrow) as reader:
        assert reader.arrow is arrow
        return {name: _typed(reader.frame(name, window(spec, period))) for name in QUERIES}


def verdict(engine: Engine, spec, *, arrow: bool, period: str = WEEK) -> dict:
    """`assess`'s verdict, read through ADBC however few the rows (`arrow`) or the DB-API."""
    with engine.connect() as conn:
        result = assess(
            conn,
            spec,
            Period.parse(period),
            attribution_days=14,
            quarantine_max_share=0.01,
            arrow_reads=arrow,
            sqlite_arrow_min_touches=0,
        )
    return result.to_json()


@pytest.mark.parametrize("period", [WEEK, "2026-03", "2026-W02"])
def test_the_verdict_is_the_same_read_either_way(spoilt, period):
    """Every suite's counts, failures, warnings and examples, and the quarantine shares:
    the `data_quality` of `pdca check --json`, for a spoilt week, a month and a week
    without rows."""
    engine, spec = spoilt
    arrow = verdict(engine, spec, arrow=True, period=period)
    assert arrow == verdict(engine, spec, arrow=False, period=period)
    if period == WEEK:  # the spoilt rows were seen: the comparison is not of empty results
        assert not arrow["trusted"]
        failed = {suite["name"] for suite in arrow["suites"] if suite["failed"]}
        assert {"touch_timing", "campaign_decisions", "applications"} <= failed


@pytest.mark.parametrize("period", [WEEK, "2026-W02"])
def test_each_query_frames_the_same_values_and_types(spoilt, period):
    engine, spec = spoilt
    arrow = frames(engine, spec, arrow=True, period=period)
    records = frames(engine, spec, arrow=False, period=period)
    for name in QUERIES:
        pd.testing.assert_frame_equal(arrow[name], records[name], check_exact=True, obj=name)
    if period == WEEK:
        assert len(arrow["dq_touches"]) == 5
        assert arrow["dq_touches"]["sent_at"].dtype == "datetime64[us]"
        assert arrow["dq_touches"]["sent_at"].dt.microsecond.max() == 123456
        assert arrow["dq_repayments"]["dpd"].dtype == "Int64"
        # the candidates' snapshots (sql/dq_candidates.sql): a hold-out member's loan's too,
        # which data_quality.of_applications leaves out
        assert len(arrow["dq_repayments"]) == 3
        assert arrow["dq_applications"]["source_feed"].isna().all()  # NULL in every row
        # a3's, and the rejections of a2 and of a4 (a hold-out member's: a candidate)
        assert arrow["dq_decisions"]["apr"].isna().sum() == 3


def test_a_small_sqlite_period_is_read_without_starting_the_child(spoilt, monkeypatch):
    """Below `sqlite_arrow_min_touches` touches the child's start would cost more than it
    saves: SQLite is read through the DB-API, with the same verdict; from that many on, and
    always on PostgreSQL (whose driver needs no process), through ADBC."""
    engine, spec = spoilt
    started = []
    child = arrow_reads.SqliteChild.__init__
    monkeypatch.setattr(
        arrow_reads.SqliteChild,
        "__init__",
        lambda self, *args: started.append(args) or child(self, *args),
    )
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        assert arrow_pays(conn, window(spec)) is not sqlite  # 5 touches
        assert arrow_pays(conn, window(spec), min_touches=5)
        assert arrow_pays(conn, window(spec), min_touches=6) is not sqlite
        default = assess(
            conn, spec, Period.parse(WEEK), attribution_days=14, quarantine_max_share=0.01
        ).to_json()
    assert len(started) == 0
    assert default == verdict(engine, spec, arrow=True)
    assert len(started) == int(sqlite), "the verdict read through ADBC: on SQLite, its child"


def test_sqlite_timestamps_bind_as_the_stored_text(sqlite_url):
    """A timestamp bound as SQLite stores it, microseconds always written: text comparison
    `sent_at >= :starts_at` is then exact."""
    start = local_utc(DAY, 0)
    sql, values = adbc_statement(
        "dq_touches", "sqlite", {"campaign_id": "c", "starts_at": start, "ends_at": start}
    )
    assert sql.count("?") == 3
    assert values == ("c", f"{start:%Y-%m-%d %H:%M:%S}.000000", f"{start:%Y-%m-%d %H:%M:%S}.000000")
    _, values = adbc_statement(
        "dq_touches", "postgresql", {"campaign_id": "c", "starts_at": start, "ends_at": start}
    )
    assert values == ("c", start, start)


def test_an_in_memory_database_is_read_through_the_dbapi():
    """ADBC would open another, empty database: the reader keeps to the connection."""
    from pdca.db import make_engine

    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        assert adbc_target(conn) is None
        assert RowReader(conn).arrow is False


def test_a_sqlite_column_that_changes_type_is_still_read(sqlite_url):
    """SQLite types values, not columns; where a column's type changes after the driver's
    first batch (here a batch of one row), the reader falls back to the DB-API."""
    from pdca.db import make_engine
    from tasks.check.arrow_reads import ChildReadError, is_type_mismatch, records_frame

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        spec = build_world(conn)
        conn.exec_driver_sql("update touches set cost = 'n/a' where touch_id = 't3'")
    params = window(spec)
    with engine.connect() as conn, RowReader(conn, sqlite_batch_rows=1) as reader:
        with pytest.raises(ChildReadError) as refused:
            reader._read_arrow("dq_touches", params)
        assert is_type_mismatch(refused.value)
        frame = reader.frame("dq_touches", params)
        expected = records_frame(conn, "dq_touches", params)
    pd.testing.assert_frame_equal(frame, expected)
    assert "n/a" in set(frame["cost"])


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "dbapi"])
def test_frames_read_ahead_are_the_frames_read_one_by_one(spoilt, arrow):
    """`frames` reads ahead on a thread (ADBC) or as taken (DB-API), and either way gives
    what `frame` gives, in order, with a row budget smaller than one frame."""
    engine, spec = spoilt
    reads = [(name, window(spec)) for name in QUERIES]
    with engine.connect() as conn, RowReader(conn, arrow=arrow) as reader:
        ahead = list(reader.frames(reads, ahead_rows=1))
        one_by_one = [reader.frame(name, params) for name, params in reads]
    assert len(ahead) == len(QUERIES)
    for got, expected in zip(ahead, one_by_one, strict=True):
        pd.testing.assert_frame_equal(got, expected)


def test_frames_fall_back_per_frame_on_a_sqlite_type_change(sqlite_url):
    """A read the driver refuses (a column changing type) is read again through the DB-API,
    in its place; the reads around it stay Arrow."""
    from pdca.db import make_engine
    from tasks.check.arrow_reads import records_frame

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        spec = build_world(conn)
        conn.exec_driver_sql("update touches set cost = 'n/a' where touch_id = 't3'")
    reads = [(name, window(spec)) for name in ("dq_applications", "dq_touches", "dq_loans")]
    with engine.connect() as conn, RowReader(conn, sqlite_batch_rows=1) as reader:
        applications, touches, loans = reader.frames(reads, ahead_rows=10)
        expected = [records_frame(conn, name, params) for name, params in reads]
    pd.testing.assert_frame_equal(touches, expected[1])
    assert "n/a" in set(touches["cost"])
    assert len(applications) == len(expected[0]) and len(loans) == len(expected[2])


class TestReadAhead:
    """The reading thread of `RowReader.frames`: ahead of the caller within its row budget,
    errors handed over in their place."""

    @staticmethod
    def reader(calls: list[str], fail: str | None = None):
        import pyarrow as pa

        def read(name: str, _params: dict) -> pa.Table:
            calls.append(name)
            if name == fail:
                raise RuntimeError(f"{name} failed")
            return pa.table({"n": [1, 2]})

        return read

    @staticmethod
    def settle(calls: list[str], count: int) -> None:
        """Wait (up to 10 s) for the thread to have made `count` reads, then give it time
        to make one more, which it must not."""
        import time

        deadline = time.monotonic() + 10
        while len(calls) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(calls) == count

    def test_it_reads_ahead_until_its_rows_wait_then_as_they_are_taken(self):
        calls: list[str] = []
        reads = [(name, {}) for name in "abcde"]
        ahead = arrow_reads._ReadAhead(self.reader(calls), reads, ahead_rows=3)
        try:
            self.settle(calls, 2)  # 2 rows wait (< 3): one more read, then 4 wait
            assert ahead.take().num_rows == 2
            self.settle(calls, 3)  # 2 + 2 wait again
            for _ in range(3):
                ahead.take()
            self.settle(calls, 5)
        finally:
            ahead.stop()

    def test_a_failed_read_reaches_the_caller_in_its_place(self):
        calls: list[str] = []
        ahead = arrow_reads._ReadAhead(self.reader(calls, fail="b"), [("a", {}), ("b", {})], 1)
        try:
            assert ahead.take().num_rows == 2
            error = ahead.take()
        finally:
            ahead.stop()
        assert isinstance(error, RuntimeError) and str(error) == "b failed"

    def test_stopping_early_ends_the_thread(self):
        calls: list[str] = []
        ahead = arrow_reads._ReadAhead(self.reader(calls), [(n, {}) for n in "abc"], 1)
        ahead.stop()
        assert not ahead.thread.is_alive()
        assert len(calls) <= 1


def test_integers_of_any_width_frame_as_python_ints_do():
    """PostgreSQL's `integer` arrives as int32; the DB-API's Python ints frame as int64."""
    import pyarrow as pa

    table = pa.table({"n": pa.array([1, 2], pa.int32()), "m": pa.array([1, None], pa.int16())})
    frame = arrow_frame(table)
    assert frame["n"].dtype == "int64"
    assert frame["m"].dtype == "float64"


def test_rows_committed_between_reads_are_seen(spoilt):
    """Each read sees what was committed before it, on the same reader and on the next
    check's (on SQLite the driver reads in a child process: in this process its own copy
    of SQLite, on its second connection, returned the rows as they were before)."""
    engine, spec = spoilt
    with engine.connect() as conn:
        with RowReader(conn) as reader:
            before = reader.frame("dq_applications", window(spec))
            with engine.begin() as writer:
                writer.execute(update(Application).values(source_feed="uci-bank"))
            after = reader.frame("dq_applications", window(spec))
        with engine.begin() as writer:
            writer.execute(update(Application).values(source_feed="applications"))
        with RowReader(conn) as reader:
            later = reader.frame("dq_applications", window(spec))
    assert before["source_feed"].isna().all()
    assert (after["source_feed"] == "uci-bank").all()
    assert (later["source_feed"] == "applications").all()
    assert verdict(engine, spec, arrow=True) == verdict(engine, spec, arrow=False)


@pytest.mark.parametrize(
    "texts",
    [
        ["2026-03-04 06:00:00.123456", None, "2026-03-04 06:00:00", "2026-03-04"],
        ["2026-03-04T06:00:00+08:00"],  # not as pdca stores it: pandas decides (refuses)
        ["not a time"],
    ],
)
def test_text_timestamps_parse_as_pandas_parses_them(texts):
    from tasks.check.data_quality import _timestamps

    values = pd.Series(texts, dtype="str")

    def outcome(parse):
        try:
            return parse().astype("datetime64[us]").tolist()
        except (ValueError, TypeError) as error:
            return type(error)

    expected = outcome(lambda: pd.to_datetime(values, format="ISO8601"))
    assert outcome(lambda: _timestamps(values)) == expected
