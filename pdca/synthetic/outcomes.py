"""What the touches lead to: applications, credit decisions, loans, repayments, complaints.

Each step draws from the one before, within the history's end: variant B lifts the chance
to apply, approval follows score and debt, weaker borrowers drift into arrears more often,
and customers touched often complain more.
"""

from __future__ import annotations

import numpy as np

from pdca.synthetic.campaign import ATTRIBUTION_DAYS, CHANNELS
from pdca.synthetic.touches import season
from pdca.synthetic.world import (
    APPLY_AFFINITY,
    APPLY_IF_RESPONDED,
    APPLY_IF_SILENT,
    ATTRIBUTED_SHARE,
    COMPLAINT_CATEGORIES,
    COMPLAINT_RATE,
    DAY,
    EXCLUDED_INDUSTRY_INDEX,
    HOUR,
    ORGANIC_WEEKLY,
    REJECT_REASONS,
    REQUEST_MEDIAN,
    TERM_SHARE,
    TERMS,
    VARIANT_B_LIFT,
)


def simulate_applications(
    rng: np.random.Generator, people: dict, touches: dict, weeks: int, end: int
) -> dict:
    """Applications after a delivered touch (at most one per customer), plus organic ones."""
    channel = touches["channel"]
    delivered = touches["delivered"]
    who = touches["who"]
    propensity = np.where(
        touches["responded"], APPLY_IF_RESPONDED[channel], APPLY_IF_SILENT[channel]
    )
    propensity = (
        propensity
        * season(weeks)[touches["week"]]
        * APPLY_AFFINITY[people["segment"][who]]
        * np.where(touches["variant"] == "B", VARIANT_B_LIFT, 1.0)
    )
    hit = np.flatnonzero(delivered & (rng.random(len(who)) < propensity))
    _, first = np.unique(who[hit], return_index=True)
    trigger = hit[first]
    lag_days = np.minimum(rng.geometric(0.45, len(trigger)) - 1, ATTRIBUTION_DAYS - 1)
    driven_t = touches["t"][trigger] + lag_days * DAY + rng.integers(10 * 60, 10 * HOUR)

    n = len(people["id"])
    organic_p = ORGANIC_WEEKLY * weeks * APPLY_AFFINITY[people["segment"]]
    organic = np.flatnonzero(rng.random(n) < organic_p)
    organic_t = rng.integers(0, weeks * 7, len(organic)) * DAY + rng.integers(
        8 * HOUR, 21 * HOUR, len(organic)
    )

    applicant = np.concatenate([who[trigger], organic])
    t = np.concatenate([driven_t, organic_t])
    channel_name = np.concatenate(
        [
            np.array(CHANNELS)[channel[trigger]],
            np.where(rng.random(len(organic)) < 0.6, "branch", "partner"),
        ]
    )
    attributed = np.concatenate(
        [rng.random(len(trigger)) < ATTRIBUTED_SHARE, np.zeros(len(organic), dtype=bool)]
    )
    segment = people["segment"][applicant]
    amount = np.exp(rng.normal(np.log(REQUEST_MEDIAN[segment]), 0.5))
    amount = np.maximum(np.round(amount, -2), 1_000.0)
    keep = t < end
    order = np.lexsort((applicant[keep], t[keep]))
    return {
        "who": applicant[keep][order],
        "t": t[keep][order],
        "channel": channel_name[keep][order],
        "attributed": attributed[keep][order],
        "amount": amount[keep][order],
    }


def simulate_decisions(
    rng: np.random.Generator, people: dict, applications: dict, end: int
) -> dict:
    """Most applications are decided within three days; approval follows score and debt."""
    who = applications["who"]
    n = len(who)
    score = people["score"][who]
    debt = people["debt_ratio"][who]
    excluded = np.isin(people["industry"][who], EXCLUDED_INDUSTRY_INDEX)
    t = applications["t"] + rng.integers(30 * 60, 3 * DAY, n)
    decided = (rng.random(n) >= 0.03) & (t < end)
    chance = approval_chance(score, debt)
    fraud = rng.random(n) < 0.01
    approved = (rng.random(n) < chance) & ~excluded & ~fraud

    weights = np.column_stack(
        [
            np.maximum(0.0, 700 - score) / 40 + 0.05,
            np.maximum(0.0, debt - 0.3) * 8 + 0.05,
            np.full(n, 0.35),
            np.full(n, 0.05),
        ]
    )
    pick = (weights.cumsum(axis=1) / weights.sum(axis=1, keepdims=True)) < rng.random(n)[:, None]
    reason = np.array(REJECT_REASONS)[pick.sum(axis=1)]
    reason[fraud] = "fraud_check"
    reason[excluded] = "excluded_industry"
    reason[approved] = ""

    cap = np.maximum(np.floor(people["income"][who] * 10 / 100) * 100, 1_000.0)
    amount = np.minimum(applications["amount"], cap)
    apr = np.clip(np.round(8.0 + (780 - score) * 0.075 + rng.normal(0, 0.8, n), 2), 8.0, 23.9)
    rows = np.flatnonzero(decided)
    return {
        "application": rows,
        "t": t[rows],
        "approved": approved[rows],
        "reason": reason[rows],
        "amount": amount[rows],
        "apr": apr[rows],
    }


def approval_chance(score: np.ndarray, debt_ratio: np.ndarray) -> np.ndarray:
    """The credit model: the chance of approval rises with the score, falls with debt."""
    logit = 0.4 + 0.03 * (score - 660) - 6.0 * (debt_ratio - 0.3)
    return 1 / (1 + np.exp(-logit))


def simulate_loans(rng: np.random.Generator, decisions: dict, end: int) -> dict:
    """Most approved applications are disbursed within four days, some for less."""
    n = len(decisions["t"])
    t = decisions["t"] + rng.integers(2 * HOUR, 4 * DAY, n)
    partial = np.where(rng.random(n) < 0.15, rng.uniform(0.5, 1.0, n), 1.0)
    amount = np.maximum(np.round(decisions["amount"] * partial, -2), 100.0)
    term = TERMS[rng.choice(len(TERMS), n, p=TERM_SHARE)]
    rows = np.flatnonzero(decisions["approved"] & (rng.random(n) < 0.88) & (t < end))
    return {
        "decision": rows,
        "application": decisions["application"][rows],
        "t": t[rows],
        "amount": amount[rows],
        "apr": decisions["apr"][rows],
        "term": term[rows],
    }


def simulate_repayments(
    rng: np.random.Generator,
    people: dict,
    applications: dict,
    loans: dict,
    weeks: int,
    payoff_rng: np.random.Generator | None = None,
) -> dict:
    """Weekly snapshots after disbursement; a few loans stop paying and drift into arrears.

    With `payoff_rng` (a stream of its own, so the rest of the history stays as it was),
    a share of the loans that keep paying is paid off early, one to four weeks
    after disbursement: from then on they stand at outstanding 0 (closed loans, which
    churn_rate counts)."""
    n = len(loans["t"])
    disbursed_day = loans["t"] // DAY
    snapshots = np.maximum(0, (weeks * 7 - 1 - disbursed_day) // 7)
    loan = np.repeat(np.arange(n), snapshots)
    k = np.arange(len(loan)) - np.repeat(np.cumsum(snapshots) - snapshots, snapshots) + 1
    age = 7 * k

    borrower = applications["who"][loans["application"]]
    drifts = rng.random(n) < drift_chance(people["score"][borrower], people["debt_ratio"][borrower])
    stops = rng.integers(1, 15, n)
    paid_until = np.where(drifts[loan], np.minimum(age, stops[loan]), age)
    dpd = np.where(drifts[loan], np.maximum(0, age - stops[loan]), 0)
    late_once = ~drifts[loan] & (rng.random(len(loan)) < 0.03)
    dpd = np.where(late_once, rng.integers(1, 10, len(loan)), dpd)
    repaid = np.minimum(1.0, paid_until / 30.4 / loans["term"][loan])
    if payoff_rng is not None:
        paid_off_at = np.where(
            payoff_rng.random(n) < PAYOFF_SHARE, payoff_rng.integers(7, 29, n), 1 << 30
        )
        closed = ~drifts[loan] & (age >= paid_off_at[loan])
        repaid = np.where(closed, 1.0, repaid)
        dpd = np.where(closed, 0, dpd)
    outstanding = np.round(loans["amount"][loan] * (1.0 - repaid), 2)
    order = np.lexsort((loan, disbursed_day[loan] + age))
    return {
        "loan": loan[order],
        "day": (disbursed_day[loan] + age)[order],
        "dpd": dpd[order],
        "outstanding": outstanding[order],
    }


def drift_chance(score: np.ndarray, debt_ratio: np.ndarray) -> np.ndarray:
    """Chance that a loan stops paying and drifts into arrears: ~1 % at 800, ~16 % at 620."""
    return np.clip(0.02 + (740 - score) * 0.0012 + (debt_ratio - 0.3) * 0.1, 0.005, 0.3)


PAYOFF_SHARE = 0.3
"""Share of the loans paid off early (see `simulate_repayments`)."""


def simulate_surveys(
    rng: np.random.Generator, touches: dict, complaints: dict, customers: int, end: int
) -> dict:
    """A few customers answer the satisfaction survey a few days after a delivered touch.

    The score (0–10) falls with contact pressure (the customer's touches in the
    campaign) and with a complaint: a pressed customer who complained is a detractor."""
    rows = np.flatnonzero(touches["delivered"] & (rng.random(len(touches["t"])) < SURVEY_CHANCE))
    who = touches["who"][rows]
    t = touches["t"][rows] + rng.integers(DAY, 5 * DAY, len(rows))
    complained = np.bincount(complaints["who"], minlength=customers)[who] > 0
    pressure = touches["per_customer"][rows]
    mean = 9.0 - 0.9 * (pressure - 1) - 4.0 * complained
    score = np.clip(np.round(mean + rng.normal(0, 1.5, len(rows))), 0, 10).astype(int)
    named = rng.random(len(rows)) < 0.8
    keep = t < end
    return {"who": who[keep], "t": t[keep], "score": score[keep], "named": named[keep]}


SURVEY_CHANCE = 0.02
"""Chance that a delivered touch brings a survey answer."""


def simulate_complaints(rng: np.random.Generator, touches: dict, end: int) -> dict:
    """A few complaints per thousand delivered touches; many touches, more complaints."""
    many = touches["per_customer"]
    rate = COMPLAINT_RATE[touches["channel"]] * (1 + 0.4 * (many - 1))
    rows = np.flatnonzero(touches["delivered"] & (rng.random(len(many)) < rate))
    t = touches["t"][rows] + rng.integers(30 * 60, 3 * DAY, len(rows))
    crowded = many[rows] >= 3
    share = np.where(crowded[:, None], [[0.55, 0.2, 0.1, 0.15]], [[0.3, 0.3, 0.15, 0.25]]).cumsum(
        axis=1
    )
    category = (share < rng.random(len(rows))[:, None]).sum(axis=1)
    named = rng.random(len(rows)) < 0.9
    keep = t < end
    return {
        "who": touches["who"][rows][keep],
        "t": t[keep],
        "category": np.minimum(category[keep], len(COMPLAINT_CATEGORIES) - 1),
        "named": named[keep],
    }
