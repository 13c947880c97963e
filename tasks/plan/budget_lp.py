"""The budget allocation's linear programme: its rows, the channels' floors, the HiGHS call.

`tasks.plan.budget.allocate` builds the programme here, solves it and, when it is
infeasible, asks for a conflicting set of constraints to name. The formulation, the scaling
to shares of the budget and the sign conventions are written out in docs/budget.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linprog

if TYPE_CHECKING:
    from tasks.plan.budget import BudgetAdjustment, ChannelEconomics

BINDING_TOLERANCE = 1e-7
"""Slack below which a constraint counts as binding, in shares of the budget."""


@dataclass
class Row:
    """One ≤ row of the LP, in share-of-budget units: coeffs·s ≤ rhs."""

    name: str
    kind: str  # budget, capacity, floor, overdue_ceiling, adjustment
    coeffs: np.ndarray
    rhs: float
    unit: float  # natural units (currency, or overdue loans) per LP unit
    channel: str | None
    text: str  # the constraint in words, for messages


@dataclass
class Solution:
    """What HiGHS returned, with every row's dual (bounds' duals given back to their rows)."""

    status: int  # scipy's: 0 optimal, 2 infeasible, other: HiGHS failed
    message: str
    shares: np.ndarray
    marginals: np.ndarray  # per row: ∂(minimum)/∂(row's right-hand side)


@dataclass
class Elastic:
    """The solve with the overdue ceiling as an elastic row (docs/budget.md).

    When the ceiling cannot hold together with the other rows, its right-hand side is
    raised by the least excess they allow and the programme is solved again: the excess
    goes first, as under an infinitely heavy penalty, and the objective comes second.
    """

    rows: list[Row]
    """The rows solved (the ceiling's raised), or, when infeasible, the rows to search."""
    solution: Solution
    excess: float
    """Expected overdue loans above the ceiling that the other rows force (0: it holds)."""
    forced_by: tuple[str, ...]
    """When the ceiling cannot hold: an irreducible set of rows that, with it, conflict."""


@dataclass(frozen=True)
class PreviousSplit:
    """The previous period's split, and the budget it was made for (None: its sum)."""

    amounts: Mapping[str, float]
    budget: float | None = None


def build_rows(
    channels: Sequence[ChannelEconomics],
    budget: float,
    floor_share: float,
    overdue_ceiling: float | None,
    active: Sequence[BudgetAdjustment],
    previous: PreviousSplit | None,
    notes: list[str],
) -> tuple[list[Row], dict[str, list[str]], dict[str, float], tuple[str, ...]]:
    """Every row of the programme, floors last.

    Also returns each adjustment's label → the names of its rows, the floor each channel
    got and the channels whose floor was capped; what had to give is added to `notes`.
    """
    names = [c.channel for c in channels]
    index = {name: i for i, name in enumerate(names)}
    retired = {adj.channel for adj in active if adj.kind == "retire"}
    rows = _channel_rows(channels, budget, overdue_ceiling)
    capacity = {
        c.channel: c.capacity_touches * c.cost_per_touch
        for c in channels
        if c.capacity_touches is not None
    }
    adjustment_rows, labels = _adjustment_rows(index, budget, active, previous, capacity, notes)
    rows += adjustment_rows
    floors, capped = _fit_floors(names, budget, floor_share, retired, rows, notes)
    rows += [
        bound(f"floor:{name}", "floor", index, name, budget, lower=f)
        for name, f in floors.items()
        if f > 1e-12 * budget
    ]
    return rows, labels, floors, capped


def _channel_rows(
    channels: Sequence[ChannelEconomics], budget: float, overdue_ceiling: float | None
) -> list[Row]:
    """The budget row, each channel's capacity and the overdue ceiling."""
    n = len(channels)
    index = {c.channel: i for i, c in enumerate(channels)}
    rows = [Row("budget", "budget", np.ones(n), 1.0, budget, None, f"total ≤ {money(budget)}")]
    for ch in channels:
        if ch.capacity_touches is not None:
            cap = ch.capacity_touches * ch.cost_per_touch
            text = f"≤ {ch.capacity_touches:,.0f} touches = {money(cap)}"
            name = f"capacity:{ch.channel}"
            rows.append(bound(name, "capacity", index, ch.channel, budget, upper=cap, text=text))
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
            text = f"expected overdue_rate_30 ≤ {pct(overdue_ceiling)}"
            rows.append(
                Row("overdue_ceiling", "overdue_ceiling", excess / scale, 0.0, scale, None, text)
            )
    return rows


def _adjustment_rows(
    index: Mapping[str, int],
    budget: float,
    adjustments: Sequence[BudgetAdjustment],
    previous: PreviousSplit | None,
    capacity: Mapping[str, float],
    notes: list[str],
) -> tuple[list[Row], dict[str, list[str]]]:
    """The rows of the Act stage's adjustments, and each one's label → its rows' names.

    A minimum an adjustment sets (a floor, what a shift moves in) is capped at the
    channel's capacity, and said: the capacity is what the channel can reach, which no
    approval changes.
    """
    rescaled = _rescaled_previous(budget, adjustments, previous, notes)
    rows: list[Row] = []
    labels: dict[str, list[str]] = {}
    for adj in adjustments:
        label, k = adj.label, 2
        while label in labels:
            label, k = f"{adj.label} #{k}", k + 1
        name, c = f"adjustment:{label}", adj.channel
        if adj.kind == "retire":
            new = [bound(name, "adjustment", index, c, budget, upper=0.0, text="= 0, retired")]
        elif adj.kind == "cap":
            size = adj.amount if adj.amount is not None else (adj.share or 0.0) * budget
            new = [bound(name, "adjustment", index, c, budget, upper=size)]
        elif adj.kind == "floor":
            size = adj.amount if adj.amount is not None else (adj.share or 0.0) * budget
            size = _within_capacity(label, c, size, capacity, notes)
            new = [bound(name, "adjustment", index, c, budget, lower=size)]
        else:
            to = adj.to_channel or ""
            p_from, p_to = rescaled.get(c, 0.0), rescaled.get(to, 0.0)
            moved = adj.amount if adj.amount is not None else (adj.share or 0.0) * p_from
            if moved > p_from:
                notes.append(
                    f"Adjustment {label} asks to move {money(moved)} from {c}, more than its "
                    f"previous {money(p_from)} at this budget: it moves all of it."
                )
                moved = p_from
            upper = p_from - moved
            lower = _within_capacity(label, to, p_to + moved, capacity, notes)
            new = [
                bound(f"{name}:from", "adjustment", index, c, budget, upper=upper),
                bound(f"{name}:to", "adjustment", index, to, budget, lower=lower),
            ]
        labels[label] = [row.name for row in new]
        rows += new
    return rows, labels


def _within_capacity(
    label: str, channel: str, minimum: float, capacity: Mapping[str, float], notes: list[str]
) -> float:
    """An adjustment's minimum for `channel`, capped at the channel's capacity (and said)."""
    limit = capacity.get(channel, math.inf)
    if minimum <= limit:
        return minimum
    notes.append(
        f"Adjustment {label} asks for at least {money(minimum)} on {channel}, more than its "
        f"capacity of {money(limit)}: it gets its capacity."
    )
    return limit


def _rescaled_previous(
    budget: float,
    adjustments: Sequence[BudgetAdjustment],
    previous: PreviousSplit | None,
    notes: list[str],
) -> dict[str, float]:
    """The previous allocation at this period's budget, which the shifts are measured on.

    Scaled by this budget over the previous period's; over the previous split's sum when
    that budget is unknown (a split that left budget unallocated then counts as whole).
    """
    if previous is None or not any(adj.kind == "shift" for adj in adjustments):
        return {}
    total = sum(previous.amounts.values())
    base = previous.budget or total
    made = f"made for a budget of {money(base)}" if previous.budget else f"{money(total)} in all"
    if not math.isclose(base, budget, rel_tol=1e-9):
        notes.append(
            f"The previous allocation ({made}) is rescaled to this period's budget of "
            f"{money(budget)} for the shift adjustments."
        )
    return {c: v * budget / base for c, v in previous.amounts.items()}


def bound(
    name: str,
    kind: str,
    index: Mapping[str, int],
    channel: str,
    budget: float,
    *,
    upper: float | None = None,
    lower: float | None = None,
    text: str = "",
) -> Row:
    """A row on one channel's amount: amount ≤ `upper` or amount ≥ `lower` (currency)."""
    coeffs = np.zeros(len(index))
    if upper is not None:
        coeffs[index[channel]] = 1.0
        rhs, text = upper / budget, text or f"≤ {money(upper)}"
    else:
        coeffs[index[channel]] = -1.0
        rhs, text = -(lower or 0.0) / budget, text or f"≥ {money(lower or 0.0)}"
    return Row(name, kind, coeffs, rhs, budget, channel, f"{channel} {text}")


def _fit_floors(
    names: Sequence[str],
    budget: float,
    floor_share: float,
    retired: set[str],
    rows: Sequence[Row],
    notes: list[str],
) -> tuple[dict[str, float], tuple[str, ...]]:
    """Each channel's floor: floor_share·budget, capped at its upper limit, scaled to fit."""
    uppers, lowers = _single_channel_limits(names, budget, rows)
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
                f"The {pct(floor_share)} floor of {money(wanted)} for {name} is capped at "
                f"{money(upper)} by {why}."
            )
    return _scale_floors(names, budget, floors, lowers, capped, notes)


def _single_channel_limits(
    names: Sequence[str], budget: float, rows: Sequence[Row]
) -> tuple[dict[str, tuple[float, str]], dict[str, float]]:
    """Per channel, its tightest upper limit (with the row that sets it) and its minimum."""
    uppers: dict[str, tuple[float, str]] = {}
    lowers: dict[str, float] = {}
    for row in rows:
        if row.channel is None or np.count_nonzero(row.coeffs) != 1:
            continue
        limit = row.rhs / float(row.coeffs[names.index(row.channel)]) * budget
        if row.coeffs.sum() > 0:
            if limit < uppers.get(row.channel, (math.inf, ""))[0]:
                uppers[row.channel] = (max(limit, 0.0), f"{row.name}: {row.text}")
        else:
            lowers[row.channel] = max(lowers.get(row.channel, 0.0), limit)
    return uppers, lowers


def _scale_floors(
    names: Sequence[str],
    budget: float,
    floors: dict[str, float],
    lowers: Mapping[str, float],
    capped: list[str],
    notes: list[str],
) -> tuple[dict[str, float], tuple[str, ...]]:
    """Scale every floor down by one factor until, with the minimums, they fit the budget."""

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
            f"The floors need {money(full)}{with_minimums}, more than the budget of "
            f"{money(budget)}: every floor is scaled down to {pct(lo)} of its size ("
            + ", ".join(f"{c} {money(floors[c])}" for c in scaled)
            + ")."
        )
    return floors, tuple(capped)


def conflict(rows: Sequence[Row], n: int) -> list[Row]:
    """An irreducible infeasible subset of `rows` (deletion filter: drop what is not needed).

    The floors are tried first, so that a conflict the approvals or capacities make on
    their own is named by them rather than by a floor that only adds to it.
    """
    keep = list(rows)
    for row in sorted(rows, key=lambda r: r.kind != "floor"):
        trial = [r for r in keep if r is not row]
        if not _feasible(trial, n):
            keep = trial
    return keep


def _feasible(rows: Sequence[Row], n: int) -> bool:
    return solve(rows, np.zeros(n), n).status != 2


def solve_elastic(rows: Sequence[Row], cost: np.ndarray, n: int) -> Elastic:
    """Minimise cost·s with the overdue ceiling elastic: it gives way only to the other rows.

    Infeasible only when the other rows conflict among themselves; `Elastic.rows` are then
    those rows, for `conflict` to name.
    """
    solution = solve(rows, cost, n)
    at = next((k for k, row in enumerate(rows) if row.kind == "overdue_ceiling"), None)
    if solution.status != 2 or at is None:
        return Elastic(list(rows), solution, 0.0, ())
    others = [row for k, row in enumerate(rows) if k != at]
    if not _feasible(others, n):
        return Elastic(others, solution, 0.0, ())
    least = _least_excess(rows, at, n)
    forced_by = tuple(row.name for row in conflict(rows, n))
    ceiling = rows[at]
    text = (
        f"{ceiling.text}, exceeded by the least the other constraints allow: "
        f"{least * ceiling.unit:.4g} expected overdue loans"
    )
    for slack in (0.0, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6):  # HiGHS may round the least low
        raised = [*rows[:at], replace(ceiling, rhs=least + slack, text=text), *rows[at + 1 :]]
        solution = solve(raised, cost, n)
        if solution.status != 2:
            break
    return Elastic(raised, solution, least * ceiling.unit, forced_by)


def _least_excess(rows: Sequence[Row], at: int, n: int) -> float:
    """The least excess of the ceiling row `at` over the other rows (LP units, ≥ 0)."""
    padded = [
        replace(row, coeffs=np.append(row.coeffs, -1.0 if k == at else 0.0))
        for k, row in enumerate(rows)
    ]
    cost = np.zeros(n + 1)
    cost[n] = 1.0
    found = solve(padded, cost, n + 1)
    if found.status != 0:
        raise RuntimeError(f"HiGHS could not bound the overdue ceiling's excess: {found.message}")
    return max(float(found.shares[n]), 0.0)


def solve(rows: Sequence[Row], cost: np.ndarray, n: int) -> Solution:
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
        limit = row.rhs / row.coeffs[i]
        if row.coeffs[i] > 0 and limit < upper[i]:
            upper[i], upper_row[i] = limit, k
        elif row.coeffs[i] < 0 and limit > lower[i]:
            lower[i], lower_row[i] = limit, k
    marginals = np.zeros(len(rows))
    if np.any(lower > upper):
        return Solution(2, "a channel's lower bound exceeds its upper bound", lower, marginals)
    res = linprog(
        cost,
        A_ub=np.array([rows[k].coeffs for k in general]) if general else None,
        b_ub=np.array([rows[k].rhs for k in general]) if general else None,
        bounds=list(zip(lower, upper, strict=True)),
        method="highs",
    )
    if res.status != 0:
        return Solution(res.status, res.message, lower, marginals)
    for k, m in zip(general, res.ineqlin.marginals, strict=True):
        marginals[k] = m
    for i in range(n):
        if upper_row[i] is not None:
            marginals[upper_row[i]] = res.upper.marginals[i] / rows[upper_row[i]].coeffs[i]
        if lower_row[i] is not None:
            marginals[lower_row[i]] = res.lower.marginals[i] / rows[lower_row[i]].coeffs[i]
    shares = np.clip(res.x, lower, upper)
    return Solution(0, res.message, np.where(shares > 1e-12, shares, 0.0), marginals)


def binding_rows(rows: Sequence[Row], shares: np.ndarray) -> list[str]:
    """Names of the rows whose slack at `shares` is within `BINDING_TOLERANCE`."""
    return [row.name for row in rows if row.rhs - float(row.coeffs @ shares) <= BINDING_TOLERANCE]


def binding_by_channel(
    rows: Sequence[Row], binding: Sequence[str], names: Sequence[str]
) -> dict[str, list[str]]:
    """Per channel, the names of the binding rows that concern it alone (in row order)."""
    limited_by: dict[str, list[str]] = {name: [] for name in names}
    for row in rows:
        if row.name in binding and row.channel is not None:
            limited_by[row.channel].append(row.name)
    return limited_by


def shadow_prices(
    rows: Sequence[Row], solution: Solution, value_scale: float, budget: float
) -> dict[str, float]:
    """Each row's gain in the objective per natural unit of relaxation (≥ 0)."""
    with np.errstate(over="ignore"):  # a row of near-zero scale may have a huge price
        return {
            row.name: _clean(-m * value_scale * budget / row.unit)
            for row, m in zip(rows, solution.marginals, strict=True)
        }


def _clean(value: float) -> float:
    return 0.0 if abs(value) < 1e-12 else float(value)


def money(value: float) -> str:
    """An amount in words: whole units from 100 up, cents below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def pct(value: float | None) -> str:
    """A share as a percentage with four significant digits."""
    return f"{100 * (value or 0.0):.4g}%"
