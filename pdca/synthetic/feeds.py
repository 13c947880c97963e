"""Writing the demo history: blocks of customers simulated and appended to the seven feeds.

Customers are simulated in blocks, each with its customers' whole history, and each feed's
text is built and written one at a time, so memory is bounded by one block. The output is
deterministic for a seed: block k draws from `default_rng([seed, k])`, the bad rows from
their own generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pdca.synthetic.bad_rows import spoil
from pdca.synthetic.campaign import CAMPAIGN_ID, CHANNELS, PRODUCT, campaign_spec
from pdca.synthetic.columns import (
    FEED_COLUMNS,
    KeyCounter,
    booleans,
    dates,
    decimals,
    id_text,
    text_frame,
    timestamps,
)
from pdca.synthetic.outcomes import (
    simulate_applications,
    simulate_complaints,
    simulate_decisions,
    simulate_loans,
    simulate_repayments,
    simulate_surveys,
)
from pdca.synthetic.people import simulate_people
from pdca.synthetic.touches import simulate_touches
from pdca.synthetic.world import COMPLAINT_CATEGORIES, DAY, INDUSTRIES, REGIONS, SEGMENTS


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
    surveys: Path
    spec: Path
    """The campaign spec YAML written beside the feeds."""
    bad_rows: dict[str, int]
    """Feed -> number of deliberately bad rows written (see `BAD_ROWS`)."""
    rows: dict[str, int]
    """Feed -> data rows written, bad rows included (the header not counted)."""

    def feed(self, name: str) -> Path:
        """The file of feed `name`."""
        return getattr(self, name)


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
    keys = KeyCounter()
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
                frame, bad_rows[feed] = spoil(feed, frame, bad_rng, customers, keys)
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


@dataclass(frozen=True)
class _Block:
    """One block's simulated history, with the keys its rows were given."""

    start: date
    people: dict
    touches: dict
    applications: dict
    decisions: dict
    loans: dict
    repayments: dict
    complaints: dict
    surveys: dict
    touch_ids: np.ndarray
    application_ids: np.ndarray
    loan_ids: np.ndarray
    complaint_ids: np.ndarray
    survey_ids: np.ndarray


def _simulate_block(
    rng: np.random.Generator,
    first_number: int,
    size: int,
    weeks: int,
    start: date,
    keys: KeyCounter,
) -> tuple[dict[str, Callable[[], pd.DataFrame]], float]:
    """One block of customers with their whole history, and the cost of its touches.

    Each feed's text frame is built on demand, so that only one is in memory at a time.
    """
    end = weeks * 7 * DAY
    people = simulate_people(rng, first_number, size)
    touches = simulate_touches(rng, people, weeks, start)
    applications = simulate_applications(rng, people, touches, weeks, end)
    decisions = simulate_decisions(rng, people, applications, end)
    loans = simulate_loans(rng, decisions, end)
    # the closed loans and the surveys draw from streams of their own: the rest of the
    # history is the same as before they were simulated
    payoff_rng, survey_rng = (np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(2))
    repayments = simulate_repayments(rng, people, applications, loans, weeks, payoff_rng)
    complaints = simulate_complaints(rng, touches, end)
    surveys = simulate_surveys(survey_rng, touches, complaints, size, end)
    block = _Block(
        start=start,
        people=people,
        touches=touches,
        applications=applications,
        decisions=decisions,
        loans=loans,
        repayments=repayments,
        complaints=complaints,
        surveys=surveys,
        touch_ids=id_text("t", keys.take("touches", len(touches["t"])), 9),
        application_ids=id_text("a", keys.take("applications", len(applications["t"])), 8),
        loan_ids=id_text("l", keys.take("loans", len(loans["t"])), 8),
        complaint_ids=id_text("q", keys.take("complaints", len(complaints["t"])), 7),
        survey_ids=id_text("s", keys.take("surveys", len(surveys["t"])), 8),
    )
    frames = {feed: partial(build, block) for feed, build in _TEXT.items()}
    return frames, float(np.round(touches["cost"], 2).sum())


def _customers_text(b: _Block) -> pd.DataFrame:
    """The customers feed of a block."""
    return customers_text(b.people, b.start)


def customers_text(people: dict, start: date) -> pd.DataFrame:
    """The customers feed of `simulate_people`'s customers (the season simulator's too)."""
    return text_frame(
        "customers",
        customer_id=people["id"],
        segment=np.array(SEGMENTS)[people["segment"]],
        region=np.array(REGIONS)[people["region"]],
        credit_score=people["score"].astype(str),
        monthly_income=decimals(people["income"], 2),
        debt_ratio=decimals(people["debt_ratio"], 3),
        industry=np.array(INDUSTRIES)[people["industry"]],
        phone=people["phone"],
        email=people["email"],
        marketing_consent=booleans(people["consent"]),
        do_not_contact=booleans(people["dnc"]),
        created_at=timestamps(people["created"], start),
    )


def _touches_text(b: _Block) -> pd.DataFrame:
    """The touches feed of a block."""
    touches = b.touches
    return text_frame(
        "touches",
        touch_id=b.touch_ids,
        campaign_id=np.full(len(b.touch_ids), CAMPAIGN_ID),
        customer_id=b.people["id"][touches["who"]],
        channel=np.array(CHANNELS)[touches["channel"]],
        variant=touches["variant"],
        sent_at=timestamps(touches["t"], b.start),
        delivered=booleans(touches["delivered"]),
        responded=booleans(touches["responded"]),
        cost=decimals(touches["cost"], 2),
    )


def _applications_text(b: _Block) -> pd.DataFrame:
    """The applications feed of a block: organic ones carry no campaign id."""
    applications = b.applications
    return text_frame(
        "applications",
        application_id=b.application_ids,
        customer_id=b.people["id"][applications["who"]],
        campaign_id=np.where(applications["attributed"], CAMPAIGN_ID, ""),
        channel=applications["channel"],
        applied_at=timestamps(applications["t"], b.start),
        product_code=np.full(len(b.application_ids), PRODUCT),
        amount_requested=decimals(applications["amount"], 2),
    )


def _decisions_text(b: _Block) -> pd.DataFrame:
    """The decisions feed of a block: amounts and APR on approvals only."""
    decisions = b.decisions
    return text_frame(
        "decisions",
        application_id=b.application_ids[decisions["application"]],
        decided_at=timestamps(decisions["t"], b.start),
        decision=np.where(decisions["approved"], "approved", "rejected"),
        reject_reason=decisions["reason"],
        approved_amount=np.where(decisions["approved"], decimals(decisions["amount"], 2), ""),
        apr=np.where(decisions["approved"], decimals(decisions["apr"], 2), ""),
    )


def _loans_text(b: _Block) -> pd.DataFrame:
    """The loans feed of a block."""
    loans = b.loans
    return text_frame(
        "loans",
        loan_id=b.loan_ids,
        application_id=b.application_ids[loans["application"]],
        disbursed_at=timestamps(loans["t"], b.start),
        amount=decimals(loans["amount"], 2),
        apr=decimals(loans["apr"], 2),
        term_months=loans["term"].astype(str),
    )


def _repayments_text(b: _Block) -> pd.DataFrame:
    """The repayments feed of a block: one snapshot per loan and week."""
    repayments = b.repayments
    return text_frame(
        "repayments",
        loan_id=b.loan_ids[repayments["loan"]],
        as_of=dates(repayments["day"], b.start),
        dpd=repayments["dpd"].astype(str),
        outstanding=decimals(repayments["outstanding"], 2),
    )


def _complaints_text(b: _Block) -> pd.DataFrame:
    """The complaints feed of a block: a few do not name the campaign."""
    complaints = b.complaints
    return text_frame(
        "complaints",
        complaint_id=b.complaint_ids,
        customer_id=b.people["id"][complaints["who"]],
        campaign_id=np.where(complaints["named"], CAMPAIGN_ID, ""),
        received_at=timestamps(complaints["t"], b.start),
        category=np.array(COMPLAINT_CATEGORIES)[complaints["category"]],
    )


def _surveys_text(b: _Block) -> pd.DataFrame:
    """The surveys feed of a block: some answers do not name the campaign."""
    surveys = b.surveys
    return text_frame(
        "surveys",
        survey_id=b.survey_ids,
        customer_id=b.people["id"][surveys["who"]],
        campaign_id=np.where(surveys["named"], CAMPAIGN_ID, ""),
        answered_at=timestamps(surveys["t"], b.start),
        score=surveys["score"].astype(str),
        comment=np.where(surveys["score"] <= 3, "too many calls", ""),
    )


_TEXT: dict[str, Callable[[_Block], pd.DataFrame]] = {
    "customers": _customers_text,
    "touches": _touches_text,
    "applications": _applications_text,
    "decisions": _decisions_text,
    "loans": _loans_text,
    "repayments": _repayments_text,
    "complaints": _complaints_text,
    "surveys": _surveys_text,
}
"""Each feed's text, in the order the feeds are written (the contract's)."""
