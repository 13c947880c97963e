"""The simulated world: its customers and the true chances behind everything they do.

The customers are the demo history's (`pdca.synthetic.people`), drawn from the seed; the
base chances are the demo's calibration (`pdca.synthetic.world`): per channel delivery,
response and complaints, per segment the appetite for credit, the credit model and the
drift of weak loans into arrears. On top of them the world file's truths multiply the
chances in their scope and weeks, or set the overdue rate their loans drift to. Every
chance is computed for many sends at once (arrays), so a season of millions of sends
costs a few array operations a day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from pdca.simulation.truths import WorldFile, default_world
from pdca.synthetic.campaign import CHANNELS
from pdca.synthetic.feeds import customers_text
from pdca.synthetic.outcomes import approval_chance, drift_chance
from pdca.synthetic.people import simulate_people
from pdca.synthetic.world import (
    APPLY_AFFINITY,
    APPLY_IF_RESPONDED,
    APPLY_IF_SILENT,
    COMPLAINT_RATE,
    DELIVERY,
    ORGANIC_WEEKLY,
    RESPONSE,
    SEGMENTS,
)

PRESSURE_STEP = 0.4
"""Each further send in the trailing 7 days raises a send's complaint chance by 40 %."""


@dataclass(frozen=True)
class Sends:
    """Sends (or applications, loans: anything with a triggering send) as parallel arrays.

    `who` indexes the world's customers, `channel` the campaign's `CHANNELS`; `variant`
    and `window` are text; `week` is the season week (1-based) the send fell in.
    """

    who: np.ndarray
    channel: np.ndarray
    variant: np.ndarray
    window: np.ndarray
    week: np.ndarray

    def __len__(self) -> int:
        return len(self.who)

    def take(self, rows: np.ndarray) -> Sends:
        """The sends at `rows` (indices or a mask)."""
        return Sends(*(values[rows] for values in self._columns()))

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (self.who, self.channel, self.variant, self.window, self.week)

    @classmethod
    def of(cls, who, channel, variant, window, week) -> Sends:
        """Sends from sequences: channels by name or index, the rest as they are."""
        channel = np.asarray(channel)
        if channel.dtype.kind in "US":
            channel = channel_index(channel)
        return cls(
            np.asarray(who, dtype=np.int64),
            channel.astype(np.int64),
            np.asarray(variant, dtype=str),
            np.asarray(window, dtype=str),
            np.asarray(week, dtype=np.int64),
        )


def channel_index(names: np.ndarray) -> np.ndarray:
    """Channel names as indices into `CHANNELS` (a name outside them is an error)."""
    names = np.asarray(names, dtype=str)
    known = np.isin(names, CHANNELS)
    if not known.all():
        raise ValueError(f"not a send channel: {sorted(set(names[~known]))}")
    lookup = {name: i for i, name in enumerate(CHANNELS)}
    return np.array([lookup[name] for name in names.tolist()], dtype=np.int64)


@dataclass
class World:
    """The customers of a season and the truths it holds; deterministic by seed."""

    people: dict
    truths: WorldFile
    seed: int
    start: date
    _ids: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        customers: int,
        seed: int = 7,
        truths: WorldFile | None = None,
        start: date = date(2026, 3, 2),
    ) -> World:
        """`customers` customers drawn from `seed` (the demo's generator), under `truths`
        (the default world's when none are given); the season starts on `start`."""
        if customers < 1:
            raise ValueError("a world needs at least one customer")
        people = simulate_people(np.random.default_rng([seed, 0]), 1, customers)
        return cls(people, truths if truths is not None else default_world(), seed, start)

    @property
    def size(self) -> int:
        """How many customers the world has."""
        return len(self.people["id"])

    def index(self, customer_ids) -> np.ndarray:
        """Customer ids (`c0000042`) as indices into the world's arrays."""
        if not self._ids:
            self._ids = {customer: i for i, customer in enumerate(self.people["id"])}
        return np.array([self._ids[customer] for customer in customer_ids], dtype=np.int64)

    def customers_feed(self) -> pd.DataFrame:
        """The customers feed, as the back office would export it."""
        return customers_text(self.people, self.start)

    def segment(self, who: np.ndarray) -> np.ndarray:
        """The customers' segments by name."""
        return np.array(SEGMENTS)[self.people["segment"][who]]

    # --- the truths ---------------------------------------------------------------------

    def effect(self, name: str, sends: Sends) -> np.ndarray:
        """The product of every truth's `name` multiplier in force for each send."""
        factor = np.ones(len(sends))
        for truth in self.truths.truths:
            value = getattr(truth, name)
            if value is not None:
                factor[self.in_scope(truth, sends)] *= value
        return factor

    def in_scope(self, truth, sends: Sends) -> np.ndarray:
        """Which sends the truth holds for: its scope and its weeks."""
        scope = truth.scope
        inside = (sends.week >= truth.from_week) & (
            sends.week <= (truth.until_week or np.iinfo(np.int64).max)
        )
        if scope.channel is not None:
            inside &= sends.channel == CHANNELS.index(scope.channel)
        if scope.segment is not None:
            inside &= self.people["segment"][sends.who] == SEGMENTS.index(scope.segment)
        if scope.variant is not None:
            inside &= sends.variant == scope.variant
        if scope.window is not None:
            inside &= sends.window == scope.window
        return inside

    # --- the chances ---------------------------------------------------------------------

    def delivery_chance(self, sends: Sends) -> np.ndarray:
        """The chance that each send is delivered (a call: answered)."""
        return np.clip(DELIVERY[sends.channel] * self.effect("delivery", sends), 0.0, 1.0)

    def response_chance(self, sends: Sends) -> np.ndarray:
        """Given delivered, the chance that the customer shows interest."""
        return np.clip(RESPONSE[sends.channel] * self.effect("response", sends), 0.0, 1.0)

    def application_chance(self, sends: Sends, responded: np.ndarray) -> np.ndarray:
        """Given delivered, the chance that the send leads to an application."""
        base = np.where(
            responded, APPLY_IF_RESPONDED[sends.channel], APPLY_IF_SILENT[sends.channel]
        )
        appetite = APPLY_AFFINITY[self.people["segment"][sends.who]]
        return np.clip(base * appetite * self.effect("application", sends), 0.0, 1.0)

    def organic_chance(self, who: np.ndarray) -> np.ndarray:
        """Per customer and day, the chance of applying without any campaign."""
        return ORGANIC_WEEKLY / 7 * APPLY_AFFINITY[self.people["segment"][who]]

    def approval_chance(self, sends: Sends) -> np.ndarray:
        """The chance that an application after these sends is approved."""
        who = sends.who
        base = approval_chance(self.people["score"][who], self.people["debt_ratio"][who])
        return np.clip(base * self.effect("approval", sends), 0.0, 1.0)

    def overdue_chance(self, sends: Sends) -> np.ndarray:
        """The chance that a loan after these sends stops paying and drifts into arrears.

        The credit model's drift, unless a truth sets the scope's overdue rate: then
        that rate (the last such truth in the file wins)."""
        who = sends.who
        chance = drift_chance(self.people["score"][who], self.people["debt_ratio"][who])
        for truth in self.truths.truths:
            if truth.overdue_rate_30 is not None:
                chance = np.where(self.in_scope(truth, sends), truth.overdue_rate_30, chance)
        return chance

    def complaint_chance(self, sends: Sends, pressure: np.ndarray) -> np.ndarray:
        """Given delivered, the chance of a complaint; `pressure` is the customer's sends
        in the trailing 7 days, this one included (more sends, more complaints)."""
        crowding = 1 + PRESSURE_STEP * np.maximum(np.asarray(pressure) - 1, 0)
        base = COMPLAINT_RATE[sends.channel] * crowding
        return np.clip(base * self.effect("complaints", sends), 0.0, 1.0)
