"""The seven KPIs beside the funnel (new_customers, loan_balance, npl_rate, ltv, ltv_cac, nps,
churn_rate), as the check reports them, against an independent recount in pandas over the
demo's CSV feeds (`tests.oracles.kpi_families`), at the campaign, channel and segment
scopes of the checked week, on both back ends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from pdca.db import make_engine
from tasks.check.check import kpi_actuals
from tasks.common import metrics, value_metrics
from tasks.common.periods import Period
from tests.oracles.kpi_families import Feeds, Recount, week_window
from tests.synthetic.test_demo_data import _faults
from tests.test_sql import WORLD

CAMPAIGN = "demo-sme-2026"
WEEK = Period.parse("2026-W12")
TIMEZONE = "Asia/Shanghai"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def loaded(request: pytest.FixtureRequest, tmp_path_factory, demo_worlds) -> Engine:
    folder = tmp_path_factory.mktemp("kpi-families")
    engine = make_engine(demo_worlds.database(request, folder, request.param, WORLD))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def recounted(demo_worlds) -> pd.DataFrame:
    files = demo_worlds.feeds(WORLD)
    text = {
        feed: pd.read_csv(files.feed(feed), dtype=str, keep_default_na=False)
        for feed in (
            "customers",
            "touches",
            "applications",
            "decisions",
            "loans",
            "repayments",
            "complaints",
            "surveys",
        )
    }
    feeds = Feeds.from_text({k: v for k, v in text.items() if k != "complaints"}, _faults(text))
    return Recount(feeds, CAMPAIGN, week_window(WEEK.start, TIMEZONE)).kpis()


def reported(engine: Engine) -> pd.DataFrame:
    """kpi_actuals as the check flow builds them (flows/check.py), for the week."""
    with engine.connect() as conn:
        funnel = metrics.funnel(conn, CAMPAIGN, WEEK)
        overdue = metrics.overdue_rate_30(conn, CAMPAIGN, WEEK, ["channel", "segment"])
        complaints = metrics.complaint_rate(conn, CAMPAIGN, WEEK, metrics.KEYS, funnel_frame=funnel)
        families = value_metrics.family_counts(conn, CAMPAIGN, WEEK, ["channel", "segment"])
    return kpi_actuals(funnel, overdue, complaints, families)


def test_every_new_kpi_matches_the_recount_at_every_scope(loaded: Engine, recounted) -> None:
    actual = reported(loaded)
    expected = recounted.set_index(["channel", "segment"])
    compared = 0
    for _, row in actual.iterrows():
        key = (row["channel"], row["segment"])
        want = expected.loc[key] if key in expected.index else None
        for metric in value_metrics.NEW_KPIS:
            got = row[metric]
            wanted = np.nan if want is None else want[metric]
            label = f"{metric} at channel={key[0]} segment={key[1]}: {got} vs {wanted}"
            if pd.isna(wanted):
                assert pd.isna(got), label
            else:
                assert got == pytest.approx(wanted, rel=1e-9, abs=1e-6), label
                compared += 1
    total = actual.iloc[0]
    assert all(pd.notna(total[metric]) for metric in value_metrics.NEW_KPIS), total
    assert compared >= 30, "the week must give the recount something to disagree with"


@pytest.mark.parametrize("period", ["2026-W12", "2026-03"])
def test_one_reading_of_the_loan_book_counts_what_the_two_queries_count(
    loaded: Engine, period: str
) -> None:
    """The check reads the loan book once for the overdue counts and churn
    (`loan_book_counts`, sql/loan_book.sql): week by week, the same frames as
    `overdue_rate_30` and `family_counts` reading it apart."""
    parsed, grain = Period.parse(period), ["week", *metrics.KEYS]
    with loaded.connect() as conn:
        book, churn = value_metrics.loan_book_counts(conn, CAMPAIGN, parsed, grain)
        values = value_metrics.family_counts(conn, CAMPAIGN, parsed, grain, churn=False)
        apart = metrics.overdue_rate_30(conn, CAMPAIGN, parsed, grain)
        families = value_metrics.family_counts(conn, CAMPAIGN, parsed, grain)
    pd.testing.assert_frame_equal(book, apart)
    pd.testing.assert_frame_equal(value_metrics.join_churn(values, churn, grain), families)
    assert churn["closing_borrowers"].sum() > 0 and book["loans"].sum() > 0, "nothing to compare"
