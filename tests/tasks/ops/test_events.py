"""Events: what each check result raises (plain builders), and that they reach a real
Prefect server from a check run, related to that run."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tasks.check.result import CheckResult
from tasks.ops.events import (
    ANOMALY_DETECTED,
    AWAITING_APPROVAL,
    DATA_QUALITY_FAILED,
    GUARDRAIL_PAUSED,
    VARIANCE_BREACH,
    anomalies_detected,
    awaiting_approval,
    check_events,
    data_quality_failures,
    guardrail_pauses,
    variance_breaches,
)
from tests.scenario import (
    drain_prefect_events,
    prefect_env,  # noqa: F401  (the embedded API of the flow tests)
)

RESOURCE = {
    "prefect.resource.id": "pdca.campaign.c1",
    "pdca.campaign": "c1",
    "pdca.period": "2026-W10",
}


def kpi(metric: str, status: str, **scope) -> dict:
    return {
        "metric": metric,
        "scope": {"channel": None, "segment": None, **scope},
        "target": 100.0,
        "actual": 70.0,
        "variance": -30.0,
        "variance_pct": -0.3,
        "status": status,
    }


def result(**fields) -> CheckResult:
    base = {
        "campaign": "c1",
        "period": "2026-W10",
        "trusted": True,
        "data_quality": {"suites": [], "quarantine": [], "docs_path": None},
        "kpis": [],
        "anomalies": [],
    }
    return CheckResult.from_json({**base, **fields})


QUALITY = {
    "suites": [
        {"name": "touches", "success": True, "failed": [], "unexpected": {}},
        {
            "name": "decisions",
            "success": False,
            "failed": ["reject_reason not null when rejected"],
            "unexpected": {"reject_reason not null when rejected": 7, "a warning": 2},
        },
    ],
    "quarantine": [
        {"feed": "touches", "rows_in": 1000, "rows_quarantined": 20, "share": 0.02,
         "max_share": 0.01, "success": False},
        {"feed": "loans", "rows_in": 100, "rows_quarantined": 0, "share": 0.0,
         "max_share": 0.01, "success": True},
    ],
    "docs_path": "/tmp/docs/index.html",
}  # fmt: skip

ACTIONS = [
    {"type": "hold", "scope": {}, "params": {}, "rationale": "r", "status": "approved"},
    {
        "type": "reallocate_budget",
        "scope": {"channel": "phone"},
        "params": {"from_channel": "phone", "to_channel": "sms", "share": 0.1},
        "rationale": "phone cac 3x sms",
        "expected_impact": "+12 disbursements",
        "status": "proposed",
    },
]


class TestVarianceBreach:
    def test_one_event_per_off_track_kpi(self):
        kpis = [
            kpi("applications", "off_track"),
            kpi("cac", "at_risk"),
            kpi("approval_rate", "on_track"),
            kpi("roi", "off_track", channel="sms"),
        ]
        events = variance_breaches(result(kpis=kpis))
        assert [e.event for e in events] == [VARIANCE_BREACH] * 2
        first, second = events
        assert first.resource == {**RESOURCE, "pdca.metric": "applications"}
        assert first.payload == {
            "metric": "applications",
            "scope": {},
            "value": 70.0,
            "target": 100.0,
            "variance": -30.0,
            "variance_pct": -0.3,
            "status": "off_track",
            "trusted": True,
        }
        assert second.payload["scope"] == {"channel": "sms"}

    def test_none_when_nothing_is_off_track(self):
        assert variance_breaches(result(kpis=[kpi("cac", "at_risk")])) == []


class TestAnomaly:
    def test_payload_names_value_and_baseline(self):
        item = {
            "metric": "application_rate",
            "scope": {"channel": "sms"},
            "week": "2026-W19",
            "value": 0.0,
            "baseline_mean": 0.04,
            "baseline_std": 0.005,
            "z": -8.0,
        }
        (event,) = anomalies_detected(result(anomalies=[item], trusted=False))
        assert event.event == ANOMALY_DETECTED
        assert event.resource == {**RESOURCE, "pdca.metric": "application_rate"}
        assert event.payload["value"] == 0.0 and event.payload["baseline_mean"] == 0.04
        assert event.payload["z"] == -8.0 and event.payload["trusted"] is False


class TestDataQuality:
    def test_untrusted_raises_one_event_listing_every_failure(self):
        (event,) = data_quality_failures(result(trusted=False, data_quality=QUALITY))
        assert event.event == DATA_QUALITY_FAILED and event.resource == RESOURCE
        assert event.payload["suites"] == [
            {
                "suite": "decisions",
                "failed": ["reject_reason not null when rejected"],
                "unexpected": {"reject_reason not null when rejected": 7},
            }
        ]
        (quarantine,) = event.payload["quarantine"]
        assert quarantine["value"] == 0.02 and quarantine["target"] == 0.01
        assert quarantine["metric"] == "quarantined_share.touches"
        assert event.payload["docs_path"] == "/tmp/docs/index.html"

    def test_trusted_raises_nothing(self):
        assert data_quality_failures(result(trusted=True, data_quality=QUALITY)) == []

    def test_check_events_puts_data_quality_first(self):
        events = check_events(
            result(trusted=False, data_quality=QUALITY, kpis=[kpi("cac", "off_track")])
        )
        assert [e.event for e in events] == [DATA_QUALITY_FAILED, VARIANCE_BREACH]


class TestAwaitingApproval:
    def test_lists_the_proposals_waiting(self):
        event = awaiting_approval("c1", "2026-W10", ACTIONS)
        assert event is not None and event.event == AWAITING_APPROVAL
        assert event.resource == RESOURCE
        assert event.payload["value"] == 1
        (action,) = event.payload["actions"]
        assert action["type"] == "reallocate_budget" and action["scope"] == {"channel": "phone"}

    def test_nothing_waiting_no_event(self):
        assert awaiting_approval("c1", "2026-W10", ACTIONS[:1]) is None
        assert awaiting_approval("c1", "2026-W10", []) is None


class TestGuardrailPaused:
    def test_one_event_per_pause_with_metric_value_and_limit(self):
        pause = {
            "action_id": 7,
            "type": "pause",
            "scope": {"channel": "sms", "segment": None},
            "params": {"metric": "complaint_rate", "value": 14.0, "limit": 10.0},
            "status": "applied",
            "rationale": "channel sms in 2026-W10: complaint_rate 14.0 ...",
        }
        (event,) = guardrail_pauses("c1", "2026-W10", [*ACTIONS, pause])
        assert event.event == GUARDRAIL_PAUSED
        assert event.resource == {**RESOURCE, "pdca.metric": "complaint_rate"}
        assert event.payload["scope"] == {"channel": "sms"}
        assert (event.payload["value"], event.payload["target"]) == (14.0, 10.0)
        assert (event.payload["action_id"], event.payload["status"]) == (7, "applied")

    def test_no_pause_no_event(self):
        assert guardrail_pauses("c1", "2026-W10", ACTIONS) == []


# --- against a real Prefect server ----------------------------------------------------------


def read_pdca_events(campaign_id: str, expected: int, since: datetime, timeout: float = 60) -> list:
    """The server's pdca events about the campaign that occurred from `since` on (the
    session's server also holds other tests' events about the same demo campaign), once at
    least `expected` arrived (the server persists events in batches, a few seconds after
    they are sent)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    query = EventFilter(
        occurred=EventOccurredFilter(since=since),
        event=EventNameFilter(prefix=["pdca."]),
        resource=EventResourceFilter(id=[f"pdca.campaign.{campaign_id}"]),
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(filter=query, limit=50).events
            if len(events) >= expected or time.monotonic() > deadline:
                return events
            time.sleep(0.5)


@pytest.mark.slow
def test_check_and_act_events_reach_the_server(prefect_server, tmp_path, request):
    """A check of an untrusted week on the real server: its events (data-quality failure
    and whatever else the result raises) are stored, about the campaign period, and
    related to the check's flow run; the act stage's awaiting-approval event too."""
    from prefect import flow

    from flows.check import check_flow
    from pdca.synthetic.demo_history import CAMPAIGN_ID
    from tasks.ops.events import emit_awaiting_approval
    from tests.flows.test_operations import UNTRUSTED_WEEK, build_small_world
    from tests.scenario import database

    world = build_small_world(tmp_path, request)

    @flow(name="act-stand-in")
    def act_stand_in() -> bool:
        return emit_awaiting_approval(CAMPAIGN_ID, UNTRUSTED_WEEK, ACTIONS)

    with (
        pytest.MonkeyPatch.context() as patch,
        database(world.url),
        prefect_server.use(),
    ):
        patch.setenv("PDCA_OUTPUT_DIR", str(tmp_path / "out"))
        since = datetime.now(UTC)
        state = check_flow(CAMPAIGN_ID, UNTRUSTED_WEEK, return_state=True)
        assert state.is_completed(), state.message
        checked = CheckResult.from_json(state.result())
        assert act_stand_in() is True
        wanted = len(check_events(checked)) + 1
        events = read_pdca_events(CAMPAIGN_ID, expected=wanted, since=since)
    world.engine.dispose()

    assert not checked.trusted, "the small world's first week should be untrusted"
    names = sorted(e.event for e in events)
    expected = sorted([e.event for e in check_events(checked)] + [AWAITING_APPROVAL])
    assert names == expected
    (quality,) = [e for e in events if e.event == DATA_QUALITY_FAILED]
    assert quality.resource.root == {
        "prefect.resource.id": f"pdca.campaign.{CAMPAIGN_ID}",
        "pdca.campaign": CAMPAIGN_ID,
        "pdca.period": UNTRUSTED_WEEK,
    }
    assert quality.payload["quarantine"], quality.payload
    related = {r.id for r in quality.related}
    assert f"prefect.flow-run.{state.state_details.flow_run_id}" in related
    (approval,) = [e for e in events if e.event == AWAITING_APPROVAL]
    assert approval.payload["actions"][0]["type"] == "reallocate_budget"


KEEPALIVE_SECONDS = 20
"""The websockets library's default keepalive interval, which Prefect's events client keeps."""


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_env")
def test_no_events_websocket_draws_from_random_after_its_module():
    """A flow that emits pdca's events opens Prefect's events websocket, whose pings draw
    from the global `random` module (every 20 s to keep alive), and Hypothesis warns in
    whatever property test runs at that moment. After `drain_prefect_events`, which the
    conftest runs after every module, nothing draws from it for longer than that."""
    import random

    from prefect import flow

    from tasks.ops.events import emit_awaiting_approval

    @flow(name="act-stand-in")
    def act_stand_in() -> bool:
        return emit_awaiting_approval("c1", "2026-W10", ACTIONS)

    assert act_stand_in() is True
    drain_prefect_events()
    state = random.getstate()
    time.sleep(KEEPALIVE_SECONDS + 5)
    assert random.getstate() == state, "something drew from the global random module"
