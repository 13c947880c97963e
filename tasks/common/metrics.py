"""The contract's metrics, computed one way for every stage (plan, check, report).

The counting happens in SQL (`sql/funnel_touches.sql`, `sql/funnel_applications.sql`,
`sql/overdue_rate_30.sql` or, when no variant is asked for, `sql/overdue_by_channel_segment.sql`,
`sql/complaints.sql`, `sql/reject_reasons.sql`); pandas only
shapes the aggregated rows and divides. The rules, from the contract's "Metrics":

- touches, delivered, responded and cost count by `sent_at` in the period; hold-out rows
  (variant `holdout`) count in none of them, nor do hold-out members' applications (and
  their decisions and loans): the hold-out is only the experiment's control group;
- applications count by `applied_at` in the period, attributed to the campaign by their
  own campaign_id or, when empty, by the customer's last delivered touch within
  `attribution_days` before (inclusive at both ends, see `sql/attributed_events.sql`);
  approved, disbursements, disbursed_amount, net_interest and expected_loss are the
  decisions and loans *of those applications*, whenever they happened;
- "latest" repayment snapshot = the one with the greatest `as_of` before the local day
  after the period (for expected_loss and overdue_rate_30 alike);
- weeks are ISO weeks of the campaign's time zone, clipped to the period: each query runs
  once per (week ∩ period) with that slice's UTC bounds, which keeps the SQL a plain
  range scan on the (campaign_id, sent_at) and (campaign_id, applied_at) indexes;
- every rate is computed from summed counts (never averaged) and is NaN ("no data", null
  in JSON), never 0, inf or an error, when its denominator is zero; so are approval_rate
  and roi of a scope whose applications have no decision at all yet (a feed without
  decisions, such as the UCI file, or a week still being judged): 0 approvals out of
  none judged is no data, not a 0 % approval rate, and an roi before any outcome is
  known is not −100 %.

Every function takes a `Connection` it is given; none builds an engine or reads settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import Connection, TextClause, select

from pdca.errors import UserError
from pdca.models import Campaign
from tasks.common.periods import Period, local_midnight_utc
from tasks.common.sqlfiles import query

KEYS = ["channel", "segment", "variant"]
"""The funnel's dimensions below the week."""

COUNTS = [
    "touches",
    "delivered",
    "responded",
    "applications",
    "decided",
    "approved",
    "disbursements",
    "disbursed_amount",
    "cost",
    "net_interest",
    "expected_loss",
]
"""The funnel's additive columns, in the contract's order (`decided`, the applications
with a decision, tells a rate with no decisions behind it from a true zero)."""

INTEGER_COUNTS = [
    "touches",
    "delivered",
    "responded",
    "applications",
    "decided",
    "approved",
    "disbursements",
]

RATES = ["reach_rate", "response_rate", "application_rate", "approval_rate", "cac", "roi"]
"""What `with_rates` adds, each from summed counts."""

SHARES = ["reach_rate", "response_rate", "approval_rate"]
"""The rates that are shares of something counted before them (in [0, 1])."""

LOWER_IS_BETTER = frozenset({"cac", "overdue_rate_30", "complaint_rate", "npl_rate", "churn_rate"})
"""The metrics where less is good (the contract's variance direction)."""

VOLUME_TARGETS = ("touches", "delivered", "applications", "disbursements", "disbursed_amount")
PRORATED_TARGETS = (*VOLUME_TARGETS, "new_customers")
"""The targets a shorter period checked against a longer plan gets its days' share of
(plan sets them, check prorates them; both read them here, so check needs no optimiser)."""

ALL_LOANS_SINCE = datetime(1900, 1, 1)
"""`:starts_at` for overdue_rate_30: every application of the campaign, however old."""

OVERDUE_COUNTS = ["loans", "seasoned_loans", "overdue_loans"]
BOOK_COUNTS = ["snapshot_loans", "npl_loans"]
LOAN_COUNTS = [*OVERDUE_COUNTS, "loan_balance", *BOOK_COUNTS]
"""What `overdue_rate_30` counts of the campaign's loan book: overdue_rate_30, and
loan_balance and npl_rate (`sql/loan_overdue_status.sql`)."""
WHOLE_COUNTS = frozenset(
    [
        *INTEGER_COUNTS,
        *OVERDUE_COUNTS,
        *BOOK_COUNTS,
        "complaints",
        "rejections",
        "value_loans",
        "new_customers",
        "answers",
        "promoters",
        "detractors",
        "closing_borrowers",
        "churned_borrowers",
    ]
)


# --- the funnel -------------------------------------------------------------------------


def funnel(
    conn: Connection,
    campaign_id: str,
    period: Period,
    *,
    attribution_days: int = 14,
    ftp_rate: float = 0.03,
    lgd: float = 0.6,
) -> pd.DataFrame:
    """One row per week × channel × segment × variant with the funnel's counts.

    Columns: `week` (ISO week of the campaign's time zone, e.g. '2026-W12'), `channel`,
    `segment`, `variant`, then `COUNTS`. A combination appears when anything was counted
    in it (never the hold-out: it counts in no figure of the funnel). Add rates with
    `with_rates` or `rollup`.
    """
    dialect = conn.dialect.name
    touches_sql = query("funnel_touches", dialect)
    applications_sql = query("funnel_applications", dialect)
    frames = []
    for week in week_slices(period, campaign_timezone(conn, campaign_id)):
        window = {"campaign_id": campaign_id, "starts_at": week.starts_at, "ends_at": week.ends_at}
        touches = _read(conn, touches_sql, window)
        applications = _read(
            conn,
            applications_sql,
            {
                **window,
                "attribution_days": attribution_days,
                "ftp_rate": ftp_rate,
                "lgd": lgd,
                "as_of_end_date": period.end,
            },
        )
        frames.append(_merge(touches, applications, KEYS).assign(week=week.name))
    return tidy(_concat(frames, ["week", *KEYS, *COUNTS]), ["week", *KEYS])


def with_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the contract's rates added from its counts (NaN where a denominator
    is zero, and approval_rate and roi where applications have no decision yet: see
    `undecided`); existing rate columns are replaced."""
    out = frame.drop(columns=[rate for rate in RATES if rate in frame.columns]).copy()
    pending = undecided(out)
    out["reach_rate"] = ratio(out["delivered"], out["touches"])
    out["response_rate"] = ratio(out["responded"], out["delivered"])
    out["application_rate"] = ratio(out["applications"], out["delivered"])
    out["approval_rate"] = ratio(out["approved"], out["applications"]).mask(pending)
    out["cac"] = ratio(out["cost"], out["disbursements"])
    roi = ratio(out["net_interest"] - out["cost"] - out["expected_loss"], out["cost"])
    out["roi"] = roi.mask(pending)
    return out


def undecided(frame: pd.DataFrame) -> pd.Series:
    """Rows with applications none of which has a decision: their approval_rate and roi
    are unknown, not 0 and −1. A frame without a `decided` column (rows stored before it
    was counted) has no such row. Without applications, roi keeps its value: what was
    spent brought nothing, which is known."""
    if "decided" not in frame.columns:
        return pd.Series(False, index=frame.index)
    applications = pd.to_numeric(frame["applications"], errors="coerce").fillna(0)
    decided = pd.to_numeric(frame["decided"], errors="coerce")
    return (applications > 0) & (decided == 0)


def rollup(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The funnel's counts summed to the grain `by` (e.g. [] for the campaign total,
    ['channel'], ['week', 'channel']), then `with_rates`. Always at least one row for
    `by=[]`, so an empty period still has a (zero) total."""
    return with_rates(sum_by(frame, by, COUNTS))


def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator as floats; NaN where the denominator is zero or missing, and
    wherever the quotient would not be finite (never ±inf)."""
    numerator = pd.to_numeric(numerator, errors="coerce").astype("float64")
    denominator = pd.to_numeric(denominator, errors="coerce").astype("float64")
    quotient = numerator / denominator.where(denominator != 0, np.nan)
    return quotient.where(np.isfinite(quotient), np.nan)


# --- asset quality ----------------------------------------------------------------------


def overdue_rate_30(
    conn: Connection,
    campaign_id: str,
    period: Period,
    by: Sequence[str] = (),
    *,
    attribution_days: int = 14,
) -> pd.DataFrame:
    """overdue_rate_30 at the grain `by` (any of week, channel, segment, variant).

    The campaign's loans disbursed before the period's end, each judged by its latest
    snapshot before that end: `overdue_loans` (latest dpd ≥ 30) / `seasoned_loans`
    (latest snapshot at least 30 days after the disbursement date). With 'week' in `by`,
    each week is judged as of its own end (clipped to the period), so a weekly series
    shows how the rate moved. Columns: *by, LOAN_COUNTS, overdue_rate_30, and of the same
    loans and snapshots the loan book's npl_rate (snapshot_loans with latest dpd ≥ 90 /
    snapshot_loans) beside loan_balance (Σ latest outstanding).
    """
    # without variant in `by`, the query that sums the variants away (same counts)
    keys = KEYS if "variant" in by else ["channel", "segment"]
    name = "overdue_rate_30" if "variant" in by else "overdue_by_channel_segment"
    sql = query(name, conn.dialect.name)
    timezone = campaign_timezone(conn, campaign_id)
    if "week" in by:
        cuts = [(week.name, week.ends_at, week.end) for week in week_slices(period, timezone)]
    else:
        cuts = [(period.name, period.utc_bounds(timezone)[1], period.end)]
    frames = []
    for cut, ends_at, end in cuts:
        params = {
            "campaign_id": campaign_id,
            "starts_at": ALL_LOANS_SINCE,
            "ends_at": ends_at,
            "attribution_days": attribution_days,
            "as_of_end_date": end,
        }
        frames.append(_read(conn, sql, params).assign(week=cut))
    return book_rates(frames, by, keys)


def book_rates(frames: list[pd.DataFrame], by: Sequence[str], keys: list[str]) -> pd.DataFrame:
    """The loan book's counts of each cut (`frames`, with 'week' and `keys`) summed to `by`,
    with overdue_rate_30 and npl_rate."""
    frame = tidy(_concat(frames, ["week", *keys, *LOAN_COUNTS]), ["week", *keys])
    out = sum_by(frame, by, LOAN_COUNTS)
    out["overdue_rate_30"] = ratio(out["overdue_loans"], out["seasoned_loans"])
    out["npl_rate"] = ratio(out["npl_loans"], out["snapshot_loans"])
    return out


def complaint_rate(
    conn: Connection,
    campaign_id: str,
    period: Period,
    by: Sequence[str] = (),
    *,
    funnel_frame: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """complaint_rate (complaints per 1,000 delivered touches) at the grain `by`.

    Complaints count by received_at; their channel is that of the customer's last
    delivered touch in the campaign before the complaint ('unknown' when none: such
    complaints count in the total but, having no delivered touches of their own, give NaN
    at the channel grain). Pass the period's `funnel()` frame as `funnel_frame` to reuse
    its delivered counts instead of querying touches again. Columns: *by, complaints,
    delivered, complaint_rate.
    """
    dialect = conn.dialect.name
    complaints_sql = query("complaints", dialect)
    touches_sql = query("funnel_touches", dialect)
    frames = []
    for week in week_slices(period, campaign_timezone(conn, campaign_id)):
        window = {"campaign_id": campaign_id, "starts_at": week.starts_at, "ends_at": week.ends_at}
        complaints = _read(conn, complaints_sql, window)
        if funnel_frame is None:
            delivered = _read(conn, touches_sql, window)[[*KEYS, "delivered"]]
            complaints = _merge(complaints, delivered, KEYS)
        frames.append(complaints.assign(week=week.name))
    columns = ["week", *KEYS, "complaints"] + (["delivered"] if funnel_frame is None else [])
    frame = _concat(frames, columns)
    if funnel_frame is not None:
        delivered = funnel_frame[["week", *KEYS, "delivered"]]
        frame = _merge(frame, delivered, ["week", *KEYS])
    frame = tidy(frame, ["week", *KEYS])
    out = sum_by(frame, by, ["complaints", "delivered"])
    out["complaint_rate"] = 1000 * ratio(out["complaints"], out["delivered"])
    return out


# --- diagnostics ------------------------------------------------------------------------


def reject_reasons(
    conn: Connection,
    campaign_id: str,
    period: Period,
    by: Sequence[str] = (),
    *,
    attribution_days: int = 14,
    top: int | None = None,
) -> pd.DataFrame:
    """Why the period's attributed applications were rejected, most frequent first.

    Columns: *by, reject_reason, rejections, share (of the rejections in its `by` group).
    `top` keeps the first n reasons of each group.
    """
    counts = rejection_counts(conn, campaign_id, period, attribution_days=attribution_days)
    return rank_reject_reasons(counts, by, top=top)


def rejection_counts(
    conn: Connection, campaign_id: str, period: Period, *, attribution_days: int = 14
) -> pd.DataFrame:
    """The period's rejections at the funnel's grain and reason (`sql/reject_reasons.sql`),
    for `rank_reject_reasons` to rank at any grain without querying again. Columns: week,
    channel, segment, variant, reject_reason, rejections."""
    sql = query("reject_reasons", conn.dialect.name)
    frames = []
    for week in week_slices(period, campaign_timezone(conn, campaign_id)):
        params = {
            "campaign_id": campaign_id,
            "starts_at": week.starts_at,
            "ends_at": week.ends_at,
            "attribution_days": attribution_days,
        }
        frames.append(_read(conn, sql, params).assign(week=week.name))
    frame = _concat(frames, ["week", *KEYS, "reject_reason", "rejections"])
    return tidy(frame, ["week", *KEYS, "reject_reason"])


def rank_reject_reasons(
    counts: pd.DataFrame, by: Sequence[str] = (), *, top: int | None = None
) -> pd.DataFrame:
    """`rejection_counts` summed to `by` and ranked: see `reject_reasons`."""
    out = sum_by(counts, [*by, "reject_reason"], ["rejections"])
    totals = out.groupby(list(by))["rejections"].transform("sum") if by else out["rejections"].sum()
    out["share"] = ratio(out["rejections"], pd.Series(totals, index=out.index))
    out = out.sort_values(
        [*by, "rejections", "reject_reason"], ascending=[True] * len(by) + [False, True]
    )
    if top is not None:
        out = out.groupby(list(by)).head(top) if by else out.head(top)
    return out.reset_index(drop=True)


# --- periods and time zones -------------------------------------------------------------


def campaign_timezone(conn: Connection, campaign_id: str) -> str:
    """The campaign's IANA time zone; a UserError when the campaign does not exist."""
    timezone = conn.execute(
        select(Campaign.timezone).where(Campaign.campaign_id == campaign_id)
    ).scalar_one_or_none()
    if timezone is None:
        raise UserError(f"campaign {campaign_id!r} does not exist; apply its spec first")
    return timezone


class WeekSlice(NamedTuple):
    """One ISO week ∩ a period: local days [start, end) and their naive-UTC bounds."""

    name: str
    start: date
    end: date
    starts_at: datetime
    ends_at: datetime


def week_slices(period: Period, timezone: str) -> list[WeekSlice]:
    """Each ISO week ∩ `period`, in order, with UTC bounds of its local midnights.

    A month starting on a Wednesday yields its first ISO week from that Wednesday's local
    midnight to the next Monday's.
    """
    slices = []
    for week in period.weeks():
        start, end = max(week.start, period.start), min(week.end, period.end)
        starts_at, ends_at = local_midnight_utc(start, timezone), local_midnight_utc(end, timezone)
        slices.append(WeekSlice(week.name, start, end, starts_at, ends_at))
    return slices


# --- frames -----------------------------------------------------------------------------


def _read(conn: Connection, sql: TextClause, params: dict) -> pd.DataFrame:
    result = conn.execute(sql, params)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _merge(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Outer join on `keys`: a combination counted on either side is kept."""
    return left.merge(right, on=keys, how="outer")


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})
    return pd.concat(frames, ignore_index=True)[columns]


def tidy(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Keys as text; every other column a count, zero where a side had no row, as int64
    (whole counts) or float64 (money); rows in key order."""
    frame = frame.copy()
    for key in keys:
        frame[key] = frame[key].astype("str")
    for column in frame.columns.difference(keys):
        filled = pd.to_numeric(frame[column], errors="coerce").astype("float64").fillna(0.0)
        whole = column in WHOLE_COUNTS
        frame[column] = filled.round().astype("int64") if whole else filled
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def sum_by(frame: pd.DataFrame, by: Sequence[str], counts: list[str]) -> pd.DataFrame:
    """`counts` summed by `by`; one total row when `by` is empty."""
    by = list(by)
    unknown = [column for column in by if column not in frame.columns]
    if unknown:
        raise ValueError(f"cannot group by {unknown}: not among {list(frame.columns)}")
    if not by:
        return (
            frame[counts]
            .sum()
            .to_frame()
            .T.reset_index(drop=True)
            .astype(frame[counts].dtypes.to_dict())
        )
    return frame.groupby(by, sort=True, dropna=False)[counts].sum().reset_index()
