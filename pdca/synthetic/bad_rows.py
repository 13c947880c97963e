"""The deliberately bad rows mixed into every demo feed, so that imports have work to do.

`BAD_ROWS` lists them with the reason an import should quarantine each; `spoil` puts them
into a feed's first block.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import pandas as pd

from pdca.synthetic.campaign import CAMPAIGN_ID
from pdca.synthetic.columns import KeyCounter, decimals, id_text
from pdca.synthetic.world import COMPLAINT_CATEGORIES

BAD_ROWS: dict[str, tuple[str, ...]] = {
    "customers": (
        "credit_score 1200 is outside 300-900",
        "created_at `not-a-date` is not a timestamp",
        "monthly_income -1500.00 is negative",
        "marketing_consent `maybe` is not a boolean",
        "segment is empty but required",
    ),
    "touches": (
        "cost is negative",
        "channel `fax` is not a contract channel",
        "customer_id c0000000 names no customer",
        "sent_at `not-a-date` is not a timestamp",
        "touch_id repeats an earlier row's key (conflicting duplicate)",
        "campaign_id `no-such-campaign` names no campaign",
    ),
    "applications": (
        "amount_requested 0.00 is not > 0",
        "customer_id c0000000 names no customer",
        "applied_at `not-a-date` is not a timestamp",
        "channel `fax` is not a contract channel",
        "product_code is empty but required",
    ),
    "decisions": (
        "decision `rejected` with an empty reject_reason",
        "decision `maybe` is neither approved nor rejected",
        "decided_at `not-a-date` is not a timestamp",
        "apr `n/a` is not a number (on a rejection)",
        "application_id a00000000 names no application",
    ),
    "loans": (
        "amount 0.00 is not > 0",
        "application_id a00000000 names no application",
        "term_months 0 is not > 0",
        "disbursed_at `not-a-date` is not a timestamp",
    ),
    "repayments": (
        "(loan_id, as_of) repeats an earlier row's key (conflicting duplicate)",
        "loan_id l00000000 names no loan",
        "dpd -3 is negative",
        "outstanding -100.00 is negative",
        "as_of `not-a-date` is not a date",
    ),
    "complaints": (
        "customer_id c0000000 names no customer",
        "received_at `not-a-date` is not a timestamp",
        "category is empty but required",
        "complaint_id repeats an earlier row's key (conflicting duplicate)",
    ),
    "surveys": (
        "customer_id c0000000 names no customer",
        "score 11 is above 10",
        "survey_id repeats an earlier row's key (conflicting duplicate)",
    ),
}
"""Every deliberately bad row, per feed, with the reason an import should quarantine it.

All of them are in the first block of each file (after that feed's first good rows). The
decisions' first four are the first rejections spoiled in place (so no application has two
decision rows and no loan loses its approval); every other bad row is an extra row with a
key of its own that nothing refers to, or a duplicate of an earlier row's key.
"""

UNKNOWN_CUSTOMER = "c0000000"
UNKNOWN_APPLICATION = "a00000000"
UNKNOWN_LOAN = "l00000000"
NOT_A_DATE = "not-a-date"


def spoil(
    feed: str, frame: pd.DataFrame, rng: np.random.Generator, customers: int, keys: KeyCounter
) -> tuple[pd.DataFrame, int]:
    """Mix the feed's `BAD_ROWS` into its first block; return the frame and how many."""
    if frame.empty:
        return frame, 0
    extra, after, spoiled = _SPOILERS[feed](frame, customers, keys)
    for index, column, value in spoiled:
        frame.iat[index, frame.columns.get_loc(column)] = value
    return _insert(frame, extra, after, rng), len(extra) + len(spoiled)


def _insert(frame: pd.DataFrame, extra: list[dict], after: int, rng) -> pd.DataFrame:
    """Put `extra` rows at random places in `frame`, all after row `after`."""
    if not extra:
        return frame
    places = np.sort(rng.integers(after + 1, len(frame) + 1, len(extra)))
    order = np.concatenate([np.arange(len(frame)), places - 0.5 + np.arange(len(extra)) * 1e-6])
    combined = pd.concat([frame, pd.DataFrame(extra, columns=frame.columns)], ignore_index=True)
    return combined.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


Spoils = tuple[list[dict[str, str]], int, list[tuple[int, str, str]]]
"""A spoiler's answer: extra rows, the row they must all follow, in-place (row, column, value)."""


def _bad_customers(frame: pd.DataFrame, customers: int, keys: KeyCounter) -> Spoils:
    """New customers (numbered after the last real one) that each break one rule."""
    template = frame.iloc[0].to_dict()
    changes = [
        {"credit_score": "1200"},
        {"created_at": NOT_A_DATE},
        {"monthly_income": "-1500.00"},
        {"marketing_consent": "maybe"},
        {"segment": ""},
    ]
    numbers = np.arange(customers + 1, customers + 1 + len(changes))
    ids = id_text("c", numbers, 7)
    extra = _copies(template, changes, "customer_id", ids)
    for row, number in zip(extra, numbers, strict=True):
        row["email"] = f"bad{number}@example.com"
    return extra, 0, []


def _bad_touches(frame: pd.DataFrame, customers: int, keys: KeyCounter) -> Spoils:
    """Copies of the first sent touch, each breaking one rule; one repeats its key."""
    sent = np.flatnonzero((frame["variant"] != "holdout") & (frame["delivered"] == "true"))
    source = int(sent[0]) if len(sent) else 0
    template = frame.iloc[source].to_dict()
    cost = float(template["cost"])
    changes = [
        {"cost": decimals(np.array([-max(cost, 0.05)]), 2)[0]},
        {"channel": "fax"},
        {"customer_id": UNKNOWN_CUSTOMER},
        {"sent_at": NOT_A_DATE},
        {"campaign_id": "no-such-campaign"},
    ]
    extra = _copies(template, changes, "touch_id", id_text("t", keys.take("touches", 5), 9))
    conflicting = {
        "responded": "false" if template["responded"] == "true" else "true",
        "cost": decimals(np.array([cost * 2 + 0.01]), 2)[0],
    }
    extra.insert(4, {**template, **conflicting})
    return extra, source, []


def _bad_applications(frame: pd.DataFrame, customers: int, keys: KeyCounter) -> Spoils:
    """Copies of the first attributed application, each breaking one rule."""
    attributed = np.flatnonzero(frame["campaign_id"] == CAMPAIGN_ID)
    template = frame.iloc[int(attributed[0]) if len(attributed) else 0].to_dict()
    changes = [
        {"amount_requested": "0.00"},
        {"customer_id": UNKNOWN_CUSTOMER},
        {"applied_at": NOT_A_DATE},
        {"channel": "fax"},
        {"product_code": ""},
    ]
    ids = id_text("a", keys.take("applications", len(changes)), 8)
    return _copies(template, changes, "application_id", ids), 0, []


def _bad_decisions(frame: pd.DataFrame, customers: int, keys: KeyCounter) -> Spoils:
    """The first rejections spoiled in place (a rejection has no loan to orphan)."""
    rejected = np.flatnonzero(frame["decision"] == "rejected")
    changes = (
        ("reject_reason", ""),
        ("decision", "maybe"),
        ("decided_at", NOT_A_DATE),
        ("apr", "n/a"),
    )
    spoiled = [
        (int(index), column, value)
        for index, (column, value) in zip(rejected, changes, strict=False)
    ]
    template = frame.iloc[int(rejected[-1]) if len(rejected) else 0].to_dict()
    extra = [{**template, "application_id": UNKNOWN_APPLICATION}]
    return extra, 0, spoiled


def _bad_loans(frame: pd.DataFrame, customers: int, keys: KeyCounter) -> Spoils:
    """Copies of the first loan under new keys (so no repayment refers to them)."""
    template = frame.iloc[0].to_dict()
    changes = [
        {"amount": "0.00"},
        {"application_id": UNKNOWN_APPLICATION},
        {"term_months": "0"},
        {"disbursed_at": NOT_A_DATE},
    ]
    ids = id_text("l", keys.take("loans", len(changes)), 8)
    return _copies(template, changes, "loan_id", ids), 0, []


def _bad_repayments(frame: pd.DataFrame, customers: int, keys: KeyCounter) -> Spoils:
    """Variants of the first snapshot, on days that are no snapshot's, or repeating its key."""
    template = frame.iloc[0].to_dict()
    as_of = date.fromisoformat(template["as_of"])
    off_day = [(as_of - timedelta(days=days)).isoformat() for days in (1, 2)]
    extra = [
        {**template, "dpd": str(int(template["dpd"]) + 7)},
        {**template, "loan_id": UNKNOWN_LOAN},
        {**template, "as_of": off_day[0], "dpd": "-3"},
        {**template, "as_of": off_day[1], "outstanding": "-100.00"},
        {**template, "as_of": NOT_A_DATE},
    ]
    return extra, 0, []


def _bad_complaints(frame: pd.DataFrame, customers: int, keys: KeyCounter) -> Spoils:
    """Copies of the first complaint, each breaking one rule; one repeats its key."""
    template = frame.iloc[0].to_dict()
    changes = [
        {"customer_id": UNKNOWN_CUSTOMER},
        {"received_at": NOT_A_DATE},
        {"category": ""},
    ]
    ids = id_text("q", keys.take("complaints", len(changes)), 7)
    extra = _copies(template, changes, "complaint_id", ids)
    other = next(c for c in COMPLAINT_CATEGORIES if c != template["category"])
    extra.append({**template, "category": other})
    return extra, 0, []


def _bad_surveys(frame: pd.DataFrame, customers: int, keys: KeyCounter) -> Spoils:
    """Copies of the first survey answer, each breaking one rule."""
    template = frame.iloc[0].to_dict()
    changes = [{"customer_id": UNKNOWN_CUSTOMER}, {"score": "11"}]
    ids = id_text("s", keys.take("surveys", len(changes)), 8)
    extra = _copies(template, changes, "survey_id", ids)
    extra.append({**template, "score": str((int(template["score"]) + 5) % 11)})
    return extra, 0, []


def _copies(template: dict, changes: list[dict], key: str, ids: np.ndarray) -> list[dict]:
    """One copy of `template` per change, each under its own new key."""
    return [
        {**template, **change, key: str(new_key)}
        for new_key, change in zip(ids, changes, strict=True)
    ]


_SPOILERS: dict[str, Callable[[pd.DataFrame, int, KeyCounter], Spoils]] = {
    "customers": _bad_customers,
    "touches": _bad_touches,
    "applications": _bad_applications,
    "decisions": _bad_decisions,
    "loans": _bad_loans,
    "repayments": _bad_repayments,
    "complaints": _bad_complaints,
    "surveys": _bad_surveys,
}
