"""Targets: the campaign's, each channel's and each segment's, each from its own history.

Every scope gets volume targets (touches, delivered, applications, disbursements,
disbursed_amount), approval_rate, cac, roi, overdue_rate_30 and complaint_rate, learnt from
that scope's own part of the trailing weeks the plan learns from (`tasks.plan.plan`):

- a **channel**: its allocated touches through its own per-touch history;
- a **segment**: summed over the history's channel × segment cells — each channel's
  allocated touches spread over the segments as that channel's history touches were, each
  cell at its own per-touch outcomes. A segment's targets carry its own rates (a student's
  loans are small, an SME's large) and the segments add up to the campaign;
- the **campaign**: its channels' targets plus what arrives through channels it does not
  touch through (branch, partner applications of its customers: attributed to it and
  counted in its actuals), at their history rate per touch of the campaign, so that the
  targets and the actuals count the same applications.

A channel or segment whose history window has fewer than `Minimums.touches` touches takes
the campaign's rates instead (its volumes: the campaign's per planned touch); its
overdue_rate_30 needs `Minimums.loans` seasoned loans and its complaint_rate
`Minimums.delivered` delivered touches, else they are the campaign's. Every target's evidence
says which (`basis`: `own` or `campaign`, and `fallback`: why), and the plan's notes list
the fallbacks. The spec's `growth` lifts the outcomes for the same spend; the overdue
target never exceeds the spec's `max_overdue_rate_30`. The customer and value KPIs'
targets (new_customers, loan_balance, npl_rate, ltv, ltv_cac, nps, churn_rate) follow
each scope's, from `tasks.plan.value_targets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tasks.common.campaigns import CampaignSpec
from tasks.common.metrics import LOWER_IS_BETTER, VOLUME_TARGETS
from tasks.plan.budget import Allocation
from tasks.plan.plan import History
from tasks.plan.value_targets import value_rows

FOLLOW_BUDGET = ("touches", "delivered", "cost")
"""Counts that follow the planned touches."""
GROWN = ("applications", "approved", "disbursements", "disbursed_amount")
GROWN += ("net_interest", "expected_loss")
"""The outcomes the spec's growth lifts for the same spend."""
VOLUMES = (*FOLLOW_BUDGET, *GROWN)
HISTORY_RATES = ("approval_rate", "cac", "roi")
"""The history rates each target's evidence quotes beside the volumes."""
BUSINESS = (*VOLUME_TARGETS, *HISTORY_RATES)
"""The targets that follow a scope's volumes (the rest: overdue_rate_30, complaint_rate)."""


@dataclass(frozen=True)
class Minimums:
    """How much history a scope needs for targets of its own (settings
    `plan_min_history_touches`, `plan_min_history_loans`, `plan_min_history_delivered`).

    Complaints are rare (a few per 1,000 delivered), so their rate needs far more volume
    than the funnel's: 300 delivered touches without a complaint prove no target of 0 ‰."""

    touches: int = 200
    loans: int = 30
    delivered: int = 2_000


@dataclass(frozen=True)
class Basis:
    """Where a target's rate comes from: the scope's own history or the campaign's."""

    own: bool
    why: str | None = None

    @property
    def name(self) -> str:
        return "own" if self.own else "campaign"


OWN = Basis(True)


@dataclass(frozen=True)
class Rate:
    """An asset-quality target: its value, the scope's own history value, and the basis."""

    target: float | None
    history: float | None
    basis: Basis


@dataclass
class Scope:
    """One scope's expected volumes and where its rates come from."""

    channel: str | None
    segment: str | None
    volumes: pd.Series
    basis: Basis
    overdue: Rate
    complaint: Rate
    history: dict[str, float | None]
    """The scope's own history figures, quoted in the evidence."""


def targets_from(
    spec: CampaignSpec,
    history: History,
    allocation: Allocation,
    tolerance: tuple[float, float],
    minimums: Minimums = Minimums(),
) -> list[dict[str, Any]]:
    """Campaign, channel and segment targets with their bands, basis and evidence."""
    planned = {c: float(allocation.touches.get(c, 0)) for c in spec.channels}
    model = Model(spec, history, planned, minimums)
    scopes = [model.campaign(), *model.channels(), *model.segments()]
    evidence = {
        "sources": [f"{s.campaign_id} {s.window}" for s in history.sources],
        "growth": spec.growth,
    }
    cap = spec.risk.max_overdue_rate_30
    campaign = {**evidence, "other_channels": model.other_channels}
    rows = scope_rows(scopes[0], tolerance, campaign, cap)
    for scope in scopes[1:]:
        rows += scope_rows(scope, tolerance, evidence, cap)
    return rows + value_rows(spec, history, rows, tolerance, minimums.loans, evidence)


def fallback_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One sentence per scope and reason where targets fell back to the campaign's."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        why = row["evidence"].get("fallback")
        if why:
            scope = f"channel {row['channel']}" if row["channel"] else f"segment {row['segment']}"
            grouped.setdefault((scope, why), []).append(row["metric"])
    return [
        f"{scope}: {', '.join(metrics)} from the campaign's history ({why})"
        for (scope, why), metrics in grouped.items()
    ]


class Model:
    """The history cells weighted by the planned touches: what each scope should yield."""

    def __init__(
        self,
        spec: CampaignSpec,
        history: History,
        planned: dict[str, float],
        minimums: Minimums,
    ) -> None:
        self.spec, self.history, self.planned, self.minimums = spec, history, planned, minimums
        cells = history.cells if history.cells is not None else pd.DataFrame(columns=VOLUMES)
        self.cells = cells.reset_index(drop=True)
        touched = self.cells.groupby("channel")["touches"].sum() if len(self.cells) else None
        self.touch_channels = (
            {str(c) for c, n in touched.items() if n > 0} if touched is not None else set()
        )
        self.history_touches = float(self.cells["touches"].sum()) if len(self.cells) else 0.0
        self.other_channels = sorted(
            {str(c) for c in self.cells.get("channel", [])}
            - self.touch_channels
            - set(spec.channels)
        )
        """Channels with applications but no touches in the history (branch, partner)."""
        self.channel_basis = {c: self._channel_basis(c) for c in spec.channels}
        self.weighted = self._weighted()

    # --- the volumes --------------------------------------------------------------------

    def _channel_basis(self, channel: str) -> Basis:
        touches = self._history_of("channel", channel)["touches"]
        return self._enough(touches, "touches", self.minimums.touches)

    def _history_of(self, key: str, value: str) -> pd.Series:
        cells = self.cells[self.cells[key] == value] if len(self.cells) else self.cells
        return cells[list(VOLUMES)].sum().reindex(list(VOLUMES), fill_value=0.0)

    @staticmethod
    def _enough(
        count: float, what: str, minimum: int, setting: str = "plan_min_history_touches"
    ) -> Basis:
        """Own when the history has `minimum` of `what` (and some), else the campaign's,
        saying why."""
        if count >= minimum and count > 0:
            return OWN
        return Basis(
            False, f"{count:,.0f} {what} in the history window, fewer than {setting} ({minimum})"
        )

    def _weighted(self) -> pd.DataFrame:
        """Each history cell × the planned touches it stands for (growth applied).

        A channel with enough history: its cells × planned / its history touches. A channel
        without: its planned touches spread over every touched cell like the history's.
        Cells of channels the campaign does not touch through: × all planned touches / all
        history touches."""
        weight = pd.Series(0.0, index=self.cells.index)
        if not len(self.cells) or self.history_touches <= 0:
            return self.cells.assign(**dict.fromkeys(VOLUMES, 0.0))
        channel = self.cells["channel"].astype(str)
        pooled = 0.0
        for name, touches in self.planned.items():
            if self.channel_basis[name].own:
                own = channel == name
                weight[own] += touches / float(self.cells.loc[own, "touches"].sum())
            else:
                pooled += touches
        weight[channel.isin(self.touch_channels)] += pooled / self.history_touches
        weight[channel.isin(self.other_channels)] += (
            sum(self.planned.values()) / self.history_touches
        )
        weighted = self.cells.copy()
        for column in VOLUMES:
            lift = self.spec.growth if column in GROWN else 1.0
            weighted[column] = self.cells[column].astype(float) * weight * lift
        return weighted

    def _pooled_per_touch(self) -> pd.Series:
        touched = self.cells[self.cells["channel"].astype(str).isin(self.touch_channels)]
        return touched[list(VOLUMES)].sum() / max(self.history_touches, 1.0)

    def _volumes(self, touches: float, per_touch: pd.Series) -> pd.Series:
        lift = pd.Series({c: self.spec.growth if c in GROWN else 1.0 for c in VOLUMES})
        volumes = per_touch.reindex(list(VOLUMES)).astype(float) * touches * lift
        volumes["touches"] = touches
        return volumes

    # --- the scopes ---------------------------------------------------------------------

    def campaign(self) -> Scope:
        history = self.history
        volumes = self.weighted[list(VOLUMES)].sum().reindex(list(VOLUMES), fill_value=0.0)
        overdue = _finite(history.overdue_total)
        complaint = _finite(history.complaint_rate)
        return Scope(
            None,
            None,
            volumes,
            OWN,
            Rate(self._capped(overdue), overdue, OWN),
            Rate(complaint, complaint, OWN),
            _quoted(history.total),
        )

    def _capped(self, overdue: float | None) -> float:
        """The overdue target: the history's, never above the spec's cap (the cap itself
        when there is no history value)."""
        cap = self.spec.risk.max_overdue_rate_30
        return cap if overdue is None else min(overdue, cap)

    def channels(self) -> list[Scope]:
        scopes = []
        for channel, touches in self.planned.items():
            own = self._history_of("channel", channel)
            basis = self.channel_basis[channel]
            per_touch = own / max(float(own["touches"]), 1.0) if basis.own else None
            if per_touch is None:
                per_touch = self._pooled_per_touch()
            scopes.append(
                Scope(
                    channel,
                    None,
                    self._volumes(touches, per_touch),
                    basis,
                    self._overdue("channel", channel),
                    self._complaint("channel", channel),
                    _quoted(own),
                )
            )
        return scopes

    def segments(self) -> list[Scope]:
        """Every segment touched in the history, from its own cells or the campaign's."""
        if not len(self.cells):
            return []
        campaign = self.campaign().volumes
        weighted = self.weighted.groupby("segment")[list(VOLUMES)].sum()
        scopes = []
        for segment in sorted(str(s) for s in self.cells["segment"].unique()):
            own = self._history_of("segment", segment)
            if own["touches"] <= 0:
                continue
            basis = self._enough(float(own["touches"]), "touches", self.minimums.touches)
            volumes = weighted.loc[segment]
            if not basis.own:  # the campaign's volumes per planned touch
                total = float(campaign["touches"])
                volumes = campaign * (float(volumes["touches"]) / total if total > 0 else 0.0)
            scopes.append(
                Scope(
                    None,
                    segment,
                    volumes,
                    basis,
                    self._overdue("segment", segment),
                    self._complaint("segment", segment),
                    _quoted(own),
                )
            )
        return scopes

    def _overdue(self, key: str, value: str) -> Rate:
        """The scope's own overdue_rate_30 with enough seasoned loans, else the campaign's."""
        cells = self.history.overdue_cells
        mine = cells[cells[key].astype(str) == value] if cells is not None else None
        seasoned = float(mine["seasoned_loans"].sum()) if mine is not None else 0.0
        rate = float(mine["overdue_loans"].sum()) / seasoned if seasoned > 0 else None
        basis = self._enough(
            seasoned, "seasoned loans", self.minimums.loans, "plan_min_history_loans"
        )
        target = rate if basis.own else _finite(self.history.overdue_total)
        return Rate(self._capped(target), rate, basis)

    def _complaint(self, key: str, value: str) -> Rate:
        """The scope's own complaint_rate with enough delivered touches, else the campaign's."""
        cells = self.history.complaint_cells
        mine = cells[cells[key].astype(str) == value] if cells is not None else None
        delivered = float(mine["delivered"].sum()) if mine is not None else 0.0
        rate = 1000 * float(mine["complaints"].sum()) / delivered if delivered > 0 else None
        basis = self._enough(
            delivered, "delivered touches", self.minimums.delivered, "plan_min_history_delivered"
        )
        return Rate(rate if basis.own else _finite(self.history.complaint_rate), rate, basis)


def _quoted(counts: pd.Series) -> dict[str, float | None]:
    """The history figures a target's evidence quotes: volumes and rates."""
    rates = _rates(counts)
    return {
        **{name: _finite(counts.get(name)) for name in VOLUME_TARGETS},
        **{name: rates[name] for name in HISTORY_RATES},
    }


def _rates(volumes: pd.Series) -> dict[str, float | None]:
    """approval_rate, cac and roi of summed volumes (None where a denominator is 0)."""
    cost = float(volumes.get("cost", 0.0))
    applications = float(volumes.get("applications", 0.0))
    disbursements = float(volumes.get("disbursements", 0.0))
    net = float(volumes.get("net_interest", 0.0) - volumes.get("expected_loss", 0.0))
    return {
        "approval_rate": float(volumes["approved"]) / applications if applications else None,
        "cac": cost / disbursements if disbursements else None,
        "roi": (net - cost) / cost if cost else None,
    }


def scope_rows(
    scope: Scope, tolerance: tuple[float, float], evidence: dict, cap: float
) -> list[dict[str, Any]]:
    """The target rows of one scope: its volumes and rates, asset quality beside them."""
    values: dict[str, tuple[float | None, Basis]] = {
        **{name: (float(scope.volumes[name]), scope.basis) for name in VOLUME_TARGETS},
        **{name: (rate, scope.basis) for name, rate in _rates(scope.volumes).items()},
        "overdue_rate_30": (scope.overdue.target, scope.overdue.basis),
        "complaint_rate": (scope.complaint.target, scope.complaint.basis),
    }
    rows = []
    for metric, (target, basis) in values.items():
        if target is None:
            continue
        note = dict(evidence, history=scope.history, basis=basis.name)
        if basis.why:
            note["fallback"] = basis.why
        if metric == "overdue_rate_30":
            note["cap"] = cap
            note["history_value"] = scope.overdue.history
        rows.append(
            {
                "metric": metric,
                "channel": scope.channel,
                "segment": scope.segment,
                "target": float(target),
                "tolerance_warn": tolerance[0],
                "tolerance_fail": tolerance[1],
                "lower_is_better": metric in LOWER_IS_BETTER,
                "evidence": note,
            }
        )
    return rows


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) or np.isinf(number) else number
