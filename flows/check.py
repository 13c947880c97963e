"""Check: is the period's data trustworthy, and how did the campaign do against its plan?

Reads like the stage: validate the period's data with the Great Expectations suites first
(critical failures make the whole result untrusted, and the act stage will only `hold`);
count the funnel in SQL; compare the KPIs with the plan's targets; look for weeks that
break from their own trailing baseline; judge the A/B test against the hold-out; name the
bottleneck stage; rank the reject reasons. The typed result (`tasks.check.result`)
replaces the (campaign, period)'s previous one in one transaction, with the whole-week
rollups the next checks' baselines read, and is summarised in Prefect artifacts
(`tasks.check.artifacts`) and events (`tasks.ops.events`).

The measurements run at once, each task on its own connection: docs/check.md says how
and why (workers, page caches, what was measured).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import Connection, Engine

from pdca.db import make_engine, set_page_cache
from pdca.errors import UserError
from pdca.settings import Settings, get_settings
from tasks.check.artifacts import publish_check
from tasks.check.beyond_funnel import BEYOND_FUNNEL, beyond_funnel
from tasks.check.check import (
    KEYS,
    campaign_kpis,
    current_targets,
    funnel_rows,
    inside_weeks,
    join_kpi_counts,
    kpi_actuals,
    kpi_baseline,
    period_anomalies,
    period_book,
    store_check,
    top_reject_reasons,
    trailing_weeks,
    untargeted_kpis,
    whole_weeks,
    with_week_kpis,
)
from tasks.check.data_quality import DataQuality, assess
from tasks.check.experiments import experiment_members, experiment_started_at, judge
from tasks.check.findings import (
    bottleneck,
    stage_rates,
    stage_references_from_targets,
    variance,
)
from tasks.check.result import CheckResult, assemble
from tasks.common import metrics, value_metrics
from tasks.common.campaigns import CampaignSpec, get_campaign_spec
from tasks.common.periods import Period
from tasks.common.rules import approved_actions, rules_in_force
from tasks.ops.events import emit_check_events

MEASURING_TASKS = max(1, min(4, os.cpu_count() or 1))
"""The measurements that run at once: as many as there are cores, up to four (funnel,
experiment, asset quality, reject reasons, then the customer and value counts), submitted
longest first (docs/check.md)."""

PAGE_CACHE_MIB = 64
"""SQLite's page cache of each of the check's connections (docs/check.md)."""

FUNNEL_PAGE_CACHE_MIB = 128
"""The funnel's connection's page cache: it reads the touch rows and probes the customers'
segment index for each, and both must fit (docs/check.md)."""

BEYOND_METRICS = frozenset(metric for metric, _ in BEYOND_FUNNEL)

WEEK_GRAIN = ["week", *KEYS]
"""The grain of the loan book's and the customer and value counts: the weekly rollups'
(the KPI scopes, campaign, channel and segment, sum them)."""


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
    return assess(conn, spec, period, **quality_options(get_settings()))


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
def measure_asset_quality(
    conn: Connection, spec: CampaignSpec, period: Period
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The campaign's loan book (overdue_rate_30, loan_balance, npl_rate's counts) as of each
    week's end, by week × channel × segment × variant: the last week's is the period's,
    and each whole week's goes into its rollup for the anomalies. Beside it churn_rate's
    counts, which judge the same loans by the same snapshots (`loan_book_counts`)."""
    days = get_settings().attribution_window_days
    return value_metrics.loan_book_counts(conn, spec.id, period, WEEK_GRAIN, attribution_days=days)


@task(cache_policy=NO_CACHE)
def measure_customer_value(conn: Connection, spec: CampaignSpec, period: Period) -> pd.DataFrame:
    """new_customers, ltv and nps's counts, by week × channel × segment × variant (the KPI
    scopes sum them; the whole weeks' go into their rollups); churn comes with the loan
    book (`measure_asset_quality`)."""
    return value_metrics.family_counts(
        conn, spec.id, period, WEEK_GRAIN, **_funnel_options(get_settings()), churn=False
    )


@task(cache_policy=NO_CACHE)
def compare_with_targets(
    conn: Connection,
    spec: CampaignSpec,
    period: Period,
    measured: Measurements,
    overdue: pd.DataFrame,
    families: pd.DataFrame,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Variance of each KPI against the plan's target; without a plan, the actuals alone."""
    actuals = kpi_actuals(measured.funnel, overdue, measured.complaints, families)
    targets = current_targets(conn, spec.id, period)
    if not targets:
        return untargeted_kpis(actuals), []
    scoped = actuals.rename(columns={"channel": "scope_channel", "segment": "scope_segment"})
    targeted = {str(target["metric"]) for target in targets}
    return variance(targets, scoped) + untargeted_kpis(actuals, targeted), targets


@task(cache_policy=NO_CACHE)  # frames in, nothing worth persisting out
def find_anomalies(measured: Measurements, period: Period) -> list[dict[str, Any]]:
    """Weeks of the period whose metric is far from its own trailing mean."""
    settings = get_settings()
    history = pd.concat([measured.trailing, measured.weeks], ignore_index=True)
    return period_anomalies(
        history,
        period,
        z=settings.anomaly_z,
        min_volume=settings.anomaly_min_volume,
        window=settings.anomaly_window_weeks,
        min_weeks=settings.anomaly_min_weeks,
    )


@task(cache_policy=NO_CACHE)
def judge_experiment(conn: Connection, spec: CampaignSpec, period: Period) -> list[dict[str, Any]]:
    """Everyone assigned up to the period's end, intention to treat: sequential decisions,
    fixed-horizon z-tests and intervals for reference, CUPED, SRM, the period's cohort.
    The experiment's stored members are brought up to date on the way (committed)."""
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
    conn.commit()  # the stored members, brought up to date for the next checks
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
def find_bottleneck(
    measured: Measurements, targets: list[dict[str, Any]], kpis: list[dict[str, Any]]
) -> dict | None:
    """The funnel stage furthest below its target (or, without a plan, its baseline), and
    beside it the asset-quality or customer-value KPI furthest on its bad side."""
    neck = funnel_bottleneck(measured, targets)
    beyond = beyond_funnel_diagnosis(measured, kpis)
    if beyond is None:
        return neck
    if neck is None:  # no stage could be compared: the stage part says so
        neck = {"stage": None, "note": "no funnel stage could be compared", "evidence": []}
    return {**neck, "beyond_funnel": beyond}


def funnel_bottleneck(measured: Measurements, targets: list[dict[str, Any]]) -> dict | None:
    """The contract's bottleneck: the funnel stage furthest below target or baseline."""
    actual = stage_rates(metrics.rollup(measured.funnel, []).iloc[0])
    references = stage_references_from_targets(targets) if targets else {}
    if references:
        return bottleneck(actual, references, "target")
    if measured.trailing.empty:
        return None
    baseline = stage_rates(metrics.rollup(measured.trailing, []).iloc[0])
    return bottleneck(actual, baseline, "baseline")


def beyond_funnel_diagnosis(measured: Measurements, kpis: list[dict[str, Any]]) -> dict | None:
    """The new KPIs' diagnosis against the plan's campaign targets where it sets any on
    them, else against the trailing weeks' pooled values."""
    actual, targets = campaign_kpis(kpis)
    targeted = {m: t for m, t in targets.items() if t is not None and m in BEYOND_METRICS}
    if targeted:
        return beyond_funnel(actual, targeted, "target")
    return beyond_funnel(actual, kpi_baseline(measured.trailing), "baseline")


@task(cache_policy=NO_CACHE)
def find_top_reject_reasons(conn: Connection, spec: CampaignSpec, period: Period) -> list[dict]:
    """The top reject reasons of the period's applications, overall and by channel."""
    days = get_settings().attribution_window_days
    return top_reject_reasons(
        metrics.rejection_counts(conn, spec.id, period, attribution_days=days)
    )


@task(cache_policy=NO_CACHE)
def save_check(conn: Connection, check: CheckResult, measured: Measurements) -> None:
    """Replace the (campaign, period)'s result and its weeks' rollups in one transaction."""
    store_check(conn, check, measured.weeks)


@flow(
    name="check",
    flow_run_name="check {campaign_id} {period}",
    task_runner=ThreadPoolTaskRunner(max_workers=MEASURING_TASKS),
)
def check_flow(campaign_id: str, period: str) -> dict[str, Any]:
    """Check `period` of the campaign: data quality, funnel, variance, anomalies, A/B test.

    Returns the result's JSON (`CheckResult.to_json`), as stored and as act reads it."""
    parsed = Period.parse(period)
    engine = check_engine(get_settings().database_url)
    with (
        engine.connect() as conn,
        engine.connect() as quality_conn,
        engine.connect() as overdue_conn,
        engine.connect() as experiment_conn,
        engine.connect() as reasons_conn,
        engine.connect() as value_conn,
    ):
        spec = get_campaign_spec(conn, campaign_id)
        require_overlap(spec, parsed)
        set_page_cache(conn, FUNNEL_PAGE_CACHE_MIB)
        runs = [  # longest first (MEASURING_TASKS)
            count_funnel.submit(conn, spec, parsed),
            judge_experiment.submit(experiment_conn, spec, parsed),
            measure_asset_quality.submit(overdue_conn, spec, parsed),
            find_top_reject_reasons.submit(reasons_conn, spec, parsed),
            measure_customer_value.submit(value_conn, spec, parsed),
        ]
        try:
            quality = validate_period_data(quality_conn, spec, parsed)
        finally:
            wait(runs)  # no connection closes under a running task
        measured, experiments, (book, churn), reasons, values = (run.result() for run in runs)
        families = value_metrics.join_churn(values, churn, WEEK_GRAIN)
        measured.weeks = with_week_kpis(
            measured.weeks, join_kpi_counts(book, families), inside_weeks(parsed)
        )
        overdue = period_book(book, parsed)
        kpis, targets = compare_with_targets(conn, spec, parsed, measured, overdue, families)
        check = assemble(
            campaign_id,
            period,
            quality.to_json(),
            funnel=funnel_rows(measured.funnel),
            kpis=kpis,
            anomalies=find_anomalies(measured, parsed),
            experiments=experiments,
            bottleneck=find_bottleneck(measured, targets, kpis),
            reject_reasons=reasons,
        )
        save_check(conn, check, measured)
    engine.dispose()
    publish_check(check, quality, get_settings())
    emit_check_events(check)
    return check.to_json()


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


def quality_options(settings: Settings) -> dict[str, Any]:
    """`assess`'s settings, as the check runs it (and `bench/bench_check.py` beside it)."""
    return {
        "attribution_days": settings.attribution_window_days,
        "quarantine_max_share": settings.quarantine_max_share,
        "docs_dir": settings.output_dir / "data-docs",
        "chunk_rows": settings.dq_chunk_rows,
    }


def _funnel_options(settings: Settings) -> dict[str, Any]:
    return {
        "attribution_days": settings.attribution_window_days,
        "ftp_rate": settings.ftp_rate,
        "lgd": settings.lgd,
    }


if __name__ == "__main__":
    import sys

    print(check_flow(sys.argv[1], sys.argv[2]))
