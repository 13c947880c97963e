"""The contract's customer and value KPIs beside the funnel: new_customers, ltv and
ltv_cac, nps, churn_rate (loan_balance and npl_rate come with overdue_rate_30 from
`metrics.overdue_rate_30`: the same loans, the same latest snapshots).

The counting happens in SQL (`sql/loan_value.sql`, `sql/nps.sql`, `sql/churn.sql`), one
run per ISO week ∩ period like the funnel; pandas sums the counts to the grain asked for
and divides (`value_rates`). Every rate is NaN ("no data", null in JSON) where its
denominator is 0, never 0: a scope without survey answers has no nps, one without a
paid-off borrower no churn_rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Connection

from tasks.common import metrics
from tasks.common.metrics import (
    ALL_LOANS_SINCE,
    KEYS,
    WeekSlice,
    campaign_timezone,
    ratio,
    week_slices,
)
from tasks.common.periods import Period
from tasks.common.sqlfiles import query

VALUE_COUNTS = ["value_loans", "new_customers", "lifetime_value"]
SURVEY_COUNTS = ["answers", "promoters", "detractors"]
CHURN_COUNTS = ["closing_borrowers", "churned_borrowers"]
FAMILY_COUNTS = [*VALUE_COUNTS, *SURVEY_COUNTS, *CHURN_COUNTS]
"""What `family_counts` returns beside its keys."""

NEW_KPIS = ("new_customers", "loan_balance", "npl_rate", "ltv", "ltv_cac", "nps", "churn_rate")
"""The contract's KPIs beyond the funnel, CAC, ROI, overdue and complaints."""


def family_counts(
    conn: Connection,
    campaign_id: str,
    period: Period,
    by: Sequence[str] = (),
    *,
    attribution_days: int = 14,
    ftp_rate: float = 0.03,
    lgd: float = 0.6,
    churn: bool = True,
) -> pd.DataFrame:
    """The counts behind new_customers, ltv, nps and churn_rate at the grain `by` (any of
    week, channel, segment, variant). Columns: *by, FAMILY_COUNTS; without the
    CHURN_COUNTS when `churn` is False (a caller that has them from `loan_book_counts`).

    Loans and answers count by the week of their application and answer; churn by the
    week the borrower's loan was paid off, judged as of that week's end."""
    dialect = conn.dialect.name
    value_sql, nps_sql, churn_sql = (
        query(name, dialect) for name in ("loan_value", "nps", "churn")
    )
    frames = []
    for week in week_slices(period, campaign_timezone(conn, campaign_id)):
        window = {
            "campaign_id": campaign_id,
            "starts_at": week.starts_at,
            "ends_at": week.ends_at,
            "attribution_days": attribution_days,
        }
        value = metrics._read(
            conn,
            value_sql,
            {**window, "ftp_rate": ftp_rate, "lgd": lgd, "as_of_end_date": period.end},
        )
        merged = metrics._merge(value, metrics._read(conn, nps_sql, window), KEYS)
        if churn:
            churned = metrics._read(conn, churn_sql, window | _churn_cut(week))
            merged = metrics._merge(merged, churned, KEYS)
        frames.append(merged.assign(week=week.name))
    counts = FAMILY_COUNTS if churn else [*VALUE_COUNTS, *SURVEY_COUNTS]
    frame = metrics.tidy(metrics._concat(frames, ["week", *KEYS, *counts]), ["week", *KEYS])
    return metrics.sum_by(frame, by, counts)


def loan_book_counts(
    conn: Connection,
    campaign_id: str,
    period: Period,
    by: Sequence[str],
    *,
    attribution_days: int = 14,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`metrics.overdue_rate_30` and the churn counts of `family_counts` (columns: *by,
    CHURN_COUNTS) at the grain `by`, which must hold 'week', from one reading of the loan
    book per week (`sql/loan_book.sql`).

    Both judge the campaign's whole loan book as of each week's end, the same loans by
    the same latest snapshots; on a long history that reading is most of either's time,
    and a check needs both. Each result is the one its own function returns (the
    queries are the same files); `join_churn` puts the churn counts beside
    `family_counts(..., churn=False)`."""
    if "week" not in by:
        raise ValueError(f"loan_book_counts counts by week: 'week' not in {list(by)}")
    sql = query("loan_book", conn.dialect.name)
    books, churns = [], []
    for week in week_slices(period, campaign_timezone(conn, campaign_id)):
        params = {
            "campaign_id": campaign_id,
            "ends_at": week.ends_at,
            "attribution_days": attribution_days,
        }
        frame = metrics._read(conn, sql, _churn_cut(week) | params).assign(week=week.name)
        books.append(frame[frame["part"] == "book"])
        churns.append(frame[frame["part"] == "churn"])
    keys = ["week", *KEYS]
    churn = metrics.tidy(metrics._concat(churns, [*keys, *CHURN_COUNTS]), keys)
    return metrics.book_rates(books, by, KEYS), metrics.sum_by(churn, by, CHURN_COUNTS)


def join_churn(families: pd.DataFrame, churn: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """`family_counts(..., churn=False)` and `loan_book_counts`' churn counts, both at the
    grain `by`, as `family_counts` would have returned them (0 where a side had no row)."""
    keys = list(by)
    merged = metrics._merge(families, churn[[*keys, *CHURN_COUNTS]], keys)
    return metrics.tidy(merged, keys)[[*keys, *FAMILY_COUNTS]]


def _churn_cut(week: WeekSlice) -> dict:
    """The churn query's judgement of `week`: every loan of the campaign's history, paid
    off in the week, as of the week's end (as `metrics.overdue_rate_30` judges its week)."""
    return {
        "starts_at": ALL_LOANS_SINCE,
        "period_start_date": week.start,
        "as_of_end_date": week.end,
    }


def value_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (a funnel rollup with `family_counts` and `metrics.overdue_rate_30`'s loan
    counts merged in, same grain) with the new KPIs added.

    new_customers is NaN where the scope's applications have no decision yet (as
    approval_rate: a feed without outcomes, such as the UCI file, knows no loan); loan_balance
    NaN where the campaign has no loan in the scope; the rates NaN where their denominator
    is 0."""
    out = frame.copy()
    pending = metrics.undecided(out)
    loans = pd.to_numeric(out.get("loans", 0), errors="coerce")
    out["new_customers"] = out["new_customers"].astype("float64").mask(pending)
    out["loan_balance"] = out["loan_balance"].astype("float64").where(loans > 0)
    out["npl_rate"] = ratio(out["npl_loans"], out["snapshot_loans"])
    out["ltv"] = ratio(out["lifetime_value"], out["value_loans"])
    out["ltv_cac"] = ratio(out["ltv"], ratio(out["cost"], out["disbursements"]))
    out["nps"] = 100 * ratio(out["promoters"] - out["detractors"], out["answers"])
    out["churn_rate"] = ratio(out["churned_borrowers"], out["closing_borrowers"])
    return out
