"""Budget allocation of the plan stage: the period's budget split across the channels by LP.

The plan code estimates, per channel and from history, what one touch costs and what it
brings (`ChannelEconomics`); `allocate` then solves a linear programme with HiGHS
(`scipy.optimize.linprog(method="highs")`) and explains the result: the objective, the
marginal value of the budget, which constraints bind and, in plain sentences, why each
channel got what it got. Approved Act actions reach the programme as `BudgetAdjustment`s.

The programme itself (variables, rows, floors, adjustments, sign conventions of the shadow
prices, how an infeasible set is named) is written out in docs/budget.md; it is built and
solved in `tasks.plan.budget_lp` and explained in `tasks.plan.budget_notes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pdca.errors import UserError
from tasks.plan.budget_lp import (
    BINDING_TOLERANCE,
    PreviousSplit,
    Row,
    binding_by_channel,
    binding_rows,
    build_rows,
    conflict,
    money,
    pct,
    shadow_prices,
    solve_elastic,
)
from tasks.plan.budget_notes import Outcome, explain, source

__all__ = [
    "ADJUSTMENT_KINDS",
    "BINDING_TOLERANCE",
    "OBJECTIVES",
    "Allocation",
    "BudgetAdjustment",
    "BudgetInfeasible",
    "ChannelEconomics",
    "Explanation",
    "Objective",
    "allocate",
]

Objective = Literal["disbursed_amount", "roi"]
OBJECTIVES: tuple[str, ...] = ("disbursed_amount", "roi")
ADJUSTMENT_KINDS: tuple[str, ...] = ("shift", "retire", "cap", "floor")


class BudgetInfeasible(UserError):
    """No allocation satisfies the constraints; `constraints` names a conflicting set."""

    def __init__(self, constraints: Sequence[str], details: Sequence[str]) -> None:
        self.constraints = tuple(constraints)
        listed = "; ".join(details)
        super().__init__(
            "budget allocation is infeasible: no split of the budget satisfies these "
            f"constraints together: {listed}. Relax or drop at least one of them."
        )


@dataclass(frozen=True)
class ChannelEconomics:
    """Expected values per touch of one channel, from history (the plan code estimates them).

    `net_income_per_touch` is (net interest − expected loss) / touches, before the cost of
    the touch; `capacity_touches` is the most touches the channel can make in the period
    (None: no limit).
    """

    channel: str
    cost_per_touch: float
    disbursed_per_touch: float
    net_income_per_touch: float
    loans_per_touch: float
    overdue_rate: float
    capacity_touches: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.cost_per_touch) and self.cost_per_touch > 0):
            problems.append(f"cost_per_touch must be > 0, got {self.cost_per_touch}")
        if not (math.isfinite(self.disbursed_per_touch) and self.disbursed_per_touch >= 0):
            problems.append(f"disbursed_per_touch must be ≥ 0, got {self.disbursed_per_touch}")
        if not math.isfinite(self.net_income_per_touch):
            problems.append(f"net_income_per_touch must be finite, got {self.net_income_per_touch}")
        if not (math.isfinite(self.loans_per_touch) and self.loans_per_touch >= 0):
            problems.append(f"loans_per_touch must be ≥ 0, got {self.loans_per_touch}")
        if not 0 <= self.overdue_rate <= 1:
            problems.append(f"overdue_rate must be within [0, 1], got {self.overdue_rate}")
        capacity = self.capacity_touches
        if capacity is not None and not (math.isfinite(capacity) and capacity >= 0):
            problems.append(f"capacity_touches must be ≥ 0 or None, got {capacity}")
        if problems:
            raise ValueError(f"channel {self.channel!r}: " + "; ".join(problems))

    def value_per_touch(self, objective: Objective) -> float:
        """What one touch adds to the objective."""
        if objective == "disbursed_amount":
            return self.disbursed_per_touch
        return self.net_income_per_touch - self.cost_per_touch

    def value_per_unit(self, objective: Objective) -> float:
        """What one currency unit spent on this channel adds to the objective."""
        return self.value_per_touch(objective) / self.cost_per_touch


@dataclass(frozen=True)
class BudgetAdjustment:
    """An approved Act action, as a constraint on the next plan's allocation.

    - ``retire``: `channel` gets nothing, and its floor is dropped.
    - ``cap`` / ``floor``: `channel`'s amount is at most / at least `amount` currency units
      (or `share` of this period's budget).
    - ``shift``: `share` of `channel`'s previous amount (or an absolute `amount`) moves to
      `to_channel`: the from-channel gets at most its previous amount less what moves, the
      to-channel at least its previous amount plus what moves (`allocate` needs `previous`).

    `source` says where it came from (e.g. the Act action's id) and is quoted in the notes.
    """

    kind: Literal["shift", "retire", "cap", "floor"]
    channel: str
    to_channel: str | None = None
    share: float | None = None
    amount: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in ADJUSTMENT_KINDS:
            problems.append(f"kind must be one of {', '.join(ADJUSTMENT_KINDS)}")
        elif self.kind == "retire":
            if self.to_channel is not None or self.share is not None or self.amount is not None:
                problems.append("retire takes no to_channel, share or amount")
        else:
            if (self.share is None) == (self.amount is None):
                problems.append(f"{self.kind} needs exactly one of share and amount")
            if self.share is not None and not 0 <= self.share <= 1:
                problems.append(f"share must be within [0, 1], got {self.share}")
            if self.amount is not None and not (math.isfinite(self.amount) and self.amount >= 0):
                problems.append(f"amount must be ≥ 0, got {self.amount}")
            if self.kind == "shift":
                if self.to_channel is None or self.to_channel == self.channel:
                    problems.append("shift needs a to_channel other than channel")
            elif self.to_channel is not None:
                problems.append(f"{self.kind} takes no to_channel")
        if problems:
            raise ValueError(
                f"budget adjustment {self.kind} {self.channel}: " + "; ".join(problems)
            )

    @property
    def label(self) -> str:
        """Short human name, used in constraint names: ``retire im``, ``shift 10% sms to phone``."""
        if self.kind == "retire":
            return f"retire {self.channel}"
        size = pct(self.share) if self.share is not None else money(self.amount or 0.0)
        if self.kind == "shift":
            return f"shift {size} {self.channel} to {self.to_channel}"
        of_budget = " of budget" if self.share is not None else ""
        return f"{self.kind} {self.channel} at {size}{of_budget}"


@dataclass(frozen=True)
class Explanation:
    """Why the allocation is what it is."""

    status: str
    objective: str
    objective_value: float
    budget_shadow_price: float
    """Objective gained per extra currency unit of budget (≥ 0; 0 when the budget is slack)."""
    binding: list[str]
    """Names of the constraints with slack ≈ 0, e.g. ``budget``, ``capacity:phone``."""
    notes: list[str]
    shadow_prices: dict[str, float]
    """Every constraint's gain per unit of relaxation (units: docs/budget.md)."""
    floors: dict[str, float]
    """The floor each channel actually got, after capping (0: none)."""
    floors_capped: tuple[str, ...]
    """Channels whose floor_share·budget floor was capped or scaled down (and noted)."""
    adjustments: dict[str, bool]
    """Each adjustment's label → whether it binds."""
    spend: float
    roi: float | None
    """(expected net income − spend) / spend of the allocation, the contract's roi."""
    expected_overdue_rate: float | None
    """Loan-weighted expected overdue_rate_30 of the mix (None when no loans are expected)."""
    overdue_excess: float = 0.0
    """Expected overdue loans above the overdue ceiling, the least the other constraints
    allow when the ceiling cannot hold with them; 0 when it holds."""
    overdue_ceiling_forced_by: tuple[str, ...] = ()
    """When the ceiling cannot hold: the constraints that, with it, admit no split."""


@dataclass
class Allocation:
    """The split of the budget, per channel, with its explanation."""

    channels: tuple[str, ...]
    budget: float
    objective: str
    amount: dict[str, float]
    touches: dict[str, int]
    expected_disbursed: dict[str, float]
    expected_net: dict[str, float]
    """Expected net income (net interest − expected loss), before the cost of the touches."""
    expected_loans: dict[str, float]
    explanation: Explanation
    limited_by: dict[str, list[str]] = field(default_factory=dict)
    """Per channel, the binding constraints that concern it."""

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per channel, JSON-ready, for `prefect.artifacts.create_table_artifact`."""
        return [
            {
                "channel": channel,
                "amount": round(self.amount[channel], 2),
                "share_of_budget": round(self.amount[channel] / self.budget, 4),
                "touches": self.touches[channel],
                "expected_disbursed": round(self.expected_disbursed[channel], 2),
                "expected_net": round(self.expected_net[channel], 2),
                "expected_loans": round(self.expected_loans[channel], 2),
                "floor": round(self.explanation.floors[channel], 2),
                "limited_by": ", ".join(self.limited_by.get(channel, [])),
            }
            for channel in self.channels
        ]


def allocate(
    channels: Sequence[ChannelEconomics],
    budget: float,
    *,
    objective: Objective = "disbursed_amount",
    floor_share: float = 0.05,
    overdue_ceiling: float | None = None,
    adjustments: Sequence[BudgetAdjustment] = (),
    previous: Mapping[str, float] | None = None,
    previous_budget: float | None = None,
) -> Allocation:
    """Split `budget` across `channels` to maximise `objective` (the LP: docs/budget.md).

    The overdue ceiling gives way, by the least possible, to the other constraints when it
    cannot hold with them (said in the notes and `Explanation.overdue_excess`). Raises
    `BudgetInfeasible` when the other constraints contradict each other, and ValueError
    for malformed input (no channels, duplicates, non-positive budget, an adjustment naming
    an unknown channel, a shift without a previous allocation). `previous_budget` is the
    budget `previous` was made for (shifts are rescaled by this budget over it).
    """
    names = [c.channel for c in channels]
    _validate(names, budget, objective, floor_share, overdue_ceiling, adjustments, previous)
    _validate_previous_budget(previous_budget)
    notes: list[str] = []
    active = _active_adjustments(adjustments, names, notes)
    split = PreviousSplit(previous, previous_budget) if previous is not None else None
    rows, labels, floors, capped = build_rows(
        channels, budget, floor_share, overdue_ceiling, active, split, notes
    )
    values = np.array([c.value_per_unit(objective) for c in channels])
    value_scale = float(np.abs(values).max()) or 1.0
    elastic = solve_elastic(rows, -values / value_scale, len(names))
    solution, rows = elastic.solution, elastic.rows
    _raise_unless_optimal(solution.status, solution.message, rows, len(names))

    shares = solution.shares
    binding = binding_rows(rows, shares)
    shadow = shadow_prices(rows, solution, value_scale, budget)
    e = _expected(channels, budget, shares)
    limited_by = binding_by_channel(rows, binding, names)
    adjustment_binding = {label: any(r in binding for r in labels[label]) for label in labels}
    outcome = Outcome(
        channels=channels,
        budget=budget,
        objective=objective,
        objective_value=float(values @ shares) * budget,
        amount=e.amount,
        touches=e.touches,
        binding=binding,
        shadow_price=shadow["budget"],
        limited_by=limited_by,
        floors=floors,
        overdue_ceiling=overdue_ceiling,
        overdue=_overdue_rate(channels, e.loans),
        roi=_roi(e),
        active=active,
        adjustment_binding=adjustment_binding,
        overdue_excess=elastic.excess,
        forced_by=elastic.forced_by,
    )
    explanation = _explanation(outcome, explain(outcome, notes), shadow, capped, e)
    return Allocation(
        channels=tuple(names),
        budget=budget,
        objective=objective,
        amount=e.amount,
        touches=e.touches,
        expected_disbursed=e.disbursed,
        expected_net=e.net,
        expected_loans=e.loans,
        explanation=explanation,
        limited_by=limited_by,
    )


def _explanation(
    o: Outcome, notes: list[str], shadow: dict[str, float], capped: tuple[str, ...], e: _Expected
) -> Explanation:
    """The explanation of an optimal split, from what the LP decided."""
    return Explanation(
        status="optimal",
        objective=o.objective,
        objective_value=o.objective_value,
        budget_shadow_price=shadow["budget"],
        binding=list(o.binding),
        notes=notes,
        shadow_prices=shadow,
        floors=dict(o.floors),
        floors_capped=capped,
        adjustments=dict(o.adjustment_binding),
        spend=sum(e.amount.values()),
        roi=o.roi,
        expected_overdue_rate=o.overdue,
        overdue_excess=o.overdue_excess,
        overdue_ceiling_forced_by=tuple(o.forced_by),
    )


def _active_adjustments(
    adjustments: Sequence[BudgetAdjustment], names: Sequence[str], notes: list[str]
) -> list[BudgetAdjustment]:
    """The adjustments that concern this plan: retiring an unplanned channel is already done."""
    active: list[BudgetAdjustment] = []
    for adj in adjustments:
        if adj.kind == "retire" and adj.channel not in names:
            notes.append(f"Adjustment {adj.label}{source(adj)}: {adj.channel} is not planned.")
        else:
            active.append(adj)
    return active


def _raise_unless_optimal(status: int, message: str, rows: Sequence[Row], n: int) -> None:
    """Name a conflicting set of constraints when infeasible; any other failure is a bug."""
    if status == 2:
        rows = conflict(rows, n)
        raise BudgetInfeasible([r.name for r in rows], [f"{r.name} ({r.text})" for r in rows])
    if status != 0:
        raise RuntimeError(f"HiGHS could not solve the budget allocation: {message}")


@dataclass
class _Expected:
    """Per channel: the LP's amount, the whole touches it buys and what they should bring."""

    amount: dict[str, float]
    touches: dict[str, int]
    disbursed: dict[str, float]
    net: dict[str, float]
    loans: dict[str, float]


def _expected(channels: Sequence[ChannelEconomics], budget: float, shares: np.ndarray) -> _Expected:
    """The amounts, whole touches (rounded down) and expected results of the LP's shares."""
    e = _Expected({}, {}, {}, {}, {})
    for i, ch in enumerate(channels):
        spend = float(shares[i] * budget)
        x = spend / ch.cost_per_touch
        e.amount[ch.channel] = spend
        whole = math.floor(x * (1 + 1e-9) + 1e-9)
        if ch.capacity_touches is not None:
            whole = min(whole, math.floor(ch.capacity_touches + 1e-9))
        e.touches[ch.channel] = whole
        e.disbursed[ch.channel] = x * ch.disbursed_per_touch
        e.net[ch.channel] = x * ch.net_income_per_touch
        e.loans[ch.channel] = x * ch.loans_per_touch
    return e


def _roi(e: _Expected) -> float | None:
    """(expected net income − spend) / spend, the contract's roi; None when nothing is spent."""
    spend = sum(e.amount.values())
    return (sum(e.net.values()) - spend) / spend if spend > 0 else None


def _overdue_rate(channels: Sequence[ChannelEconomics], loans: Mapping[str, float]) -> float | None:
    """Loan-weighted expected overdue rate of the mix; None when no loans are expected."""
    total_loans = sum(loans.values())
    if total_loans > 1e-12:
        return sum(loans[c.channel] * c.overdue_rate for c in channels) / total_loans
    return None


def _validate_previous_budget(previous_budget: float | None) -> None:
    if previous_budget is not None and not (math.isfinite(previous_budget) and previous_budget > 0):
        raise ValueError(f"previous_budget must be > 0, got {previous_budget}")


def _validate(
    names: list[str],
    budget: float,
    objective: str,
    floor_share: float,
    overdue_ceiling: float | None,
    adjustments: Sequence[BudgetAdjustment],
    previous: Mapping[str, float] | None,
) -> None:
    problems = []
    if not names:
        problems.append("no channels to allocate to")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"channels listed twice: {', '.join(duplicates)}")
    if not (math.isfinite(budget) and budget > 0):
        problems.append(f"budget must be > 0, got {budget}")
    if objective not in OBJECTIVES:
        problems.append(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not 0 <= floor_share <= 1:
        problems.append(f"floor_share must be within [0, 1], got {floor_share}")
    if overdue_ceiling is not None and not 0 <= overdue_ceiling <= 1:
        problems.append(f"overdue_ceiling must be within [0, 1], got {overdue_ceiling}")
    for adj in adjustments:
        named = [adj.channel] if adj.kind == "retire" else [adj.channel, adj.to_channel]
        unknown = [c for c in named if c is not None and c not in names]
        if adj.kind != "retire" and unknown:
            problems.append(f"adjustment {adj.label}: unknown channel {', '.join(unknown)}")
        if adj.kind == "shift" and (previous is None or sum(previous.values()) <= 0):
            problems.append(f"adjustment {adj.label} needs the previous allocation")
        elif adj.kind == "shift" and previous is not None and adj.channel not in previous:
            problems.append(f"adjustment {adj.label}: no previous amount for {adj.channel}")
    if previous is not None and any(not (math.isfinite(v) and v >= 0) for v in previous.values()):
        problems.append("previous amounts must be ≥ 0")
    if problems:
        raise ValueError("; ".join(problems))
