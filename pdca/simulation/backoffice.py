"""The bank's back office in the simulated world: what follows each send pdca made.

`BackOffice.observe` takes the touches dispatch recorded (read from pdca's database) and
draws, from the world's true chances, everything they lead to: delivery and response,
applications after a delay, the credit decision, the loan and how it will pay. Organic
applications (branch, partner) arrive every day whatever pdca does; they are the hold-out's
only applications. Nothing is told to pdca yet: `due` hands over, feed by feed, the rows
whose time has come, as the back office's daily files would. Times are local seconds
since the season's first day at 00:00 (Asia/Shanghai has no daylight saving time).

Deterministic: the draws for a day come from `default_rng([seed, stream, day])`, and the
sends of a day are taken in the order of their keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pdca.simulation.world import Sends, World, channel_index
from pdca.synthetic.campaign import ATTRIBUTION_DAYS, CHANNELS
from pdca.synthetic.columns import KeyCounter, id_text
from pdca.synthetic.outcomes import SURVEY_CHANCE
from pdca.synthetic.world import (
    ATTRIBUTED_SHARE,
    COMPLAINT_CATEGORIES,
    DAY,
    HOUR,
    REJECT_REASONS,
    REQUEST_MEDIAN,
    TERM_SHARE,
    TERMS,
)

REPORT_DELAY = 2 * HOUR
"""The provider reports a send's delivery and response two hours after it."""

WEEK = 7 * DAY

_STREAM_SENDS, _STREAM_ORGANIC = 1, 2

_T_MASK = (1 << 32) - 1
"""The time part of a pressure key (customer × 2³² + local seconds)."""


def season_week(t: np.ndarray) -> np.ndarray:
    """The season week (1-based) of local seconds `t` since the first Monday."""
    return np.asarray(t, dtype=np.int64) // WEEK + 1


@dataclass
class BackOffice:
    """The back office's ledger of one season: every row it knows, and when pdca may see it.

    Each table is a frame with a `due` column (local seconds): the row's feed carries it
    once `due` has passed. Applications, decisions and loans keep their triggering send's
    scope (channel, variant, window, week) for the truths that hold there.
    """

    world: World
    campaign_id: str
    product: str
    keys: KeyCounter = field(default_factory=KeyCounter)
    tables: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    applied: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    seen: set[str] = field(default_factory=set)
    _pressure_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if len(self.applied) != self.world.size:
            self.applied = np.zeros(self.world.size, dtype=bool)

    def continue_keys(self, rows: dict[str, int]) -> None:
        """Number the back office's keys after last season's (`rows`: feed → rows written,
        an upper bound of the keys it used), so that no key names two rows."""
        for feed, count in rows.items():
            if feed in self.keys.next:
                self.keys.next[feed] = max(self.keys.next[feed], count + 1)

    # --- what happens -------------------------------------------------------------------

    def observe(self, sends: pd.DataFrame, day: int) -> int:
        """Draw what follows the sends dispatch recorded; returns how many were new.

        `sends`: touch_id, customer_id, channel, variant, t (local seconds), cost, window
        (the rows of `sql/simulation_sends.sql`, times converted). A touch already
        observed is skipped, so a day's sends may be read more than once; hold-out rows
        are assignments, not sends: nothing follows them."""
        ids = sends["touch_id"].tolist()
        seen = self.seen  # membership per new row: `isin(set)` would copy the whole set daily
        fresh = np.fromiter((touch not in seen for touch in ids), dtype=bool, count=len(ids))
        new = sends[fresh & (sends["variant"] != "holdout").to_numpy()]
        new = new.sort_values("touch_id", kind="stable")
        seen.update(ids)
        if new.empty:
            return 0
        rng = np.random.default_rng([self.world.seed, _STREAM_SENDS, day])
        t = new["t"].to_numpy(dtype=np.int64)
        scope = Sends.of(
            self.world.index(new["customer_id"]),
            channel_index(new["channel"].to_numpy()),
            new["variant"].to_numpy(),
            new["window"].fillna("").to_numpy(),
            season_week(t),
        )
        delivered = rng.random(len(t)) < self.world.delivery_chance(scope)
        responded = delivered & (rng.random(len(t)) < self.world.response_chance(scope))
        touches = new.assign(delivered=delivered, responded=responded, due=t + REPORT_DELAY)
        self._add("touches", touches)
        self._complaints_and_surveys(rng, scope, t, delivered)
        applies = delivered & (rng.random(len(t)) < self.world.application_chance(scope, responded))
        self._applications_after(rng, scope, t, applies)
        return len(new)

    def organic(self, day: int) -> int:
        """The day's applications that no campaign touch led to (branch, partner)."""
        rng = np.random.default_rng([self.world.seed, _STREAM_ORGANIC, day])
        everyone = np.arange(self.world.size)
        who = everyone[(rng.random(self.world.size) < self.world.organic_chance(everyone))]
        who = who[~self.applied[who]]
        if not len(who):
            return 0
        t = day * DAY + rng.integers(8 * HOUR, 21 * HOUR, len(who))
        scope = Sends.of(who, np.zeros(len(who)), [""] * len(who), [""] * len(who), season_week(t))
        channel = np.where(rng.random(len(who)) < 0.6, "branch", "partner")
        self._applications(rng, scope, t, channel, np.zeros(len(who), dtype=bool), organic=True)
        return len(who)

    def _applications_after(
        self, rng: np.random.Generator, scope: Sends, t: np.ndarray, applies: np.ndarray
    ) -> None:
        """Applications a few days after the sends that led to them (one per customer)."""
        rows = np.flatnonzero(applies)
        _, first = np.unique(scope.who[rows], return_index=True)
        rows = rows[np.sort(first)]
        rows = rows[~self.applied[scope.who[rows]]]
        lag = np.minimum(rng.geometric(0.45, len(rows)) - 1, ATTRIBUTION_DAYS - 1)
        when = t[rows] + lag * DAY + rng.integers(10 * 60, 10 * HOUR, len(rows))
        attributed = rng.random(len(rows)) < ATTRIBUTED_SHARE
        channel = np.array(CHANNELS)[scope.channel[rows]]
        self._applications(rng, scope.take(rows), when, channel, attributed, organic=False)

    def _applications(
        self,
        rng: np.random.Generator,
        scope: Sends,
        t: np.ndarray,
        channel: np.ndarray,
        attributed: np.ndarray,
        *,
        organic: bool,
    ) -> None:
        """Applications, their decisions and their loans, each with its own delay."""
        n = len(t)
        if not n:
            return
        self.applied[scope.who] = True
        segment = self.world.people["segment"][scope.who]
        amount = np.exp(rng.normal(np.log(REQUEST_MEDIAN[segment]), 0.5))
        ids = id_text("a", self.keys.take("applications", n), 8)
        self._add(
            "applications",
            pd.DataFrame(
                {
                    "application_id": ids,
                    "who": scope.who,
                    "campaign_id": np.where(attributed, self.campaign_id, ""),
                    "channel": channel,
                    "t": t,
                    "amount": np.maximum(np.round(amount, -2), 1_000.0),
                    "organic": organic,
                    "due": t,
                }
            ),
        )
        self._decisions(rng, scope, ids, t, amount)

    def _decisions(
        self, rng: np.random.Generator, scope: Sends, ids: np.ndarray, t: np.ndarray, asked
    ) -> None:
        """The credit decision within three days; approvals are mostly disbursed."""
        n = len(ids)
        who = scope.who
        score = self.world.people["score"][who]
        decided_t = t + rng.integers(30 * 60, 3 * DAY, n)
        approved = rng.random(n) < self.world.approval_chance(scope)
        reason = np.array(REJECT_REASONS)[
            np.where(score < 660, 0, np.where(self.world.people["debt_ratio"][who] > 0.5, 1, 2))
        ]
        cap = np.maximum(np.floor(self.world.people["income"][who] * 10 / 100) * 100, 1_000.0)
        amount = np.minimum(np.maximum(np.round(asked, -2), 1_000.0), cap)
        apr = np.clip(np.round(8.0 + (780 - score) * 0.075 + rng.normal(0, 0.8, n), 2), 8.0, 23.9)
        self._add(
            "decisions",
            pd.DataFrame(
                {
                    "application_id": ids,
                    "t": decided_t,
                    "approved": approved,
                    "reason": np.where(approved, "", reason),
                    "amount": amount,
                    "apr": apr,
                    "due": decided_t,
                }
            ),
        )
        disbursed = approved & (rng.random(n) < 0.88)
        loan_t = decided_t + rng.integers(2 * HOUR, 4 * DAY, n)
        rows = np.flatnonzero(disbursed)
        self._add(
            "loans",
            pd.DataFrame(
                {
                    "loan_id": id_text("l", self.keys.take("loans", len(rows)), 8),
                    "application_id": ids[rows],
                    "t": loan_t[rows],
                    "amount": amount[rows],
                    "apr": apr[rows],
                    "term": TERMS[rng.choice(len(TERMS), len(rows), p=TERM_SHARE)],
                    "drifts": rng.random(len(rows)) < self.world.overdue_chance(scope.take(rows)),
                    "stops": rng.integers(1, 8, len(rows)),
                    "due": loan_t[rows],
                }
            ),
        )

    def _complaints_and_surveys(
        self, rng: np.random.Generator, scope: Sends, t: np.ndarray, delivered: np.ndarray
    ) -> None:
        """Complaints grow with the customer's sends in the trailing week; a few surveys."""
        pressure = self._pressure(scope.who, t)
        chance = self.world.complaint_chance(scope, pressure)
        rows = np.flatnonzero(delivered & (rng.random(len(t)) < chance))
        when = t[rows] + rng.integers(30 * 60, 3 * DAY, len(rows))
        crowded = pressure[rows] >= 2
        category = np.where(crowded, 0, rng.integers(0, len(COMPLAINT_CATEGORIES), len(rows)))
        self._add(
            "complaints",
            pd.DataFrame(
                {
                    "complaint_id": id_text("q", self.keys.take("complaints", len(rows)), 7),
                    "who": scope.who[rows],
                    "named": rng.random(len(rows)) < 0.9,
                    "t": when,
                    "category": np.array(COMPLAINT_CATEGORIES)[category],
                    "due": when,
                }
            ),
        )
        answered = np.flatnonzero(delivered & (rng.random(len(t)) < SURVEY_CHANCE))
        when = t[answered] + rng.integers(DAY, 5 * DAY, len(answered))
        mean = 9.0 - 0.9 * (pressure[answered] - 1)
        score = np.clip(np.round(mean + rng.normal(0, 1.5, len(answered))), 0, 10).astype(int)
        self._add(
            "surveys",
            pd.DataFrame(
                {
                    "survey_id": id_text("s", self.keys.take("surveys", len(answered)), 8),
                    "who": scope.who[answered],
                    "named": rng.random(len(answered)) < 0.8,
                    "t": when,
                    "score": score,
                    "due": when,
                }
            ),
        )

    def _pressure(self, who: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Per send, the customer's sends in the 7 days up to it, itself included.

        Days come in order, so a send a week older than the earliest new one can never
        count again: the history keeps only the last week (sorting the whole season's
        sends every day made a 13-week season of 50,000 customers quadratic)."""
        keys = who.astype(np.int64) * (1 << 32) + t
        kept = self._pressure_keys
        if len(t):
            kept = kept[(kept & _T_MASK) > int(t.min()) - WEEK]
        history = np.sort(np.concatenate([kept, keys]))
        self._pressure_keys = history
        return np.searchsorted(history, keys, side="right") - np.searchsorted(
            history, keys - WEEK, side="right"
        )

    def _add(self, table: str, frame: pd.DataFrame) -> None:
        if len(frame):
            self.tables.setdefault(table, []).append(frame)

    # --- what pdca may see ----------------------------------------------------------------

    def table(self, name: str) -> pd.DataFrame:
        """Everything the ledger holds of `name` (an empty frame when nothing yet)."""
        parts = self.tables.get(name, [])
        if len(parts) > 1:
            self.tables[name] = parts = [pd.concat(parts, ignore_index=True)]
        return parts[0] if parts else pd.DataFrame({"due": np.zeros(0, dtype=np.int64)})

    def due(self, name: str, after: int, until: int) -> pd.DataFrame:
        """The rows of table `name` that became known in (after, until]."""
        frame = self.table(name)
        return frame[(frame["due"] > after) & (frame["due"] <= until)]

    def snapshots(self, after_day: int, until_day: int) -> pd.DataFrame:
        """The loans' weekly repayment snapshots dated in (after_day, until_day].

        A snapshot is taken every 7 days after disbursement; a loan that drifts stops
        paying a few days in and its days past due grow from then on; the others repay
        their principal evenly over the term."""
        loans = self.table("loans")
        if loans.empty or until_day <= after_day:
            return pd.DataFrame(columns=["loan_id", "day", "dpd", "outstanding"])
        start_day = loans["t"].to_numpy() // DAY
        frames = []
        for day in range(after_day + 1, until_day + 1):
            age = day - start_day
            rows = np.flatnonzero((age > 0) & (age % 7 == 0))
            if not len(rows):
                continue
            picked = loans.iloc[rows]
            age = age[rows]
            stops = picked["stops"].to_numpy()
            drifts = picked["drifts"].to_numpy()
            paid_until = np.where(drifts, np.minimum(age, stops), age)
            repaid = np.minimum(1.0, paid_until / 30.4 / picked["term"].to_numpy())
            frames.append(
                pd.DataFrame(
                    {
                        "loan_id": picked["loan_id"].to_numpy(),
                        "day": day,
                        "dpd": np.where(drifts, np.maximum(0, age - stops), 0),
                        "outstanding": np.round(picked["amount"].to_numpy() * (1 - repaid), 2),
                    }
                )
            )
        if not frames:
            return pd.DataFrame(columns=["loan_id", "day", "dpd", "outstanding"])
        return pd.concat(frames, ignore_index=True)
