"""Prefect events for what ops must react to: a KPI off track, an anomaly, untrusted data,
adjustments waiting for a manager's approval, and a scope a guardrail paused.

Events are how the rest of the platform hears about a check without reading its result:
an Automation (README, "Operations") can match `pdca.data_quality.failed` on any
campaign and notify the data team, or run a deployment. Every event is about one
campaign period, so all share one resource shape::

    {"prefect.resource.id": "pdca.campaign.<id>", "pdca.campaign": "<id>",
     "pdca.period": "<period>"}

and their payloads name the metric, its value and what it was compared with (target,
baseline or limit), so the notification can say what happened without a second look-up.
Breach and anomaly events also carry the metric as a resource label (`pdca.metric`),
because Automations match resource labels, not payloads.

The builders are plain functions over the check result (`tasks.check.result.CheckResult`)
and the act stage's proposals; `emit` hands them to Prefect, which, inside a flow run,
relates each event to that run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.check.result import CheckResult
from tasks.common.scopes import scope_without_gaps

VARIANCE_BREACH = "pdca.variance.breach"
ANOMALY_DETECTED = "pdca.anomaly.detected"
DATA_QUALITY_FAILED = "pdca.data_quality.failed"
AWAITING_APPROVAL = "pdca.action.awaiting_approval"
GUARDRAIL_PAUSED = "pdca.guardrail.paused"
EVENT_NAMES = (
    VARIANCE_BREACH,
    ANOMALY_DETECTED,
    DATA_QUALITY_FAILED,
    AWAITING_APPROVAL,
    GUARDRAIL_PAUSED,
)


@dataclass(frozen=True)
class EventSpec:
    """One event to emit: its name, the campaign-period resource and the payload."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any] = field(default_factory=dict)


def campaign_resource(campaign_id: str, period: str, **labels: str) -> dict[str, str]:
    """The resource every pdca event is about: the campaign, labelled with the period."""
    return {
        "prefect.resource.id": f"pdca.campaign.{campaign_id}",
        "pdca.campaign": campaign_id,
        "pdca.period": period,
        **labels,
    }


def variance_breaches(check: CheckResult) -> list[EventSpec]:
    """One `pdca.variance.breach` per KPI `off_track` (at_risk is only watched, not raised).

    `trusted` rides along: a breach on untrusted data is a data problem first.
    """
    return [
        EventSpec(
            VARIANCE_BREACH,
            campaign_resource(check.campaign, check.period, **{"pdca.metric": kpi.metric}),
            {
                "metric": kpi.metric,
                "scope": scope_without_gaps(kpi.scope),
                "value": kpi.actual,
                "target": kpi.target,
                "variance": kpi.variance,
                "variance_pct": kpi.variance_pct,
                "status": kpi.status,
                "trusted": bool(check.trusted),
            },
        )
        for kpi in check.kpis
        if kpi.status == "off_track"
    ]


def anomalies_detected(check: CheckResult) -> list[EventSpec]:
    """One `pdca.anomaly.detected` per weekly metric ≥ z standard deviations from its
    trailing mean; the baseline mean is the "target" it was compared with."""
    return [
        EventSpec(
            ANOMALY_DETECTED,
            campaign_resource(check.campaign, check.period, **{"pdca.metric": item.metric}),
            {
                "metric": item.metric,
                "scope": scope_without_gaps(item.scope),
                "week": item.week,
                "value": item.value,
                "baseline_mean": item.baseline_mean,
                "baseline_std": item.baseline_std,
                "z": item.z,
                "trusted": bool(check.trusted),
            },
        )
        for item in check.anomalies
    ]


def data_quality_failures(check: CheckResult) -> list[EventSpec]:
    """One `pdca.data_quality.failed` when the period's data are untrusted, listing every
    failed suite (with its failed expectations and their unexpected counts) and every feed
    whose quarantined share is above the limit."""
    if check.trusted:
        return []
    quality = check.data_quality
    suites = [
        {
            "suite": suite.name,
            "failed": list(suite.failed),
            "unexpected": {
                name: count for name, count in suite.unexpected.items() if name in suite.failed
            },
        }
        for suite in quality.failed_suites
    ]
    quarantine = [
        {
            "metric": f"quarantined_share.{entry.feed}",
            "feed": entry.feed,
            "value": entry.share,
            "target": entry.max_share,
            "rows_in": entry.rows_in,
            "rows_quarantined": entry.rows_quarantined,
        }
        for entry in quality.failed_quarantine
    ]
    return [
        EventSpec(
            DATA_QUALITY_FAILED,
            campaign_resource(check.campaign, check.period),
            {
                "metric": "data_quality",
                "value": "failed",
                "target": "passed",
                "suites": suites,
                "quarantine": quarantine,
                "docs_path": quality.docs_path,
            },
        )
    ]


def check_events(check: CheckResult) -> list[EventSpec]:
    """Everything a check result raises: data quality first, then breaches, anomalies."""
    return [*data_quality_failures(check), *variance_breaches(check), *anomalies_detected(check)]


def awaiting_approval(
    campaign_id: str, period: str, actions: Sequence[Mapping[str, Any]]
) -> EventSpec | None:
    """`pdca.action.awaiting_approval` for the proposals a manager must decide on, or None
    when nothing waits (no proposals, or all already decided)."""
    waiting = [a for a in actions if a.get("status", "proposed") == "proposed"]
    if not waiting:
        return None
    return EventSpec(
        AWAITING_APPROVAL,
        campaign_resource(campaign_id, period),
        {
            "metric": "actions_awaiting_approval",
            "value": len(waiting),
            "actions": [
                {
                    "type": action.get("type"),
                    "scope": scope_without_gaps(action.get("scope")),
                    "params": dict(action.get("params") or {}),
                    "rationale": action.get("rationale"),
                    "expected_impact": action.get("expected_impact"),
                }
                for action in waiting
            ],
        },
    )


def guardrail_pauses(
    campaign_id: str, period: str, actions: Sequence[Mapping[str, Any]]
) -> list[EventSpec]:
    """One `pdca.guardrail.paused` per `pause` a guardrail applied: the scope, the metric
    past its hard limit (its value and the limit) and the action to find it by."""
    events = []
    for action in actions:
        if action.get("type") != "pause":
            continue
        params = dict(action.get("params") or {})
        metric = str(params.get("metric"))
        events.append(
            EventSpec(
                GUARDRAIL_PAUSED,
                campaign_resource(campaign_id, period, **{"pdca.metric": metric}),
                {
                    "metric": metric,
                    "scope": scope_without_gaps(action.get("scope")),
                    "value": params.get("value"),
                    "target": params.get("limit"),
                    "action_id": action.get("action_id"),
                    "status": action.get("status"),
                    "rationale": action.get("rationale"),
                },
            )
        )
    return events


def emit(events: Iterable[EventSpec]) -> int:
    """Hand the events to Prefect (sent in the background); how many were emitted.

    Inside a flow or task run Prefect adds the run, flow and deployment as related
    resources, so the event links back to the run in the UI.
    """
    from prefect.events import emit_event

    emitted = 0
    for spec in events:
        if emit_event(spec.event, resource=spec.resource, payload=spec.payload) is not None:
            emitted += 1
    return emitted


@task(cache_policy=NO_CACHE)
def emit_check_events(check: CheckResult) -> int:
    """Raise the check's findings as events, for Automations and the UI's event feed."""
    return emit(check_events(check))


def emit_awaiting_approval(campaign_id: str, period: str, actions: Sequence[Mapping]) -> bool:
    """Tell ops that proposals wait for a manager (call it right before the pause);
    whether an event was emitted."""
    spec = awaiting_approval(campaign_id, period, actions)
    return spec is not None and emit([spec]) == 1


def emit_guardrail_pauses(campaign_id: str, period: str, actions: Sequence[Mapping]) -> int:
    """Tell ops that a guardrail paused a scope (no manager was asked); how many events."""
    return emit(guardrail_pauses(campaign_id, period, actions))
