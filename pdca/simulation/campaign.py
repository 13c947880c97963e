"""The simulated season's campaign and the history it is planned from.

The history is the last season: the demo history (`pdca.synthetic.demo_history`) of the
world's own customers — the same generator and seed draw the same people — over the weeks
before the season, under the demo campaign. pdca plans a new campaign from the latest weeks
of a comparable one (same product), as it would at a bank.

The spec is the demo's (`pdca.synthetic.campaign.campaign_spec`: five channels, the A/B
experiment with a hold-out, noon and evening windows, the risk policy) under an id of its
own, from the season's first Monday to its last Sunday, with a budget of the world's
expected weekly cost for every week plus a margin (the demo's rule: 1.2 ×).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from pdca.simulation.world import World
from pdca.synthetic.campaign import campaign_spec
from pdca.synthetic.feeds import DemoFiles, write_demo_feeds
from pdca.synthetic.world import COST, TOUCH_WEEKLY

SEASON_CAMPAIGN_ID = "season-sme-2026"

HISTORY_WEEKS = 4
"""Weeks of last season's history before the season (enough to plan from)."""

TIER_COST = np.array([COST[0], (COST[1] + COST[2]) / 2, (COST[3] + COST[4]) / 2])
"""A touch's cost by tier as the demo routes them: A a call, B SMS or IM, C push or e-mail."""


def expected_weekly_cost(world: World) -> float:
    """What the demo's contact rhythm would cost a week on this world's audience."""
    tier = world.people["tier"][world.people["audience"]]
    tier = tier[tier < len(TOUCH_WEEKLY)]
    return float((TOUCH_WEEKLY[tier] * TIER_COST[tier]).sum())


def season_spec(world: World, weeks: int) -> dict:
    """The season's campaign spec, in the contract's YAML layout."""
    if world.start.weekday() != 0:
        raise ValueError(f"a season starts on a Monday, not on {world.start:%A} {world.start}")
    spec = campaign_spec(world.start, weeks, 0.0, world.size)
    spec.update(
        id=SEASON_CAMPAIGN_ID,
        name=f"SME revolving loan, simulated season of {weeks} weeks",
        end=world.start + timedelta(days=weeks * 7 - 1),
        budget_total=max(1, math.ceil(expected_weekly_cost(world) * 1.2 * weeks)),
    )
    return spec


def season_days(start: date, weeks: int) -> list[date]:
    """Every day of the season, Monday first."""
    return [start + timedelta(days=offset) for offset in range(weeks * 7)]


def write_history(world: World, folder: Path, weeks: int = HISTORY_WEEKS) -> DemoFiles:
    """Last season's feeds: the demo history of the world's customers, ending the day
    before the season starts (its customers feed is the world's population)."""
    return write_demo_feeds(
        folder,
        customers=world.size,
        weeks=weeks,
        seed=world.seed,
        start=world.start - timedelta(weeks=weeks),
        block_size=max(world.size, 1),
    )
