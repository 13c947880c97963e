"""Check: is the period's data trustworthy, and how did the campaign do against its plan?

Reads like the stage: validate the period's data with the Great Expectations suites first
(critical failures make the whole result untrusted, and the act stage will only `hold`);
count the funnel in SQL; compare the KPIs with the plan's targets; look for weeks that
break from their own trailing baseline; judge the A/B test against the hold-out; name the
bottleneck stage; rank the reject reasons. The result replaces the (campaign, period)'s
previous one in one transaction, with the whole-week rollups the next checks' baselines
read, and is summarised in Prefect artifacts.

The measurements do not depend on one another, so they run at the same time, each task on
its own connection (`ThreadPoolTaskRunner`; the database does the work and the driver lets
go of the GIL meanwhile): the funnel, asset quality, the experiment and the reject reasons
in the pool, Great Expectations on the flow's own thread. SQLite in WAL mode and PostgreSQL
both serve concurrent readers; the only writes (the trailing weeks' rollups a first check
may store, and the result) happen on the flow's main connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import Connection, Engine, delete, insert

from pdca.db import make_engine, set_page_cache
from pdca.errors import UserError
from pdca.models import AuditEntry, CheckResult
from pdca.settings import Settings, get_settings
from tasks.check.check import (
    ANOMALY_METRICS,
    ANOMALY_SCOPES,
    KEYS,
    KPI_METRICS,
    clean,
    current_targets,
    kpi_actuals,
    records,
    store_rollups,
    trailing_weeks,
    weekly_series,
    whole_weeks,
)
from tasks.check.data_quality import DataQuality, assess
from tasks.check.experiments import experiment_members, experiment_started_at, judge
from tasks.check.findings import (
    anomalies,
    bottleneck,
    stage_rates,
    stage_references_from_targets,
    variance,
)
from tasks.common import metrics
from tasks.common.campaigns import CampaignSpec, get_campaign_spec
from tasks.common.periods import Period
from tasks.common.rules import approved_actions, rules_in_force
from tasks.ops.events import emit_check_events

MEASURING_TASKS = max(1, min(4, os.cpu_count() or 1))
"""The measurements that run at once: as many as there are cores, up to the four (funnel,
asset quality, experiment, reject reasons). They are submitted longest first, so with fewer
workers than measurements the funnel starts at once and the shorter ones share the other
workers: on 2 cores, four at once time-slice and the funnel, the longest, finishes last
(bench/bench_check.py, the measurements at once: 4.9 s at four workers, 3.9–4.3 s at
two)."""

PAGE_CACHE_MIB = 64
"""SQLite's page cache of each of the check's connections: five fill their own (at 256 MiB
each the check's peak RSS passed 2.3 GiB on the 10 M-touch benchmark, 1.3 GiB at 64 MiB;
1.7 GiB at 128 MiB)."""

FUNNEL_PAGE_CACHE_MIB = 128
"""The funnel's connection's page cache: it reads the period's touch rows and probes the
customers' segment index for each, and at 64 MiB the two evict each other (10 M-touch
benchmark: 3.9 s at 64 MiB, 3.3 s at 128 MiB; the other connections gain nothing)."""

OVERDUE_GRAIN = ["channel", "segment"]
"""overdue_rate_30's grain for the KPI scopes (campaign, channel, segment): no variant,
which spares a first-touch probe per loan of the campaign's history."""


@dataclass
class Measurements:
    """What the check counted: the period's funnel and its weeks, at the funnel's grain,
    and the complaints at that grain."""

    funnel: pd.DataFrame
    weeks: pd.DataFrame
    trailing: pd.DataFrame
    complaints: pd.DataFrame


@task(cache_policy=NO_CACHE)
def validate_period_data(conn: Connection, spec: CampaignSpec, period: Period) -> DataQuality:
    """Great Expectations on the period's feeds and derived tables, and quarantine shares."""
    settings = get_settings()
    return assess(
        conn,
        spec,
        period,
        attribution_days=settings.attribution_window_days,
        quarantine_max_share=settings.quarantine_max_share,
        docs_dir=settings.output_dir / "data-docs",
    )


@task(cache_policy=NO_CACHE)
def count_funnel(conn: Connection, spec: CampaignSpec, period: Period) -> Measurements:
    """The funnel in SQL: the period, its whole weeks, the trailing weeks' rollups (a
    missing one is counted and stored on `conn`), the complaints."""
    settings = get_settings()
    options = _funnel_options(settings)
    funnel = metrics.funnel(conn, spec.id, period, **options)
    weeks = whole_weeks(conn, spec.id, period, funnel, **options)
    trailing = trailing_weeks(conn, spec.id, period, settings.anomaly_window_weeks, **options)
    complaints = metrics.complaint_rate(conn, spec.id, period, KEYS, funnel_frame=funnel)
    return Measurements(funnel, weeks, trailing, complaints)


@task(cache_policy=NO_CACHE)
def measure_asset_quality(conn: Connection, spec: CampaignSpec, period: Period) -> pd.DataFrame:
    """overdue_rate_30 of the campaign's loans to the period's end, by channel and segment."""
    days = get_settings().attribution_window_days
    return metrics.overdue_rate_30(conn, spec.id, period, OVERDUE_GRAIN, attribution_days=days)


@task(cache_policy=NO_CACHE)
def compare_with_targets(
    conn: Connection,
    spec: CampaignSpec,
    period: Period,
    measured: Measurements,
    overdue: pd.DataFrame,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Variance of each KPI against the plan's target; without a plan, the actuals alone."""
    actuals = kpi_actuals(measured.funnel, overdue, measured.complaints)
    targets = current_targets(conn, spec.id, period)
    if targets:
        scoped = actuals.rename(columns={"channel": "scope_channel", "segment": "scope_segment"})
        return variance(targets, scoped), targets
    total = actuals.iloc[0]
    return [
        {
            "metric": metric,
            "scope": {"channel": None, "segment": None},
            "target": None,
            "actual": clean(total[metric]),
            "variance": None,
            "variance_pct": None,
            "status": "no_target",
        }
        for metric in KPI_METRICS
    ], []


@task(cache_policy=NO_CACHE)  # frames in, nothing worth persisting out
def find_anomalies(measured: Measurements, period: Period) -> list[dict[str, Any]]:
    """Weeks of the period whose metric is far from its own trailing mean."""
    settings = get_settings()
    history = pd.concat([measured.trailing, measured.weeks], ignore_index=True)
    found = []
    for scope in ANOMALY_SCOPES:
        found += anomalies(
            weekly_series(history, scope),
            weeks=[week.name for week in period.weeks()],
            metrics=ANOMALY_METRICS,
            z=settings.anomaly_z,
            min_volume=settings.anomaly_min_volume,
            window=settings.anomaly_window_weeks,
            min_weeks=settings.anomaly_min_weeks,
            scope=list(scope),
        )
    # a break from a perfectly flat baseline has no z: it sorts first, as the strongest
    return sorted(found, key=lambda item: -abs(item["z"]) if item["z"] is not None else -1e300)


@task(cache_policy=NO_CACHE)
def judge_experiment(conn: Connection, spec: CampaignSpec, period: Period) -> list[dict[str, Any]]:
    """Everyone assigned up to the period's end, intention to treat: sequential decisions,
    fixed-horizon z-tests and intervals for reference, CUPED, SRM, the period's cohort."""
    settings = get_settings()
    starts_at, ends_at = period.utc_bounds(spec.timezone)
    arms = experiment_members(
        conn,
        spec.id,
        starts_at,
        ends_at,
        attribution_days=settings.attribution_window_days,
        covariate_days=settings.experiment_cuped_days,
        experiment_starts_at=experiment_started_at(conn, spec.id, starts_at),
    )
    # the split members were drawn by: a variant promoted before the period took the
    # loser's share (judged against the written split, SRM would void every comparison)
    in_force = rules_in_force(spec, approved_actions(conn, spec.id, decided_before=starts_at))
    split = dict(in_force.spec.experiment.variants)
    if spec.experiment.holdout:
        split["holdout"] = spec.experiment.holdout
    return judge(
        arms,
        split,
        metric=spec.experiment.metric,
        alpha=settings.experiment_alpha,
        power=settings.experiment_power,
        mde=settings.experiment_mde,
        srm_alpha=settings.srm_alpha,
        min_members=settings.experiment_min_members,
        cuped=settings.experiment_cuped,
        cuped_min_reduction=settings.experiment_cuped_min_reduction,
    )


@task(cache_policy=NO_CACHE)
def find_bottleneck(measured: Measurements, targets: list[dict[str, Any]]) -> dict | None:
    """The funnel stage furthest below its target (or, without a plan, its baseline)."""
    actual = stage_rates(metrics.rollup(measured.funnel, []).iloc[0])
    references = stage_references_from_targets(targets) if targets else {}
    if references:
        return bottleneck(actual, references, "target")
    if measured.trailing.empty:
        return None
    baseline = stage_rates(metrics.rollup(measured.trailing, []).iloc[0])
    return bottleneck(actual, baseline, "baseline")


@task(cache_policy=NO_CACHE)
def rank_reject_reasons(conn: Connection, spec: CampaignSpec, period: Period) -> list[dict]:
    """The top reject reasons of the period's applications, overall and by channel."""
    days = get_settings().attribution_window_days
    counts = metrics.rejection_counts(conn, spec.id, period, attribution_days=days)
    overall = metrics.rank_reject_reasons(counts, [], top=5)
    by_channel = metrics.rank_reject_reasons(counts, ["channel"], top=5)
    rows = [dict(row, channel=None) for row in records(overall)]
    rows += records(by_channel)
    return [
        {
            "channel": row["channel"],
            "reason": row["reject_reason"],
            "count": row["rejections"],
            "share": row["share"],
        }
        for row in rows
    ]


@task(cache_policy=NO_CACHE)
def save_check(conn: Connection, result: dict[str, Any], measured: Measurements) -> None:
    """Replace the (campaign, period)'s result and its weeks' rollups in one transaction."""
    campaign_id, period = result["campaign"], result["period"]
    weeks = [week.name for week in Period.parse(period).weeks()]
    conn.execute(
        delete(CheckResult).where(
            CheckResult.campaign_id == campaign_id, CheckResult.period == period
        )
    )
    conn.execute(
        insert(CheckResult).values(
            campaign_id=campaign_id,
            period=period,
            checked_at=datetime.now().replace(microsecond=0),
            trusted=result["trusted"],
            result=result,
        )
    )
    store_rollups(conn, campaign_id, weeks, measured.weeks)
    conn.execute(
        insert(AuditEntry).values(
            actor="check",
            action="check.run",
            subject=f"{campaign_id}:{period}",
            detail={"trusted": result["trusted"], "anomalies": len(result["anomalies"])},
        )
    )
    conn.commit()


@flow(
    name="check",
    flow_run_name="check {campaign_id} {period}",
    task_runner=ThreadPoolTaskRunner(max_workers=MEASURING_TASKS),
)
def check_flow(campaign_id: str, period: str) -> dict[str, Any]:
    """Check `period` of the campaign: data quality, funnel, variance, anomalies, A/B test."""
    parsed = Period.parse(period)
    engine = check_engine(get_settings().database_url)
    with (
        engine.connect() as conn,
        engine.connect() as quality_conn,
        engine.connect() as overdue_conn,
        engine.connect() as experiment_conn,
        engine.connect() as reasons_conn,
    ):
        spec = get_campaign_spec(conn, campaign_id)
        require_overlap(spec, parsed)
        set_page_cache(conn, FUNNEL_PAGE_CACHE_MIB)
        runs = [  # longest first (MEASURING_TASKS)
            count_funnel.submit(conn, spec, parsed),
            judge_experiment.submit(experiment_conn, spec, parsed),
            measure_asset_quality.submit(overdue_conn, spec, parsed),
            rank_reject_reasons.submit(reasons_conn, spec, parsed),
        ]
        try:
            quality = validate_period_data(quality_conn, spec, parsed)
        finally:
            wait(runs)  # no connection closes under a running task
        measured, experiments, overdue, reasons = (run.result() for run in runs)
        kpis, targets = compare_with_targets(conn, spec, parsed, measured, overdue)
        result = {
            "campaign": campaign_id,
            "period": period,
            "trusted": quality.trusted,
            "data_quality": quality.to_json(),
            "funnel": funnel_rows(measured.funnel),
            "kpis": kpis,
            "anomalies": find_anomalies(measured, parsed),
            "experiments": experiments,
            "bottleneck": find_bottleneck(measured, targets),
            "reject_reasons": reasons,
        }
        result = clean(result)
        save_check(conn, result, measured)
    engine.dispose()
    publish_check(result, quality)
    emit_check_events(result)
    return result


def check_engine(url: str) -> Engine:
    """The engine of the check's connections, which read at once: a page cache each of
    PAGE_CACHE_MIB, sorts in temporary files (see `make_engine`)."""
    return make_engine(url, page_cache_mib=PAGE_CACHE_MIB, temp_store="file")


def require_overlap(spec: CampaignSpec, period: Period) -> None:
    """A period with no day of the campaign has nothing to check: an empty result would
    pass every expectation and read as a trusted, quiet period."""
    if period.end <= spec.start or period.start > spec.end:
        raise UserError(
            f"campaign {spec.id!r} runs {spec.start} to {spec.end}: period {period} "
            f"({period.start} to {period.end - timedelta(days=1)}) has none of its days"
        )


def funnel_rows(funnel: pd.DataFrame) -> list[dict[str, Any]]:
    """The period's funnel by channel × segment × variant, counts and rates."""
    return records(metrics.rollup(funnel, KEYS))


def _funnel_options(settings: Settings) -> dict[str, Any]:
    return {
        "attribution_days": settings.attribution_window_days,
        "ftp_rate": settings.ftp_rate,
        "lgd": settings.lgd,
    }


def publish_check(result: dict[str, Any], quality: DataQuality) -> None:
    """A markdown summary, the KPI table and, when written, a link to the Data Docs."""
    key = f"check-{result['campaign']}".lower()
    create_markdown_artifact(
        key=key, markdown=summary_markdown(result), description=f"Check {result['period']}"
    )
    create_table_artifact(
        key=f"{key}-kpis",
        table=[
            {
                "metric": kpi["metric"],
                "channel": kpi["scope"].get("channel") or "(all)",
                "segment": kpi["scope"].get("segment") or "(all)",
                "target": kpi["target"],
                "actual": kpi["actual"],
                "variance_pct": kpi["variance_pct"],
                "status": kpi["status"],
            }
            for kpi in result["kpis"]
        ],
        description=f"KPIs against targets, {result['campaign']} {result['period']}",
    )
    if quality.docs_path:
        create_link_artifact(
            key=f"{key}-data-docs",
            link=quality.docs_path.resolve().as_uri(),
            link_text="Great Expectations Data Docs",
            description=f"Validation results, {result['campaign']} {result['period']}",
        )


def summary_markdown(result: dict[str, Any]) -> str:
    """What a manager reads first: trust, the KPIs off track, anomalies, test, bottleneck."""
    lines = [f"# Check {result['campaign']} {result['period']}", ""]
    if result["trusted"]:
        lines.append("**Data quality: passed.**")
    else:
        quality = result["data_quality"]
        failed = [
            f"{suite['name']}: {', '.join(suite['failed'])}"
            for suite in quality["suites"]
            if not suite["success"]
        ]
        failed += [
            f"quarantine {entry['feed']}: {entry['rows_quarantined']} of {entry['rows_in']} "
            f"rows ({_num(entry['share'])} > {entry['max_share']})"
            for entry in quality["quarantine"]
            if not entry["success"]
        ]
        lines.append("**Data quality: FAILED — the result is untrusted.**")
        lines += [f"- {item}" for item in failed]
    lines += ["", "## KPIs off track", ""]
    off = [kpi for kpi in result["kpis"] if kpi["status"] in ("off_track", "at_risk")]
    lines += [
        f"- {kpi['metric']} {_scope_text(kpi['scope'])}: {_num(kpi['actual'])} vs target "
        f"{_num(kpi['target'])} ({kpi['status']})"
        for kpi in off
    ] or ["- none"]
    lines += ["", "## Anomalies", ""]
    lines += [
        f"- {item['week']} {item['metric']} {_scope_text(item['scope'])}: "
        f"{_num(item['value'])} vs mean {_num(item['baseline_mean'])} (z = {_num(item['z'])})"
        for item in result["anomalies"]
    ] or ["- none"]
    lines += ["", "## Experiment", ""]
    lines += [
        f"- {test['treatment']} vs {test['control']}: lift {_num(test['lift'])} "
        f"[{_num(test['ci_low'])}, {_num(test['ci_high'])}], p = {_num(test['p_value'])} "
        f"(Holm {_num(test['p_value_adjusted'])}) → **{test['decision']}**"
        for test in result["experiments"]
    ] or ["- no comparison"]
    bottleneck_ = result["bottleneck"]
    lines += ["", "## Bottleneck", ""]
    if bottleneck_ and bottleneck_.get("stage"):
        lines.append(
            f"**{bottleneck_['stage']}**: {bottleneck_['metric']} {_num(bottleneck_['actual'])} "
            f"vs {bottleneck_['reference_kind']} {_num(bottleneck_['reference'])}. "
            f"{bottleneck_['diagnosis']}"
        )
    else:
        lines.append("none found")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    """A number for people: four significant digits, or n/a when it cannot be known."""
    return "n/a" if value is None else f"{value:.4g}"


def _scope_text(scope: dict[str, Any]) -> str:
    parts = [f"{key}={value}" for key, value in scope.items() if value is not None]
    return f"({', '.join(parts)})" if parts else "(campaign)"


if __name__ == "__main__":
    import sys

    print(check_flow(sys.argv[1], sys.argv[2]))
