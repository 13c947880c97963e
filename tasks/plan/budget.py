"""Budget allocation of the plan stage: the period's budget split across the channels by LP.

The plan code estimates, per channel and from history, what one touch costs and what it
brings (`ChannelEconomics`); `allocate` then solves a linear programme with HiGHS
(`scipy.optimize.linprog(method="highs")`) and explains the result: the objective, the
marginal value of the budget, which constraints bind and, in plain sentences, why each
channel got what it got.

The linear programme
--------------------
Decision: x_c ≥ 0, the touches of channel c in the period (continuous). HiGHS is handed the
same programme in better-scaled variables, the share of the budget s_c = cost_c·x_c / B,
so that every currency row has coefficients of 1 whatever a touch costs (cents for an SMS,
tens of units for a relationship manager's call); x_c = s_c·B / cost_c afterwards. The
constraints on a single channel reach HiGHS as variable bounds, the budget and the overdue
ceiling as rows; every constraint keeps its own name, slack and shadow price.

    maximise    Σ value_c · x_c
    subject to  Σ cost_c·x_c                          ≤ B                  "budget"
                x_c                                   ≤ capacity_c         "capacity:c"
                cost_c·x_c                            ≥ floor_c            "floor:c"
                Σ loans_c·x_c·(overdue_rate_c − ceil) ≤ 0                  "overdue_ceiling"
                one row per adjustment bound (below)                       "adjustment:…"

- value_c is `disbursed_per_touch` for ``objective="disbursed_amount"`` and
  `net_income_per_touch − cost_per_touch` for ``objective="roi"``. The contract's ROI,
  (net_interest − cost − expected_loss) / cost, is a ratio of two linear functions; we
  maximise its numerator, the total net return, which is linear. For a fully spent budget
  the denominator is the budget itself, so the two agree; when no channel earns more than it
  costs the net-return objective leaves budget unspent, which a pure ratio would not notice.
- The overdue ceiling is the ratio constraint Σ loans·x·overdue_rate / Σ loans·x ≤ ceil
  multiplied out by the (non-negative) expected loan count: linear, and vacuous when the
  plan expects no loans.
- floor_c = floor_share·B for every channel that is not retired, so that no channel goes
  unmeasured. Floors that cannot be met are capped, never silently: a floor above the
  channel's upper limit (capacity, a `cap` adjustment, a `shift` away from it) is capped at
  that limit, and floors whose sum (with the adjustments' minimums) exceeds the budget are
  all scaled down by the same factor until they fit. Both say so in the notes, and
  `Explanation.floors_capped` names the channels concerned.
- `capacity_touches` is the channel's capacity for the whole period (the plan code turns
  "calls a relationship-manager team can make per day" into the period's figure).

Adjustments approved in the Act stage feed the next plan as `BudgetAdjustment` rows:
``retire`` → x_c = 0 (and no floor); ``cap``/``floor`` → an absolute upper/lower bound on the
channel's amount (``amount`` in currency units, or ``share`` of this period's budget);
``shift`` → at least ``share`` of the from-channel's previous amount (or an absolute
``amount``) moves to the to-channel:

    cost_from·x_from ≤ p_from − moved        "adjustment:<label>:from"
    cost_to·x_to     ≥ p_to + moved          "adjustment:<label>:to"

with p = the previous allocation rescaled to this period's budget (p_c = previous_c·B/Σ
previous), so that "move 10% of sms's budget" keeps its meaning when the budget changes.

Results and sign conventions
----------------------------
- Amounts are the LP's continuous spend per channel; `touches` is the whole number of
  touches an amount buys (rounded down), so each channel leaves less than one touch's cost
  unspent; expected values and `objective_value` are the LP's (continuous).
- Shadow prices are reported as the gain in the objective per unit by which a constraint is
  relaxed, so they are ≥ 0 for a maximisation. HiGHS minimises −objective, and
  `res.ineqlin.marginals` is ∂(minimum)/∂(right-hand side) ≤ 0 for a ≤ row, so the reported
  value is −marginal, rescaled to natural units: per currency unit for budget, capacity,
  floor and adjustment rows; per expected overdue loan above the ceiling for
  ``overdue_ceiling``. The budget's shadow price is the value of one more currency unit of
  budget with every other bound (floors included) held at its amount.
- A constraint is *binding* when its slack is ≈ 0 (within 1e-7 of the budget, or of the
  overdue row's scale). A retired channel's row is therefore always binding.
- An infeasible programme raises `BudgetInfeasible` naming an irreducible conflicting set of
  constraints, found by dropping one constraint at a time (a deletion filter): every named
  constraint is needed for the conflict, so relaxing any one of them removes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import linprog

from pdca.errors import UserError

Objective = Literal["disbursed_amount", "roi"]
OBJECTIVES: tuple[str, ...] = ("disbursed_amount", "roi")
ADJUSTMENT_KINDS: tuple[str, ...] = ("shift", "retire", "cap", "floor")

BINDING_TOLERANCE = 1e-7
"""Slack below which a constraint counts as binding, in shares of the budget."""

_OBJECTIVE_WORDS = {
    "disbursed_amount": "expected disbursed amount",
    "roi": "expected net return (net interest − expected loss − cost)",
}


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
        size = _pct(self.share) if self.share is not None else _money(self.amount or 0.0)
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
    """Every constraint's gain per unit of relaxation (see the module docstring for units)."""
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


@dataclass
class _Row:
    """One ≤ row of the LP, in share-of-budget units: coeffs·s ≤ rhs."""

    name: str
    kind: str  # budget, capacity, floor, overdue_ceiling, adjustment
    coeffs: np.ndarray
    rhs: float
    unit: float  # natural units (currency, or overdue loans) per LP unit
    channel: str | None
    text: str  # the constraint in words, for messages


def allocate(
    channels: Sequence[ChannelEconomics],
    budget: float,
    *,
    objective: Objective = "disbursed_amount",
    floor_share: float = 0.05,
    overdue_ceiling: float | None = None,
    adjustments: Sequence[BudgetAdjustment] = (),
    previous: Mapping[str, float] | None = None,
) -> Allocation:
    """Split `budget` across `channels` to maximise `objective` (see the module docstring).

    Raises `BudgetInfeasible` when the constraints contradict each other, and ValueError
    for malformed input (no channels, duplicates, non-positive budget, an adjustment naming
    an unknown channel, a shift without a previous allocation).
    """
    names = [c.channel for c in channels]
    _validate(names, budget, objective, floor_share, overdue_ceiling, adjustments, previous)
    n = len(names)
    index = {name: i for i, name in enumerate(names)}
    notes: list[str] = []

    # Adjustments for channels this plan does not have: a retirement is already done.
    active: list[BudgetAdjustment] = []
    for adj in adjustments:
        if adj.kind == "retire" and adj.channel not in index:
            notes.append(f"Adjustment {adj.label}{_source(adj)}: {adj.channel} is not planned.")
        else:
            active.append(adj)
    retired = {adj.channel for adj in active if adj.kind == "retire"}

    rows, labels = _constraint_rows(channels, budget, overdue_ceiling, active, previous, notes)
    floors, capped = _fit_floors(names, budget, floor_share, retired, rows, notes)
    rows += [
        _bound(f"floor:{name}", "floor", index, name, budget, lower=f)
        for name, f in floors.items()
        if f > 1e-12 * budget
    ]

    values = np.array([c.value_per_unit(objective) for c in channels])
    value_scale = float(np.abs(values).max()) or 1.0
    solution = _solve(rows, -values / value_scale, n)
    if solution.status == 2:
        conflict = _conflict(rows, n)
        raise BudgetInfeasible(
            [r.name for r in conflict], [f"{r.name} ({r.text})" for r in conflict]
        )
    if solution.status != 0:
        raise RuntimeError(f"HiGHS could not solve the budget allocation: {solution.message}")

    shares = solution.shares
    binding = [
        row.name for row in rows if row.rhs - float(row.coeffs @ shares) <= BINDING_TOLERANCE
    ]
    with np.errstate(over="ignore"):  # a row of near-zero scale may have a huge price
        shadow = {
            row.name: _clean(-m * value_scale * budget / row.unit)
            for row, m in zip(rows, solution.marginals, strict=True)
        }

    amount, touches, disbursed, net, loans = {}, {}, {}, {}, {}
    for i, ch in enumerate(channels):
        spend = float(shares[i] * budget)
        x = spend / ch.cost_per_touch
        amount[ch.channel] = spend
        whole = math.floor(x * (1 + 1e-9) + 1e-9)
        if ch.capacity_touches is not None:
            whole = min(whole, math.floor(ch.capacity_touches + 1e-9))
        touches[ch.channel] = whole
        disbursed[ch.channel] = x * ch.disbursed_per_touch
        net[ch.channel] = x * ch.net_income_per_touch
        loans[ch.channel] = x * ch.loans_per_touch

    limited_by: dict[str, list[str]] = {name: [] for name in names}
    for row in rows:
        if row.name in binding and row.channel is not None:
            limited_by[row.channel].append(row.name)

    spend = sum(amount.values())
    objective_value = float(values @ shares) * budget
    roi = (sum(net.values()) - spend) / spend if spend > 0 else None
    total_loans = sum(loans.values())
    overdue = (
        sum(loans[c.channel] * c.overdue_rate for c in channels) / total_loans
        if total_loans > 1e-12
        else None
    )
    adjustment_binding = {
        label: any(name in binding for name in row_names) for label, row_names in labels.items()
    }
    notes = _notes(
        channels=channels,
        budget=budget,
        objective=objective,
        objective_value=objective_value,
        amount=amount,
        touches=touches,
        binding=binding,
        shadow_price=shadow["budget"],
        limited_by=limited_by,
        floors=floors,
        overdue_ceiling=overdue_ceiling,
        overdue=overdue,
        roi=roi,
        active=active,
        adjustment_binding=adjustment_binding,
        earlier=notes,
    )
    explanation = Explanation(
        status="optimal",
        objective=objective,
        objective_value=objective_value,
        budget_shadow_price=shadow["budget"],
        binding=binding,
        notes=notes,
        shadow_prices=shadow,
        floors=floors,
        floors_capped=capped,
        adjustments=adjustment_binding,
        spend=spend,
        roi=roi,
        expected_overdue_rate=overdue,
    )
    return Allocation(
        channels=tuple(names),
        budget=budget,
        objective=objective,
        amount=amount,
        touches=touches,
        expected_disbursed=disbursed,
        expected_net=net,
        expected_loans=loans,
        explanation=explanation,
        limited_by=limited_by,
    )


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


def _constraint_rows(
    channels: Sequence[ChannelEconomics],
    budget: float,
    overdue_ceiling: float | None,
    adjustments: Sequence[BudgetAdjustment],
    previous: Mapping[str, float] | None,
    notes: list[str],
) -> tuple[list[_Row], dict[str, list[str]]]:
    """Every row but the floors, and each adjustment's label → the names of its rows."""
    n = len(channels)
    index = {c.channel: i for i, c in enumerate(channels)}
    rows = [_Row("budget", "budget", np.ones(n), 1.0, budget, None, f"total ≤ {_money(budget)}")]
    for ch in channels:
        if ch.capacity_touches is not None:
            cap = ch.capacity_touches * ch.cost_per_touch
            text = f"≤ {ch.capacity_touches:,.0f} touches = {_money(cap)}"
            name = f"capacity:{ch.channel}"
            rows.append(_bound(name, "capacity", index, ch.channel, budget, upper=cap, text=text))
    if overdue_ceiling is not None:
        # expected overdue loans above the ceiling per share of the budget, by channel
        excess = budget * np.array(
            [
                c.loans_per_touch / c.cost_per_touch * (c.overdue_rate - overdue_ceiling)
                for c in channels
            ]
        )
        scale = float(np.abs(excess).max())
        if scale > 0:  # else no channel brings loans: the ceiling holds whatever the split
            text = f"expected overdue_rate_30 ≤ {_pct(overdue_ceiling)}"
            rows.append(
                _Row("overdue_ceiling", "overdue_ceiling", excess / scale, 0.0, scale, None, text)
            )

    rescaled: dict[str, float] = {}
    if previous is not None and any(adj.kind == "shift" for adj in adjustments):
        total = sum(previous.values())
        rescaled = {c: v * budget / total for c, v in previous.items()}
        if not math.isclose(total, budget, rel_tol=1e-9):
            notes.append(
                f"The previous allocation ({_money(total)} in all) is rescaled to this "
                f"period's budget of {_money(budget)} for the shift adjustments."
            )
    labels: dict[str, list[str]] = {}
    for adj in adjustments:
        label, k = adj.label, 2
        while label in labels:
            label, k = f"{adj.label} #{k}", k + 1
        name, c = f"adjustment:{label}", adj.channel
        if adj.kind == "retire":
            new = [_bound(name, "adjustment", index, c, budget, upper=0.0, text="= 0, retired")]
        elif adj.kind in ("cap", "floor"):
            size = adj.amount if adj.amount is not None else (adj.share or 0.0) * budget
            side = {"upper" if adj.kind == "cap" else "lower": size}
            new = [_bound(name, "adjustment", index, c, budget, **side)]
        else:
            to = adj.to_channel or ""
            p_from, p_to = rescaled.get(c, 0.0), rescaled.get(to, 0.0)
            moved = adj.amount if adj.amount is not None else (adj.share or 0.0) * p_from
            upper, lower = p_from - moved, p_to + moved
            new = [
                _bound(f"{name}:from", "adjustment", index, c, budget, upper=upper),
                _bound(f"{name}:to", "adjustment", index, to, budget, lower=lower),
            ]
        labels[label] = [row.name for row in new]
        rows += new
    return rows, labels


def _bound(
    name: str,
    kind: str,
    index: Mapping[str, int],
    channel: str,
    budget: float,
    *,
    upper: float | None = None,
    lower: float | None = None,
    text: str = "",
) -> _Row:
    """A row on one channel's amount: amount ≤ `upper` or amount ≥ `lower` (currency)."""
    coeffs = np.zeros(len(index))
    if upper is not None:
        coeffs[index[channel]] = 1.0
        rhs, text = upper / budget, text or f"≤ {_money(upper)}"
    else:
        coeffs[index[channel]] = -1.0
        rhs, text = -(lower or 0.0) / budget, text or f"≥ {_money(lower or 0.0)}"
    return _Row(name, kind, coeffs, rhs, budget, channel, f"{channel} {text}")


def _fit_floors(
    names: Sequence[str],
    budget: float,
    floor_share: float,
    retired: set[str],
    rows: Sequence[_Row],
    notes: list[str],
) -> tuple[dict[str, float], tuple[str, ...]]:
    """Each channel's floor: floor_share·budget, capped at its upper limit, scaled to fit."""
    uppers: dict[str, tuple[float, str]] = {}
    lowers: dict[str, float] = {}
    for row in rows:
        if row.channel is None or np.count_nonzero(row.coeffs) != 1:
            continue
        bound = row.rhs / float(row.coeffs[names.index(row.channel)]) * budget
        if row.coeffs.sum() > 0:
            if bound < uppers.get(row.channel, (math.inf, ""))[0]:
                uppers[row.channel] = (max(bound, 0.0), f"{row.name}: {row.text}")
        else:
            lowers[row.channel] = max(lowers.get(row.channel, 0.0), bound)

    floors: dict[str, float] = {}
    capped: list[str] = []
    wanted = floor_share * budget
    for name in names:
        if name in retired or wanted == 0:
            floors[name] = 0.0
            continue
        upper, why = uppers.get(name, (math.inf, ""))
        floors[name] = min(wanted, upper)
        if upper < wanted:
            capped.append(name)
            notes.append(
                f"The {_pct(floor_share)} floor of {_money(wanted)} for {name} is capped at "
                f"{_money(upper)} by {why}."
            )

    def need(t: float) -> float:
        return sum(max(t * floors[c], lowers.get(c, 0.0)) for c in names)

    full = need(1.0)
    if full > budget * (1 + 1e-12):
        lo, hi = 0.0, 1.0
        if need(0.0) < budget:
            for _ in range(100):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if need(mid) <= budget else (lo, mid)
        scaled = [c for c in names if floors[c] > 0]
        floors = {c: lo * f for c, f in floors.items()}
        capped += [c for c in scaled if c not in capped]
        with_minimums = " with the adjustments' minimums" if lowers else ""
        notes.append(
            f"The floors need {_money(full)}{with_minimums}, more than the budget of "
            f"{_money(budget)}: every floor is scaled down to {_pct(lo)} of its size ("
            + ", ".join(f"{c} {_money(floors[c])}" for c in scaled)
            + ")."
        )
    return floors, tuple(capped)


def _conflict(rows: Sequence[_Row], n: int) -> list[_Row]:
    """An irreducible infeasible subset of `rows` (deletion filter: drop what is not needed)."""
    keep = list(rows)
    for row in rows:
        trial = [r for r in keep if r is not row]
        if not _feasible(trial, n):
            keep = trial
    return keep


def _feasible(rows: Sequence[_Row], n: int) -> bool:
    return _solve(rows, np.zeros(n), n).status != 2


@dataclass
class _Solution:
    status: int  # scipy's: 0 optimal, 2 infeasible, other: HiGHS failed
    message: str
    shares: np.ndarray
    marginals: np.ndarray  # per row: ∂(minimum)/∂(row's right-hand side)


def _solve(rows: Sequence[_Row], cost: np.ndarray, n: int) -> _Solution:
    """Minimise cost·s over the rows with HiGHS.

    Rows on a single channel go in as variable bounds (the tightest of each side), the
    others as inequality rows: HiGHS's presolve can misjudge tiny singleton rows as
    infeasible where the same bounds are fine. Each bound's dual goes to the row that set it.
    """
    lower, upper = np.zeros(n), np.full(n, np.inf)
    lower_row: list[int | None] = [None] * n
    upper_row: list[int | None] = [None] * n
    general = []
    for k, row in enumerate(rows):
        nonzero = np.flatnonzero(row.coeffs)
        if len(nonzero) != 1:
            general.append(k)
            continue
        i = int(nonzero[0])
        bound = row.rhs / row.coeffs[i]
        if row.coeffs[i] > 0 and bound < upper[i]:
            upper[i], upper_row[i] = bound, k
        elif row.coeffs[i] < 0 and bound > lower[i]:
            lower[i], lower_row[i] = bound, k
    marginals = np.zeros(len(rows))
    if np.any(lower > upper):
        return _Solution(2, "a channel's lower bound exceeds its upper bound", lower, marginals)
    res = linprog(
        cost,
        A_ub=np.array([rows[k].coeffs for k in general]) if general else None,
        b_ub=np.array([rows[k].rhs for k in general]) if general else None,
        bounds=list(zip(lower, upper, strict=True)),
        method="highs",
    )
    if res.status != 0:
        return _Solution(res.status, res.message, lower, marginals)
    for k, m in zip(general, res.ineqlin.marginals, strict=True):
        marginals[k] = m
    for i in range(n):
        if upper_row[i] is not None:
            marginals[upper_row[i]] = res.upper.marginals[i] / rows[upper_row[i]].coeffs[i]
        if lower_row[i] is not None:
            marginals[lower_row[i]] = res.lower.marginals[i] / rows[lower_row[i]].coeffs[i]
    shares = np.clip(res.x, lower, upper)
    return _Solution(0, res.message, np.where(shares > 1e-12, shares, 0.0), marginals)


def _notes(
    *,
    channels: Sequence[ChannelEconomics],
    budget: float,
    objective: Objective,
    objective_value: float,
    amount: Mapping[str, float],
    touches: Mapping[str, int],
    binding: Sequence[str],
    shadow_price: float,
    limited_by: Mapping[str, list[str]],
    floors: Mapping[str, float],
    overdue_ceiling: float | None,
    overdue: float | None,
    roi: float | None,
    active: Sequence[BudgetAdjustment],
    adjustment_binding: Mapping[str, bool],
    earlier: list[str],
) -> list[str]:
    """The explanation in sentences a manager can read."""
    words = _OBJECTIVE_WORDS[objective]
    spend = sum(amount.values())
    roi_text = f", roi {roi:.2f}" if roi is not None else ""
    notes = [
        f"Maximising {words}: {_money(objective_value)} from a spend of {_money(spend)} "
        f"of the budget of {_money(budget)}{roi_text}."
    ]
    if "budget" in binding:
        notes.append(
            f"The whole budget is allocated; one more currency unit of budget would add "
            f"{shadow_price:.4g} of {words.split(' (')[0]}."
        )
    else:
        notes.append(
            f"{_money(budget - spend)} of the budget is left unallocated: no channel with "
            "room left adds to the objective, so more budget would add nothing "
            "(shadow price 0)."
        )
    notes += earlier
    interior = []
    for ch in channels:
        name, limits = ch.channel, limited_by[ch.channel]
        if f"capacity:{name}" in limits:
            notes.append(
                f"{name} is at its capacity of {ch.capacity_touches:,.0f} touches "
                f"({_money(amount[name])})."
            )
        elif f"floor:{name}" in limits:
            notes.append(
                f"{name} is held at its floor of {_money(floors[name])} so that it stays measured."
            )
        elif not limits and amount[name] > BINDING_TOLERANCE * budget:
            interior.append(name)
        elif not limits:
            value = ch.value_per_unit(objective)
            reason = f"each currency unit there returns {value:.4g}"
            if value > 0 and overdue_ceiling is not None and "overdue_ceiling" in binding:
                reason += f" but its expected overdue rate is {_pct(ch.overdue_rate)}"
            elif value > 0 and "budget" in binding:
                reason += f", less than the {shadow_price:.4g} at the margin"
            notes.append(f"{name} gets nothing: {reason}.")
    if interior and "budget" in binding:
        who = _join(interior)
        verb = "absorbs" if len(interior) == 1 else "share"
        notes.append(f"{who} {verb} the rest of the budget.")
    if overdue_ceiling is not None:
        if "overdue_ceiling" in binding:
            notes.append(
                f"The overdue ceiling of {_pct(overdue_ceiling)} binds: the mix's expected "
                f"overdue_rate_30 is at the ceiling, which limits the riskier channels."
            )
        elif overdue is not None:
            notes.append(
                f"The mix's expected overdue_rate_30 is {_pct(overdue)}, under the ceiling "
                f"of {_pct(overdue_ceiling)}."
            )
    for adj, label in zip(active, adjustment_binding, strict=True):
        if adj.kind == "retire":
            state = f"{adj.channel} gets nothing and has no floor"
        elif adjustment_binding[label]:
            state = "binding"
        else:
            state = "not binding (the optimum keeps within it anyway)"
        notes.append(f"Adjustment {label}{_source(adj)}: {state}.")
    unspent = sum(amount[c.channel] - touches[c.channel] * c.cost_per_touch for c in channels)
    if unspent >= 0.01:
        notes.append(
            f"Touches are rounded down to whole touches, which leaves {_money(unspent)} of "
            "the allocated amounts unspent."
        )
    return notes


def _unit(n: int, i: int) -> np.ndarray:
    row = np.zeros(n)
    row[i] = 1.0
    return row


def _clean(value: float) -> float:
    return 0.0 if abs(value) < 1e-12 else float(value)


def _money(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _pct(value: float | None) -> str:
    return f"{100 * (value or 0.0):.4g}%"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _source(adj: BudgetAdjustment) -> str:
    return f" (from {adj.source})" if adj.source else ""
