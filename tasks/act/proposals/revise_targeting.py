"""`revise_targeting`: approval is the funnel's bottleneck, so the campaign persuades people
who do not qualify: a question of whom it contacts, not of the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tasks.act.proposals.context import EPSILON, Thresholds
from tasks.act.proposals.text import pct, proposal, signed_pct
from tasks.act.types import Proposal
from tasks.check.findings import finite_number
from tasks.check.result import CheckResult, FunnelRow

TOP = 3
"""How many segments, channels and reject reasons revise_targeting names."""


def revise_targeting_proposals(check: CheckResult, thresholds: Thresholds) -> list[Proposal]:
    """When approval is the bottleneck, name whom to stop or rethink targeting.

    Params: {segments, channels, reject_reasons}: the up to `TOP` segments and channels
    with the lowest approval_rate below the campaign's (each with at least
    `targeting_min_applications` applications, lowest first), and the top reject reasons
    of the period. Dispatch can leave out (or deprioritise) the segments; the reasons say
    which admission rule the audience misses.
    """
    stage = check.bottleneck
    if stage is None or stage.stage != "approval":
        return []
    rows = check.funnel
    applications = sum(finite_number(r.applications) or 0 for r in rows)
    approved = sum(finite_number(r.approved) or 0 for r in rows)
    overall = approved / applications if applications else None
    low = {
        key: lowest_approval(rows, key, overall, thresholds.targeting_min_applications)
        for key in ("segment", "channel")
    }
    reasons = [r for r in check.overall_reject_reasons if r.reason][:TOP]
    evidence = [
        f"approval is the funnel's bottleneck: {stage.metric or 'approval_rate'} is "
        f"{pct(stage.actual)} against its {stage.reference_kind or 'reference'} "
        f"of {pct(stage.reference)} ({signed_pct(stage.gap_pct)})"
    ]
    for key in ("segment", "channel"):
        if low[key]:
            evidence.append(
                f"lowest approval_rate by {key}: "
                + ", ".join(
                    f"{item['name']} {pct(item['rate'])} ({item['approved']:,} of "
                    f"{item['applications']:,})"
                    for item in low[key]
                )
            )
    if reasons:
        evidence.append(
            "top reject reasons: "
            + ", ".join(f"{r.reason} ({pct(finite_number(r.share))})" for r in reasons)
        )
    if low["segment"]:
        names = [item["name"] for item in low["segment"]]
        out_apps = sum(item["applications"] for item in low["segment"])
        out_approved = sum(item["approved"] for item in low["segment"])
        rest = applications - out_apps
        after = (approved - out_approved) / rest if rest else None
        impact = (
            f"Without segment{'s' if len(names) > 1 else ''} {', '.join(names)} "
            f"({out_apps:,.0f} applications) the approval_rate would have been {pct(after)} "
            f"instead of {pct(overall)}."
        )
    else:
        rejected = applications - approved
        impact = (
            f"{rejected:,.0f} of the period's {applications:,.0f} applications were rejected: "
            "targeting those who qualify saves their contact and processing cost."
        )
    return [
        proposal(
            "revise_targeting",
            {},
            {
                "segments": [item["name"] for item in low["segment"]],
                "channels": [item["name"] for item in low["channel"]],
                "reject_reasons": [str(r.reason) for r in reasons],
            },
            "; ".join(evidence) + ".",
            impact,
        )
    ]


def lowest_approval(
    rows: Sequence[FunnelRow], key: str, overall: float | None, min_applications: int
) -> list[dict[str, Any]]:
    """The up to `TOP` values of `key` with the lowest approval_rate below `overall`, each
    with at least `min_applications` applications: name, applications, approved, rate."""
    if overall is None:
        return []
    sums: dict[str, list[float]] = {}
    for row in rows:
        name = getattr(row, key)
        if name is None:
            continue
        pair = sums.setdefault(str(name), [0.0, 0.0])
        pair[0] += finite_number(row.applications) or 0
        pair[1] += finite_number(row.approved) or 0
    found = [
        {"name": name, "applications": int(apps), "approved": int(ok), "rate": ok / apps}
        for name, (apps, ok) in sums.items()
        if apps >= min_applications and ok / apps < overall - EPSILON
    ]
    return sorted(found, key=lambda item: (item["rate"], item["name"]))[:TOP]
