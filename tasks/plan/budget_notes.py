"""The budget allocation explained in sentences a manager can read.

`tasks.plan.budget.allocate` hands over what the LP decided (amounts, binding constraints,
the budget's shadow price) and `explain` says, channel by channel, why it got what it got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.plan.budget_lp import BINDING_TOLERANCE, money, pct

if TYPE_CHECKING:
    from tasks.plan.budget import BudgetAdjustment, ChannelEconomics, Objective

OBJECTIVE_WORDS = {
    "disbursed_amount": "expected disbursed amount",
    "roi": "expected net return (net interest − expected loss − cost)",
}


@dataclass(frozen=True)
class Outcome:
    """What the LP decided, as the notes need it."""

    channels: Sequence[ChannelEconomics]
    budget: float
    objective: Objective
    objective_value: float
    amount: Mapping[str, float]
    touches: Mapping[str, int]
    binding: Sequence[str]
    shadow_price: float
    limited_by: Mapping[str, list[str]]
    floors: Mapping[str, float]
    overdue_ceiling: float | None
    overdue: float | None
    roi: float | None
    active: Sequence[BudgetAdjustment]
    adjustment_binding: Mapping[str, bool]
    overdue_excess: float = 0.0
    forced_by: Sequence[str] = ()


def explain(outcome: Outcome, earlier: list[str]) -> list[str]:
    """The explanation: the objective and the budget, `earlier` notes, then each channel."""
    return [
        *_headline(outcome),
        *earlier,
        *_channel_notes(outcome),
        *_overdue_notes(outcome),
        *_adjustment_notes(outcome),
        *_rounding_notes(outcome),
    ]


def _headline(o: Outcome) -> list[str]:
    """What was maximised, how much was spent, and what more budget would bring."""
    words = OBJECTIVE_WORDS[o.objective]
    spend = sum(o.amount.values())
    roi_text = f", roi {o.roi:.2f}" if o.roi is not None else ""
    notes = [
        f"Maximising {words}: {money(o.objective_value)} from a spend of {money(spend)} "
        f"of the budget of {money(o.budget)}{roi_text}."
    ]
    if "budget" in o.binding:
        notes.append(
            f"The whole budget is allocated; one more currency unit of budget would add "
            f"{o.shadow_price:.4g} of {words.split(' (')[0]}."
        )
    else:
        notes.append(
            f"{money(o.budget - spend)} of the budget is left unallocated: no channel with "
            "room left adds to the objective, so more budget would add nothing "
            "(shadow price 0)."
        )
    return notes


def _channel_notes(o: Outcome) -> list[str]:
    """Per channel, the limit it is at, or why it gets nothing; then who takes the rest."""
    notes = []
    interior = []
    for ch in o.channels:
        name, limits = ch.channel, o.limited_by[ch.channel]
        if f"capacity:{name}" in limits:
            notes.append(
                f"{name} is at its capacity of {ch.capacity_touches:,.0f} touches "
                f"({money(o.amount[name])})."
            )
        elif f"floor:{name}" in limits:
            notes.append(
                f"{name} is held at its floor of {money(o.floors[name])} so that it stays measured."
            )
        elif not limits and o.amount[name] > BINDING_TOLERANCE * o.budget:
            interior.append(name)
        elif not limits:
            notes.append(f"{name} gets nothing: {_why_nothing(o, ch)}.")
    if interior and "budget" in o.binding:
        verb = "absorbs" if len(interior) == 1 else "share"
        notes.append(f"{_join(interior)} {verb} the rest of the budget.")
    return notes


def _why_nothing(o: Outcome, ch: ChannelEconomics) -> str:
    """Why a channel with room left gets nothing: its value per unit, and what beats it."""
    value = ch.value_per_unit(o.objective)
    reason = f"each currency unit there returns {value:.4g}"
    if value > 0 and o.overdue_ceiling is not None and "overdue_ceiling" in o.binding:
        reason += f" but its expected overdue rate is {pct(ch.overdue_rate)}"
    elif value > 0 and "budget" in o.binding:
        reason += f", less than the {o.shadow_price:.4g} at the margin"
    return reason


def _overdue_notes(o: Outcome) -> list[str]:
    """Whether the overdue ceiling binds, or how far under it the mix stays."""
    if o.overdue_ceiling is None:
        return []
    if o.forced_by:
        mix = f", an expected overdue_rate_30 of {pct(o.overdue)}" if o.overdue is not None else ""
        others = [name for name in o.forced_by if name != "overdue_ceiling"]
        return [
            f"The overdue ceiling of {pct(o.overdue_ceiling)} cannot hold together with "
            f"{'; '.join(others)}: no split meets them all. The plan keeps the expected "
            f"overdue loans above the ceiling to the least they allow: {o.overdue_excess:.3g}"
            f"{mix}. Relax one of them to bring the mix back under."
        ]
    if "overdue_ceiling" in o.binding:
        return [
            f"The overdue ceiling of {pct(o.overdue_ceiling)} binds: the mix's expected "
            f"overdue_rate_30 is at the ceiling, which limits the riskier channels."
        ]
    if o.overdue is not None:
        return [
            f"The mix's expected overdue_rate_30 is {pct(o.overdue)}, under the ceiling "
            f"of {pct(o.overdue_ceiling)}."
        ]
    return []


def _adjustment_notes(o: Outcome) -> list[str]:
    """One sentence per adjustment: whether it binds."""
    notes = []
    for adj, label in zip(o.active, o.adjustment_binding, strict=True):
        if adj.kind == "retire":
            state = f"{adj.channel} gets nothing and has no floor"
        elif o.adjustment_binding[label]:
            state = "binding"
        else:
            state = "not binding (the optimum keeps within it anyway)"
        notes.append(f"Adjustment {label}{source(adj)}: {state}.")
    return notes


def _rounding_notes(o: Outcome) -> list[str]:
    """What rounding down to whole touches leaves unspent, when it is a cent or more."""
    unspent = sum(o.amount[c.channel] - o.touches[c.channel] * c.cost_per_touch for c in o.channels)
    if unspent >= 0.01:
        return [
            f"Touches are rounded down to whole touches, which leaves {money(unspent)} of "
            "the allocated amounts unspent."
        ]
    return []


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def source(adj: BudgetAdjustment) -> str:
    """Where an adjustment came from, as a parenthesis for the notes ('' when unknown)."""
    return f" (from {adj.source})" if adj.source else ""
