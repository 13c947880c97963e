"""The check stage's measurements: the period's funnel, KPI actuals, weekly series and rollups.

What is measured comes from `tasks.common.metrics` (the contract's one definition of every metric);
this module decides *which* scopes and weeks a check looks at and keeps the weekly rollups:

- the **period funnel** is `metrics.funnel` over the period (its weeks clipped to it);
- **whole weeks**: each ISO week the period touches, counted whole — taken from the period
  funnel where the week lies inside the period, counted separately only for a week that
  straddles the period's edge (a month's first and last weeks) — are stored in
  `weekly_rollups`, so that
- the **trailing baselines** (anomalies, the bottleneck without a plan) read the previous
  weeks from those small rows instead of re-scanning months of touches. A trailing week
  that has no rollup yet (history imported, never checked) is counted once and stored;
  weeks before the campaign's first touch are never counted.
- **KPI actuals** at the scopes the plan sets targets for: the campaign, each channel and
  each segment, with overdue_rate_30 and complaint_rate beside the funnel's rates;
- **targets** come from the current plan of the period, or of the plan period that contains
  it, with the volume targets pro-rated by days (a week of a monthly plan gets 7/31 of the
  month's touches; rates and ratios are not scaled).

Every function takes the `Connection` it works on; thresholds arrive as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select

from pdca.errors import UserError
from pdca.models import AuditEntry, Campaign, Plan, Target, Touch, WeeklyRollup
from pdca.models import CheckResult as CheckRow
from tasks.check.findings import anomalies
from tasks.check.result import CheckResult
from tasks.common import metrics, value_metrics
from tasks.common.jsonable import jsonable, jsonable_records
from tasks.common.metrics import COUNTS, KEYS, PRORATED_TARGETS
from tasks.common.periods import Period
from tasks.common.value_metrics import FAMILY_COUNTS, NEW_KPIS, value_rates

ROLLUP_COLUMNS = ["week", *KEYS, *COUNTS]
"""A weekly rollup's funnel: what the trend and the funnel's anomalies read."""

KPI_ROLLUP_COUNTS = [*metrics.LOAN_COUNTS, *FAMILY_COUNTS]
"""A weekly rollup's loan book (as of the week's end) and customer and value counts, from
which the new KPIs' anomalies are judged (migration 0007). NaN (null) in a row stored
before they were counted: not counted, never 0."""

KPI_METRICS = (
    "touches",
    "delivered",
    "applications",
    "approval_rate",
    "disbursements",
    "disbursed_amount",
    "cac",
    "roi",
    "overdue_rate_30",
    "complaint_rate",
    *NEW_KPIS,
)
"""The reported metrics, business, customer, channel and asset quality alike."""

KPI_SCOPES = ((), ("channel",), ("segment",))
"""Campaign total, by channel, by segment: where the plan sets targets."""

ANOMALY_METRICS: dict[str, str | None] = {
    "touches": None,
    "reach_rate": "touches",
    "response_rate": "delivered",
    "applications": "delivered",
    "application_rate": "delivered",
    "approval_rate": "applications",
    "new_customers": "value_loans",
    "ltv": "value_loans",
    "ltv_cac": "value_loans",
    "npl_rate": "snapshot_loans",
    "nps": "answers",
    "churn_rate": "closing_borrowers",
}
"""Weekly metrics watched for anomalies → the volume that must be large enough to judge
them (None: the count is its own volume). Applications are judged by the week's delivered
touches, so that their collapse to nothing is still judged; new customers, like ltv and
ltv_cac, by the week's disbursements (value_loans). loan_balance is not watched: a stock
that grows with every week's loans stands above its own trailing mean by construction,
so the rule would flag growth, not a break."""

ANOMALY_SCOPES = ((), ("channel",))
"""Campaign total and each channel; segment × variant weeks are too thin to judge."""


# --- the period's funnel and its whole weeks --------------------------------------------


def whole_weeks(
    conn: Connection,
    campaign_id: str,
    period: Period,
    period_funnel: pd.DataFrame,
    **funnel_options: Any,
) -> pd.DataFrame:
    """The funnel of every ISO week the period touches, each counted whole.

    A week inside the period is already in `period_funnel`; only a week that straddles the
    period's edge is counted again, over its whole seven days (with its KPI_ROLLUP_COUNTS:
    `with_week_kpis` fills the inside weeks' from the period's own counts).
    """
    frames = []
    for week in period.weeks():
        if inside(week, period):
            frames.append(period_funnel[period_funnel["week"] == week.name])
        else:
            frames.append(week_counts(conn, campaign_id, week, **funnel_options))
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return period_funnel.iloc[0:0][ROLLUP_COLUMNS]
    columns = [*ROLLUP_COLUMNS, *KPI_ROLLUP_COUNTS]
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def inside(week: Period, period: Period) -> bool:
    """Whether the whole of `week` lies in `period` (the period's counts hold it whole)."""
    return period.start <= week.start and week.end <= period.end


def week_counts(
    conn: Connection, campaign_id: str, week: Period, **funnel_options: Any
) -> pd.DataFrame:
    """One whole week's rollup rows: its funnel with its KPI_ROLLUP_COUNTS beside it."""
    funnel = metrics.funnel(conn, campaign_id, week, **funnel_options)
    kpis = kpi_week_counts(conn, campaign_id, week, **funnel_options)
    return with_week_kpis(funnel[ROLLUP_COLUMNS], kpis, [week.name])


def kpi_week_counts(
    conn: Connection, campaign_id: str, period: Period, **funnel_options: Any
) -> pd.DataFrame:
    """KPI_ROLLUP_COUNTS per week of `period` (clipped to it) × KEYS: the loan book as of
    each week's end and the week's customer and value counts."""
    grain = ["week", *KEYS]
    book, churn = value_metrics.loan_book_counts(
        conn,
        campaign_id,
        period,
        grain,
        attribution_days=funnel_options.get("attribution_days", 14),
    )
    values = value_metrics.family_counts(
        conn, campaign_id, period, grain, **funnel_options, churn=False
    )
    return join_kpi_counts(book, value_metrics.join_churn(values, churn, grain))


def join_kpi_counts(book: pd.DataFrame, families: pd.DataFrame) -> pd.DataFrame:
    """The loan book's and the families' weekly counts side by side (`overdue_rate_30` and
    `family_counts` at ["week", *KEYS]); 0 where one side has no row: it counted nothing."""
    keys = ["week", *KEYS]
    merged = book[[*keys, *metrics.LOAN_COUNTS]].merge(
        families[[*keys, *FAMILY_COUNTS]], on=keys, how="outer"
    )
    return metrics.tidy(merged, keys)


def with_week_kpis(weeks: pd.DataFrame, kpis: pd.DataFrame, counted: Sequence[str]) -> pd.DataFrame:
    """Rollup rows: `weeks`' funnel rows with `kpis`' KPI_ROLLUP_COUNTS (`join_kpi_counts`)
    filled in for the weeks named in `counted`.

    A (week, channel, segment, variant) with KPI counts but no funnel row (borrowers of a
    variant nobody was sent anything that week) gets a row with a zero funnel; in a counted
    week a funnel row without KPI counts has zeros; in other weeks the KPI counts a row
    already has (a straddling week counted whole) are kept, else NaN: not counted."""
    keys = ["week", *KEYS]
    counted_kpis = kpis[kpis["week"].isin(list(counted))]
    funnel = weeks.reindex(columns=[*ROLLUP_COLUMNS, *KPI_ROLLUP_COUNTS])
    mine = funnel["week"].isin(list(counted))
    merged = (
        funnel[mine]
        .drop(columns=KPI_ROLLUP_COUNTS)
        .merge(counted_kpis[[*keys, *KPI_ROLLUP_COUNTS]], on=keys, how="outer")
    )
    merged = metrics.tidy(merged, keys)  # zeros where a side had no row
    return (
        pd.concat([funnel[~mine], merged], ignore_index=True)
        .sort_values(keys, kind="stable")
        .reset_index(drop=True)
    )


def store_rollups(
    conn: Connection, campaign_id: str, weeks: Sequence[str], frame: pd.DataFrame
) -> None:
    """Replace the stored rollups of `weeks` with `frame`'s rows (in the caller's transaction).

    A week listed in `weeks` with no rows in `frame` is stored as nothing: it had no
    activity, and `trailing_weeks` recognises it from the campaign's first touch instead.

    Two checks of one campaign at once (a backfill's periods on two workers) may both
    store a trailing week neither found: on PostgreSQL each would delete nothing the
    other had not committed yet and the second insert would break the unique key. So the
    campaign's row is locked first (`FOR NO KEY UPDATE`, which leaves foreign-key checks
    alone) until the caller's transaction ends: the second waits, then replaces the
    first's rows. SQLite has one writer at a time anyway (no lock clause there).
    """
    conn.execute(
        select(Campaign.campaign_id)
        .where(Campaign.campaign_id == campaign_id)
        .with_for_update(key_share=True)
    )
    conn.execute(
        delete(WeeklyRollup).where(
            WeeklyRollup.campaign_id == campaign_id, WeeklyRollup.week.in_(list(weeks))
        )
    )
    if frame.empty:
        return
    computed_at = datetime.now().replace(microsecond=0)
    columns = [*ROLLUP_COLUMNS, *KPI_ROLLUP_COUNTS]
    rows = frame.reindex(columns=columns).to_dict("records")
    for row in rows:
        row.update(campaign_id=campaign_id, computed_at=computed_at)
        for column in metrics.INTEGER_COUNTS:
            row[column] = int(row[column])
        for column in KPI_ROLLUP_COUNTS:  # NaN: not counted, stored as null
            value = row[column]
            whole = column in metrics.WHOLE_COUNTS
            row[column] = None if pd.isna(value) else int(value) if whole else float(value)
    conn.execute(insert(WeeklyRollup), rows)


def trailing_weeks(
    conn: Connection,
    campaign_id: str,
    period: Period,
    count: int,
    **funnel_options: Any,
) -> pd.DataFrame:
    """The `count` whole weeks before the period's first week, from the stored rollups.

    A week with no stored rollup that lies after the campaign's first touch is counted
    now and stored (history loaded by import and never checked), and so is a week stored
    before its KPI_ROLLUP_COUNTS were (migration 0007); earlier weeks are empty by
    definition. Columns: ROLLUP_COLUMNS, KPI_ROLLUP_COUNTS.
    """
    first_week = period.weeks()[0]
    names = [first_week.shifted(-steps).name for steps in range(count, 0, -1)]
    stored = read_rollups(conn, campaign_id, names, kpis=True)
    uncounted = set(stored.loc[stored["answers"].isna(), "week"])
    stored = stored[~stored["week"].isin(uncounted)]
    first_touch = conn.execute(
        select(func.min(Touch.sent_at)).where(Touch.campaign_id == campaign_id)
    ).scalar()
    if first_touch is None:
        return stored
    first_touch_week = Period.week_of(first_touch.date()).shifted(-1).name
    missing = [
        name for name in names if name not in set(stored["week"]) and name >= first_touch_week
    ]
    if missing:
        counted = [
            week_counts(conn, campaign_id, Period.parse(name), **funnel_options) for name in missing
        ]
        counted = [frame for frame in counted if not frame.empty]
        if counted:
            fresh = pd.concat(counted, ignore_index=True)
            store_rollups(conn, campaign_id, missing, fresh)
            stored = pd.concat([stored, fresh], ignore_index=True)
    return stored.sort_values(["week", *KEYS], kind="stable").reset_index(drop=True)


def read_rollups(
    conn: Connection, campaign_id: str, weeks: Sequence[str], *, kpis: bool = False
) -> pd.DataFrame:
    """The stored rollup rows of `weeks` (ROLLUP_COLUMNS, counts typed as the funnel's),
    with `kpis` their KPI_ROLLUP_COUNTS too, as floats, NaN where not counted."""
    names = [*ROLLUP_COLUMNS, *(KPI_ROLLUP_COUNTS if kpis else [])]
    result = conn.execute(
        select(*(getattr(WeeklyRollup, name) for name in names)).where(
            WeeklyRollup.campaign_id == campaign_id, WeeklyRollup.week.in_(list(weeks))
        )
    )
    frame = pd.DataFrame(result.fetchall(), columns=names)
    keys = ["week", *KEYS]
    funnel = metrics.tidy(frame[ROLLUP_COLUMNS], keys)
    if not kpis:
        return funnel
    # in tidy's row order (keys as text, a stable sort), but NaN kept: not counted
    counts = frame.astype({key: "str" for key in keys}).sort_values(keys, kind="stable")
    counts = counts[KPI_ROLLUP_COUNTS].apply(pd.to_numeric, errors="coerce").astype("float64")
    return funnel.join(counts.reset_index(drop=True))


# --- KPI actuals --------------------------------------------------------------------------


def kpi_actuals(
    period_funnel: pd.DataFrame,
    overdue: pd.DataFrame,
    complaints: pd.DataFrame,
    families: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per KPI scope (campaign, each channel, each segment) with every KPI.

    `overdue` and `complaints` are `metrics.overdue_rate_30` and `metrics.complaint_rate`,
    `families` `value_metrics.family_counts`, at a grain with channel and segment, summed
    here to each scope (without `families`, or without the loan book's columns in
    `overdue`, those counts are none). Columns: channel, segment (None where the scope
    spans them), then the funnel's counts and rates, overdue_rate_30, complaint_rate and
    the NEW_KPIS.
    """
    overdue = _with_columns(overdue, metrics.LOAN_COUNTS)
    families = _with_columns(families if families is not None else overdue.iloc[0:0], FAMILY_COUNTS)
    rows = []
    for scope in KPI_SCOPES:
        by = list(scope)
        funnel = metrics.rollup(period_funnel, by)
        overdue_sum = metrics.sum_by(overdue, by, metrics.LOAN_COUNTS)
        overdue_sum["overdue_rate_30"] = metrics.ratio(
            overdue_sum["overdue_loans"], overdue_sum["seasoned_loans"]
        )
        complaints_sum = metrics.sum_by(complaints, by, ["complaints"])
        families_sum = metrics.sum_by(families, by, FAMILY_COUNTS)
        merged = funnel
        for extra in (overdue_sum, complaints_sum, families_sum):
            merged = merged.merge(extra, on=by, how="left") if by else merged.join(extra)
        filled = ["complaints", *metrics.LOAN_COUNTS, *FAMILY_COUNTS]
        merged[filled] = merged[filled].fillna(0)
        merged["complaint_rate"] = 1000 * metrics.ratio(merged["complaints"], merged["delivered"])
        merged = value_rates(merged)
        for column in ("channel", "segment"):
            if column not in by:
                merged[column] = None
        rows.append(merged)
    return pd.concat(rows, ignore_index=True)


def _with_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`frame` with each of `columns` it lacks added as zeros (counts nobody made)."""
    missing = [column for column in columns if column not in frame.columns]
    return frame.assign(**dict.fromkeys(missing, 0)) if missing else frame


# --- targets ------------------------------------------------------------------------------


def current_targets(conn: Connection, campaign_id: str, period: Period) -> list[dict[str, Any]]:
    """The targets the period is judged against, each with the plan it came from.

    The current plan of exactly this period wins; otherwise the current plan of the
    shortest planned period containing it, its volume targets scaled by the share of days.
    No plan: an empty list (the check then reports actuals and baselines only).
    """
    plans = conn.execute(
        select(Plan.plan_id, Plan.period, Plan.version).where(
            Plan.campaign_id == campaign_id, Plan.is_current.is_(True)
        )
    ).all()
    containing = []
    for plan_id, name, version in plans:
        try:
            planned = Period.parse(name)
        except UserError:  # a period name pdca did not write is no match
            continue
        if planned.start <= period.start and period.end <= planned.end:
            containing.append((planned.days, planned, plan_id, version))
    if not containing:
        return []
    _, planned, plan_id, version = min(containing, key=lambda item: (item[0], item[2]))
    scale = period.days / planned.days
    targets = []
    columns = (
        Target.metric,
        Target.channel,
        Target.segment,
        Target.target,
        Target.tolerance_warn,
        Target.tolerance_fail,
        Target.lower_is_better,
    )
    for row in conn.execute(select(*columns).where(Target.plan_id == plan_id)).mappings():
        target = dict(row)
        if target["metric"] in PRORATED_TARGETS:
            target["target"] *= scale
        target["plan"] = {"period": planned.name, "version": version, "scale": scale}
        targets.append(target)
    return targets


# --- weekly series ------------------------------------------------------------------------


def weekly_series(weeks: pd.DataFrame, scope: Sequence[str]) -> pd.DataFrame:
    """Counts and rates per week at `scope` (e.g. [] or ['channel']), for the anomaly rule:
    the funnel's and, where `weeks` holds KPI_ROLLUP_COUNTS, the new KPIs' (NaN in a week
    whose counts were never stored: no value, so no baseline and no judgement)."""
    by = ["week", *scope]
    series = metrics.rollup(weeks, by)
    if not set(KPI_ROLLUP_COUNTS) <= set(weeks.columns):
        return series
    counts = weeks.groupby(by, sort=False, dropna=False)[KPI_ROLLUP_COUNTS].sum(min_count=1)
    return value_rates(series.merge(counts.reset_index(), on=by, how="left"))


def campaign_kpis(kpis: Sequence[Mapping[str, Any]]) -> tuple[dict, dict]:
    """The campaign-scope actual and target of each KPI in the check's `kpis` rows (a
    target None where the plan sets none)."""
    campaign = [row for row in kpis if not any((row.get("scope") or {}).values())]
    actual = {row["metric"]: row.get("actual") for row in campaign}
    target = {row["metric"]: row.get("target") for row in campaign}
    return actual, target


def kpi_baseline(trailing: pd.DataFrame) -> dict[str, float]:
    """Every KPI of the trailing weeks' rollups pooled (their counts summed, then divided):
    the reference of the diagnosis beyond the funnel when the plan sets no target; NaN
    for a KPI whose counts the rollups do not hold."""
    if trailing.empty:
        return {}
    pooled = weekly_series(trailing.assign(week="trailing"), []).iloc[0]
    return {metric: pooled.get(metric, float("nan")) for metric in KPI_METRICS}


def period_book(book_weeks: pd.DataFrame, period: Period) -> pd.DataFrame:
    """The loan book as of the period's end from its weekly counts (`overdue_rate_30` with
    'week' in `by`): the last week's, judged as of that week's end clipped to the period."""
    return book_weeks[book_weeks["week"] == period.weeks()[-1].name]


def inside_weeks(period: Period) -> list[str]:
    """The ISO weeks that lie whole in `period` (their counts are the period's own)."""
    return [week.name for week in period.weeks() if inside(week, period)]


def untargeted_kpis(actuals: pd.DataFrame, targeted: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Each KPI without a target (without a plan: every one; else those not in
    `targeted`, the metrics the plan sets targets on): its campaign-wide actual alone
    (`kpi_actuals`' first row), with status `no_target`."""
    total = actuals.iloc[0]
    return [
        {
            "metric": metric,
            "scope": {"channel": None, "segment": None},
            "target": None,
            "actual": jsonable(total[metric]),
            "variance": None,
            "variance_pct": None,
            "status": "no_target",
        }
        for metric in KPI_METRICS
        if metric not in set(targeted)
    ]


def period_anomalies(
    history: pd.DataFrame, period: Period, **thresholds: Any
) -> list[dict[str, Any]]:
    """The period's weeks whose metric broke from its trailing weeks, at every
    ANOMALY_SCOPES scope; `history` holds the trailing and the period's whole weeks,
    `thresholds` are `findings.anomalies`' z, min_volume, window and min_weeks."""
    found = []
    for scope in ANOMALY_SCOPES:
        found += anomalies(
            weekly_series(history, scope),
            weeks=[week.name for week in period.weeks()],
            metrics=ANOMALY_METRICS,
            scope=list(scope),
            **thresholds,
        )
    # a break from a perfectly flat baseline has no z: it sorts first, as the strongest
    return sorted(found, key=lambda item: -abs(item["z"]) if item["z"] is not None else -1e300)


def top_reject_reasons(counts: pd.DataFrame, top: int = 5) -> list[dict[str, Any]]:
    """The `top` reject reasons overall (channel None), then of each channel, from
    `metrics.rejection_counts`: channel, reason, count, share."""
    overall = metrics.rank_reject_reasons(counts, [], top=top)
    by_channel = metrics.rank_reject_reasons(counts, ["channel"], top=top)
    rows = [dict(row, channel=None) for row in jsonable_records(overall)]
    rows += jsonable_records(by_channel)
    return [
        {
            "channel": row["channel"],
            "reason": row["reject_reason"],
            "count": row["rejections"],
            "share": row["share"],
        }
        for row in rows
    ]


def funnel_rows(funnel: pd.DataFrame) -> list[dict[str, Any]]:
    """The period's funnel by channel × segment × variant, counts and rates."""
    return jsonable_records(metrics.rollup(funnel, KEYS))


def store_check(conn: Connection, check: CheckResult, weeks: pd.DataFrame) -> None:
    """Replace the (campaign, period)'s stored result and its whole weeks' rollups, with an
    audit entry, in one transaction."""
    campaign_id, period = check.campaign, check.period
    names = [week.name for week in Period.parse(period).weeks()]
    conn.execute(
        delete(CheckRow).where(CheckRow.campaign_id == campaign_id, CheckRow.period == period)
    )
    conn.execute(
        insert(CheckRow).values(
            campaign_id=campaign_id,
            period=period,
            checked_at=datetime.now().replace(microsecond=0),
            trusted=check.trusted,
            result=check.to_json(),
        )
    )
    store_rollups(conn, campaign_id, names, weeks)
    conn.execute(
        insert(AuditEntry).values(
            actor="check",
            action="check.run",
            subject=f"{campaign_id}:{period}",
            detail={"trusted": check.trusted, "anomalies": len(check.anomalies)},
        )
    )
    conn.commit()


def earlier_checks(
    conn: Connection, campaign_id: str, period: str, limit: int = 12
) -> list[dict[str, Any]]:
    """The campaign's stored check results of the `limit` periods of the same kind just
    before `period`, newest first: the run of periods act's retire rule reads."""
    current = Period.parse(period)
    found = []
    for name, result in conn.execute(
        select(CheckRow.period, CheckRow.result).where(CheckRow.campaign_id == campaign_id)
    ):
        try:
            earlier = Period.parse(name)
        except UserError:  # a period name pdca did not write
            continue
        if earlier.kind == current.kind and earlier.start < current.start:
            found.append((earlier.start, result))
    found.sort(key=lambda item: item[0], reverse=True)
    return [result for _, result in found[:limit]]
