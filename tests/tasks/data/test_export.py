"""Export: a table written back in its feed's format, and the phone channel's call list.

From the user's side first (`pdca export` after a real dispatch, SQLite), then the units
on SQLite and PostgreSQL with hand-written touches: the round trip changes nothing, local
days filter by the campaign's time zone, the call list has the phone sends only, and every
export is audited.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, insert, select

from flows.dispatch import dispatch_flow
from pdca.db import make_engine
from pdca.errors import UserError
from pdca.models import AuditEntry, Customer, OutboxEntry, OutreachBatch, Touch
from tasks.common.bounds import neutralise
from tasks.common.feeds import FEEDS
from tasks.data.export import DateRange, export_call_list, export_feed
from tasks.data.importing import import_feed
from tests.scenario import (
    CAMPAIGN_ID,
    DAY,
    NEXT_DAY,
    ZONE,
    apply,
    build_dispatch_world,
    customer,
    database,
    frame,
    local_utc,
    new_database,
    outbox,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
    spec_dict,
    touch,
)

TOUCH_COLUMNS = list(FEEDS["touches"].column_names)


def touches_table(engine: Engine) -> pd.DataFrame:
    """The whole touches table, in a stable order."""
    with engine.connect() as conn:
        return frame(conn, select(Touch).order_by(Touch.touch_id)).reset_index(drop=True)


def audit(engine: Engine, action: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditEntry.subject, AuditEntry.detail).where(AuditEntry.action == action)
        )
        return [dict(row._mapping) for row in rows]


def local_date(moment: datetime) -> date:
    return moment.replace(tzinfo=UTC).astimezone(ZONE).date()


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# --- from the user's side: `pdca export` after a dispatch -----------------------------------


@dataclass
class Dispatched:
    url: str
    engine: Engine
    folder: Path


@pytest.fixture(scope="module")
def dispatched(request, tmp_path_factory) -> Dispatched:
    """A campaign after one real noon dispatch (sends, hold-out rows, phone calls)."""
    folder = tmp_path_factory.mktemp("export-cli")
    url = new_database(request, folder, "sqlite")
    engine = make_engine(url)
    with engine.begin() as conn:
        build_dispatch_world(conn)
    with database(url):
        dispatch_flow(CAMPAIGN_ID, DAY, at=local_utc(DAY, 12, 5), simulate_outcomes=True)
    yield Dispatched(url, engine, folder)
    engine.dispose()


@pytest.mark.usefixtures("prefect_env")  # the dispatch flow of `dispatched`
class TestExportCli:
    def test_touches_round_trip_changes_nothing(self, dispatched, tmp_path, capsys):
        before = touches_table(dispatched.engine)
        assert (before["variant"] == "holdout").any() and before["touch_id"].str[0].eq("d").any()
        path = tmp_path / "touches.csv"
        with database(dispatched.url):
            code, out, err = run_main(
                ["export", "touches", str(path), "--campaign", CAMPAIGN_ID], capsys
            )
            assert code == 0, err
            exported = read_csv(path)
            assert out.strip() == f"touches: {len(exported)} rows written to {path}"
            code, out, err = run_main(["import", "touches", str(path)], capsys)
        assert code == 0, err
        after = touches_table(dispatched.engine)
        pd.testing.assert_frame_equal(after, before)
        mine = before[before["campaign_id"] == CAMPAIGN_ID]
        assert sorted(exported["touch_id"]) == sorted(mine["touch_id"])
        holdout = exported[exported["variant"] == "holdout"]
        assert len(holdout) and set(holdout["delivered"]) == {"false"}
        assert set(holdout["cost"].astype(float)) == {0.0}

    @pytest.mark.parametrize(
        ("first", "last"), [(DAY, DAY), (NEXT_DAY, None), (None, DAY), (DAY, None)]
    )
    def test_from_to_filters_by_local_day(self, dispatched, tmp_path, capsys, first, last):
        path = tmp_path / "touches.csv"
        argv = ["export", "touches", str(path), "--campaign", CAMPAIGN_ID]
        argv += ["--from", first.isoformat()] if first else []
        argv += ["--to", last.isoformat()] if last else []
        with database(dispatched.url):
            code, _, err = run_main(argv, capsys)
        assert code == 0, err
        exported = read_csv(path)
        assert list(exported.columns) == TOUCH_COLUMNS
        mine = touches_table(dispatched.engine)
        mine = mine[mine["campaign_id"] == CAMPAIGN_ID]
        local_day = mine["sent_at"].map(lambda moment: local_date(moment))
        inside = (local_day >= (first or date.min)) & (local_day <= (last or date.max))
        assert sorted(exported["touch_id"]) == sorted(mine.loc[inside, "touch_id"])
        if first == DAY:
            assert len(exported) > 0

    def test_call_list_has_the_phone_sends_only_and_is_audited(self, dispatched, tmp_path, capsys):
        path = tmp_path / "calls.csv"
        with database(dispatched.url):
            code, _, err = run_main(
                ["export", "call-list", str(path), "--campaign", CAMPAIGN_ID], capsys
            )
        assert code == 0, err
        calls = read_csv(path)
        box = outbox(dispatched.engine)
        phone = box[(box["channel"] == "phone") & (box["status"] != "holdout")]
        assert len(phone) > 0 and (box["channel"] != "phone").any()
        assert sorted(calls["customer_id"]) == sorted(phone["customer_id"])
        with dispatched.engine.connect() as conn:
            numbers = dict(conn.execute(select(Customer.customer_id, Customer.phone)).all())
        # a leading + would make a spreadsheet compute the number: the cell is neutralised
        assert all(calls["phone"] == calls["customer_id"].map(numbers).map(neutralise))
        assert set(calls["window"]) == {"noon"} and set(calls["status"]) == {"sent"}
        assert calls["scheduled_at"].str.endswith("+0800").all()
        entries = audit(dispatched.engine, "export.call-list")
        assert {
            "subject": str(path),
            "detail": {"rows": len(calls), "campaign": CAMPAIGN_ID},
        } in entries

    def test_call_list_needs_a_campaign(self, dispatched, tmp_path, capsys):
        with database(dispatched.url):
            code, out, err = run_main(["export", "call-list", str(tmp_path / "c.csv")], capsys)
        assert code == 2 and out == ""
        assert err.strip() == "pdca: error: export call-list: --campaign is required"


# --- the units, on both back ends ------------------------------------------------------------


@pytest.fixture
def history(engine: Engine) -> Engine:
    """Touches around the local midnight of 5 March (Asia/Shanghai, UTC+8), a hold-out row,
    awkward floats and microseconds, and a touch of another campaign."""
    with engine.begin() as conn:
        apply(conn, spec_dict())
        apply(conn, spec_dict("spring-other", timezone="UTC"))
        conn.execute(insert(Customer), [customer(c) for c in ("c1", "c2", "c3")])
        rows = [
            touch("t1", "c1", local_utc(date(2026, 3, 4), 23, 30), cost=0.1 + 0.2),
            touch("t2", "c2", local_utc(date(2026, 3, 5), 0, 30), channel="phone", cost=8.125),
            touch("t3", "c3", local_utc(date(2026, 3, 5), 23, 59, 59), variant="B"),
            touch("t4", "c1", local_utc(date(2026, 3, 6), 0, 0), delivered=False),
            touch("h5", "c3", datetime(2026, 3, 5, 4, 0, 0, 123456), variant="holdout", cost=0.0),
        ]
        rows[-1]["delivered"] = False
        for row in rows:
            row["campaign_id"] = CAMPAIGN_ID
        rows.append(touch("o1", "c2", datetime(2026, 3, 5, 1), campaign_id="spring-other"))
        conn.execute(insert(Touch), rows)
    return engine


class TestExportFeed:
    def test_round_trip_changes_nothing(self, history, tmp_path):
        before = touches_table(history)
        path = tmp_path / "touches.csv"
        with history.connect() as conn:
            written = export_feed(conn, "touches", path, campaign_id=CAMPAIGN_ID, actor="test")
            result = import_feed(conn, "touches", path, actor="test")
        assert written == 5 and (result.loaded, result.quarantined) == (5, 0)
        pd.testing.assert_frame_equal(touches_table(history), before)

    def test_whole_table_round_trip(self, history, tmp_path):
        before = touches_table(history)
        path = tmp_path / "touches.csv"
        with history.connect() as conn:
            assert export_feed(conn, "touches", path) == 6
            import_feed(conn, "touches", path)
        pd.testing.assert_frame_equal(touches_table(history), before)

    def test_written_in_the_feeds_format(self, history, tmp_path):
        path = tmp_path / "touches.csv"
        with history.connect() as conn:
            export_feed(conn, "touches", path, campaign_id=CAMPAIGN_ID)
        with path.open(encoding="utf-8", newline="") as handle:
            header, *rows = list(csv.reader(handle))
        assert header == TOUCH_COLUMNS
        by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
        assert by_id["h5"]["sent_at"] == "2026-03-05T04:00:00.123456+00:00"
        assert (by_id["h5"]["variant"], by_id["h5"]["delivered"]) == ("holdout", "false")
        assert float(by_id["t1"]["cost"]) == 0.1 + 0.2, "a float lost precision"
        assert by_id["t2"]["delivered"] == "true"

    @pytest.mark.parametrize(
        ("first", "last", "expected"),
        [
            (date(2026, 3, 5), date(2026, 3, 5), ["h5", "t2", "t3"]),
            (date(2026, 3, 5), None, ["h5", "t2", "t3", "t4"]),
            (None, date(2026, 3, 4), ["t1"]),
            (date(2026, 3, 7), None, []),
        ],
    )
    def test_days_are_the_campaigns_local_days(self, history, tmp_path, first, last, expected):
        path = tmp_path / "touches.csv"
        with history.connect() as conn:
            export_feed(conn, "touches", path, campaign_id=CAMPAIGN_ID, days=DateRange(first, last))
        assert read_csv(path)["touch_id"].tolist() == expected

    def test_without_a_campaign_days_are_in_the_default_time_zone(self, history, tmp_path):
        path = tmp_path / "touches.csv"
        day = DateRange(date(2026, 3, 5), date(2026, 3, 5))
        with history.connect() as conn:
            export_feed(conn, "touches", path, days=day, default_timezone="UTC")
        # UTC 5 March: t3 (15:59), t4 (16:00), h5 (04:00), o1 (01:00)
        assert read_csv(path)["touch_id"].tolist() == ["h5", "o1", "t3", "t4"]

    def test_every_export_is_audited(self, history, tmp_path):
        path = tmp_path / "touches.csv"
        with history.connect() as conn:
            export_feed(conn, "touches", path, campaign_id=CAMPAIGN_ID, actor="ops")
        assert audit(history, "export.touches") == [
            {"subject": str(path), "detail": {"rows": 5, "campaign": CAMPAIGN_ID}}
        ]

    def test_leaves_the_callers_connection_as_it_was(self, history, tmp_path):
        with history.connect() as conn:
            export_feed(conn, "touches", tmp_path / "touches.csv")
            assert "yield_per" not in conn.get_execution_options()


class TestExportFeedFailures:
    @pytest.mark.parametrize(
        ("feed", "campaign", "message"),
        [
            ("fax", None, "unknown feed 'fax'"),
            ("customers", CAMPAIGN_ID, "feed 'customers' has no campaign_id"),
            ("touches", "no-such", "unknown campaign 'no-such'"),
        ],
    )
    def test_failure(self, history, tmp_path, feed, campaign, message):
        with history.connect() as conn, pytest.raises(UserError, match=message):
            export_feed(conn, feed, tmp_path / "out.csv", campaign_id=campaign)


class TestExportCallList:
    def test_phone_sends_with_numbers_in_local_time(self, history, tmp_path):
        with history.begin() as conn:
            batch = conn.execute(
                insert(OutreachBatch)
                .values(
                    campaign_id=CAMPAIGN_ID, send_date=DAY, window="noon", status="sent", summary={}
                )
                .returning(OutreachBatch.batch_id)
            ).scalar_one()
            entries = [
                ("c1", "phone", "sent"),
                ("c2", "phone", "held"),
                ("c3", "phone", "holdout"),
                ("c2", "sms", "sent"),
            ]
            conn.execute(
                insert(OutboxEntry),
                [
                    {
                        "batch_id": batch,
                        "customer_id": who,
                        "channel": channel,
                        "variant": "holdout" if status == "holdout" else "A",
                        "scheduled_at": local_utc(DAY, 12, 5),
                        "status": status,
                        "attempts": 1,
                    }
                    for who, channel, status in entries
                ],
            )
        path = tmp_path / "calls.csv"
        with history.connect() as conn:
            assert export_call_list(conn, CAMPAIGN_ID, path, actor="rm-desk") == 2
            phones = dict(conn.execute(select(Customer.customer_id, Customer.phone)).all())
        calls = read_csv(path)
        assert calls.to_dict("records") == [
            {
                "customer_id": who,
                "phone": neutralise(phones[who]),
                "segment": "sme",
                "variant": "A",
                "window": "noon",
                "scheduled_at": "2026-03-04T12:05:00+0800",
                "status": status,
            }
            for who, status in (("c1", "sent"), ("c2", "held"))
        ]
        assert audit(history, "export.call-list") == [
            {"subject": str(path), "detail": {"rows": 2, "campaign": CAMPAIGN_ID}}
        ]
        with history.connect() as conn:
            later = DateRange(NEXT_DAY, None)
            assert export_call_list(conn, CAMPAIGN_ID, tmp_path / "later.csv", days=later) == 0
