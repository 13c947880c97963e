"""The plan as typed objects: what the Plan stage hands to the CLI, the artifacts, the
cycle and the demo.

`record_plan` builds a `PlanResult` once; everything after it reads attributes. Its JSON
(`to_json`: what `pdca plan --json` prints and the plan flow returns) keeps the keys and
their order as they have always been; `from_json` reads a flow's return value back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from tasks.common.records import Record


@dataclass(frozen=True)
class BudgetLine(Record):
    """One channel's share of the period's budget, as the LP split it."""

    channel: str
    amount: float
    share_of_budget: float
    touches: int
    expected_disbursed: float
    expected_net: float
    expected_loans: float
    floor: float
    limited_by: str
    """The constraints that stop the channel getting more (capacity, the overdue ceiling …)."""


@dataclass(frozen=True)
class Target(Record):
    """A KPI target of the campaign (channel and segment None), a channel or a segment."""

    metric: str
    channel: str | None
    segment: str | None
    target: float
    tolerance_warn: float
    tolerance_fail: float
    lower_is_better: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    """Where the number comes from: the history, the mix, a fallback and its reason."""

    @property
    def is_campaign_wide(self) -> bool:
        return self.channel is None and self.segment is None


@dataclass(frozen=True)
class PlanInputs(Record):
    """What the plan was made from, kept with it for the audit."""

    history: list[str] = field(default_factory=list)
    growth: float | None = None
    objective: str | None = None
    applied_actions: list[int] = field(default_factory=list)
    """Approved actions this plan applied (each applied once, to the first plan after it)."""
    notes: list[str] = field(default_factory=list)
    budget_shadow_price: float | None = None
    binding: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlanResult(Record):
    """A new current version of a (campaign, period) plan."""

    _nested: ClassVar = {"budget": BudgetLine, "targets": Target, "inputs": PlanInputs}

    campaign: str
    period: str
    plan_id: int
    version: int
    budget: list[BudgetLine] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    inputs: PlanInputs = field(default_factory=PlanInputs)

    @property
    def total_budget(self) -> float:
        return sum(line.amount for line in self.budget)

    @property
    def campaign_targets(self) -> list[Target]:
        return [target for target in self.targets if target.is_campaign_wide]
