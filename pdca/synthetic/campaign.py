"""The demo campaign: its identity, policy and spec, as the contract's campaign YAML states them.

`demo-sme-2026` offers SME revolving credit in Asia/Shanghai on five channels with an A/B
experiment and a hold-out; `campaign_spec` writes it out for a history of `weeks` weeks.
"""

from __future__ import annotations

import hashlib
import math
from datetime import date, timedelta

import numpy as np

CAMPAIGN_ID = "demo-sme-2026"
TIMEZONE = "Asia/Shanghai"
UTC_OFFSET = "+08:00"
"""Asia/Shanghai has no daylight saving time: every local timestamp is +08:00."""
PRODUCT = "sme-revolving"
CHANNELS = ("phone", "sms", "im", "app_push", "email")
"""The campaign's channels; organic applications also arrive by `branch` and `partner`."""
EXPERIMENT_VARIANTS = {"A": 0.45, "B": 0.45}
HOLDOUT_SHARE = 0.10
WINDOWS = {"noon": ("12:00", "13:30"), "evening": ("19:00", "21:00")}
QUIET_HOURS = ("21:00", "09:00")
MIN_CREDIT_SCORE = 600
EXCLUDED_INDUSTRIES = ("p2p-lending", "crypto")
ATTRIBUTION_DAYS = 14


FUTURE_WEEKS = 5
"""The campaign runs this many weeks past its history: the PDCA cycle plans them."""


def campaign_spec(start: date, weeks: int, cost_total: float, customers: int = 50_000) -> dict:
    """The demo campaign's spec, in the contract's YAML layout.

    It runs FUTURE_WEEKS past the history, with a budget of 1.2 × the history's weekly
    cost for every week; the relationship managers can make one call a day per 250
    customers (at least 20).
    """
    return {
        "id": CAMPAIGN_ID,
        "name": "SME revolving loan, demo history",
        "product": PRODUCT,
        "start": start,
        "end": start + timedelta(days=(weeks + FUTURE_WEEKS) * 7 - 1),
        "timezone": TIMEZONE,
        "channels": list(CHANNELS),
        "budget_total": math.ceil(cost_total * 1.2 * (weeks + FUTURE_WEEKS) / weeks),
        "daily_capacity": {"phone": max(20, customers // 250)},
        "offer": {"apr": 14.5, "max_amount": 500_000},
        "risk": {
            "max_overdue_rate_30": 0.03,
            "min_credit_score": MIN_CREDIT_SCORE,
            "apr_cap": 24.0,
            "excluded_industries": list(EXCLUDED_INDUSTRIES),
        },
        "contact_policy": {
            "max_touches_per_7d": 2,
            "quiet_hours": "-".join(QUIET_HOURS),
            "windows": {name: "-".join(span) for name, span in WINDOWS.items()},
        },
        "experiment": {
            "metric": "application_rate",
            "variants": dict(EXPERIMENT_VARIANTS),
            "holdout": HOLDOUT_SHARE,
        },
        "recipients": ["ops-lead@example.com"],
    }


def assign_variant(campaign_id: str, customer_id: str) -> str:
    """The customer's stable experiment arm: A 45 %, B 45 %, `holdout` 10 %.

    The first 8 bytes of SHA-256 of `"{campaign_id}:{customer_id}"`, read as a big-endian
    fraction of 2**64, fall in [0, 0.45) for A, [0.45, 0.90) for B, the rest is hold-out.
    """
    return variants(campaign_id, [customer_id])[0]


def variants(campaign_id: str, customer_ids) -> np.ndarray:
    """Experiment arms of many customers at once (see `assign_variant`)."""
    prefix = f"{campaign_id}:".encode()
    fraction = np.array(
        [
            int.from_bytes(hashlib.sha256(prefix + customer.encode()).digest()[:8], "big")
            for customer in customer_ids
        ],
        dtype=np.float64,
    ) / float(2**64)
    a, b = EXPERIMENT_VARIANTS["A"], EXPERIMENT_VARIANTS["A"] + EXPERIMENT_VARIANTS["B"]
    return np.where(fraction < a, "A", np.where(fraction < b, "B", "holdout"))
