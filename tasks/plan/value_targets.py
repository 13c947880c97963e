"""Targets on the customer and value KPIs, each scope's from its own history.

Beside the funnel's targets (`tasks.plan.targets`), every scope (campaign, channel,
segment) gets targets on the contract's new_customers, loan_balance, npl_rate, ltv,
ltv_cac, nps and churn_rate, learnt from the same trailing weeks (`History.family_cells`,
`History.overdue_cells`):

- **new_customers**: the scope's disbursements target × its history share of loans that
  were their customer's first (a volume: a week of a monthly plan gets its days' share);
- **loan_balance**: the scope's book at the history window's end × the spec's growth (a
  stock: never pro-rated);
- **npl_rate** (asset quality, beside overdue_rate_30 with the same weight), **ltv**,
  **nps** and **churn_rate**: the scope's own history rate when it has
  `Minimums.loans` loans with a snapshot, loans, answers or paid-off borrowers behind it,
  else the campaign's, said in the evidence like the other fallbacks;
- **ltv_cac**: the ltv target over the scope's cac target.

A rate with no history at all (the UCI history has no loans nor surveys) gets no target:
the check reports its actual with status `no_target`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.common.campaigns import CampaignSpec
from tasks.common.metrics import LOWER_IS_BETTER
from tasks.common.value_metrics import FAMILY_COUNTS
from tasks.plan.plan import History

BOOK = ["loan_balance", "snapshot_loans", "npl_loans"]
RATES: dict[str, tuple[str, str, float, str]] = {
    "npl_rate": ("npl_loans", "snapshot_loans", 1.0, "loans with a snapshot"),
    "ltv": ("lifetime_value", "value_loans", 1.0, "loans"),
    "nps": ("net_promoters", "answers", 100.0, "survey answers"),
    "churn_rate": ("churned_borrowers", "closing_borrowers", 1.0, "paid-off borrowers"),
}
"""Each rate target: numerator, denominator, scale, and what the denominator counts."""


def family_cells(history: History) -> pd.DataFrame:
    """The history's counts per channel × segment: the loan book and FAMILY_COUNTS."""
    columns = ["channel", "segment"]
    frames = [
        frame[[*columns, *counts]]
        for frame, counts in ((history.overdue_cells, BOOK), (history.family_cells, FAMILY_COUNTS))
        if frame is not None and set(counts) <= set(frame.columns)
    ]
    if not frames:
        return pd.DataFrame(columns=[*columns, *BOOK, *FAMILY_COUNTS])
    cells = frames[0]
    for frame in frames[1:]:
        cells = cells.merge(frame, on=columns, how="outer")
    cells = cells.reindex(columns=[*columns, *BOOK, *FAMILY_COUNTS]).fillna(0)
    cells["net_promoters"] = cells["promoters"] - cells["detractors"]
    return cells


def value_rows(
    spec: CampaignSpec,
    history: History,
    funnel_rows: list[dict[str, Any]],
    tolerance: tuple[float, float],
    min_count: int,
    evidence: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The value targets of every scope that has funnel targets (`funnel_rows`); each
    target's evidence is `evidence` (the history's sources, the growth) with the scope's
    history counts and basis."""
    cells = family_cells(history)
    campaign = cells.drop(columns=["channel", "segment"]).sum()
    scopes = dict.fromkeys((row["channel"], row["segment"]) for row in funnel_rows)
    by_scope = {
        (row["channel"], row["segment"], row["metric"]): row["target"] for row in funnel_rows
    }
    rows = []
    for channel, segment in scopes:
        mine = cells
        if channel is not None:
            mine = mine[mine["channel"].astype(str) == channel]
        if segment is not None:
            mine = mine[mine["segment"].astype(str) == segment]
        own = mine.drop(columns=["channel", "segment"]).sum()
        targets = _scope_targets(spec, own, campaign, min_count)
        disbursements = by_scope.get((channel, segment, "disbursements"))
        cac = by_scope.get((channel, segment, "cac"))
        first_share = _share(own, campaign, "new_customers", "value_loans", min_count)
        if disbursements is not None and first_share[0] is not None:
            targets["new_customers"] = (disbursements * first_share[0], first_share[1])
        ltv = targets.get("ltv")
        if ltv is not None and cac:
            targets["ltv_cac"] = (ltv[0] / cac, ltv[1])
        for metric, (target, why) in targets.items():
            note = dict(evidence or {}, basis="campaign" if why else "own", history=_quoted(own))
            if why:
                note["fallback"] = why
            rows.append(
                {
                    "metric": metric,
                    "channel": channel,
                    "segment": segment,
                    "target": float(target),
                    "tolerance_warn": tolerance[0],
                    "tolerance_fail": tolerance[1],
                    "lower_is_better": metric in LOWER_IS_BETTER,
                    "evidence": note,
                }
            )
    return rows


def _scope_targets(
    spec: CampaignSpec, own: pd.Series, campaign: pd.Series, min_count: int
) -> dict[str, tuple[float, str | None]]:
    """loan_balance and the RATES of one scope: (target, why the campaign's, or None)."""
    targets: dict[str, tuple[float, str | None]] = {}
    if own["snapshot_loans"] > 0 or own["loan_balance"] > 0:
        targets["loan_balance"] = (float(own["loan_balance"]) * spec.growth, None)
    for metric, (numerator, denominator, scale, what) in RATES.items():
        value, why = _share(own, campaign, numerator, denominator, min_count, what)
        if value is not None:
            targets[metric] = (scale * value, why)
    return targets


def _share(
    own: pd.Series,
    campaign: pd.Series,
    numerator: str,
    denominator: str,
    min_count: int,
    what: str = "loans",
) -> tuple[float | None, str | None]:
    """numerator / denominator of the scope's history with `min_count` behind it, else the
    campaign's (and why); None when neither has any."""
    count = float(own[denominator])
    if count >= min_count and count > 0:
        return float(own[numerator]) / count, None
    total = float(campaign[denominator])
    if total <= 0:
        return None, None
    why = f"{count:,.0f} {what} in the history window, fewer than plan_min_history_loans"
    why += f" ({min_count})"
    return float(campaign[numerator]) / total, why


def _quoted(own: pd.Series) -> dict[str, float]:
    """The history counts a value target's evidence quotes."""
    return {name: float(own[name]) for name in [*BOOK, *FAMILY_COUNTS]}
