"""Numbers for people: one way to write each kind of figure, with its unit.

The JSON keeps full precision; what people read (Prefect artifacts, the CLI's lines) goes
through here, so a count is never `74.0`, a rate never `0.0523`, an amount never
`1.681e+06`. The kind of a metric is known from its contract name.
"""

from __future__ import annotations

import math

MONEY = frozenset(
    {
        "cost",
        "cac",
        "disbursed_amount",
        "net_interest",
        "expected_loss",
        "loan_balance",
        "ltv",
        "amount",
        "budget",
    }
)
"""Metrics in currency units."""
COUNTS = frozenset(
    {
        "touches",
        "delivered",
        "responded",
        "applications",
        "approved",
        "disbursements",
        "complaints",
        "loans",
        "seasoned_loans",
        "overdue_loans",
        "new_customers",
        "rejections",
    }
)
"""Metrics that count things: whole numbers."""
PERCENTAGES = frozenset(
    {
        "reach_rate",
        "response_rate",
        "application_rate",
        "approval_rate",
        "disbursement_rate",
        "overdue_rate_30",
        "npl_rate",
        "churn_rate",
        "share",
    }
)
"""Shares of 1, written in %."""
PER_MILLE = frozenset({"complaint_rate"})
"""Already per 1,000 (complaints per 1,000 delivered), written in ‰."""
MULTIPLES = frozenset({"roi", "ltv_cac"})
"""Returns on a cost, written as a multiple (ROI 31.5 → `31.5×`)."""


def number(value: float | None, digits: int = 2) -> str:
    """A plain number with thousands separators; `n/a` when it cannot be known."""
    if not _known(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def count(value: float | None) -> str:
    """A whole count: `1,234`."""
    return "n/a" if not _known(value) else f"{round(value):,}"


def money(value: float | None, currency: str = "") -> str:
    """An amount: `1,681,234` (whole units above 100, else two decimals), with currency."""
    if not _known(value):
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text} {currency}".strip()


def percent(value: float | None, digits: int = 1) -> str:
    """A share of 1 in %: 0.0523 → `5.2 %`."""
    return "n/a" if not _known(value) else f"{value * 100:.{digits}f} %"


def per_mille(value: float | None) -> str:
    """A rate already per 1,000: `3.42 ‰`."""
    return "n/a" if not _known(value) else f"{value:.2f} ‰"


def multiple(value: float | None) -> str:
    """A return as a multiple: `31.5×`."""
    return "n/a" if not _known(value) else f"{value:,.1f}×"


def p_value(value: float | None) -> str:
    """A p-value: three decimals, `< 0.001` below that."""
    if not _known(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def metric(name: str, value: float | None, currency: str = "") -> str:
    """`value` of the contract metric `name`, in the metric's own unit."""
    if name in COUNTS:
        return count(value)
    if name in MONEY:
        return money(value, currency)
    if name in PERCENTAGES:
        return percent(value)
    if name in PER_MILLE:
        return per_mille(value)
    if name in MULTIPLES:
        return multiple(value)
    return number(value)


def signed_percent(value: float | None) -> str:
    """A relative change: `+12.5 %`, `−3.0 %`."""
    if not _known(value):
        return "n/a"
    return f"{value * 100:+.1f} %".replace("-", "−")


def _known(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))
