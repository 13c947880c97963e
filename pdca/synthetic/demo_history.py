"""A synthetic but realistic history of one lending campaign, written as the contract's feeds.

`write_demo_feeds` simulates campaign `demo-sme-2026` (SME revolving credit, Asia/Shanghai)
over `weeks` weeks from `start` and writes the seven feeds as CSV files in exactly the
contract's formats, plus the campaign spec YAML beside them. The story it tells is one the
check and act stages can find: tier A customers are called by relationship managers
(expensive, converts best), tier B get SMS and IM, tier C low-touch app pushes and e-mails;
variant B genuinely lifts the application rate by about 15 %; tier C loans go overdue more
often; sends happen only in the weekday noon and evening windows.

The output is deterministic for a seed, and it streams: customers are simulated in blocks
(each block with its customers' whole history) and appended to the files, so a million
customers need no more memory than one block. A few deliberately bad rows are mixed into
every feed (`BAD_ROWS` says which and why), so that imports have something to quarantine.

Run it locally:
`python -m pdca.synthetic.demo_history OUT_DIR [--customers N] [--weeks W] [--seed S]`.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tasks.common.feeds import FEEDS

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

FEED_COLUMNS: dict[str, tuple[str, ...]] = {feed: FEEDS[feed].column_names for feed in FEEDS}
"""The contract's feed columns, key first, in the contract's order."""

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

DAY = 86_400
HOUR = 3_600

# --- the population ---------------------------------------------------------------------

SEGMENTS = ("sme", "salaried", "farmer", "student")
SEGMENT_SHARE = np.array([0.42, 0.33, 0.15, 0.10])
SCORE_MEAN = np.array([690.0, 700.0, 650.0, 630.0])
SCORE_SD = np.array([65.0, 55.0, 60.0, 50.0])
INCOME_MEDIAN = np.array([28_000.0, 12_000.0, 5_500.0, 2_200.0])
INCOME_SIGMA = np.array([0.6, 0.4, 0.45, 0.35])
REQUEST_MEDIAN = np.array([150_000.0, 50_000.0, 30_000.0, 8_000.0])
APPLY_AFFINITY = np.array([1.25, 1.0, 0.8, 0.5])
"""How much each segment wants an SME revolving line, relative to salaried customers."""

REGIONS = (
    "guangdong",
    "zhejiang",
    "jiangsu",
    "shandong",
    "henan",
    "sichuan",
    "hubei",
    "hunan",
    "fujian",
    "shanghai",
    "beijing",
    "anhui",
)
REGION_SHARE = np.array([14, 11, 11, 9, 8, 8, 7, 7, 7, 6, 6, 6], dtype=float) / 100

INDUSTRIES = (
    "retail",
    "manufacturing",
    "catering",
    "logistics",
    "wholesale",
    "construction",
    "it-services",
    "healthcare",
    "public-sector",
    "finance",
    "agriculture",
    "education",
    "p2p-lending",
    "crypto",
)
SME_INDUSTRY_SHARE = np.array([24, 18, 14, 10, 12, 8, 7, 2.5, 0, 2, 0, 0, 1.5, 1], dtype=float)
SALARIED_INDUSTRY_SHARE = np.array([10, 20, 6, 8, 5, 8, 14, 10, 10, 8, 0, 0, 0.6, 0.4], dtype=float)
EXCLUDED_INDUSTRY_INDEX = np.array([INDUSTRIES.index(name) for name in EXCLUDED_INDUSTRIES])

SURNAMES = ("wang", "li", "zhang", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu")
MAIL_DOMAINS = ("example.com", "example.cn", "example.net")
MOBILE_PREFIX = np.array([13, 15, 17, 18, 19])

# --- the channels (index into CHANNELS) ---------------------------------------------------

PHONE, SMS, IM, APP_PUSH, EMAIL = range(5)
COST = np.array([8.0, 0.05, 0.03, 0.01, 0.02])
DELIVERY = np.array([0.62, 0.95, 0.90, 0.80, 0.92])
"""Phone: the call was answered; the others: the provider confirmed delivery."""
RESPONSE = np.array([0.34, 0.045, 0.06, 0.028, 0.022])
"""Given delivered: the customer showed interest (a reply, a click, a yes on the call)."""
APPLY_IF_RESPONDED = np.array([0.24, 0.30, 0.30, 0.28, 0.26])
APPLY_IF_SILENT = np.array([0.004, 0.0025, 0.0025, 0.002, 0.002])
EVENING_SHARE = np.array([0.45, 0.6, 0.65, 0.6, 0.55])
EVENING_RESPONSE = np.array([0.9, 1.12, 1.15, 1.1, 1.05])
"""Response in the evening window relative to noon: calls land worse, messages better."""
COMPLAINT_RATE = np.array([0.004, 0.003, 0.002, 0.0015, 0.0015])
"""Complaints per delivered touch, before the many-touches effect."""

TOUCH_WEEKLY = np.array([0.22, 0.42, 0.26])
"""Tier A, B, C: chance that a customer is due for a touch in a given week."""
VARIANT_B_LIFT = 1.15
SEASON_AMPLITUDE = 0.07
"""A mild four-week wave on response and application propensity."""

ORGANIC_WEEKLY = 0.0008
"""Chance per customer per week of applying without any campaign (branch or partner)."""
ATTRIBUTED_SHARE = 0.75
"""Share of touch-driven applications that carry the campaign id (the rest need attribution)."""

REJECT_REASONS = (
    "low_score",
    "high_debt_ratio",
    "incomplete_documents",
    "fraud_check",
    "excluded_industry",
)
TERMS = np.array([6, 12, 24, 36])
TERM_SHARE = np.array([0.2, 0.4, 0.25, 0.15])


COMPLAINT_CATEGORIES = ("too_many_messages", "wording", "privacy", "other")


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo feeds were written, and how many rows (and bad rows) each has."""

    customers: Path
    touches: Path
    applications: Path
    decisions: Path
    loans: Path
    repayments: Path
    complaints: Path
    spec: Path
    """The campaign spec YAML written beside the feeds."""
    bad_rows: dict[str, int]
    """Feed -> number of deliberately bad rows written (see `BAD_ROWS`)."""
    rows: dict[str, int]
    """Feed -> data rows written, bad rows included (the header not counted)."""

    def feed(self, name: str) -> Path:
        """The file of feed `name`."""
        return getattr(self, name)


def assign_variant(campaign_id: str, customer_id: str) -> str:
    """The customer's stable experiment arm: A 45 %, B 45 %, `holdout` 10 %.

    The first 8 bytes of SHA-256 of `"{campaign_id}:{customer_id}"`, read as a big-endian
    fraction of 2**64, fall in [0, 0.45) for A, [0.45, 0.90) for B, the rest is hold-out.
    """
    return _variants(campaign_id, [customer_id])[0]


def write_demo_feeds(
    out_dir: Path,
    customers: int = 50_000,
    weeks: int = 8,
    seed: int = 7,
    start: date = date(2026, 3, 2),
    *,
    block_size: int = 50_000,
) -> DemoFiles:
    """Simulate the campaign and write its seven feeds and its spec into `out_dir`.

    Customers are simulated `block_size` at a time with their whole history and appended
    to the files, so memory stays bounded whatever `customers` is. Same arguments, same bytes.
    """
    if customers < 1 or weeks < 1 or block_size < 1:
        raise ValueError("customers, weeks and block_size must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {feed: out_dir / f"{feed}.csv" for feed in FEED_COLUMNS}
    keys = _KeyCounter()
    rows = dict.fromkeys(FEED_COLUMNS, 0)
    bad_rows = dict.fromkeys(FEED_COLUMNS, 0)
    cost_total = 0.0
    bad_rng = np.random.default_rng([seed, 1_000_003])
    for block, first in enumerate(range(0, customers, block_size)):
        rng = np.random.default_rng([seed, block])
        size = min(block_size, customers - first)
        frames, cost = _simulate_block(rng, first + 1, size, weeks, start, keys)
        cost_total += cost
        for feed, build in frames.items():
            frame = build()
            if block == 0:
                frame, bad_rows[feed] = _spoil(feed, frame, bad_rng, customers, keys)
            frame.to_csv(
                paths[feed],
                mode="w" if block == 0 else "a",
                header=block == 0,
                index=False,
                lineterminator="\n",
            )
            rows[feed] += len(frame)
            del frame  # one feed's frame at a time
    spec_path = out_dir / f"{CAMPAIGN_ID}.yaml"
    spec_path.write_text(
        yaml.safe_dump(campaign_spec(start, weeks, cost_total, customers), sort_keys=False),
        encoding="utf-8",
    )
    return DemoFiles(**paths, spec=spec_path, bad_rows=bad_rows, rows=rows)


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


def summarise(files: DemoFiles) -> str:
    """A short human summary: rows and bad rows per feed, and where the spec is."""
    width = max(len(feed) for feed in FEED_COLUMNS)
    lines = [f"demo campaign {CAMPAIGN_ID}: feeds in {files.customers.parent}"]
    for feed in FEED_COLUMNS:
        lines.append(
            f"  {feed:<{width}}  {files.rows[feed]:>10,} rows"
            f"  ({files.bad_rows[feed]} deliberately bad)"
        )
    total_bad = sum(files.bad_rows.values())
    lines.append(f"  {total_bad} bad rows in all, to be quarantined on import")
    lines.append(f"  spec: {files.spec}")
    return "\n".join(lines)


# --- the simulation -----------------------------------------------------------------------


class _KeyCounter:
    """Running counters, so that keys stay unique across blocks."""

    def __init__(self) -> None:
        self.next = {"touches": 1, "applications": 1, "loans": 1, "complaints": 1}

    def take(self, feed: str, count: int) -> np.ndarray:
        first = self.next[feed]
        self.next[feed] = first + count
        return np.arange(first, first + count)


def _simulate_block(
    rng: np.random.Generator,
    first_number: int,
    size: int,
    weeks: int,
    start: date,
    keys: _KeyCounter,
) -> tuple[dict[str, Callable[[], pd.DataFrame]], float]:
    """One block of customers with their whole history, and the cost of its touches.

    Each feed's text frame is built on demand, so that only one is in memory at a time.
    """
    end = weeks * 7 * DAY
    people = _people(rng, first_number, size)
    touches = _touches(rng, people, weeks, start)
    applications = _applications(rng, people, touches, weeks, end)
    decisions = _decisions(rng, people, applications, end)
    loans = _loans(rng, decisions, end)
    repayments = _repayments(rng, people, applications, loans, weeks)
    complaints = _complaints(rng, touches, end)

    touch_ids = _ids("t", keys.take("touches", len(touches["t"])), 9)
    application_ids = _ids("a", keys.take("applications", len(applications["t"])), 8)
    loan_ids = _ids("l", keys.take("loans", len(loans["t"])), 8)
    complaint_ids = _ids("q", keys.take("complaints", len(complaints["t"])), 7)
    customer_ids = people["id"]
    frames = {
        "customers": lambda: _frame(
            "customers",
            customer_id=customer_ids,
            segment=np.array(SEGMENTS)[people["segment"]],
            region=np.array(REGIONS)[people["region"]],
            credit_score=people["score"].astype(str),
            monthly_income=_decimals(people["income"], 2),
            debt_ratio=_decimals(people["debt_ratio"], 3),
            industry=np.array(INDUSTRIES)[people["industry"]],
            phone=people["phone"],
            email=people["email"],
            marketing_consent=_booleans(people["consent"]),
            do_not_contact=_booleans(people["dnc"]),
            created_at=_timestamps(people["created"], start),
        ),
        "touches": lambda: _frame(
            "touches",
            touch_id=touch_ids,
            campaign_id=np.full(len(touch_ids), CAMPAIGN_ID),
            customer_id=customer_ids[touches["who"]],
            channel=np.array(CHANNELS)[touches["channel"]],
            variant=touches["variant"],
            sent_at=_timestamps(touches["t"], start),
            delivered=_booleans(touches["delivered"]),
            responded=_booleans(touches["responded"]),
            cost=_decimals(touches["cost"], 2),
        ),
        "applications": lambda: _frame(
            "applications",
            application_id=application_ids,
            customer_id=customer_ids[applications["who"]],
            campaign_id=np.where(applications["attributed"], CAMPAIGN_ID, ""),
            channel=applications["channel"],
            applied_at=_timestamps(applications["t"], start),
            product_code=np.full(len(application_ids), PRODUCT),
            amount_requested=_decimals(applications["amount"], 2),
        ),
        "decisions": lambda: _frame(
            "decisions",
            application_id=application_ids[decisions["application"]],
            decided_at=_timestamps(decisions["t"], start),
            decision=np.where(decisions["approved"], "approved", "rejected"),
            reject_reason=decisions["reason"],
            approved_amount=np.where(decisions["approved"], _decimals(decisions["amount"], 2), ""),
            apr=np.where(decisions["approved"], _decimals(decisions["apr"], 2), ""),
        ),
        "loans": lambda: _frame(
            "loans",
            loan_id=loan_ids,
            application_id=application_ids[loans["application"]],
            disbursed_at=_timestamps(loans["t"], start),
            amount=_decimals(loans["amount"], 2),
            apr=_decimals(loans["apr"], 2),
            term_months=loans["term"].astype(str),
        ),
        "repayments": lambda: _frame(
            "repayments",
            loan_id=loan_ids[repayments["loan"]],
            as_of=_dates(repayments["day"], start),
            dpd=repayments["dpd"].astype(str),
            outstanding=_decimals(repayments["outstanding"], 2),
        ),
        "complaints": lambda: _frame(
            "complaints",
            complaint_id=complaint_ids,
            customer_id=customer_ids[complaints["who"]],
            campaign_id=np.where(complaints["named"], CAMPAIGN_ID, ""),
            received_at=_timestamps(complaints["t"], start),
            category=np.array(COMPLAINT_CATEGORIES)[complaints["category"]],
        ),
    }
    return frames, float(np.round(touches["cost"], 2).sum())


def _people(rng: np.random.Generator, first_number: int, n: int) -> dict:
    """The block's customers, their tier, audience membership and experiment arm."""
    numbers = np.arange(first_number, first_number + n)
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARE)
    score = np.clip(np.rint(rng.normal(SCORE_MEAN[segment], SCORE_SD[segment])), 300, 900)
    income = np.exp(rng.normal(np.log(INCOME_MEDIAN[segment]), INCOME_SIGMA[segment]))
    debt_ratio = np.clip(rng.beta(2.0, 5.0, n) * 1.3, 0.0, 1.3)
    industry = np.select(
        [segment == 0, segment == 1, segment == 2],
        [
            rng.choice(len(INDUSTRIES), n, p=SME_INDUSTRY_SHARE / SME_INDUSTRY_SHARE.sum()),
            rng.choice(
                len(INDUSTRIES), n, p=SALARIED_INDUSTRY_SHARE / SALARIED_INDUSTRY_SHARE.sum()
            ),
            np.full(n, INDUSTRIES.index("agriculture")),
        ],
        default=INDUSTRIES.index("education"),
    )
    prefix = MOBILE_PREFIX[rng.integers(0, len(MOBILE_PREFIX), n)] * 10 + rng.integers(0, 10, n)
    phone = _join(
        "+86 ",
        _digits(prefix, 3),
        " ",
        _digits(rng.integers(0, 10_000, n), 4),
        " ",
        _digits(rng.integers(0, 10_000, n), 4),
    )
    has_email = rng.random(n) < 0.92
    email = _join(
        np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)],
        _digits(numbers, 1),
        "@",
        np.array(MAIL_DOMAINS)[rng.integers(0, len(MAIL_DOMAINS), n)],
    )
    email = np.where(has_email, email, "")
    consent = rng.random(n) < 0.9
    dnc = rng.random(n) < 0.02
    created = -rng.integers(30 * DAY, 5 * 365 * DAY, n)
    tier = np.where(score >= 720, 0, np.where(score >= 640, 1, np.where(score >= 600, 2, 3)))
    audience = (
        consent & ~dnc & ~np.isin(industry, EXCLUDED_INDUSTRY_INDEX) & (score >= MIN_CREDIT_SCORE)
    )
    ids = _ids("c", numbers, 7)
    variant = np.full(n, "", dtype="U7")
    variant[audience] = _variants(CAMPAIGN_ID, ids[audience])
    return {
        "id": ids,
        "segment": segment,
        "region": rng.choice(len(REGIONS), size=n, p=REGION_SHARE / REGION_SHARE.sum()),
        "score": score.astype(np.int64),
        "income": np.round(income, 2),
        "debt_ratio": np.round(debt_ratio, 3),
        "industry": industry,
        "phone": phone,
        "email": email,
        "has_email": has_email,
        "consent": consent,
        "dnc": dnc,
        "created": created,
        "tier": tier,
        "audience": audience,
        "variant": variant,
    }


def _touches(rng: np.random.Generator, people: dict, weeks: int, start: date) -> dict:
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
    due = rng.random((len(members), weeks)) < TOUCH_WEEKLY[tier][:, None] * _season(weeks)
    never = ~due.any(axis=1)
    due[never, rng.integers(0, weeks, int(never.sum()))] = True
    first = due.argmax(axis=1)
    planned = due & (~holdout[:, None] | (week[None, :] == first[:, None]))
    row, week_of = np.nonzero(planned)
    who = members[row]
    n = len(who)

    weekday_offsets = np.array([o for o in range(7) if (start.weekday() + o) % 7 < 5])
    day = week_of * 7 + weekday_offsets[rng.integers(0, 5, n)]
    channel = _route(rng, people["tier"][who], people["has_email"][who])
    evening = rng.random(n) < EVENING_SHARE[channel]
    opens = np.where(evening, 19 * HOUR, 12 * HOUR)
    length = np.where(evening, 2 * HOUR, 90 * 60)
    t = day * DAY + opens + rng.integers(0, length)

    variant = people["variant"][who]
    sent = variant != "holdout"
    lift = _season(weeks)[week_of] * np.where(evening, EVENING_RESPONSE[channel], 1.0)
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


def _route(rng: np.random.Generator, tier: np.ndarray, has_email: np.ndarray) -> np.ndarray:
    """Tier A: a relationship manager's call; B: SMS or IM; C: app push or e-mail."""
    draw = rng.random(len(tier))
    b_channel = np.where(draw < 0.55, SMS, IM)
    c_channel = np.where((draw < 0.4) & has_email, EMAIL, APP_PUSH)
    return np.select([tier == 0, tier == 1], [PHONE, b_channel], default=c_channel)


def _applications(
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
        * _season(weeks)[touches["week"]]
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


def _decisions(rng: np.random.Generator, people: dict, applications: dict, end: int) -> dict:
    """Most applications are decided within three days; approval follows score and debt."""
    who = applications["who"]
    n = len(who)
    score = people["score"][who]
    debt = people["debt_ratio"][who]
    excluded = np.isin(people["industry"][who], EXCLUDED_INDUSTRY_INDEX)
    t = applications["t"] + rng.integers(30 * 60, 3 * DAY, n)
    decided = (rng.random(n) >= 0.03) & (t < end)
    logit = 0.4 + 0.03 * (score - 660) - 6.0 * (debt - 0.3)
    fraud = rng.random(n) < 0.01
    approved = (rng.random(n) < 1 / (1 + np.exp(-logit))) & ~excluded & ~fraud

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


def _loans(rng: np.random.Generator, decisions: dict, end: int) -> dict:
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


def _repayments(
    rng: np.random.Generator, people: dict, applications: dict, loans: dict, weeks: int
) -> dict:
    """Weekly snapshots after disbursement; a few loans stop paying and drift into arrears."""
    n = len(loans["t"])
    disbursed_day = loans["t"] // DAY
    snapshots = np.maximum(0, (weeks * 7 - 1 - disbursed_day) // 7)
    loan = np.repeat(np.arange(n), snapshots)
    k = np.arange(len(loan)) - np.repeat(np.cumsum(snapshots) - snapshots, snapshots) + 1
    age = 7 * k

    borrower = applications["who"][loans["application"]]
    drifts = rng.random(n) < _drift_chance(
        people["score"][borrower], people["debt_ratio"][borrower]
    )
    stops = rng.integers(1, 15, n)
    paid_until = np.where(drifts[loan], np.minimum(age, stops[loan]), age)
    dpd = np.where(drifts[loan], np.maximum(0, age - stops[loan]), 0)
    late_once = ~drifts[loan] & (rng.random(len(loan)) < 0.03)
    dpd = np.where(late_once, rng.integers(1, 10, len(loan)), dpd)
    repaid = np.minimum(1.0, paid_until / 30.4 / loans["term"][loan])
    outstanding = np.round(loans["amount"][loan] * (1.0 - repaid), 2)
    order = np.lexsort((loan, disbursed_day[loan] + age))
    return {
        "loan": loan[order],
        "day": (disbursed_day[loan] + age)[order],
        "dpd": dpd[order],
        "outstanding": outstanding[order],
    }


def _drift_chance(score: np.ndarray, debt_ratio: np.ndarray) -> np.ndarray:
    """Chance that a loan stops paying and drifts into arrears: ~1 % at 800, ~16 % at 620."""
    return np.clip(0.02 + (740 - score) * 0.0012 + (debt_ratio - 0.3) * 0.1, 0.005, 0.3)


def _complaints(rng: np.random.Generator, touches: dict, end: int) -> dict:
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


def _season(weeks: int) -> np.ndarray:
    return 1.0 + SEASON_AMPLITUDE * np.sin(2 * np.pi * (np.arange(weeks) + 0.5) / 4)


def _variants(campaign_id: str, customer_ids) -> np.ndarray:
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


# --- the deliberately bad rows ------------------------------------------------------------


def _spoil(
    feed: str, frame: pd.DataFrame, rng: np.random.Generator, customers: int, keys: _KeyCounter
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


def _bad_customers(frame: pd.DataFrame, customers: int, keys: _KeyCounter) -> Spoils:
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
    ids = _ids("c", numbers, 7)
    extra = _copies(template, changes, "customer_id", ids)
    for row, number in zip(extra, numbers, strict=True):
        row["email"] = f"bad{number}@example.com"
    return extra, 0, []


def _bad_touches(frame: pd.DataFrame, customers: int, keys: _KeyCounter) -> Spoils:
    """Copies of the first sent touch, each breaking one rule; one repeats its key."""
    sent = np.flatnonzero((frame["variant"] != "holdout") & (frame["delivered"] == "true"))
    source = int(sent[0]) if len(sent) else 0
    template = frame.iloc[source].to_dict()
    cost = float(template["cost"])
    changes = [
        {"cost": _decimals(np.array([-max(cost, 0.05)]), 2)[0]},
        {"channel": "fax"},
        {"customer_id": UNKNOWN_CUSTOMER},
        {"sent_at": NOT_A_DATE},
        {"campaign_id": "no-such-campaign"},
    ]
    extra = _copies(template, changes, "touch_id", _ids("t", keys.take("touches", 5), 9))
    conflicting = {
        "responded": "false" if template["responded"] == "true" else "true",
        "cost": _decimals(np.array([cost * 2 + 0.01]), 2)[0],
    }
    extra.insert(4, {**template, **conflicting})
    return extra, source, []


def _bad_applications(frame: pd.DataFrame, customers: int, keys: _KeyCounter) -> Spoils:
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
    ids = _ids("a", keys.take("applications", len(changes)), 8)
    return _copies(template, changes, "application_id", ids), 0, []


def _bad_decisions(frame: pd.DataFrame, customers: int, keys: _KeyCounter) -> Spoils:
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


def _bad_loans(frame: pd.DataFrame, customers: int, keys: _KeyCounter) -> Spoils:
    """Copies of the first loan under new keys (so no repayment refers to them)."""
    template = frame.iloc[0].to_dict()
    changes = [
        {"amount": "0.00"},
        {"application_id": UNKNOWN_APPLICATION},
        {"term_months": "0"},
        {"disbursed_at": NOT_A_DATE},
    ]
    ids = _ids("l", keys.take("loans", len(changes)), 8)
    return _copies(template, changes, "loan_id", ids), 0, []


def _bad_repayments(frame: pd.DataFrame, customers: int, keys: _KeyCounter) -> Spoils:
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


def _bad_complaints(frame: pd.DataFrame, customers: int, keys: _KeyCounter) -> Spoils:
    """Copies of the first complaint, each breaking one rule; one repeats its key."""
    template = frame.iloc[0].to_dict()
    changes = [
        {"customer_id": UNKNOWN_CUSTOMER},
        {"received_at": NOT_A_DATE},
        {"category": ""},
    ]
    ids = _ids("q", keys.take("complaints", len(changes)), 7)
    extra = _copies(template, changes, "complaint_id", ids)
    other = next(c for c in COMPLAINT_CATEGORIES if c != template["category"])
    extra.append({**template, "category": other})
    return extra, 0, []


def _copies(template: dict, changes: list[dict], key: str, ids: np.ndarray) -> list[dict]:
    """One copy of `template` per change, each under its own new key."""
    return [
        {**template, **change, key: str(new_key)}
        for new_key, change in zip(ids, changes, strict=True)
    ]


_SPOILERS: dict[str, Callable[[pd.DataFrame, int, _KeyCounter], Spoils]] = {
    "customers": _bad_customers,
    "touches": _bad_touches,
    "applications": _bad_applications,
    "decisions": _bad_decisions,
    "loans": _bad_loans,
    "repayments": _bad_repayments,
    "complaints": _bad_complaints,
}


# --- formatting ---------------------------------------------------------------------------


def _frame(feed: str, **columns) -> pd.DataFrame:
    """The feed's rows as text (pandas' compact string dtype), in the contract's order."""
    if tuple(columns) != FEED_COLUMNS[feed]:
        raise AssertionError(f"{feed}: columns {tuple(columns)} are not the contract's")
    return pd.DataFrame({name: pd.array(np.asarray(v), dtype="str") for name, v in columns.items()})


def _join(*parts) -> np.ndarray:
    """Element-wise concatenation of text arrays (and plain strings)."""
    joined = parts[0]
    for part in parts[1:]:
        joined = np.strings.add(joined, part)
    return joined


def _digits(numbers: np.ndarray, width: int) -> np.ndarray:
    text = np.asarray(numbers, dtype=np.int64).astype(str)
    return np.strings.zfill(text, width) if text.size else text  # zfill fails on no rows


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.strings.add(prefix, _digits(numbers, width))


def _timestamps(seconds: np.ndarray, start: date) -> np.ndarray:
    """Local seconds since `start` 00:00 as ISO 8601 with the campaign's offset."""
    moments = np.datetime64(start.isoformat(), "s") + np.asarray(seconds, dtype="timedelta64[s]")
    return np.strings.add(np.datetime_as_string(moments, unit="s"), UTC_OFFSET)


def _dates(days: np.ndarray, start: date) -> np.ndarray:
    moments = np.datetime64(start.isoformat(), "D") + np.asarray(days, dtype="timedelta64[D]")
    return np.datetime_as_string(moments, unit="D")


def _decimals(values: np.ndarray, places: int) -> np.ndarray:
    """Plain decimals with `places` digits: `8.00`, `0.05`, `-1500.00`."""
    return np.char.mod(f"%.{places}f", np.asarray(values, dtype=float))


def _booleans(values: np.ndarray) -> np.ndarray:
    return np.where(values, "true", "false")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 2))
    arguments = parser.parse_args()
    print(
        summarise(
            write_demo_feeds(
                arguments.out_dir,
                arguments.customers,
                arguments.weeks,
                arguments.seed,
                arguments.start,
            )
        )
    )
