"""The `pdca` command line (see CONTRACT.md): thin commands over tasks and flows.

Exit codes: 0 success; 1 the work ran but found a problem the user must see; 2 bad usage
or bad input, with one line on stderr naming the file, line and field at fault.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from pdca.actions_cli import actions_app
from pdca.automations import app as automations_app
from pdca.db import make_engine, upgrade
from pdca.errors import UserError
from pdca.local_server import server_app
from pdca.settings import get_settings
from pdca.simulation.command import simulate
from tasks.common.feeds import FEED_NAMES

if TYPE_CHECKING:
    from tasks.check.result import CheckResult

# Offline machines: telemetry look-ups fail and cost seconds at every start; the embedded
# Prefect API migrates its database on first use, which can exceed the default 20 s.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without a `<bool>` metavar, defaults shown
    context_settings={"show_default": True},
    help="Plan-Do-Check-Act orchestration of credit-product marketing campaigns.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
campaign_app = typer.Typer(no_args_is_help=True, help="Campaign specs.")
sop_app = typer.Typer(no_args_is_help=True, help="The campaigns' standard operating procedures.")
app.add_typer(db_app, name="db")
app.add_typer(campaign_app, name="campaign")
app.add_typer(sop_app, name="sop")
app.add_typer(actions_app, name="actions")
app.add_typer(automations_app, name="automations")
app.add_typer(server_app, name="server")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"pdca {version('pdca')}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Plan-Do-Check-Act orchestration of credit-product marketing campaigns."""


def _ready_engine():
    """The configured database, migrated to the current schema (cheap when it already is)."""
    url = get_settings().database_url
    upgrade(url)
    return make_engine(url)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (Alembic)."""
    url = get_settings().database_url
    upgrade(url)
    typer.echo(f"schema is current: {_display_url(url)}")


@app.command("import")
def import_command(
    feed: Annotated[str, typer.Argument(help=f"One of: {', '.join(FEED_NAMES)}.")],
    file: Annotated[Path, typer.Argument(help="The CSV file.")],
) -> None:
    """Load a feed; bad rows go to quarantine with file, line, field and reason."""
    from tasks.common.bounds import Bounds
    from tasks.data.importing import import_feed
    from tasks.data.uci import import_uci_bank

    if feed not in FEED_NAMES:
        raise UserError(f"unknown feed {feed!r}; expected one of {', '.join(FEED_NAMES)}")
    settings = get_settings()
    engine = _ready_engine()
    with engine.connect() as conn:
        if feed == "uci-bank":
            result = import_uci_bank(conn, file, chunk_rows=settings.import_chunk_rows)
        else:
            result = import_feed(
                conn,
                feed,
                file,
                chunk_rows=settings.import_chunk_rows,
                default_timezone=settings.timezone,
                bounds=Bounds.of_days(
                    settings.timestamp_min, settings.timestamp_max, settings.import_max_field_chars
                ),
            )
    typer.echo(result.summary())
    for reason, count in sorted(result.reasons.items(), key=lambda item: -item[1])[:10]:
        typer.echo(f"  quarantined {count:>8}  {reason}", err=True)
    if result.rows and result.quarantined / result.rows > settings.quarantine_max_share:
        typer.echo(
            f"{file}: {result.quarantined / result.rows:.1%} of rows quarantined, above the "
            f"{settings.quarantine_max_share:.1%} data-quality limit; see the quarantine table",
            err=True,
        )
        raise typer.Exit(1)


@campaign_app.command("apply")
def campaign_apply(spec: Annotated[Path, typer.Argument(help="The campaign spec (YAML).")]) -> None:
    """Create or update a campaign from its spec; nothing is written when it is invalid."""
    from tasks.common.campaigns import apply_spec, load_spec

    parsed = load_spec(spec)
    engine = _ready_engine()
    with engine.begin() as conn:
        outcome = apply_spec(conn, parsed)
    typer.echo(f"campaign {parsed.id}: {outcome}")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=100, help="Synthetic customers.")] = 50_000,
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Weeks of history.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 7,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a database that holds more than a demo.")
    ] = False,
) -> None:
    """Fresh demo database with synthetic history, loaded through the feed importers.

    Refuses (exit 2) a database that holds anything but an earlier demo, unless --force.
    """
    from pdca.edge import refuse_foreign_database

    refuse_foreign_database(get_settings().database_url, force)  # before Prefect starts
    from flows.demo import demo_flow

    with _flow_runs():
        summary = demo_flow(customers=customers, weeks=weeks, seed=seed, force=force)
    typer.echo(summary)


@app.command()
def plan(
    campaign: Annotated[str, typer.Option("--campaign", help="Campaign id.")],
    period: Annotated[str, typer.Option(help="2026-W12, 2026-03 or 2026-Q1.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """KPI targets and channel budgets for the period (a new version of its plan)."""
    _stage_arguments(campaign, period)
    from flows.plan import plan_flow
    from tasks.plan.result import PlanResult

    with _flow_runs():
        document = plan_flow(campaign_id=campaign, period=period)
    if as_json:
        _print_json(document)
        return
    from tasks.common.terms import term

    locale = get_settings().locale
    _ = _translator()
    result = PlanResult.from_json(document)
    typer.echo(
        _("plan %(campaign)s %(period)s: version %(version)s")
        % {"campaign": campaign, "period": period, "version": result.version}
    )
    for line in result.budget:
        touches = _("%(touches)s touches") % {"touches": f"{line.touches:>9,}"}
        typer.echo(f"  {line.channel:<9} {line.amount:>14,.2f}  {touches}  {line.limited_by}")
    for target in result.campaign_targets:
        name = f"{term(target.metric, locale):<17}"
        typer.echo(
            "  "
            + _("target %(metric)s %(target)s")
            % {"metric": name, "target": f"{target.target:>16,.4f}"}
        )
    for note in result.inputs.notes:
        typer.echo("  " + _("note: %(note)s") % {"note": note})


@app.command()
def dispatch(
    campaign: Annotated[str, typer.Option("--campaign", help="Campaign id.")],
    day: Annotated[str, typer.Option("--date", help="Local send day, YYYY-MM-DD.")],
    window: Annotated[str | None, typer.Option(help="Only this send window.")] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Act as of this UTC time (ISO 8601) instead of now: replays, tests."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Select, route and send the outreach batches due (exactly once, in their windows)."""
    from pdca.edge import days_in_campaign

    spec = _stage_arguments(campaign)
    (send_day,) = days_in_campaign(spec, [_date_option("--date", day)])
    if window is not None and window not in spec.contact_policy.windows:
        known = ", ".join(spec.contact_policy.windows)
        raise UserError(f"--window {window!r}: campaign {campaign} has the windows {known}")
    from flows.dispatch import dispatch_flow

    with _flow_runs():
        summaries = dispatch_flow(
            campaign_id=campaign,
            day=send_day,
            window=window,
            at=_utc_option("--at", at) if at else None,
        )
    failures = sum(sum(s["failures"].values()) for s in summaries)
    deferred: dict[str, int] = {}  # left for the next run: a provider could not take them
    for summary in summaries:
        for channel, count in summary["deferred"].items():
            deferred[channel] = deferred.get(channel, 0) + count
    if as_json:
        totals = _dispatch_totals(summaries) | {"deferred": deferred}
        _print_json({"campaign": campaign, "date": day, "batches": summaries, "totals": totals})
    else:
        _ = _translator()
        for summary in summaries:
            sent = sum(sum(v.values()) for v in summary["sends"].values())
            later = sum(summary["deferred"].values())
            figures = {
                "audience": summary["audience"],
                "sent": sent,
                "holdout": summary["holdout"],
                "held": summary["held"],
                "failed": sum(summary["failures"].values()),
            }
            typer.echo(
                f"{campaign} {day} {summary['window']}: {summary['status']}; "
                + _(
                    "audience %(audience)s, sent %(sent)s, hold-out %(holdout)s, held %(held)s, "
                    "failed %(failed)s"
                )
                % figures
                + (_(", deferred %(count)s") % {"count": later} if later else "")
            )
            for channel, outcome in summary["channels"].items():
                if outcome["status"] != "sent":
                    typer.echo(f"  {channel}: {outcome['status']}: {outcome['reason']}")
    if failures or deferred:
        raise typer.Exit(1)


@app.command()
def check(
    campaign: Annotated[str, typer.Option("--campaign", help="Campaign id.")],
    period: Annotated[str, typer.Option(help="2026-W12, 2026-03 or 2026-Q1.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate the period's data, compute the funnel, variance, anomalies and experiments.

    Exit code 1 when data quality failed: the result is untrusted and act will only hold.
    """
    _stage_arguments(campaign, period)
    _ready_engine().dispose()
    from flows.check import check_flow
    from tasks.check.result import CheckResult

    with _flow_runs():
        checked = CheckResult.from_json(check_flow(campaign_id=campaign, period=period))
    if as_json:
        _print_json(checked.to_json())
    else:
        _print_check(checked)
    if checked.data_quality.no_data:
        typer.echo(
            f"{campaign} {period}: no data: not a single feed row in the period, so nothing "
            "was checked (the result is no_data, not trusted)",
            err=True,
        )
        raise typer.Exit(1)
    if not checked.trusted:
        if not as_json:
            typer.echo(
                f"{campaign} {period}: data quality failed; the result is untrusted", err=True
            )
        raise typer.Exit(1)


@app.command()
def act(
    campaign: Annotated[str, typer.Option("--campaign", help="Campaign id.")],
    period: Annotated[str, typer.Option(help="2026-W12, 2026-03 or 2026-Q1.")],
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Approve every proposal (scripted runs).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Adjustment proposals from the period's check, their approval, the SOP and report.

    Without --auto-approve the run pauses for a manager's decision on each proposal in
    the Prefect UI (needs a Prefect server); with none configured they stay proposed.
    """
    _stage_arguments(campaign, period)
    _ready_engine().dispose()
    from flows.act import act_flow
    from tasks.common.scopes import format_scope

    with _flow_runs():
        result = act_flow(campaign_id=campaign, period=period, auto_approve=auto_approve)
    if as_json:
        _print_json(result)
        return
    from tasks.common.terms import scope_words, term

    locale = get_settings().locale
    _ = _translator()
    typer.echo(
        _("act %(campaign)s %(period)s: %(count)s action(s)")
        % {"campaign": campaign, "period": period, "count": len(result["actions"])}
        + ("" if result["trusted"] else _("; data untrusted: hold"))
    )
    for action in result["actions"]:
        status, kind = term(action["status"], locale), term(action["type"], locale)
        scope = scope_words(format_scope(action["scope"]), locale)
        typer.echo(f"  {status:<9} {kind:<18} {scope}")
    sop = result["sop"]
    typer.echo("  " + _("SOP version %(version)s: %(path)s") % sop)
    for entry in sop["changes"]:
        typer.echo(f"    v{entry['version']} {entry['action']}")
    typer.echo("  " + _("report: %(path)s") % result["report"])


@sop_app.command("show")
def sop_show(
    campaign: Annotated[str, typer.Option("--campaign", help="Campaign id.")],
    version: Annotated[
        int | None, typer.Option(min=1, help="This version (default: the latest).")
    ] = None,
    diff: Annotated[
        bool, typer.Option("--diff", help="The change from the version before, as a diff.")
    ] = False,
    changelog: Annotated[bool, typer.Option("--changelog", help="Only the changelog.")] = False,
) -> None:
    """Show a version of the campaign's SOP, its diff from the previous one, or the log."""
    from tasks.act.sop import sop_diff, sop_version

    engine = _ready_engine()
    with engine.connect() as conn:
        record = sop_version(conn, campaign, version)
        before = sop_version(conn, campaign, record.version - 1) if record.version > 1 else None
    if changelog:
        for entry in record.changelog:
            typer.echo(f"v{entry['version']}  {entry['date']}  {entry['action']}")
            typer.echo(f"      {entry['reason']}")
    elif diff:
        if before is None:
            raise UserError(f"{campaign} SOP version 1 is the first: there is nothing to diff")
        typer.echo(sop_diff(before, record), nl=False)
    else:
        typer.echo(record.body, nl=False)


@app.command()
def review(
    period: Annotated[str, typer.Option(help="Usually an ISO week (2026-W12); any period.")],
    send: Annotated[bool, typer.Option("--send", help="E-mail it to the recipients.")] = False,
) -> None:
    """Weekly review report for managers across the active campaigns; --send e-mails it.

    With no SMTP host set (PDCA_SMTP_HOST), --send writes the e-mail to the outbox folder.
    Exit code 1 when a campaign could not be checked or the e-mail could not go out.
    """
    from tasks.common.periods import Period

    Period.parse(period)  # a bad period is bad usage: refuse before starting Prefect
    _ready_engine().dispose()
    from flows.weekly_review import review_outcome, weekly_review_flow

    who = os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    with _flow_runs():
        state = weekly_review_flow(period=period, send=send, actor=f"cli:{who}", return_state=True)
    result = review_outcome(state)
    _ = _translator()
    typer.echo(_("report: %(path)s") % {"path": result["path"]})
    delivery = result["delivery"]
    if delivery and delivery["transport"] == "outbox":
        typer.echo(_("e-mail written to the outbox: %(path)s") % {"path": delivery["path"]})
    elif delivery:
        typer.echo(
            _("e-mail sent to %(count)s recipient(s) via %(server)s")
            % {"count": len(delivery["recipients"]), "server": delivery["server"]}
        )
    for problem in result["problems"]:
        typer.echo(problem, err=True)
    if result["problems"]:
        raise typer.Exit(1)


def _translator():
    """`_` for the CLI's summaries: the setting `PDCA_LOCALE`'s language."""
    from tasks.common.i18n import translator

    return translator(get_settings().locale)


def _trust_label(check: CheckResult) -> str:
    _ = _translator()
    if check.data_quality.no_data:
        return _("NO DATA")
    return _("trusted") if check.trusted else _("UNTRUSTED")


def _print_check(check: CheckResult) -> None:
    """The check in a few lines: trust, totals, KPIs off track, anomalies, test, bottleneck;
    in the setting `PDCA_LOCALE`'s language."""
    from tasks.check.result import summarise
    from tasks.common.scopes import format_scope
    from tasks.common.terms import scope_words, term

    locale = get_settings().locale
    _ = _translator()
    summary = summarise(check)
    total = summary.totals
    typer.echo(
        _(
            "check %(campaign)s %(period)s: %(trust)s; touches %(touches)s, delivered "
            "%(delivered)s, applications %(applications)s, approved %(approved)s"
        )
        % {
            "campaign": check.campaign,
            "period": check.period,
            "trust": _trust_label(check),
            **{name: f"{total[name]:,}" for name in ("touches", "delivered")},
            **{name: f"{total[name]:,}" for name in ("applications", "approved")},
        }
    )
    for suite in summary.failed_suites:
        typer.echo(
            "  "
            + _("data quality %(suite)s: failed %(failed)s")
            % {"suite": suite.name, "failed": ", ".join(suite.failed)}
        )
    for entry in summary.failed_quarantine:
        typer.echo(
            "  "
            + _(
                "data quality: %(count)s %(feed)s rows quarantined of %(rows)s, above the "
                "%(limit)s limit"
            )
            % {
                "count": entry.rows_quarantined,
                "feed": entry.feed,
                "rows": entry.rows_in,
                "limit": f"{entry.max_share:.1%}",
            }
        )
    for kpi in summary.off_track:
        if kpi.is_campaign_wide:
            typer.echo(
                "  "
                + _("kpi %(metric)s actual %(actual)s  target %(target)s  %(status)s")
                % {
                    "metric": f"{term(kpi.metric, locale):<17}",
                    "actual": f"{kpi.actual:>14,.4f}",
                    "target": f"{kpi.target:>14,.4f}",
                    "status": term(kpi.status, locale),
                }
            )
    for item in summary.anomalies[:10]:
        scope = scope_words(format_scope(item.scope), locale)
        typer.echo(
            "  "
            + _("anomaly %(week)s %(metric)s (%(scope)s): z=%(z)s")
            % {"week": item.week, "metric": term(item.metric, locale), "scope": scope, "z": item.z}
        )
    for test in summary.experiments:
        typer.echo(
            "  "
            + _("experiment %(treatment)s vs %(control)s: %(decision)s")
            % {
                "treatment": test.treatment,
                "control": term(test.control, locale),
                "decision": term(test.decision, locale),
            }
        )
    if summary.bottleneck_stage != "none":
        typer.echo(
            "  " + _("bottleneck: %(stage)s") % {"stage": term(summary.bottleneck_stage, locale)}
        )


def _dispatch_totals(summaries: list[dict]) -> dict:
    """The day's figures over all its windows, in the shape of one batch."""
    totals: dict = {
        "audience": 0,
        "eligible": 0,
        "excluded": {},
        "sends": {},
        "holdout": 0,
        "held": 0,
        "failures": {},
    }
    for summary in summaries:
        for key in ("audience", "eligible", "holdout", "held"):
            totals[key] += summary[key]
        for reason, count in summary["excluded"].items():
            totals["excluded"][reason] = totals["excluded"].get(reason, 0) + count
        for channel, variants in summary["sends"].items():
            for variant, count in variants.items():
                by_variant = totals["sends"].setdefault(channel, {})
                by_variant[variant] = by_variant.get(variant, 0) + count
        for channel, count in summary["failures"].items():
            totals["failures"][channel] = totals["failures"].get(channel, 0) + count
    return totals


@app.command("export")
def export_command(
    feed: Annotated[str, typer.Argument(help="A feed name, or call-list (phone sends).")],
    file: Annotated[Path, typer.Argument(help="The CSV file to write.")],
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign.")] = None,
    first: Annotated[str | None, typer.Option("--from", help="First local day.")] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last local day.")] = None,
) -> None:
    """Write a table in its feed's format (or the phone call list), audited."""
    from tasks.data.export import DateRange, export_call_list, export_feed

    days = DateRange(
        _date_option("--from", first) if first else None,
        _date_option("--to", last) if last else None,
    )
    engine = _ready_engine()
    with engine.connect() as conn:
        if feed == "call-list":
            if campaign is None:
                raise UserError("export call-list: --campaign is required")
            rows = export_call_list(conn, campaign, file, days=days)
        else:
            rows = export_feed(
                conn,
                feed,
                file,
                campaign_id=campaign,
                days=days,
                default_timezone=get_settings().timezone,
            )
    typer.echo(f"{feed}: {rows} rows written to {file}")


@app.command()
def rerun(
    stage: Annotated[str, typer.Argument(metavar="FLOW", help="plan, check, act or dispatch.")],
    campaign: Annotated[str, typer.Option("--campaign", help="Campaign id.")],
    period: Annotated[
        str | None, typer.Option(help="2026-W12, 2026-03 or 2026-Q1 (plan, check, act).")
    ] = None,
    day: Annotated[str | None, typer.Option("--date", help="Dispatch: YYYY-MM-DD.")] = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Act: approve the proposals.")
    ] = False,
) -> None:
    """Re-run one stage for (campaign, period); its results are replaced, never duplicated.

    Through the stage's deployment when PREFECT_API_URL points at a server (a worker runs
    it, the UI shows it), else in this process. Exit code 1 when the run failed.
    """
    from pdca.edge import days_in_campaign
    from tasks.common.periods import Period
    from tasks.ops.operations import check_stage, stage_runs

    check_stage(stage)
    if stage == "dispatch":
        if day is None or period is not None:
            raise UserError("rerun dispatch: give --date YYYY-MM-DD (dispatch works by day)")
        (send_day,) = days_in_campaign(_stage_arguments(campaign), [_date_option("--date", day)])
        key = send_day.isoformat()
    else:
        if period is None or day is not None:
            raise UserError(f"rerun {stage}: give --period (2026-W12, 2026-03 or 2026-Q1)")
        key = str(Period.parse(period))
        _stage_arguments(campaign)
    runs = stage_runs(stage, campaign, [key], **_stage_options(stage, auto_approve))
    _run_and_report(runs, concurrency=1, purpose="rerun")


@app.command()
def backfill(
    stage: Annotated[str, typer.Argument(metavar="FLOW", help="plan, check, act or dispatch.")],
    campaign: Annotated[str, typer.Option("--campaign", help="Campaign id.")],
    first: Annotated[
        str, typer.Option("--from", help="First period (dispatch: first day, YYYY-MM-DD).")
    ],
    last: Annotated[str, typer.Option("--to", help="Last period, same kind (dispatch: last day).")],
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Periods at once [setting backfill_concurrency].")
    ] = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Act: approve the proposals.")
    ] = False,
) -> None:
    """Re-run one stage for every period from --from to --to (both included).

    Runs a few periods at once, keeps going past a period that fails, prints each
    period's outcome and exits with 1 at the end if any failed.
    """
    from pdca.edge import days_in_campaign
    from tasks.ops.operations import check_stage, days_between, periods_between, stage_runs

    check_stage(stage)
    if stage == "dispatch":
        days = days_between(_date_option("--from", first), _date_option("--to", last))
        keys = [d.isoformat() for d in days_in_campaign(_stage_arguments(campaign), days)]
    else:
        keys = [str(p) for p in periods_between(first, last)]
        _stage_arguments(campaign)
    runs = stage_runs(stage, campaign, keys, **_stage_options(stage, auto_approve))
    _run_and_report(runs, concurrency or get_settings().backfill_concurrency, purpose="backfill")


@app.command()
def worker(
    pool: Annotated[str, typer.Option(help="The Prefect work pool to take runs from.")] = "pdca",
) -> None:
    """A Prefect process worker for the pool's runs (`make worker`); one Ctrl-C stops it.

    Needs PREFECT_API_URL (a server) and, for pdca's deployments, PDCA_CHECKOUT and
    PDCA_DATABASE_URL in its environment: the flow runs it starts inherit them.
    """
    from pdca.worker import run_worker

    raise typer.Exit(run_worker(pool))


def _stage_options(stage: str, auto_approve: bool) -> dict:
    """The stage's own extra parameters: act's approval switch, dispatch's `at` (now)."""
    return {"auto_approve": True} if stage == "act" and auto_approve else {}


def _flow_runs():
    """Around a command's flow runs (after its arguments were checked, so a refused
    command never imports Prefect): the local server if up (pdca/local_server.py)."""
    from pdca.local_server import flow_api

    return flow_api()


def _run_and_report(runs: list, concurrency: int, purpose: str) -> None:
    """Run, print one line per run and a summary; exit code 1 if any run failed."""
    _ready_engine().dispose()
    from flows.operations import run_stage_runs

    with _flow_runs():
        report = run_stage_runs(runs, concurrency, purpose)
    for outcome in report.outcomes:
        typer.echo(outcome.line())
    typer.echo(report.summary(), err=not report.ok)
    if not report.ok:
        raise typer.Exit(1)


def _stage_arguments(campaign: str, period: str | None = None):
    """The campaign's spec, after checking the period parses and the campaign exists:
    bad usage is refused here, in well under a second, before Prefect starts."""
    from pdca.edge import known_campaign
    from tasks.common.periods import Period

    if period is not None:
        Period.parse(period)
    return known_campaign(get_settings().database_url, campaign)


def _date_option(name: str, value: str):
    from pdca.edge import parse_day

    return parse_day(name, value)


def _utc_option(name: str, value: str):
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{name} {value!r}: expected an ISO 8601 time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _print_json(document: dict) -> None:
    """One JSON document on stdout and nothing else there (logs go to stderr)."""
    import json

    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _display_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


DEBUG_FLAG = "--debug"
"""Anywhere on the command line: show tracebacks instead of writing them to the log file."""


def debug_log_path() -> Path:
    """Where tracebacks go when `--debug` is not given (under the output folder)."""
    return get_settings().output_dir / "logs" / "pdca-debug.log"


def _keep_traceback(text: str) -> Path | None:
    """Append a traceback to the debug log; None when the log cannot be written."""
    path = debug_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text.rstrip("\n") + "\n\n")
    except OSError:
        return None
    return path


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a flow's exception with its traceback. For a UserError (bad input, a
    busy campaign) the one-line message is the whole story, so the traceback is dropped;
    any other traceback goes to the debug log (`debug_log_path`) instead of stderr, unless
    `--debug` asks for it."""

    debug = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info, record.exc_text = None, None
        elif record.exc_info and record.exc_info[1] is not None and not self.debug:
            _keep_traceback("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info, record.exc_text = None, None
        return True


RUN_LOGGERS = (
    "prefect.flow_runs",
    "prefect.task_runs",
    "prefect.flow_engine",
    "prefect.task_engine",
)
"""Where Prefect logs a run's exception; a filter on the logger itself outlives the
handler set-up Prefect repeats when a flow starts."""


def _quiet_user_errors(debug: bool = False) -> None:
    quiet = _NoTracebackForUserErrors()
    quiet.debug = debug
    for name in RUN_LOGGERS:
        logging.getLogger(name).addFilter(quiet)


def _pop_debug_flag() -> bool:
    """Whether `--debug` was given; it is taken off the arguments the commands see."""
    if DEBUG_FLAG not in sys.argv[1:]:
        return False
    sys.argv[1:] = [arg for arg in sys.argv[1:] if arg != DEBUG_FLAG]
    return True


app.command()(simulate)  # its body lives in pdca/simulation/command.py


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2.

    Typer's standalone mode already turns usage errors into a message and exit code 2.
    Anything unexpected is one line on stderr and exit code 1, its traceback in the debug
    log (`--debug` shows it instead).
    """
    debug = _pop_debug_flag()
    _quiet_user_errors(debug)
    try:
        app()
    except UserError as error:
        print(f"pdca: error: {error}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as error:  # a PDCA_* setting out of its bounds
        problems = "; ".join(
            f"PDCA_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        print(f"pdca: error: settings: {problems}", file=sys.stderr)
        sys.exit(2)
    except OperationalError as error:
        url = _display_url(get_settings().database_url)
        reason = str(error.orig).strip().splitlines()[0]
        print(f"pdca: error: database {url}: {reason}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        if debug:
            raise
        _unexpected(error)


def _unexpected(error: Exception) -> None:
    """One line for a failure pdca did not foresee; the traceback to the debug log."""
    log = _keep_traceback(traceback.format_exc())
    first = (str(error).strip().splitlines() or [""])[0][:300]
    where = f"traceback in {log}" if log else "the debug log could not be written"
    print(
        f"pdca: error: unexpected {type(error).__name__}: {first} "
        f"({where}; rerun with {DEBUG_FLAG} to see it)",
        file=sys.stderr,
    )
    sys.exit(1)


if __name__ == "__main__":
    main()
