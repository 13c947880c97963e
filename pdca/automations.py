"""Prefect Automations that tell ops what waits for them: `pdca automations apply|list`.

Two pdca events need a person, not a dashboard: `pdca.data_quality.failed` (a period's
data are untrusted, so its KPIs must not be acted on) and `pdca.action.awaiting_approval`
(an act run is paused until a manager decides its proposals). An event alone is only a line
in the UI's event feed; these Automations turn each into a notification.

Why a command and not `triggers:` in prefect.yaml: a deployment trigger always runs its
deployment, and what these two events need is a message. The command creates (or, by
name, updates) one Automation per event and the webhook notification block they send
through, so running it again after a change of settings is safe and is how the
destination changes.

Each Automation is Reactive, threshold 1, per campaign and period (`for_each`): it fires on
the first event of a campaign period; a repeat of that campaign period within
`WINDOW` (a retried run) does not notify twice. Its action:
- `PDCA_NOTIFY_WEBHOOK_URL` set: `send-notification` through the Custom Webhook block
  `NOTIFY_BLOCK` (a JSON POST of `text`, `subject` and `body`, which Slack and Mattermost
  incoming webhooks and any HTTP receiver accept);
- unset: `do-nothing`. The Automation still fires, and each firing is recorded, with the
  event that caused it, as `prefect.automation.action.*` events in the UI's event feed, so
  an operator sees how often it would have been called; a notification block without a
  destination would only fail each time. Set the URL and apply again to switch the action
  in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import typer

from pdca.errors import UserError
from pdca.settings import Settings, get_settings

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.orchestration import SyncPrefectClient
    from prefect.events.schemas.automations import AutomationCore

DATA_QUALITY_FAILED = "pdca.data_quality.failed"
AWAITING_APPROVAL = "pdca.action.awaiting_approval"
"""The names tasks/ops/events.py emits, spelled out: importing it (and Prefect with it)
would cost every `pdca` command seconds of start-up (a test checks they agree)."""
NOTIFY_BLOCK = "pdca-notify-webhook"
"""Name of the Custom Webhook notification block the Automations send through."""
WINDOW = timedelta(seconds=60)
"""A campaign period's repeat of an event within this window after a firing is not sent."""
CAMPAIGN_RESOURCES = {"prefect.resource.id": "pdca.campaign.*"}
"""Every pdca event is about `pdca.campaign.<id>` (tasks/ops/events.py)."""
PER_CAMPAIGN_PERIOD = {"prefect.resource.id", "pdca.period"}
WEBHOOK_JSON = {"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"}
"""What the block POSTs: `text` for chat webhooks, subject and body apart for the rest."""

_WHERE = "{{ event.resource['pdca.campaign'] }} {{ event.resource['pdca.period'] }}"


@dataclass(frozen=True)
class Notice:
    """One Automation: the event it reacts to and the message it sends (Jinja templates
    rendered by the Prefect server with `event` and, when the event came from a run,
    `flow_run`; `run_line` ends the body)."""

    name: str
    event: str
    description: str
    subject: str
    body: str


DATA_QUALITY_NOTICE = Notice(
    name="pdca: data quality failed",
    event=DATA_QUALITY_FAILED,
    description="Tells the data team that a campaign period's data are untrusted "
    "(failed expectations, feeds over the quarantine limit). Managed by "
    "`pdca automations apply`.",
    subject=f"pdca: data quality failed, {_WHERE}",
    body=(
        "The data of campaign {{ event.resource['pdca.campaign'] }} for "
        "{{ event.resource['pdca.period'] }} are untrusted: do not act on its KPIs until "
        "the feeds are fixed and the check re-run.\n"
        "{% for suite in event.payload.suites %}"
        "- suite {{ suite.suite }} failed: {{ suite.failed | join('; ') }}\n"
        "{% endfor %}"
        "{% for feed in event.payload.quarantine %}"
        "- feed {{ feed.feed }}: {{ feed.rows_quarantined }} of {{ feed.rows_in }} rows "
        "quarantined{% if feed.value is number and feed.target is number %} "
        "({{ '%.1f' | format(feed.value * 100) }} %, limit "
        "{{ '%.1f' | format(feed.target * 100) }} %){% endif %}\n"
        "{% endfor %}"
        "{% if event.payload.docs_path %}Data Docs: {{ event.payload.docs_path }}\n{% endif %}"
        "Re-check after the fix: pdca rerun check --campaign "
        "{{ event.resource['pdca.campaign'] }} --period {{ event.resource['pdca.period'] }}"
    ),
)
APPROVAL_NOTICE = Notice(
    name="pdca: actions awaiting approval",
    event=AWAITING_APPROVAL,
    description="Tells the campaign's managers that an act run is paused until they decide "
    "its proposals. Managed by `pdca automations apply`.",
    subject=f"pdca: {{{{ event.payload.value }}}} proposal(s) awaiting approval, {_WHERE}",
    body=(
        "The act run of campaign {{ event.resource['pdca.campaign'] }} for "
        "{{ event.resource['pdca.period'] }} is paused until a manager decides:\n"
        "{% for action in event.payload.actions %}"
        "- {{ action.type }}{% for key, value in action.scope.items() %} "
        "{{ key }}={{ value }}{% endfor %}: {{ action.rationale }}\n"
        "{% endfor %}"
        "Decide in the Prefect UI on the paused run's page, or from the command line: "
        "pdca actions list --campaign {{ event.resource['pdca.campaign'] }} --period "
        "{{ event.resource['pdca.period'] }}"
    ),
)
NOTICES = (DATA_QUALITY_NOTICE, APPROVAL_NOTICE)


@dataclass(frozen=True)
class Applied:
    """What `apply` did to one Automation."""

    name: str
    outcome: str
    """`created` or `updated`."""
    automation_id: UUID
    action: str
    """The action's type: `send-notification` or `do-nothing`."""
    enabled: bool


def run_line(ui_url: str | None) -> str:
    """The message's last line: the run that emitted the event, linked when the UI's
    address is known. The link is made here, from the address the command talks to,
    because the server renders `ui_url` only when it was started with PREFECT_UI_URL."""
    where = f"{ui_url.rstrip('/')}/runs/flow-run/{{{{ flow_run.id }}}}" if ui_url else None
    return (
        "{% if flow_run %}Run: {{ flow_run.name }}, "
        + (where or "id {{ flow_run.id }}")
        + "{% endif %}"
    )


def automation_for(
    notice: Notice, block_id: UUID | None, *, ui_url: str | None = None, enabled: bool = True
) -> AutomationCore:
    """The Automation of `notice`: notify through the block, or do nothing without one."""
    from prefect.events.actions import DoNothing, SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    trigger = EventTrigger(
        expect={notice.event},
        match=CAMPAIGN_RESOURCES,
        for_each=PER_CAMPAIGN_PERIOD,
        posture=Posture.Reactive,
        threshold=1,
        within=WINDOW,
    )
    action = (
        SendNotification(
            block_document_id=block_id,
            subject=notice.subject,
            body=f"{notice.body}\n{run_line(ui_url)}",
        )
        if block_id is not None
        else DoNothing()
    )
    return AutomationCore(
        name=notice.name,
        description=notice.description,
        enabled=enabled,
        tags=["pdca"],
        trigger=trigger,
        actions=[action],
    )


def save_webhook_block(settings: Settings) -> UUID | None:
    """Create or overwrite the notification block for `PDCA_NOTIFY_WEBHOOK_URL`; its id,
    or None when no destination is set."""
    url = settings.notify_webhook_url
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"PDCA_NOTIFY_WEBHOOK_URL {url!r}: expected an http:// or https:// URL")
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    token = settings.notify_webhook_token
    block = CustomWebhookNotificationBlock(
        name="pdca",
        url=url,
        method="POST",
        json_data=WEBHOOK_JSON,
        headers={"Authorization": "Bearer {{token}}"} if token else None,
        secrets={"token": token.get_secret_value()} if token else {},
        timeout=settings.notify_webhook_timeout,
    )
    return block.save(NOTIFY_BLOCK, overwrite=True)


def apply_automations(settings: Settings) -> list[Applied]:
    """Create or update, by name, the Automation of every notice.

    An Automation an operator has paused in the UI stays paused; a duplicate of the same
    name (made by hand) is removed, so that exactly one of each exists.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_UI_URL

    block_id = save_webhook_block(settings)
    ui_url = PREFECT_UI_URL.value()
    applied = []
    with get_client(sync_client=True) as client:
        for notice in NOTICES:
            applied.append(_apply_one(client, automation_for(notice, block_id, ui_url=ui_url)))
    return applied


def _apply_one(client: SyncPrefectClient, automation: AutomationCore) -> Applied:
    name = automation.name
    existing = [a for a in client.read_automations_by_name(name) if a.name == name]
    if not existing:
        automation_id = client.create_automation(automation)
        return Applied(name, "created", automation_id, _action_type(automation), True)
    keep, *duplicates = existing
    client.update_automation(keep.id, automation.model_copy(update={"enabled": keep.enabled}))
    for duplicate in duplicates:
        client.delete_automation(duplicate.id)
    return Applied(name, "updated", keep.id, _action_type(automation), keep.enabled)


def _action_type(automation: AutomationCore) -> str:
    return automation.actions[0].type


def read_automations() -> dict[str, Any]:
    """The server's Automation of each notice by name (None where it is missing)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = {}
        for notice in NOTICES:
            matches = client.read_automations_by_name(notice.name)
            found[notice.name] = next((a for a in matches if a.name == notice.name), None)
        return found


# --- command line ---------------------------------------------------------------------------

app = typer.Typer(
    no_args_is_help=True,
    help="Prefect Automations that notify ops of data-quality failures and proposals "
    "awaiting approval (needs PREFECT_API_URL).",
)


@app.command("apply")
def apply_command() -> None:
    """Create or update the Automations and their webhook block (safe to repeat)."""
    settings = get_settings()
    api_url = _require_server()
    with _server_errors(api_url):
        applied = apply_automations(settings)
    for item in applied:
        paused = "" if item.enabled else " (paused in the UI: left paused)"
        typer.echo(
            f"{item.name}: {item.outcome}{paused}, action {item.action}, id {item.automation_id}"
        )
    if settings.notify_webhook_url:
        typer.echo(f"notifications go to {_display_webhook(settings.notify_webhook_url)}")
    else:
        typer.echo(
            "PDCA_NOTIFY_WEBHOOK_URL is not set: the Automations fire but send nothing (their "
            "firings show under Events in the UI); set it and apply again to be notified"
        )


@app.command("list")
def list_command() -> None:
    """pdca's Automations on the server: trigger, action, enabled; exit 1 if one is missing."""
    api_url = _require_server()
    with _server_errors(api_url):
        found = read_automations()
    missing = False
    for notice in NOTICES:
        automation = found[notice.name]
        if automation is None:
            missing = True
            typer.echo(f"{notice.name}: missing (run `pdca automations apply`)")
            continue
        state = "enabled" if automation.enabled else "paused"
        actions = ", ".join(action.type for action in automation.actions)
        typer.echo(
            f"{notice.name}: {state}; on {notice.event}; action {actions}; id {automation.id}"
        )
    if missing:
        raise typer.Exit(1)


def _require_server() -> str:
    """The Prefect API URL; Automations live on a server (the embedded API runs no
    triggers), so without one this is bad usage."""
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise UserError(
            "Automations need a Prefect server: set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api after `make server`)"
        )
    return api_url


@contextmanager
def _server_errors(api_url: str) -> Iterator[None]:
    """Turns an unreachable server into one line (exit 2) instead of a traceback."""
    import httpx

    try:
        yield
    except httpx.TransportError as error:
        raise UserError(f"Prefect API {api_url}: {error or type(error).__name__}") from None


def _display_webhook(url: str) -> str:
    """The webhook without its path and query, which often carry a secret (Slack's do)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path not in ("", "/") else url
