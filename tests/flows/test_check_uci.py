"""The check on the real UCI Bank Marketing history, through the CLI, on both back ends.

The contract's acceptance figures: after `pdca import uci-bank …`, the check of campaign
`uci-2008` for 2008-05 exits 0 with trusted data (the file has no requested amounts, a
field its feed cannot carry, which is no failure) and reports 7,957 touches and 258
applications, with approval_rate and roi null (no decisions at all: no data, not 0 and
−100 %); every month of the history with calls is trusted too; the same document comes
out of SQLite and PostgreSQL; and the monthly checks of 2008–2010 flag the weeks where the
data are known to swing (the call volume collapses after the summer of 2008 while the
success rate climbs from a few per cent to around half of the calls).
"""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout

import pytest

from tasks.common.periods import Period
from tasks.common.value_metrics import NEW_KPIS
from tests.conftest import UCI_FILE
from tests.scenario import (
    BACKENDS,
    database,
    new_database,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
)

pytestmark = [pytest.mark.usefixtures("prefect_env"), pytest.mark.slow]  # the full UCI file


@pytest.fixture(scope="module", params=BACKENDS)
def uci_url(request, tmp_path_factory) -> str:
    if not UCI_FILE.is_file():
        pytest.skip(f"the UCI file is not at {UCI_FILE}")
    return new_database(request, tmp_path_factory.mktemp("uci-check"), request.param)


MAY_2008: dict[str, dict] = {}
"""The May 2008 document by back end, as `may_2008` made it: the comparison of the two back
ends reads the documents their own tests read (a third and fourth import of the file and
check of the month would cost about 19 s of the suite and prove nothing more)."""


@pytest.fixture(scope="module")
def may_2008(uci_url: str) -> dict:
    """`pdca import uci-bank` then `pdca check --campaign uci-2008 --period 2008-05 --json`."""
    backend = "sqlite" if uci_url.startswith("sqlite") else "postgres"
    MAY_2008[backend] = _run_check(uci_url, "uci-2008", "2008-05")
    return MAY_2008[backend]


EXIT_CODE = "exit_code"
"""Where `_run_check` leaves the command's exit code in the document it returns."""


class Capture:
    """What `run_main` reads back, for module-scoped fixtures (pytest's capsys is per test)."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()

    def readouterr(self) -> tuple[str, str]:
        return self.out.getvalue(), self.err.getvalue()


def _run_check(url: str, campaign: str, period: str) -> dict:
    """`pdca check … --json` against `url` (importing the UCI file first if needed)."""
    with database(url):
        if not _imported(url):
            capture = Capture()
            with redirect_stdout(capture.out), redirect_stderr(capture.err):
                code, _, err = run_main(["import", "uci-bank", str(UCI_FILE)], capture)
            assert code in (None, 0), err
        capture = Capture()
        with redirect_stdout(capture.out), redirect_stderr(capture.err):
            code, out, err = run_main(
                ["check", "--campaign", campaign, "--period", period, "--json"], capture
            )
    assert code in (None, 0, 1), err
    return json.loads(out) | {EXIT_CODE: code or 0}


def _imported(url: str) -> bool:
    from sqlalchemy import func, select

    from pdca.db import make_engine
    from pdca.models import Touch

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(select(func.count()).select_from(Touch)).scalar_one())
    finally:
        engine.dispose()


def _total(result: dict, key: str) -> float:
    return sum(row[key] for row in result["funnel"])


class TestMay2008:
    def test_contract_figures(self, may_2008: dict) -> None:
        assert may_2008[EXIT_CODE] == 0, may_2008["data_quality"]
        assert may_2008["trusted"] is True
        assert may_2008["data_quality"]["status"] == "trusted"
        assert _total(may_2008, "touches") == 7957
        assert _total(may_2008, "applications") == 258

    def test_the_missing_amounts_fail_nothing(self, may_2008: dict) -> None:
        """The file cannot carry amounts: the applications suite passes on its 258 rows."""
        suites = {entry["name"]: entry for entry in may_2008["data_quality"]["suites"]}
        assert suites["applications"]["rows_in"] == 258
        assert suites["applications"]["success"] and not suites["applications"]["failed"]

    def test_rates_without_decisions_are_null(self, may_2008: dict) -> None:
        """No application was ever decided: approval_rate and roi are no data (null), not
        0 and −1; cac has no disbursements and overdue_rate_30 no loans."""
        campaign = {k["metric"]: k for k in may_2008["kpis"] if not any(k["scope"].values())}
        for metric in ("approval_rate", "roi", "cac", "overdue_rate_30"):
            assert campaign[metric]["actual"] is None, campaign[metric]

    def test_the_value_kpis_are_null(self, may_2008: dict) -> None:
        """The UCI history has no loans, balances nor surveys: new_customers, loan_balance,
        npl_rate, ltv, ltv_cac, nps and churn_rate are no data, not 0."""
        campaign = {k["metric"]: k for k in may_2008["kpis"] if not any(k["scope"].values())}
        for metric in NEW_KPIS:
            assert campaign[metric]["actual"] is None, campaign[metric]
            assert campaign[metric]["status"] == "no_target"
        for row in may_2008["funnel"]:
            assert row["decided"] == 0
            assert row["approval_rate"] is None and row["roi"] is None, row

    def test_one_phone_channel_one_variant(self, may_2008: dict) -> None:
        assert {row["channel"] for row in may_2008["funnel"]} == {"phone"}
        assert may_2008["experiments"] == [], "uci-2008 has one variant and no hold-out"

    def test_kpis_without_a_plan_are_reported_as_actuals(self, may_2008: dict) -> None:
        campaign = {k["metric"]: k for k in may_2008["kpis"] if not any(k["scope"].values())}
        assert campaign["touches"]["actual"] == 7957
        assert campaign["applications"]["actual"] == 258
        assert all(k["status"] == "no_target" for k in campaign.values())


@pytest.fixture(scope="module")
def both_backends(tmp_path_factory, request) -> tuple[dict, dict]:
    """The May 2008 check on SQLite and on PostgreSQL: `may_2008`'s when its tests ran
    first (they are collected first), else from a database of its own."""
    if not UCI_FILE.is_file():
        pytest.skip(f"the UCI file is not at {UCI_FILE}")
    for backend in ("sqlite", "postgres"):
        if backend not in MAY_2008:
            url = new_database(request, tmp_path_factory.mktemp(f"uci-{backend}"), backend)
            MAY_2008[backend] = _run_check(url, "uci-2008", "2008-05")
    return MAY_2008["sqlite"], MAY_2008["postgres"]


@pytest.mark.postgres
def test_same_document_on_sqlite_and_postgres(both_backends: tuple[dict, dict]) -> None:
    sqlite, postgres = both_backends
    assert _numbers(sqlite) == _numbers(postgres)


def _numbers(value, path: str = ""):
    """Every leaf of the document, floats rounded to 9 significant digits (the back ends
    sum floating-point money in different orders); file paths dropped."""
    if isinstance(value, dict):
        dropped = ("docs_path", EXIT_CODE)
        return {k: _numbers(v, f"{path}.{k}") for k, v in value.items() if k not in dropped}
    if isinstance(value, list):
        return [_numbers(v, path) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value:
        return float(f"{value:.9g}")
    return value


@pytest.fixture(scope="module")
def monthly(uci_url: str, may_2008: dict) -> dict[str, dict]:
    """Every month of the UCI history checked, from its campaign (SQLite only is enough)."""
    if "sqlite" not in uci_url:
        pytest.skip("the monthly series is checked once, on SQLite")
    results = {"2008-05": may_2008}
    month = Period.parse("2008-06")
    while month.name <= "2010-11":
        campaign = f"uci-{month.start.year}"
        results[month.name] = _run_check(uci_url, campaign, month.name)
        month = month.shifted(1)
    return results


class TestMonthlySeries:
    def test_every_month_runs(self, monthly: dict[str, dict]) -> None:
        assert len(monthly) == 31
        assert sum(_total(result, "touches") for result in monthly.values()) == 45211

    def test_every_month_with_calls_is_trusted(self, monthly: dict[str, dict]) -> None:
        """Exit 0 and trusted wherever there are calls; the file has none in September
        2008, a period without a single row: `no_data`, exit 1 (the contract's rule)."""
        verdicts = {
            month: (result[EXIT_CODE], result["data_quality"]["status"])
            for month, result in monthly.items()
        }
        empty = {month for month, result in monthly.items() if _total(result, "touches") == 0}
        assert empty == {"2008-09"}
        assert {verdicts[month] for month in empty} == {(1, "no_data")}
        assert {month: v for month, v in verdicts.items() if v != (0, "trusted")}.keys() == empty

    def test_anomalies_follow_the_known_swings(self, monthly: dict[str, dict]) -> None:
        found = [a for result in monthly.values() for a in result["anomalies"]]
        rate_jumps = [a for a in found if a["metric"] == "application_rate" and a["z"]]
        assert rate_jumps, "the success rate's climb after mid-2008 raises anomalies"
        ups = [a for a in rate_jumps if a["direction"] == "up"]
        assert ups and min(a["week"] for a in ups) >= "2008-W27", ups
        for anomaly in found:
            assert anomaly["z"] is None or abs(anomaly["z"]) >= 3

    def test_kpis_without_data_raise_no_anomaly_and_no_diagnosis(
        self, monthly: dict[str, dict]
    ) -> None:
        """No loans, no surveys: the new KPIs are null every week, so none is an anomaly
        and none is weighed beside the bottleneck stage."""
        found = {a["metric"] for result in monthly.values() for a in result["anomalies"]}
        assert not found & set(NEW_KPIS), found
        necks = [result["bottleneck"] for result in monthly.values() if result["bottleneck"]]
        assert necks and not [neck for neck in necks if neck.get("beyond_funnel")]
