"""The campaign's touches of one block: who is due each week, on which channel, and when.

Tier A customers get a relationship manager's call, tier B SMS or IM, tier C app pushes or
e-mails; sends fall on weekdays inside the noon and evening windows.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from pdca.synthetic.world import (
    APP_PUSH,
    COST,
    DAY,
    DELIVERY,
    EMAIL,
    EVENING_RESPONSE,
    EVENING_SHARE,
    HOUR,
    IM,
    PHONE,
    RESPONSE,
    SEASON_AMPLITUDE,
    SMS,
    TOUCH_WEEKLY,
)


def simulate_touches(rng: np.random.Generator, people: dict, weeks: int, start: date) -> dict:
    """At most one touch per customer per calendar week, on a weekday, inside a window.

    Each audience member is due in a week with their tier's weekly chance (at least once
    in the history), so the weekly volume is steady. One touch a week keeps every customer
    within two touches in any 7 days. Hold-out members get one row (the assignment, at
    their would-be first send) and nothing else.
    """
    members = np.flatnonzero(people["audience"])
    tier = people["tier"][members]
    holdout = people["variant"][members] == "holdout"
    week = np.arange(weeks)
    due = rng.random((len(members), weeks)) < TOUCH_WEEKLY[tier][:, None] * season(weeks)
    never = ~due.any(axis=1)
    due[never, rng.integers(0, weeks, int(never.sum()))] = True
    first = due.argmax(axis=1)
    planned = due & (~holdout[:, None] | (week[None, :] == first[:, None]))
    row, week_of = np.nonzero(planned)
    who = members[row]
    n = len(who)

    weekday_offsets = np.array([o for o in range(7) if (start.weekday() + o) % 7 < 5])
    day = week_of * 7 + weekday_offsets[rng.integers(0, 5, n)]
    channel = route(rng, people["tier"][who], people["has_email"][who])
    evening = rng.random(n) < EVENING_SHARE[channel]
    opens = np.where(evening, 19 * HOUR, 12 * HOUR)
    length = np.where(evening, 2 * HOUR, 90 * 60)
    t = day * DAY + opens + rng.integers(0, length)

    variant = people["variant"][who]
    sent = variant != "holdout"
    lift = season(weeks)[week_of] * np.where(evening, EVENING_RESPONSE[channel], 1.0)
    delivered = sent & (rng.random(n) < DELIVERY[channel])
    responded = delivered & (rng.random(n) < np.minimum(RESPONSE[channel] * lift, 1.0))
    phone_cost = np.clip(rng.normal(COST[PHONE], 1.2, n), 3.0, 15.0)
    cost = np.where(sent, np.where(channel == PHONE, phone_cost, COST[channel]), 0.0)

    order = np.lexsort((who, t))
    touches = {
        "who": who,
        "week": week_of,
        "t": t,
        "channel": channel,
        "variant": variant,
        "delivered": delivered,
        "responded": responded,
        "cost": np.round(cost, 2),
    }
    touches = {name: values[order] for name, values in touches.items()}
    touches["per_customer"] = np.bincount(touches["who"], minlength=len(people["id"]))[
        touches["who"]
    ]
    return touches


def route(rng: np.random.Generator, tier: np.ndarray, has_email: np.ndarray) -> np.ndarray:
    """Tier A: a relationship manager's call; B: SMS or IM; C: app push or e-mail."""
    draw = rng.random(len(tier))
    b_channel = np.where(draw < 0.55, SMS, IM)
    c_channel = np.where((draw < 0.4) & has_email, EMAIL, APP_PUSH)
    return np.select([tier == 0, tier == 1], [PHONE, b_channel], default=c_channel)


def season(weeks: int) -> np.ndarray:
    """Per week, the mild four-week wave on response and application propensity."""
    return 1.0 + SEASON_AMPLITUDE * np.sin(2 * np.pi * (np.arange(weeks) + 0.5) / 4)
