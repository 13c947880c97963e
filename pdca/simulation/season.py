"""The season: pdca's real flows run day by day against the world, on their schedule.

Every simulated day, in the campaign's time zone:

- the season's first day, the launch: the month is planned (`pdca plan`); on every later
  1st of a month, the month (the scheduled plan's rule, `plan_period_for`);
- Monday 06:30 to 08:00, from the second week on: the week just finished is checked (the
  scheduled check's rule, `check_period_for`), acted on — proposals approved at once with
  `approve="auto"`, else left for the world file's manager, who decides them as
  `pdca actions approve|reject` would, audit row and SOP version included —, the week
  starting today is planned with the adjustments approved, and the weekly review is
  written (not sent);
- weekdays, five minutes after each send window opens (as it is in force, shifts
  included): dispatch, through the simulated gateways, which accept and draw nothing;
- at the day's end, the world reads what dispatch sent and the back office's files of the
  day are loaded through the importer.

The flows run in this process, tagged `simulation`: the embedded API starts once, and its
flow runs send no heartbeats (as the CLI's other flow commands). The Monday after the last
week checks and acts on it too, so the last week counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pdca.db import contents_besides, make_engine, reset_database
from pdca.errors import UserError
from pdca.settings import get_settings
from pdca.simulation.backoffice import BackOffice
from pdca.simulation.campaign import SEASON_CAMPAIGN_ID, season_spec, write_history
from pdca.simulation.feeds import DailyFiles, load_files, read_sends
from pdca.simulation.truths import WorldFile, default_world, load_world
from pdca.simulation.world import World
from pdca.synthetic.campaign import CAMPAIGN_ID as HISTORY_CAMPAIGN_ID
from pdca.synthetic.campaign import PRODUCT
from tasks.common.campaigns import CampaignSpec, apply_spec, load_spec
from tasks.common.feeds import LOAD_ORDER
from tasks.common.periods import Period
from tasks.ops.operations import check_period_for, plan_period_for

APPROVALS = ("auto", "policy")

POLICY_WAIT_SECONDS = 1
"""How long an act run on a Prefect server waits for a person before the policy decides."""

SEASON_START = date(2026, 3, 2)
"""The season's first Monday: the demo's calendar, so history and season meet."""


@dataclass(frozen=True)
class SeasonOptions:
    """What `pdca simulate` was asked for."""

    weeks: int = 13
    customers: int = 50_000
    seed: int = 7
    world: Path | None = None
    approve: str = "auto"
    force: bool = False

    def __post_init__(self) -> None:
        if self.approve not in APPROVALS:
            raise UserError(f"--approve {self.approve!r}: expected one of {', '.join(APPROVALS)}")
        if not 1 <= self.weeks <= 52:
            raise UserError(f"--weeks {self.weeks}: expected 1 to 52")
        if self.customers < 100:
            raise UserError(f"--customers {self.customers}: expected at least 100")


@dataclass
class Season:
    """One season under way: the world, its back office, pdca's database and the record."""

    options: SeasonOptions
    truths: WorldFile
    world: World
    spec: CampaignSpec
    office: BackOffice
    files: DailyFiles
    engine: Engine
    folder: Path
    checks: dict[str, dict] = field(default_factory=dict)
    """Week → the Monday check's JSON."""
    imports: list = field(default_factory=list)
    """Every import's result, in order."""

    @property
    def days(self) -> int:
        """The season's days, plus the Monday after it (its last check and act)."""
        return self.options.weeks * 7 + 1


def refuse_foreign_database(database_url: str, force: bool) -> None:
    """The demo's safety rule: a simulation replaces the whole database, so one holding
    anything but an earlier demo or simulation is refused unless forced."""
    from sqlalchemy.engine import make_url

    held = None
    if not force:
        held = contents_besides(database_url, {HISTORY_CAMPAIGN_ID, SEASON_CAMPAIGN_ID})
    if held:
        shown = make_url(database_url).render_as_string(hide_password=True)
        raise UserError(
            f"{shown} holds {held}, not only an earlier demo or simulation: a simulation "
            "replaces the whole database; point PDCA_DATABASE_URL elsewhere, or use --force"
        )


def prepare(options: SeasonOptions) -> Season:
    """A fresh database with last season's history loaded and the season's campaign."""
    settings = get_settings()
    truths = load_world(options.world) if options.world else default_world()
    refuse_foreign_database(settings.database_url, options.force)
    reset_database(settings.database_url)
    folder = settings.output_dir / "simulation"
    world = World.build(options.customers, options.seed, truths, SEASON_START)
    spec = CampaignSpec.model_validate(season_spec(world, options.weeks))
    engine = make_engine(settings.database_url)
    history = write_history(world, folder / "history")
    last_season = load_spec(history.spec)
    last_season = last_season.model_copy(update={"end": SEASON_START - timedelta(days=1)})
    with engine.begin() as conn:
        apply_spec(conn, last_season, actor="simulation")
        apply_spec(conn, spec, actor="simulation")
    office = BackOffice(world, spec.id, PRODUCT)
    office.continue_keys(history.rows)
    season = Season(
        options, truths, world, spec, office, DailyFiles(office, folder / "feeds"), engine, folder
    )
    with engine.connect() as conn:
        season.imports += load_files(
            conn, {feed: history.feed(feed) for feed in LOAD_ORDER}, settings
        )
    return season


def run_season(options: SeasonOptions, progress: Callable[[str], None] | None = None) -> Season:
    """Prepare the season and run every day of it.

    The flow runs take the CLI's settings for one command (`pdca.local_server.flow_api`):
    PREFECT_API_URL's server, else the local server when it is up (`pdca server start`),
    else the embedded API without heartbeats, which would cost each of the season's flow
    runs about a second (some 180 s of a 13-week season)."""
    from prefect import tags

    from pdca.local_server import flow_api

    season = prepare(options)
    with flow_api(), tags("pdca", "simulation"):
        for day in range(season.days):
            run_day(season, day)
            if progress and day % 7 == 6:
                progress(f"week {day // 7 + 1} of {options.weeks} simulated")
    return season


def run_day(season: Season, day: int) -> None:
    """One simulated day: the runs due on it, then the world's answer."""
    today = season.world.start + timedelta(days=day)
    in_season = today <= season.spec.end
    if day == 0 or (today.day == 1 and in_season):
        plan(season, str(plan_period_for(today)))
    if today.weekday() == 0 and day > 0:
        monday(season, today)
    if today.weekday() < 5 and in_season:
        dispatch_day(season, today)
    answer(season, day)


def plan(season: Season, period: str) -> dict[str, Any]:
    """The plan flow for `period`."""
    from flows.plan import plan_flow

    return plan_flow(campaign_id=season.spec.id, period=period)


def monday(season: Season, today: date) -> None:
    """Check and act on the week just finished, plan this week, review the last one."""
    from flows.act import act_flow
    from flows.check import check_flow
    from flows.weekly_review import weekly_review_flow

    week = check_period_for(today)
    season.checks[str(week)] = check_flow(campaign_id=season.spec.id, period=str(week))
    auto = season.options.approve == "auto"
    # with a Prefect server the act run would pause for a person: the simulated manager
    # answers right after it instead, so it waits at most a second
    act_flow(
        campaign_id=season.spec.id,
        period=str(week),
        auto_approve=auto,
        approval_timeout=None if auto else POLICY_WAIT_SECONDS,
    )
    if not auto:
        from pdca.simulation.approvals import decide_by_policy

        decide_by_policy(season, str(week))
    if today <= season.spec.end:
        plan(season, str(Period.week_of(today)))
    weekly_review_flow(period=str(week), send=False, return_state=True)


def dispatch_day(season: Season, today: date) -> None:
    """Each send window in force, five minutes after it opens (the schedules' rule)."""
    from flows.demo import opening
    from flows.dispatch import dispatch_flow

    for window in season.spec.contact_policy.windows:
        at = opening(season.spec, today, window) + timedelta(minutes=5)
        dispatch_flow(campaign_id=season.spec.id, day=today, window=window, at=at)


def answer(season: Season, day: int) -> None:
    """The world reads the day's sends; the back office's files of the day are loaded."""
    settings = get_settings()
    with season.engine.connect() as conn:
        season.office.observe(read_sends(conn, season.spec.id, season.world.start, day), day)
        season.office.organic(day)
        season.imports += load_files(conn, season.files.write_day(day), settings)
