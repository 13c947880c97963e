"""Demo: a fresh database with a synthetic campaign history, then one whole PDCA cycle.

The synthetic feeds are written as CSV files and go through the same importers, suites
and quarantine as any user's feeds (including a few deliberately bad rows), so the demo
shows the product's real path end to end. Then the cycle (`flows.cycle`): the history's
last week is checked (data quality, funnel, anomalies, experiment, bottleneck) and acted
on (proposals, approved here without asking — `auto_approve` —, a new SOP version, the
adjustment report); the week after it is planned with those adjustments; the weekly
review is written for the managers; and the new week's Monday noon window is dispatched
through the simulated gateways, which draw deliveries and responses, under the rules the
approved actions put in force.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.cycle import cycle_flow
from flows.dispatch import dispatch_flow
from flows.plan import plan_flow
from pdca.db import make_engine, reset_database
from pdca.edge import refuse_foreign_database
from pdca.settings import get_settings
from pdca.synthetic.demo_history import DemoFiles, write_demo_feeds
from tasks.check.result import CheckResult, summarise
from tasks.common.campaigns import CampaignSpec, apply_spec, load_spec
from tasks.common.feeds import LOAD_ORDER
from tasks.common.periods import Period
from tasks.common.rules import approved_actions, rules_in_force
from tasks.data.importing import ImportResult, import_feed
from tasks.plan.result import PlanResult


@task
def reset_demo_database(database_url: str, force: bool = False) -> None:
    """Start from an empty schema at the current migration; refuse to replace a database
    that holds anything but an earlier demo unless forced."""
    refuse_foreign_database(database_url, force)
    reset_database(database_url)


@task
def generate_feeds(out_dir: Path, customers: int, weeks: int, seed: int) -> DemoFiles:
    """Write the synthetic history as feed files (deterministic by seed)."""
    return write_demo_feeds(out_dir, customers=customers, weeks=weeks, seed=seed)


@task
def apply_campaign(database_url: str, spec_path: Path) -> str:
    """Create the demo campaign from its spec."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        return apply_spec(conn, load_spec(spec_path), actor="demo")


@task
def import_feed_file(database_url: str, feed: str, path: Path, chunk_rows: int) -> ImportResult:
    """Load one feed file; bad rows go to quarantine."""
    engine = make_engine(database_url)
    with engine.connect() as conn:
        result = import_feed(conn, feed, path, chunk_rows=chunk_rows, actor="demo")
    get_run_logger().info(result.summary())
    return result


@flow(name="demo", flow_run_name="demo {customers} customers × {weeks} weeks, seed {seed}")
def demo_flow(customers: int = 50_000, weeks: int = 8, seed: int = 7, force: bool = False) -> str:
    """Build the demo database and return a summary that says where it is. The database
    must be new, empty or an earlier demo, unless `force`."""
    settings = get_settings()
    reset_demo_database(settings.database_url, force)
    files = generate_feeds(settings.output_dir / "demo" / "feeds", customers, weeks, seed)
    apply_campaign(settings.database_url, files.spec)
    results = [
        import_feed_file(settings.database_url, feed, files.feed(feed), settings.import_chunk_rows)
        for feed in LOAD_ORDER
    ]
    create_table_artifact(
        key="demo-import",
        table=[
            {"feed": r.feed, "rows": r.rows, "loaded": r.loaded, "quarantined": r.quarantined}
            for r in results
        ],
        description="Demo feeds loaded; the quarantined rows are the deliberately bad ones.",
    )
    cycle = run_first_cycle_day(files.spec, weeks)
    return demo_summary(settings.database_url, results, cycle)


def run_first_cycle_day(spec_path: Path, weeks: int) -> list[str]:
    """The cycle on the history's last week, then the next week's Monday noon dispatch.

    The history's last week gets the plan it would have had (made from the weeks before
    it), so that its check has targets to judge against, as a running campaign's has.
    """
    spec = load_spec(spec_path)
    monday = spec.start + timedelta(weeks=weeks)
    week = Period.week_of(monday)
    checked_plan = plan_flow(campaign_id=spec.id, period=str(week.shifted(-1)))
    ran = cycle_flow(
        campaign_id=spec.id, period=str(week.shifted(-1)), auto_approve=True, return_state=True
    )
    if ran.is_failed():
        raise RuntimeError(f"the demo's cycle failed: {ran.message}")
    cycle = ran.result()
    window = next(iter(spec.contact_policy.windows))
    batches = dispatch_flow(
        campaign_id=spec.id,
        day=monday,
        window=window,
        at=opening(spec, monday, window) + timedelta(minutes=5),
        simulate_outcomes=True,
    )
    plan, acted = PlanResult.from_json(cycle["plan"]), cycle["act"]
    lines = [
        f"plan {spec.id} {week.shifted(-1)} (the week checked, planned from the weeks "
        f"before it): version {checked_plan['version']}",
        check_line(CheckResult.from_json(cycle["check"])),
        act_line(acted),
        f"plan {spec.id} {week}: version {plan.version}, budget {plan.total_budget:,.2f} over "
        f"{', '.join(line.channel for line in plan.budget)}",
    ]
    for batch in batches:
        sent = sum(sum(v.values()) for v in batch["sends"].values())
        lines.append(
            f"dispatch {spec.id} {monday} {batch['window']}: audience "
            f"{batch['audience']}, sent {sent}, hold-out {batch['holdout']}, "
            f"excluded {sum(batch['excluded'].values())}"
        )
    lines.append(f"adjustment report: {acted['report']['path']}")
    lines.append(f"weekly review: {Path(cycle['review']['path']).resolve()}")
    return lines


def opening(spec: CampaignSpec, day: date, window: str) -> datetime:
    """When `window` opens on `day` (as it is in force: approved shifts included), UTC."""
    with make_engine(get_settings().database_url).connect() as conn:
        rules = rules_in_force(spec, approved_actions(conn, spec.id))
    opens = datetime.combine(
        day, rules.spec.contact_policy.windows[window].start, tzinfo=ZoneInfo(spec.timezone)
    )
    return opens.astimezone(UTC).replace(tzinfo=None)


def act_line(result: dict) -> str:
    """The act stage in one line: what was proposed and decided, the SOP version."""
    decided = ", ".join(f"{a['type']} {a['status']}" for a in result["actions"])
    return (
        f"act {result['campaign']} {result['period']}: {decided or 'no adjustment'}; "
        f"SOP version {result['sop']['version']}"
    )


def check_line(check: CheckResult) -> str:
    """The check in one line: trust, the funnel's size, what it found."""
    summary = summarise(check)
    return (
        f"check {check.campaign} {check.period}: {summary.trust_word}, "
        f"{summary.totals['touches']} touches, {summary.totals['applications']} applications, "
        f"{len(summary.anomalies)} anomalies, bottleneck {summary.bottleneck_stage}; "
        f"{', '.join(summary.decisions) or 'no experiment'}"
    )


def demo_summary(database_url: str, results: list[ImportResult], cycle: list[str]) -> str:
    from sqlalchemy.engine import make_url

    lines = [f"  {r.summary()}" for r in results]
    lines += [f"  {line}" for line in cycle]
    url = make_url(database_url)
    where = (
        str(Path(url.database).resolve())
        if url.get_backend_name() == "sqlite"
        else url.render_as_string(hide_password=True)
    )
    return "\n".join(["demo history loaded:", *lines, f"database: {where}"])


if __name__ == "__main__":
    print(demo_flow(customers=5_000, weeks=4))
