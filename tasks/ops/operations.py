"""Reruns, backfills and scheduled runs: which stage runs to make, and running them.

An engineer fixes a feed and re-runs a stage for one period (`pdca rerun check …`) or a
range of them (`pdca backfill check --from 2026-W10 --to 2026-W14`). Every stage
replaces its (campaign, period) results, so a rerun is safe; a backfill runs the periods
a few at a time (`backfill_concurrency`), keeps going past a period that fails, and
reports each period's outcome, so one bad week does not hide the state of the others.

Scheduled deployments cannot compute a parameter: their defaults are fixed when the
deployment is made. The resolution helpers turn "now" into what each stage needs for
the campaigns active then (the local day for dispatch, the week of yesterday for check,
the month for plan), in each campaign's own time zone.

Plain logic, no Prefect: the runner that starts a stage run (in-process flow call or
`run_deployment`) is passed in by `flows.operations`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from pdca.errors import UserError
from pdca.models import Campaign
from tasks.common.periods import Period

STAGES = ("plan", "dispatch", "check", "act")
"""The stages `pdca rerun` and `pdca backfill` know; dispatch is keyed by day, the
others by period."""
FLOWS = {
    "plan": ("flows.plan", "plan_flow"),
    "dispatch": ("flows.dispatch", "dispatch_flow"),
    "check": ("flows.check", "check_flow"),
    "act": ("flows.act", "act_flow"),
}
"""Stage → (module, flow function), for runs in this process."""
DEPLOYMENTS = {stage: f"{stage}/{stage}" for stage in STAGES}
"""Stage → `<flow name>/<deployment name>` in prefect.yaml, for runs through a server."""
MAX_RANGE = 400
"""More periods (or days) than this in one backfill is almost certainly a typo."""


@dataclass(frozen=True)
class StageRun:
    """One run to make: a stage for a campaign and a period (or, for dispatch, a day)."""

    stage: str
    campaign_id: str
    key: str
    """The period (`2026-W12`) or, for dispatch, the ISO day (`2026-03-04`)."""
    options: tuple[tuple[str, Any], ...] = ()
    """Extra flow parameters, e.g. (("auto_approve", True),) for act."""

    @property
    def parameters(self) -> dict[str, Any]:
        """The flow's parameters, JSON-ready (a deployment run sends them as JSON)."""
        key_name = "day" if self.stage == "dispatch" else "period"
        return {"campaign_id": self.campaign_id, key_name: self.key, **dict(self.options)}


@dataclass
class Outcome:
    """What one stage run came to."""

    run: StageRun
    ok: bool
    state: str
    """Prefect's state name (Completed, Failed, Crashed, Paused…) or the error's class."""
    message: str = ""
    flow_run_id: str | None = None
    seconds: float = 0.0

    def line(self) -> str:
        """One line for the terminal: key, state, and the reason when it failed."""
        text = f"{self.run.stage} {self.run.campaign_id} {self.run.key}: {self.state}"
        text += f" in {self.seconds:.1f} s"
        if self.flow_run_id:
            text += f" (flow run {self.flow_run_id})"
        if self.message and not self.ok:
            text += f" — {self.message}"
        return text


@dataclass
class RunReport:
    """Every outcome of a rerun or backfill, in period order."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        done = len(self.outcomes) - len(self.failed)
        text = f"{done} of {len(self.outcomes)} runs completed"
        if self.failed:
            text += f"; failed: {', '.join(o.run.key for o in self.failed)}"
        return text


Runner = Callable[[StageRun], Outcome]
"""Starts one stage run, waits for it and says how it ended (never raises for a failed
run: a failure is an outcome)."""


def check_stage(stage: str) -> str:
    """The stage name, or a UserError naming the ones there are."""
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return stage


def periods_between(first: str, last: str) -> list[Period]:
    """Every period from `first` to `last`, both included, of the same kind.

    A week range stays weeks, a month range months: mixing them would run overlapping
    periods, which is never what a backfill means.
    """
    start, end = Period.parse(first), Period.parse(last)
    if start.kind != end.kind:
        raise UserError(f"--from {first} and --to {last}: both must be a {start.kind}")
    if end < start:
        raise UserError(f"--from {first} is after --to {last}")
    periods = [start]
    while periods[-1] != end:
        periods.append(periods[-1].shifted(1))
        if len(periods) > MAX_RANGE:
            raise UserError(f"--from {first} --to {last}: more than {MAX_RANGE} periods")
    return periods


def days_between(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included (dispatch backfills by day)."""
    if last < first:
        raise UserError(f"--from {first} is after --to {last}")
    count = (last - first).days + 1
    if count > MAX_RANGE:
        raise UserError(f"--from {first} --to {last}: more than {MAX_RANGE} days")
    return [first + timedelta(days=n) for n in range(count)]


def stage_runs(stage: str, campaign_id: str, keys: Sequence[str], **options: Any) -> list[StageRun]:
    """One run per period (or day), with the same extra parameters."""
    frozen = tuple(sorted((name, value) for name, value in options.items() if value is not None))
    return [StageRun(check_stage(stage), campaign_id, key, frozen) for key in keys]


def run_all(runs: Sequence[StageRun], runner: Runner, concurrency: int) -> RunReport:
    """Run every stage run, at most `concurrency` at once; the outcomes in the runs' order.

    A runner that raises all the same (a bug, a lost server) fails that run only.
    """

    def guarded(run: StageRun) -> Outcome:
        started = time.monotonic()
        try:
            outcome = runner(run)
        except Exception as error:  # one failed period must not stop the rest
            first_line = (str(error).splitlines() or [""])[0]
            outcome = Outcome(run, False, type(error).__name__, first_line)
        if not outcome.seconds:
            outcome.seconds = time.monotonic() - started
        return outcome

    if concurrency <= 1 or len(runs) <= 1:
        return RunReport([guarded(run) for run in runs])
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pdca-run") as pool:
        return RunReport(list(pool.map(guarded, runs)))


# --- what a scheduled run works on --------------------------------------------------------


def local_day(timezone: str, now: datetime | None = None) -> date:
    """Today in `timezone` (`now` is an aware time, or naive UTC; default: now)."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(timezone)).date()


def check_period_for(today: date) -> Period:
    """The week a scheduled check looks at: the ISO week of yesterday.

    Early on Monday that is the week just finished (complete); Tuesday to Sunday it is
    the current week so far, so the daily check shows the week as it develops.
    """
    return Period.week_of(today - timedelta(days=1))


def review_period_for(today: date) -> Period:
    """The week a weekly review on `today` covers: the last complete ISO week."""
    return Period.week_of(today - timedelta(days=today.weekday() + 1))


def plan_period_for(today: date) -> Period:
    """The month a scheduled plan (on the 1st) sets targets for: the month of today."""
    return Period.parse(f"{today.year}-{today.month:02d}")


@dataclass(frozen=True)
class CampaignDates:
    """A campaign's id, time zone and first and last days: what a schedule needs to know
    whether a stage is due for it."""

    campaign_id: str
    timezone: str
    start: date
    end: date


def campaigns(conn: Connection) -> list[CampaignDates]:
    """Every campaign with its time zone and dates, in id order."""
    rows = conn.execute(
        select(
            Campaign.campaign_id, Campaign.timezone, Campaign.start_date, Campaign.end_date
        ).order_by(Campaign.campaign_id)
    ).all()
    return [CampaignDates(*row) for row in rows]


def due_runs(
    stage: str,
    active: Sequence[CampaignDates],
    now: datetime | None = None,
    only: Sequence[str] | None = None,
) -> list[StageRun]:
    """The runs a scheduled `stage` makes at `now`: one per campaign whose dates cover the
    day that stage works on, each resolved in the campaign's own time zone."""
    runs = []
    for campaign in active:
        if only and campaign.campaign_id not in only:
            continue
        today = local_day(campaign.timezone, now)
        if stage == "dispatch":
            day, key = today, today.isoformat()
            covered = campaign.start <= day <= campaign.end
        else:
            period = {"check": check_period_for, "plan": plan_period_for}[stage](today)
            key = str(period)
            covered = campaign.start < period.end and period.start <= campaign.end
        if covered:
            runs.append(StageRun(stage, campaign.campaign_id, key))
    return runs
