"""Beyond the funnel: which asset-quality or customer-value KPI is furthest on its bad side.

The contract's bottleneck is "the funnel stage furthest below target or baseline": a stage
of touches → applications → loans. A campaign can fill that funnel and still lend to people
who default, leave at payoff or rate the bank low, which no stage shows. The check reports
this diagnosis beside the stage (`bottleneck.beyond_funnel`), so that the seven KPIs of
issue 18 (and overdue_rate_30) can name the problem where the funnel cannot. A plain
function over dicts, JSON-ready like `findings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.check.findings import EPSILON, REFERENCE_KINDS, finite_number
from tasks.common.metrics import LOWER_IS_BETTER

BEYOND_FUNNEL: tuple[tuple[str, str], ...] = (
    ("npl_rate", "risk"),
    ("overdue_rate_30", "risk"),
    ("churn_rate", "customer"),
    ("nps", "customer"),
    ("ltv_cac", "channel"),
    ("ltv", "channel"),
    ("new_customers", "business"),
)
"""The KPIs beyond the funnel's stages that the bottleneck also weighs, each with its
family (the seeds' four): asset quality first, an equal weight beside the business ones."""

BEYOND_DIAGNOSES = {
    "npl_rate": (
        "The loans go bad (dpd 90 and more): asset quality, not volume, is what is wrong; "
        "tighten admission (score floor, debt ratio, industries) where the bad loans come "
        "from before buying more of them."
    ),
    "overdue_rate_30": (
        "Loans fall 30 days behind: an early warning on asset quality; look at whom the "
        "campaign lends to before it becomes the NPL rate."
    ),
    "churn_rate": (
        "Borrowers pay off and leave without asking for anything more: the campaign buys "
        "one loan, not a customer; offer the next product before the last instalment."
    ),
    "nps": (
        "Customers rate the bank low: contact pressure and complaints are the first "
        "suspects, so look at touches per customer and the complaint rate by channel."
    ),
    "ltv_cac": (
        "Customers are worth too little for what they cost to win: move budget towards "
        "the channels with the higher LTV/CAC."
    ),
    "ltv": (
        "Each loan is worth less: smaller amounts, thinner margins, shorter terms or "
        "expected losses; look at the offer and at who takes it."
    ),
    "new_customers": (
        "The loans go to people who already borrow: the campaign reaches few customers new "
        "to the bank; widen targeting beyond existing borrowers."
    ),
}
"""One sentence per KPI beyond the funnel: where a shortfall there points."""


def beyond_funnel(
    actual: Mapping[str, float | None],
    reference: Mapping[str, float | None],
    reference_kind: str,
) -> dict[str, Any] | None:
    """The asset-quality or customer-value KPI furthest on its bad side of its reference.

    The contract's bottleneck is a funnel stage; a campaign can fill its funnel and still
    lend to people who default or leave, which no stage shows. This is that diagnosis,
    reported beside the stage (`bottleneck.beyond_funnel`). Over BEYOND_FUNNEL's KPIs
    whose actual and reference are known and whose reference is not 0: gap_pct is the
    relative difference in the good direction ((actual − reference) / |reference|,
    negated where lower is better: nps may be negative), so the most negative is the
    worst. Returns metric, family, actual, reference, reference_kind, gap_pct, diagnosis,
    note and evidence (every KPI in order); metric and the rest None, with a note, when
    none is worse than its reference; None when none could be compared.
    """
    if reference_kind not in REFERENCE_KINDS:
        raise ValueError(f"reference_kind must be one of {REFERENCE_KINDS}, got {reference_kind!r}")
    evidence = []
    for metric, family in BEYOND_FUNNEL:
        value, basis = finite_number(actual.get(metric)), finite_number(reference.get(metric))
        gap = None
        if value is not None and basis is not None and basis != 0:
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
            gap = finite_number(sign * (value - basis) / abs(basis))
        evidence.append(
            {
                "metric": metric,
                "family": family,
                "actual": value,
                "reference": basis,
                "gap_pct": gap,
            }
        )
    compared = [row for row in evidence if row["gap_pct"] is not None]
    if not compared:
        return None
    worst = min(compared, key=lambda row: row["gap_pct"])  # ties: the earlier, risk first
    if worst["gap_pct"] >= -EPSILON:
        found = dict.fromkeys(["metric", "family", "actual", "reference"])
        return {
            **found,
            "reference_kind": reference_kind,
            "gap_pct": None,
            "diagnosis": None,
            "note": f"no customer-value or asset-quality KPI is worse than its {reference_kind}",
            "evidence": evidence,
        }
    return {
        **worst,
        "reference_kind": reference_kind,
        "diagnosis": BEYOND_DIAGNOSES[worst["metric"]],
        "note": None,
        "evidence": evidence,
    }
