"""`pdca automations apply|list`: the Automations that notify ops, as the user creates
them (the command, its exit code and message) and as they work on a real Prefect server
(the Automation exists and, when pdca emits the event, the webhook receives the message).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from pdca.automations import (
    APPROVAL_NOTICE,
    AWAITING_APPROVAL,
    DATA_QUALITY_FAILED,
    DATA_QUALITY_NOTICE,
    NOTICES,
    automation_for,
)
from tasks.check.result import CheckResult
from tasks.ops import events

PDCA = Path(sys.executable).parent / "pdca"
CAMPAIGN = "auto-c1"
QUALITY_RESULT = {
    "campaign": CAMPAIGN,
    "period": "2026-W10",
    "trusted": False,
    "data_quality": {
        "suites": [
            {
                "name": "decisions",
                "success": False,
                "failed": ["reject_reason not null when rejected"],
                "unexpected": {"reject_reason not null when rejected": 7},
            }
        ],
        "quarantine": [
            {"feed": "touches", "rows_in": 1000, "rows_quarantined": 20, "share": 0.02,
             "max_share": 0.01, "success": False},
        ],
        "docs_path": "/srv/pdca/data-docs/index.html",
    },
}  # fmt: skip
PROPOSALS = [
    {
        "type": "reallocate_budget",
        "scope": {"channel": "phone"},
        "params": {"from_channel": "phone", "to_channel": "sms", "share": 0.1},
        "rationale": "phone CAC is 3x sms",
        "expected_impact": "+12 disbursements",
        "status": "proposed",
    }
]


def pdca(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`pdca ARGV` as a user runs it, with exactly this environment."""
    return subprocess.run([str(PDCA), *argv], env=env, capture_output=True, text=True, timeout=180)


# --- the definitions ------------------------------------------------------------------------


def test_event_names_are_the_ones_pdca_emits():
    assert DATA_QUALITY_FAILED == events.DATA_QUALITY_FAILED
    assert AWAITING_APPROVAL == events.AWAITING_APPROVAL
    assert {notice.event for notice in NOTICES} == {DATA_QUALITY_FAILED, AWAITING_APPROVAL}


@pytest.mark.parametrize("notice", NOTICES, ids=lambda n: n.event)
def test_reactive_once_per_campaign_period(notice):
    automation = automation_for(notice, uuid4())
    trigger = automation.trigger
    assert trigger.expect == {notice.event}
    assert trigger.match.root == {"prefect.resource.id": "pdca.campaign.*"}
    assert trigger.for_each == {"prefect.resource.id", "pdca.period"}
    assert trigger.posture == "Reactive" and trigger.threshold == 1
    assert timedelta(0) < trigger.within <= timedelta(minutes=5)
    (action,) = automation.actions
    assert action.type == "send-notification" and action.body.startswith(notice.body)
    assert action.subject == notice.subject


def test_the_message_links_the_run_when_the_ui_address_is_known():
    linked = automation_for(APPROVAL_NOTICE, uuid4(), ui_url="http://ops:4200/").actions[0]
    assert linked.body.endswith(
        "{% if flow_run %}Run: {{ flow_run.name }}, "
        "http://ops:4200/runs/flow-run/{{ flow_run.id }}{% endif %}"
    )
    bare = automation_for(APPROVAL_NOTICE, uuid4()).actions[0]
    assert bare.body.endswith("Run: {{ flow_run.name }}, id {{ flow_run.id }}{% endif %}")


def test_without_a_destination_the_action_does_nothing_visibly():
    (action,) = automation_for(DATA_QUALITY_NOTICE, None).actions
    assert action.type == "do-nothing"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {},
            "Automations need a Prefect server: set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api after `make server`)",
        ),
        (
            {"PREFECT_API_URL": "http://127.0.0.1:9/api", "PDCA_NOTIFY_WEBHOOK_URL": "hooks"},
            "PDCA_NOTIFY_WEBHOOK_URL 'hooks': expected an http:// or https:// URL",
        ),
        (
            {"PREFECT_API_URL": "http://127.0.0.1:9/api"},
            "Prefect API http://127.0.0.1:9/api: ",
        ),
    ],
    ids=["no-server", "bad-webhook", "server-down"],
)
def test_apply_refuses_in_one_line(tmp_path, settings, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PDCA_"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), **settings}
    result = pdca("automations", "apply", env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"pdca: error: {message}"), line


# --- against a real Prefect server ------------------------------------------------------------


def wait_for(found: Callable[[], Any], timeout: float = 90, what: str = "") -> Any:
    """Poll until `found()` is truthy (the server's triggers and actions services work
    asynchronously, seconds after the event arrives); its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = found()
        if value or time.monotonic() > deadline:
            assert value, f"not within {timeout} s: {what}"
            return value
        time.sleep(0.5)


def emit_like_pdca(period: str, *, approval: bool) -> tuple[str, str]:
    """Emit the data-quality event (and the approval one) from a flow run, as check and
    act do; the flow run's name and id."""
    from prefect import flow
    from prefect.runtime import flow_run

    @flow(name="automations-stand-in")
    def stand_in() -> tuple[str, str]:
        check = CheckResult.from_json({**QUALITY_RESULT, "period": period})
        specs = events.data_quality_failures(check)
        if approval:
            specs.append(events.awaiting_approval(CAMPAIGN, period, PROPOSALS))
        assert events.emit(specs) == len(specs)
        return flow_run.name, flow_run.id

    return stand_in()


def action_events(automation_id) -> list:
    """The `prefect.automation.action.*` events of one Automation (what its page shows)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    query = EventFilter(
        event=EventNameFilter(prefix=["prefect.automation.action."]),
        resource=EventResourceFilter(id=[f"prefect.automation.{automation_id}"]),
    )
    with get_client(sync_client=True) as client:
        return client.read_events(filter=query, limit=50).events


def read_pdca_automations() -> dict[str, list]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {n.name: client.read_automations_by_name(n.name) for n in NOTICES}


@pytest.mark.slow
def test_apply_then_the_event_notifies_the_webhook(prefect_server):
    """First without a destination (the Automation fires, its action does nothing, the
    firing is on record), then with a webhook: apply again updates the same Automations,
    and each event reaches the receiver as a readable message with the bearer token."""
    from prefect.automations import Automation

    from tests.servers import http_server, json_response

    env = prefect_server.env()
    env = {k: v for k, v in env.items() if not k.startswith("PDCA_")}
    try:
        bare = pdca("automations", "apply", env=env)
        assert bare.returncode == 0, (bare.stdout, bare.stderr)
        assert "PDCA_NOTIFY_WEBHOOK_URL is not set" in bare.stdout
        assert f"{DATA_QUALITY_NOTICE.name}: created, action do-nothing" in bare.stdout
        with prefect_server.use():
            created = read_pdca_automations()
            assert all(len(found) == 1 for found in created.values()), created
            quality_id = created[DATA_QUALITY_NOTICE.name][0].id
            emit_like_pdca("2026-W10", approval=False)
            executed = wait_for(
                lambda: [
                    e for e in action_events(quality_id)
                    if e.event == "prefect.automation.action.executed"
                ],
                what="the do-nothing action of the data-quality Automation",
            )  # fmt: skip
            assert executed[0].payload["action_type"] == "do-nothing"

        with http_server(lambda request: json_response({"ok": True})) as receiver:
            notify = {"PDCA_NOTIFY_WEBHOOK_URL": f"{receiver.url}/hooks/pdca"}
            applied = pdca(
                "automations", "apply", env={**env, **notify, "PDCA_NOTIFY_WEBHOOK_TOKEN": "s3"}
            )
            assert applied.returncode == 0, (applied.stdout, applied.stderr)
            assert f"{APPROVAL_NOTICE.name}: updated, action send-notification" in applied.stdout
            listed = pdca("automations", "list", env=env)
            assert listed.returncode == 0, (listed.stdout, listed.stderr)
            assert listed.stdout.count("enabled;") == 2, listed.stdout
            assert "action send-notification" in listed.stdout

            with prefect_server.use():
                updated = read_pdca_automations()
                assert {a[0].id for a in updated.values()} == {a[0].id for a in created.values()}, (
                    "apply must update by name, not add"
                )
                run_name, run_id = emit_like_pdca("2026-W11", approval=True)
                wait_for(
                    lambda: len(receiver.requests) >= 2,
                    what=f"two notifications; server log:\n{prefect_server.log_tail()}",
                )
        messages = {r.json()["subject"]: r for r in receiver.requests}

        with prefect_server.use():  # an operator pauses one in the UI: apply leaves it paused
            Automation.read(id=updated[APPROVAL_NOTICE.name][0].id).disable()
        again = pdca("automations", "apply", env={**env, **notify})
        assert again.returncode == 0, (again.stdout, again.stderr)
        assert f"{APPROVAL_NOTICE.name}: updated (paused in the UI: left paused)" in again.stdout
        listed = pdca("automations", "list", env=env)
        assert f"{APPROVAL_NOTICE.name}: paused;" in listed.stdout, listed.stdout
    finally:
        with prefect_server.use():  # later tests' events must not notify a closed receiver
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                for found in read_pdca_automations().values():
                    for automation in found:
                        client.delete_automation(automation.id)

    assert sorted(messages) == [
        f"pdca: 1 proposal(s) awaiting approval, {CAMPAIGN} 2026-W11",
        f"pdca: data quality failed, {CAMPAIGN} 2026-W11",
    ]
    quality = messages[f"pdca: data quality failed, {CAMPAIGN} 2026-W11"]
    assert quality.path == "/hooks/pdca" and quality.headers["authorization"] == "Bearer s3"
    body = quality.json()["body"]
    assert "- suite decisions failed: reject_reason not null when rejected" in body
    assert "- feed touches: 20 of 1000 rows quarantined (2.0 %, limit 1.0 %)" in body
    assert "Data Docs: /srv/pdca/data-docs/index.html" in body
    ui = prefect_server.api_url.removesuffix("/api")
    assert body.endswith(f"Run: {run_name}, {ui}/runs/flow-run/{run_id}"), body
    assert quality.json()["text"].startswith(quality.json()["subject"] + "\n")
    approval = messages[f"pdca: 1 proposal(s) awaiting approval, {CAMPAIGN} 2026-W11"]
    body = approval.json()["body"]
    assert "- reallocate_budget channel=phone: phone CAC is 3x sms" in body
    assert f"pdca actions list --campaign {CAMPAIGN} --period 2026-W11" in body
