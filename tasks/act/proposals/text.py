"""The wording of proposals: one constructor and the number formats their sentences use.

Every rationale and expected impact is written with these, so that a figure reads the same
in every proposal (two decimals, percentages to one decimal, p-values to three digits).
"""

from __future__ import annotations

from typing import Any

from tasks.act.types import Proposal
from tasks.check.findings import finite_number
from tasks.check.result import Kpi


def proposal(
    kind: str, scope: dict[str, Any], params: dict[str, Any], rationale: str, impact: str
) -> Proposal:
    """A new proposal of `kind`: every rule builds its proposals here."""
    return Proposal(kind, scope, params, rationale, impact)


def kpi_text(kpi: Kpi, label: str) -> str:
    """'cac of sms is 412.50 against a target of 300.00 (off_track, +37.5 %)'."""
    return (
        f"{label} is {num(kpi.actual)} against a target of {num(kpi.target)} "
        f"({kpi.status}, {signed_pct(kpi.variance_pct)})"
    )


def num(value: Any) -> str:
    number = finite_number(value)
    return "n/a" if number is None else f"{number:,.2f}"


def pct(value: Any) -> str:
    number = finite_number(value)
    return "n/a" if number is None else f"{100 * number:.1f} %"


def signed_pct(value: Any) -> str:
    number = finite_number(value)
    return "n/a" if number is None else f"{100 * number:+.1f} %"


def pp(value: Any) -> str:
    number = finite_number(value)
    return "n/a" if number is None else f"{100 * number:+.2f} pp"


def p_text(value: Any) -> str:
    """'p = 0.0123', 'p < 0.001' or 'p n/a'."""
    number = finite_number(value)
    if number is None:
        return "p n/a"
    return f"p = {number:.3g}" if number >= 0.001 else "p < 0.001"
