"""The customers of one block: who they are, their tier, whether they are in the audience.

The audience is what the campaign may contact: consenting, not on the do-not-contact list,
not in an excluded industry, and with a credit score at or above the minimum; each member
is assigned a stable experiment arm.
"""

from __future__ import annotations

import numpy as np

from pdca.synthetic.campaign import CAMPAIGN_ID, MIN_CREDIT_SCORE, variants
from pdca.synthetic.columns import digits, id_text, join_text
from pdca.synthetic.world import (
    DAY,
    EXCLUDED_INDUSTRY_INDEX,
    INCOME_MEDIAN,
    INCOME_SIGMA,
    INDUSTRIES,
    MAIL_DOMAINS,
    MOBILE_PREFIX,
    REGION_SHARE,
    REGIONS,
    SALARIED_INDUSTRY_SHARE,
    SCORE_MEAN,
    SCORE_SD,
    SEGMENT_SHARE,
    SEGMENTS,
    SME_INDUSTRY_SHARE,
    SURNAMES,
)


def simulate_people(rng: np.random.Generator, first_number: int, n: int) -> dict:
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
    phone = join_text(
        "+86 ",
        digits(prefix, 3),
        " ",
        digits(rng.integers(0, 10_000, n), 4),
        " ",
        digits(rng.integers(0, 10_000, n), 4),
    )
    has_email = rng.random(n) < 0.92
    email = join_text(
        np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)],
        digits(numbers, 1),
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
    ids = id_text("c", numbers, 7)
    variant = np.full(n, "", dtype="U7")
    variant[audience] = variants(CAMPAIGN_ID, ids[audience])
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
