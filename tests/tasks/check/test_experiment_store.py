"""The stored experiment members equal the full recount, whatever order the checks run in.

`experiment_members` sums the members the checks keep (`ExperimentMember`), folding in
only the checked period, what came after the last fold and the members whose
applications changed; `recount_experiment_members` is the definition, counted from every
touch and application. A randomised campaign is loaded week by week, as the feeds and
dispatch bring it (a week's touches in two halves with a check between them,
applications late within and after their windows, an application moved and one deleted),
and after each load checks run in shuffled order (the week, reruns of earlier weeks, a
month, a week not yet loaded, a restarted experiment, other covariate days): each result
equals the recount, on SQLite and PostgreSQL. A database migrated from before the store
counts its history once, then equals the recount too.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from pdca.db import make_engine, upgrade
from pdca.models import Application, Customer, ExperimentMember, Touch
from tasks.check.experiments import experiment_members, recount_experiment_members
from tasks.common.periods import Period
from tests.scenario import CAMPAIGN_ID, TIMEZONE, apply, customer, spec_dict, touch

WEEKS = [f"2026-W{number:02d}" for number in range(10, 18)]
"""Eight weeks from the campaign's start (2026-03-02)."""
PEOPLE = [f"c{number:03d}" for number in range(90)]
VARIANTS = ("A", "B", "holdout")


def bounds(period: str) -> tuple[datetime, datetime]:
    return Period.parse(period).utc_bounds(TIMEZONE)


class World:
    """A random campaign loaded week by week: each week's touches and applications."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.touches = 0
        self.applied = 0
        self.applications: list[str] = []

    def moment(self, starts_at: datetime, ends_at: datetime) -> datetime:
        """A random instant of [starts_at, ends_at), on the minute (so instants repeat)."""
        minutes = int((ends_at - starts_at).total_seconds() // 60)
        return starts_at + timedelta(minutes=self.rng.randrange(minutes))

    def week_touches(self, period: str) -> list[dict]:
        """Touches of the campaign (several variants per customer, shared instants) and
        of another campaign, in the week."""
        starts_at, ends_at = bounds(period)
        rows = []
        for _ in range(self.rng.randint(25, 45)):
            self.touches += 1
            sent_at = self.moment(starts_at, ends_at)
            who = self.rng.choice(PEOPLE)
            rows.append(
                touch(
                    f"t{self.touches:05d}",
                    who,
                    sent_at,
                    campaign_id=self.rng.choice([CAMPAIGN_ID] * 4 + ["other-campaign"]),
                    variant=self.rng.choice(VARIANTS),
                )
            )
            if self.rng.random() < 0.15:  # the same customer at the same instant
                self.touches += 1
                variant = self.rng.choice(VARIANTS)
                rows.append(
                    touch(
                        f"t{self.touches:05d}",
                        who,
                        sent_at,
                        campaign_id=CAMPAIGN_ID,
                        variant=variant,
                    )
                )
        return sorted(rows, key=lambda row: row["sent_at"])

    def week_applications(self, period: str, earliest: datetime) -> list[dict]:
        """The week's applications, and late ones from any time since `earliest`."""
        starts_at, ends_at = bounds(period)
        rows = []
        for _ in range(self.rng.randint(8, 16)):
            late = self.rng.random() < 0.3
            applied_at = self.moment(earliest if late else starts_at, ends_at)
            rows.append(self.application(applied_at))
        return rows

    def application(self, applied_at: datetime) -> dict:
        self.applied += 1
        application_id = f"ap{self.applied:05d}"
        self.applications.append(application_id)
        return {
            "application_id": application_id,
            "customer_id": self.rng.choice(PEOPLE),
            "campaign_id": self.rng.choice([None, CAMPAIGN_ID, "other-campaign"]),
            "channel": "sms",
            "applied_at": applied_at,
            "product_code": "sme-revolving",
            "amount_requested": 10_000.0,
        }


def assert_same(conn: Connection, starts_at: datetime, ends_at: datetime, **options) -> None:
    """The stored members' arms are exactly the recount's."""
    stored = experiment_members(conn, CAMPAIGN_ID, starts_at, ends_at, **options)
    expected = recount_experiment_members(conn, CAMPAIGN_ID, starts_at, ends_at, **options)
    pd.testing.assert_frame_equal(stored, expected, check_exact=True)


def checks(world: World, loaded: int) -> list[tuple[datetime, datetime, dict]]:
    """The checks run after week `loaded` is in and checked, shuffled: the week, up to three reruns
    of earlier weeks, a month-long period, the week after (nothing of it loaded yet), a
    restarted experiment and other covariate days."""
    rng = world.rng
    earlier = rng.sample(WEEKS[:loaded], min(3, loaded))
    runs = [(*bounds(week), {}) for week in [WEEKS[loaded], *earlier]]
    first = max(0, loaded - 3)
    runs.append((bounds(WEEKS[first])[0], bounds(WEEKS[loaded])[1], {}))
    if loaded + 1 < len(WEEKS):
        runs.append((*bounds(WEEKS[loaded + 1]), {}))
    starts_at, ends_at = bounds(WEEKS[loaded])
    restart = world.moment(bounds(WEEKS[0])[0], ends_at)
    runs.append((starts_at, ends_at, {"experiment_starts_at": restart}))
    if rng.random() < 0.3:
        runs.append((starts_at, ends_at, {"covariate_days": 7, "attribution_days": 10}))
    rng.shuffle(runs)
    return runs


def load_week(engine: Engine, world: World, loaded: int) -> None:
    """Week `loaded`'s touches in two halves, a check of the week between them, then its
    applications (some late), and now and then an earlier application moved or deleted;
    the week is checked again once it is whole (the touches that came late within it)."""
    rows = world.week_touches(WEEKS[loaded])
    world.rng.shuffle(rows)  # the second half has touches before the first half's last
    half = len(rows) // 2
    with engine.begin() as conn:
        conn.execute(insert(Touch), rows[:half])
    with engine.begin() as conn:
        assert_same(conn, *bounds(WEEKS[loaded]))
    with engine.begin() as conn:
        conn.execute(insert(Touch), rows[half:])
        earliest = bounds(WEEKS[0])[0] - timedelta(days=30)
        conn.execute(insert(Application), world.week_applications(WEEKS[loaded], earliest))
        if world.rng.random() < 0.5:
            moved = world.rng.choice(world.applications)
            conn.execute(
                update(Application)
                .where(Application.application_id == moved)
                .values(applied_at=world.moment(earliest, bounds(WEEKS[loaded])[1]))
            )
        if world.rng.random() < 0.3:
            gone = world.applications.pop(world.rng.randrange(len(world.applications)))
            conn.execute(delete(Application).where(Application.application_id == gone))
    with engine.begin() as conn:
        assert_same(conn, *bounds(WEEKS[loaded]))


def start_world(engine: Engine) -> None:
    with engine.begin() as conn:
        apply(conn, spec_dict())
        conn.execute(insert(Customer), [customer(name) for name in PEOPLE])


@pytest.mark.parametrize("seed", [1, 2])
def test_stored_members_equal_the_recount_check_by_check(engine: Engine, seed: int) -> None:
    world = World(seed)
    start_world(engine)
    for loaded in range(len(WEEKS)):
        load_week(engine, world, loaded)
        for starts_at, ends_at, options in checks(world, loaded):
            with engine.begin() as conn:
                assert_same(conn, starts_at, ends_at, **options)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(ExperimentMember)).scalar()
    assert stored > len(PEOPLE) // 2, "the store kept (almost) no one"


def test_a_history_from_before_the_store_is_counted_once(tmp_path: Path) -> None:
    """Loaded under the previous schema, checked after the upgrade: the first check counts
    the whole history, and the later ones (earlier weeks, a late application) agree."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0007")
    engine = make_engine(url)
    world = World(7)
    start_world(engine)
    earliest = bounds(WEEKS[0])[0]
    with engine.begin() as conn:
        for week in WEEKS[:6]:
            conn.execute(insert(Touch), world.week_touches(week))
            conn.execute(insert(Application), world.week_applications(week, earliest))
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        assert_same(conn, *bounds(WEEKS[5]))
        assert conn.execute(select(func.count()).select_from(ExperimentMember)).scalar()
    with engine.begin() as conn:
        conn.execute(insert(Application), [world.application(bounds(WEEKS[4])[0])])
    for week in (WEEKS[2], WEEKS[5], WEEKS[4]):
        with engine.begin() as conn:
            assert_same(conn, *bounds(week))
    engine.dispose()


def test_a_late_touch_counts_once_its_week_is_checked_again(engine: Engine) -> None:
    """A touch loaded late into a week already checked, earlier than its customer's
    stored assignment in a later week: the rerun of its week moves the assignment there,
    and the later week's check agrees with the recount again (as the weekly rollups, a
    week's stored counts are refreshed by checking that week)."""
    world = World(3)
    start_world(engine)
    with engine.begin() as conn:
        for week in WEEKS[:4]:
            conn.execute(insert(Touch), world.week_touches(week))
    with engine.begin() as conn:
        assert_same(conn, *bounds(WEEKS[3]))
        later = conn.execute(
            select(ExperimentMember.customer_id, ExperimentMember.variant)
            .where(ExperimentMember.assigned_at >= bounds(WEEKS[3])[0])
            .limit(1)
        ).one()
        moved = touch(
            "t-late",
            later.customer_id,
            bounds(WEEKS[1])[0] + timedelta(hours=5),
            campaign_id=CAMPAIGN_ID,
            variant="holdout" if later.variant != "holdout" else "A",
        )
        conn.execute(insert(Touch), [moved])
    for week in (WEEKS[1], WEEKS[4], WEEKS[2], WEEKS[3]):
        with engine.begin() as conn:
            assert_same(conn, *bounds(week))
