"""Data quality first: may the Check stage trust the period's data?

The contract: data quality fails (the result is untrusted) when any critical expectation
fails on the period's data, or when a feed's quarantined rows exceed a share of its rows
for the period (`quarantine_max_share`, default 1 %). `assess` answers both for one
campaign and period, and says why:

- **the period's data**, read with `sql/dq_*.sql` (only the columns the suites read): the
  campaign's touches sent in the period (one ISO week at a time, so a quarter never sits in
  memory at once), the applications of the period attributed to it, their decisions, their
  loans, those loans' repayment snapshots up to the period's end, and the complaints naming
  the campaign received in the period. Each is validated with its feed's suite from
  `expectations/` — the same rules the importer applies to raw CSV rows; they fit the
  stored rows once booleans and timestamps are typed (`_typed`), so no `<feed>_table`
  suite is needed. A field a row's source feed cannot carry (`feeds.NOT_CARRIED`: the UCI
  file has no amounts) is exempt by the suite's `source_carries_<field>` condition.
- **derived suites** on what no single feed row shows, each named after the dataset it
  guards: `touch_timing` (no message in the campaign's quiet hours, local time),
  `campaign_decisions` (approvals with a positive amount and an APR within the campaign's
  cap; rejections with a reason), `campaign_loans` (loans only of approved applications,
  within the cap, after the decision, within the approved amount) and
  `funnel_consistency` (per week × channel, each funnel stage at most the one before it;
  the touch stages are counted from the week's touches already in memory, the application
  stages by `sql/dq_funnel_applications.sql` — a second SQL pass over a week's touches
  would cost SQLite seconds for the same three counts).
  Campaign-specific limits (the APR cap, the quiet hours) become boolean columns computed
  here, so the suites stay plain JSON. Severities are set per expectation and explained in
  each suite's `meta.notes`; a rejection without a reason is critical (the contract
  requires the field, and the feed suite already says so).
- **quarantine shares** per feed (`sql/dq_quarantine.sql`): quarantined rows whose own
  timestamp falls in the period / (the feed's rows of the period + those quarantined).
  Both sides count every campaign's rows: a quarantined row keeps only its raw text and
  cannot be attributed to a campaign, so a per-campaign denominator would compare unlike
  things. Customers belong to no campaign and count by `created_at`; repayments by their
  `as_of` day. Quarantined rows whose timestamp could not be read belong to no period.
- **Data Docs**: with `docs_dir`, one GE Data Docs build of this run's validation results
  (one page per suite, one per chunk of weeks for the touch suites) into that folder.

How Great Expectations is driven (context, definitions, tallies, Data Docs) is
`tasks.check.gx_runs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine

from tasks.check.arrow_reads import SQLITE_ARROW_MIN_TOUCHES, RowReader, arrow_pays
from tasks.check.gx_runs import ValidationRun
from tasks.common.campaigns import CampaignSpec, TimeRange
from tasks.common.feeds import LOAD_ORDER, SOURCE_COLUMN, with_carried_flags
from tasks.common.metrics import WeekSlice, week_slices
from tasks.common.periods import Period
from tasks.common.sqlfiles import query

QUARANTINE_FEEDS = LOAD_ORDER
"""The contract's feeds whose quarantine share is judged, in the contract's order."""

FEED_OF_SUITE = {
    feed: feed
    for feed in ("touches", "applications", "decisions", "loans", "repayments", "complaints")
}
"""Suites that are a feed's own: their entry reports that feed's quarantined rows."""

FUNNEL_STAGES = [
    "touches",
    "delivered",
    "responded",
    "applications",
    "applications_after_delivery",
    "approved",
    "disbursements",
]
"""funnel_consistency's counts per week × channel, each stage in the contract's order."""

TIMESTAMPS = ("sent_at", "applied_at", "decided_at", "disbursed_at", "received_at", "as_of")
BOOLEANS = ("delivered", "responded")
NUMBERS = ("cost", "amount_requested", "approved_amount", "apr", "amount", "outstanding")
WHOLE_NUMBERS = ("term_months", "dpd")


# --- the result -------------------------------------------------------------------------


@dataclass
class DataQuality:
    """The verdict on one campaign's period, in the shape of `pdca check --json`'s
    `data_quality` (see `to_json`)."""

    campaign: str
    period: str
    trusted: bool
    suites: list[dict[str, Any]] = field(default_factory=list)
    """Per suite: name, success, evaluated, failed, warnings, rows_in, rows_quarantined,
    unexpected (expectation → failing rows), examples (expectation → first failing keys)."""
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    """Per feed: feed, rows_in, rows_quarantined, share, max_share, success."""
    docs_path: Path | None = None
    """The Data Docs index.html of this run, when docs were asked for."""
    status: str = "untrusted"
    """`trusted`, `untrusted`, or `no_data`: the period has no row in any feed, which no
    expectation can fail, and which must not read as a trusted, quiet period."""

    @property
    def failed(self) -> list[str]:
        """Why the data is untrusted, one line per failed suite or quarantine share."""
        lines = [
            f"{suite['name']}: {', '.join(suite['failed'])}"
            for suite in self.suites
            if suite["failed"]
        ]
        lines += [
            f"quarantine {entry['feed']}: {entry['share']:.2%} of {entry['rows_in']} rows "
            f"> {entry['max_share']:.2%}"
            for entry in self.quarantine
            if not entry["success"]
        ]
        return lines

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: {trusted, suites: [...], quarantine: [...], docs_path}."""
        return {
            "trusted": self.trusted,
            "suites": self.suites,
            "quarantine": self.quarantine,
            "docs_path": None if self.docs_path is None else str(self.docs_path),
            "status": self.status,
        }


NO_DATA = "no_data"
"""The data-quality status of a period without a single row (CONTRACT: not trusted)."""


# --- the check --------------------------------------------------------------------------


def assess(
    conn: Connection,
    spec: CampaignSpec,
    period: Period,
    *,
    attribution_days: int,
    quarantine_max_share: float,
    docs_dir: Path | None = None,
    chunk_rows: int = 500_000,
    arrow_reads: bool = True,
    sqlite_arrow_min_touches: int = SQLITE_ARROW_MIN_TOUCHES,
) -> DataQuality:
    """Validate the campaign's data of `period` and judge its quarantine shares.

    Trusted when every suite's critical expectations pass and no feed's quarantined share
    exceeds `quarantine_max_share` (a share exactly at the limit passes). Warnings are
    reported and change nothing. With `docs_dir`, GE Data Docs of this run are written
    there (files of an earlier run in that folder are replaced) and `docs_path` is its
    index.html. The touches are read a week at a time and validated `chunk_rows` at a
    time (consecutive weeks together up to that many rows): memory stays bounded by the
    chunk, and a month of ordinary weeks costs one validation instead of five. The reads
    go ahead of the validations (`RowReader.frames`, up to a chunk's rows): the database
    answers the next queries while GE validates the rows it has.

    The rows are read as Arrow through an ADBC connection of their own, which sees only
    committed rows; `arrow_reads=False` reads them on `conn` (`tasks.check.arrow_reads`),
    as does a SQLite period with fewer than `sqlite_arrow_min_touches` touches, for which
    starting the SQLite reader's process would cost more than it saves.
    """
    starts_at, ends_at = period.utc_bounds(spec.timezone)
    window = {
        "campaign_id": spec.id,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "attribution_days": attribution_days,
    }
    weeks = week_slices(period, spec.timezone)
    reads = _reads(window, weeks, period)
    arrow = arrow_reads and arrow_pays(conn, window, sqlite_arrow_min_touches)
    run = ValidationRun(f"{spec.id}.{period.name}")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdca-dq-quarantine") as pool:
        # the rows are read on a connection of their own: the quarantine shares (a scan of
        # each feed's period, 0.3 s at 10 M touches) are counted on another meanwhile
        counting = (
            pool.submit(
                _quarantine_shares_apart, conn.engine, period, spec.timezone, quarantine_max_share
            )
            if arrow
            else None
        )
        try:
            with RowReader(conn, arrow=arrow) as rows:
                frames = (_typed(frame) for frame in rows.frames(reads, ahead_rows=chunk_rows))
                _check_applications(frames, run, spec.risk.apr_cap)
                counts = _check_touches(frames, run, spec, [w.name for w in weeks], chunk_rows)
                funnel = [
                    funnel_stages(touch_counts, next(frames)).assign(week=week.name)
                    for week, touch_counts in zip(weeks, counts, strict=True)
                ]
            run.validate("funnel_consistency", _weekly(funnel))
            docs_path = run.write_docs(docs_dir) if docs_dir is not None else None
        finally:
            run.forget()
        quarantine = (
            counting.result()
            if counting is not None
            else quarantine_shares(conn, period, spec.timezone, quarantine_max_share)
        )
    quarantined = {entry["feed"]: entry["rows_quarantined"] for entry in quarantine}
    suites = [
        tally.to_json(quarantined.get(FEED_OF_SUITE.get(tally.name, ""), 0))
        for tally in run.tallies.values()
    ]
    no_data = not any(tally.rows_in for tally in run.tallies.values())
    trusted = not no_data and all(entry["success"] for entry in suites + quarantine)
    status = NO_DATA if no_data else ("trusted" if trusted else "untrusted")
    return DataQuality(spec.id, period.name, trusted, suites, quarantine, docs_path, status)


def _reads(window: dict, weeks: list[WeekSlice], period: Period) -> list[tuple[str, dict]]:
    """The data-quality reads of the period, in the order `assess` takes them: first the
    applications with their decisions, loans and snapshots, and the complaints (small,
    validated while the touches are read), then each week's touches, then each week's
    application counts for the funnel's stages (read while the touches are validated)."""
    snapshots = window | {"as_of_end_date": period.end}
    by_week = [window | {"starts_at": week.starts_at, "ends_at": week.ends_at} for week in weeks]
    feeds = [(name, window) for name in ("dq_applications", "dq_decisions", "dq_loans")]
    feeds += [("dq_repayments", snapshots), ("dq_complaints", window)]
    touches = [("dq_touches", bounds) for bounds in by_week]
    funnel = [("dq_funnel_applications", bounds) for bounds in by_week]
    return feeds + touches + funnel


def _check_applications(frames: Iterator[pd.DataFrame], run: ValidationRun, apr_cap: float) -> None:
    """Validate the period's applications, decisions, loans, repayment snapshots and
    complaints (the next five of `frames`), the decisions, loans and snapshots kept to
    the attributed applications (`of_applications`)."""
    applications = next(frames)
    run.validate("applications", application_checks(applications))
    attributed = applications["application_id"]
    run.validate("decisions", decision_checks(of_applications(next(frames), attributed), apr_cap))
    run.validate("loans", loan_checks(of_applications(next(frames), attributed), apr_cap))
    repayments = of_applications(next(frames), attributed)
    run.validate("repayments", repayments.drop(columns="application_id"))
    run.validate("complaints", next(frames))


def _check_touches(
    frames: Iterator[pd.DataFrame],
    run: ValidationRun,
    spec: CampaignSpec,
    weeks: list[str],
    chunk_rows: int,
) -> list[pd.DataFrame]:
    """Validate the period's touches (one frame per week of `weeks`, taken from `frames`)
    and their timing in chunks of consecutive weeks of up to `chunk_rows` rows; return
    each week's touch stages (`touch_stages`).

    Every touches expectation is row by row (the key is the table's primary key), so a
    chunk finds exactly what its weeks would find one by one: the tallies (the largest
    evaluated count, summed unexpected counts, the first examples in week order) are the
    same, only the number of GE runs (a fixed cost each) falls."""
    counts, chunk = [], []
    for week in weeks:
        touches = next(frames)
        counts.append(touch_stages(touches))
        chunk.append((week, touches))
        if sum(len(frame) for _, frame in chunk) >= chunk_rows:
            _validate_touches(run, spec, chunk, whole=len(weeks) == 1)
            chunk = []
    if chunk:
        _validate_touches(run, spec, chunk, whole=len(weeks) == 1)
    return counts


def _validate_touches(
    run: ValidationRun, spec: CampaignSpec, chunk: list[tuple[str, pd.DataFrame]], whole: bool
) -> None:
    """The touches and touch_timing suites on one chunk of weeks; `part` names its weeks
    (none when the period is one week) for the Data Docs."""
    first, last = chunk[0][0], chunk[-1][0]
    part = None if whole else (first if first == last else f"{first}..{last}")
    frames = [frame for _, frame in chunk if len(frame)] or [chunk[0][1]]
    touches = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    run.validate("touches", with_labels_as_categories(touches), part)
    timing = touch_timing(touches, spec.timezone, spec.contact_policy.quiet_hours)
    run.validate("touch_timing", timing, part)


# --- derived columns --------------------------------------------------------------------


LABELS = ("campaign_id", "channel", "variant")
"""The touches' columns of a few distinct values, which GE is handed as categories."""


def with_labels_as_categories(touches: pd.DataFrame) -> pd.DataFrame:
    """The touches with their LABELS as categorical columns, for GE. Its pandas engine
    filters the whole frame by each row-conditioned expectation's condition several times
    over (touches has three), copying every column each time; a categorical column is
    copied as its small integer codes rather than as strings. The values, nulls included,
    are the same (a week of 833,333 touches: the touches suite 0.98 s → 0.79 s, the
    conversion 0.05 s)."""
    return touches.astype({column: "category" for column in LABELS if column in touches})


def touch_timing(touches: pd.DataFrame, timezone: str, quiet_hours: TimeRange) -> pd.DataFrame:
    """touch_id, is_holdout, is_in_quiet_hours (the local send time, in `timezone`, within
    `quiet_hours`: start included, end excluded, wrapping past midnight)."""
    local = touches["sent_at"].dt.tz_localize("UTC").dt.tz_convert(timezone)
    seconds = local.dt.hour * 3600 + local.dt.minute * 60 + local.dt.second
    start = quiet_hours.start.hour * 3600 + quiet_hours.start.minute * 60
    end = quiet_hours.end.hour * 3600 + quiet_hours.end.minute * 60
    if quiet_hours.wraps:
        quiet = (seconds >= start) | (seconds < end)
    else:
        quiet = (seconds >= start) & (seconds < end)
    return pd.DataFrame(
        {
            "touch_id": touches["touch_id"],
            "is_holdout": (touches["variant"] == "holdout").to_numpy(dtype=bool),
            "is_in_quiet_hours": quiet.fillna(False).to_numpy(dtype=bool),
        },
        index=touches.index,
    )


def application_checks(applications: pd.DataFrame) -> pd.DataFrame:
    """The applications with `source_carries_<field>` flags (`feeds.with_carried_flags`),
    which the suite's conditions read: UCI rows have no amount by nature, others must."""
    return with_carried_flags(applications, "applications", applications[SOURCE_COLUMN])


def decision_checks(decisions: pd.DataFrame, apr_cap: float) -> pd.DataFrame:
    """The decisions with campaign_decisions' columns: apr_within_cap, has_reject_reason,
    decided_after_application (a missing value never counts as within or after)."""
    out = decisions.copy()
    out["apr_within_cap"] = _flag(out["apr"].notna() & (out["apr"] <= apr_cap))
    reason = out["reject_reason"].astype("str").str.strip()
    out["has_reject_reason"] = _flag(out["reject_reason"].notna() & (reason != ""))
    out["decided_after_application"] = _flag(out["decided_at"] >= out["applied_at"])
    return out


def loan_checks(loans: pd.DataFrame, apr_cap: float) -> pd.DataFrame:
    """The loans with campaign_loans' columns: is_of_approved_application, apr_within_cap,
    disbursed_after_decision, amount_within_approved."""
    out = loans.copy()
    out["is_of_approved_application"] = _flag(out["decision"] == "approved")
    out["apr_within_cap"] = _flag(out["apr"].notna() & (out["apr"] <= apr_cap))
    out["disbursed_after_decision"] = _flag(out["disbursed_at"] >= out["decided_at"])
    out["amount_within_approved"] = _flag(out["amount"] <= out["approved_amount"])
    return out


def touch_stages(touches: pd.DataFrame) -> pd.DataFrame:
    """One row per channel with the touch stages of one week's touches: touches, delivered
    and responded (hold-out rows count in none)."""
    sent = touches.loc[touches["variant"] != "holdout", ["channel", "delivered", "responded"]]
    return (
        sent.assign(touches=1)
        .groupby("channel", observed=True)[["touches", "delivered", "responded"]]
        .sum()
        .reset_index()
    )


def of_applications(frame: pd.DataFrame, application_ids: pd.Series) -> pd.DataFrame:
    """The rows of `frame` (decisions, loans or repayment snapshots of the candidates of
    `sql/dq_candidates.sql`) that belong to the attributed `application_ids`: attribution
    runs once, for the applications, rather than once per dataset (0.27 s each at a 10 M
    touch history).

    Arrow's `is_in` decides membership: pandas' `isin` on Arrow-backed strings makes a
    Python scalar of every id first (1.0 s for 200,000 ids against 0.03 s here), and the
    check does it for three datasets."""
    ids = pa.array(frame["application_id"], from_pandas=True)
    if application_ids.empty or pa.types.is_null(ids.type):  # nothing to keep
        return frame.iloc[:0]
    wanted = pa.array(application_ids, from_pandas=True).cast(ids.type)
    keep = pc.fill_null(pc.is_in(ids, value_set=wanted), False)
    return frame[keep.to_numpy(zero_copy_only=False)].reset_index(drop=True)


def funnel_stages(touch_counts: pd.DataFrame, applications: pd.DataFrame) -> pd.DataFrame:
    """One row per channel with the funnel's stage counts of one week: the touch stages
    (`touch_stages`) and the rest from `sql/dq_funnel_applications.sql` (each application
    under its own channel)."""
    frame = touch_counts.merge(applications, on="channel", how="outer")
    counts = [column for column in FUNNEL_STAGES if column in frame.columns]
    frame[counts] = frame[counts].apply(pd.to_numeric).fillna(0).astype("int64")
    return frame[["channel", *counts]]


def _weekly(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The weeks' stage counts in one frame: week, channel, then FUNNEL_STAGES."""
    frame = pd.concat(frames, ignore_index=True)
    return frame[["week", "channel", *FUNNEL_STAGES]]


def quarantine_shares(
    conn: Connection, period: Period, timezone: str, max_share: float
) -> list[dict[str, Any]]:
    """Per feed: the period's quarantined rows against its rows (loaded + quarantined)."""
    starts_at, ends_at = period.utc_bounds(timezone)
    params = {
        "starts_at": starts_at,
        "ends_at": ends_at,
        "start_date": period.start,
        "end_date": period.end,
    }
    rows = conn.execute(query("dq_quarantine", conn.dialect.name), params).mappings().all()
    counts = {row["feed"]: (int(row["rows_loaded"]), int(row["rows_quarantined"])) for row in rows}
    entries = []
    for feed in QUARANTINE_FEEDS:
        loaded, quarantined = counts.get(feed, (0, 0))
        rows_in = loaded + quarantined
        share = quarantined / rows_in if rows_in else 0.0
        entries.append(
            {
                "feed": feed,
                "rows_in": rows_in,
                "rows_quarantined": quarantined,
                "share": share,
                "max_share": max_share,
                "success": share <= max_share,
            }
        )
    return entries


def _quarantine_shares_apart(
    engine: Engine, period: Period, timezone: str, max_share: float
) -> list[dict[str, Any]]:
    """`quarantine_shares` on a connection of its own (a SQLAlchemy connection serves one
    thread), which sees what was committed, as the rows' own connection does."""
    with engine.connect() as conn:
        return quarantine_shares(conn, period, timezone, max_share)


def _timestamps(values: pd.Series) -> pd.Series:
    """A column of timestamps as datetime64. SQLite's are ISO 8601 text, which Arrow's
    parser reads ~10x faster than pandas' (0.02 s for a week of 830,000 touches); text it
    refuses is left to pandas, which reads (or refuses) it as it always did."""
    if not isinstance(values.dtype, pd.StringDtype):  # PostgreSQL's, and all-NULL columns
        return pd.to_datetime(values)
    import pyarrow as pa

    try:
        parsed = pa.array(values).cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_datetime(values, format="ISO8601")
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index, name=values.name)


def _flag(values: pd.Series) -> pd.Series:
    """A comparison as plain booleans; a comparison with a missing value is False."""
    return values.fillna(False).astype(bool)


# --- reading ----------------------------------------------------------------------------


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The stored rows as the feed suites expect them: timestamps as datetime64 (SQLite
    returns text), booleans as bool (SQLite returns 0/1; nullable only when a value is
    missing), numbers as numbers (a column of nulls comes back as objects)."""
    for column in frame.columns:
        values = frame[column]
        if column in TIMESTAMPS:
            frame[column] = _timestamps(values).astype("datetime64[us]")
        elif column in BOOLEANS:
            frame[column] = (
                values.astype(bool) if values.notna().all() else values.astype("boolean")
            )
        elif column in NUMBERS:
            frame[column] = pd.to_numeric(values).astype("float64")
        elif column in WHOLE_NUMBERS:
            frame[column] = pd.to_numeric(values).astype("Int64")
    return frame
