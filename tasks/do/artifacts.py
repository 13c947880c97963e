"""Do: what a dispatch reports — each window's summary, stored with its batch and printed
by `pdca dispatch --json`, the day's table artifact, and the progress artifact while a
batch is sent."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING
from uuid import UUID

from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from sqlalchemy import Connection, update

from pdca.models import OutreachBatch
from tasks.common.rules import RulesInForce
from tasks.do.slots import Slot

if TYPE_CHECKING:
    from tasks.do.audience import StagedCounts
    from tasks.do.sending import SendTally

PROGRESS_STEP = 5.0
"""The progress artifact moves in steps of at least this many percent (each is an API call)."""


@dataclass
class BatchSummary:
    """What one window's dispatch did; `pdca dispatch --json` prints a list of these."""

    window: str
    status: str
    audience: int = 0
    eligible: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    sends: dict[str, dict[str, int]] = field(default_factory=dict)
    holdout: int = 0
    held: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    """The approved actions in force, as "type action_id" (oldest first)."""
    deferred: dict[str, int] = field(default_factory=dict)
    """Sends by channel left for the next run: their provider could not take them now."""
    channels: dict[str, dict] = field(default_factory=dict)
    """Each channel this run sent on: `status` (`sent`, `partial`, `failed` or
    `deferred`), its `sent`, `failed` and `deferred` counts and the first `reason`."""
    cancelled: dict[str, int] = field(default_factory=dict)
    """Outbox sends written earlier and cancelled now, by reason (`paused`, `retired`):
    their channel or segment was stopped before they went (`tasks.do.pauses`)."""


def rule_names(rules: RulesInForce) -> list[str]:
    """The applied actions as "type action_id", for the summary and the log."""
    return [f"{action['type']} {action['action_id']}" for action in rules.applied]


def staged_summary(slot: Slot, staged: StagedCounts, rules: RulesInForce) -> BatchSummary:
    """A window's summary once its audience is staged and trimmed to capacity."""
    return BatchSummary(
        window=slot.window,
        status="open",
        audience=staged.audience,
        eligible=staged.eligible,
        excluded=staged.excluded,
        rules=rule_names(rules),
    )


def store_sent_summary(
    conn: Connection, batch_id: int, summary: BatchSummary, tally: SendTally
) -> BatchSummary:
    """The batch's sends, failures and errors added to its summary, which is stored with
    the batch, now `sent`."""
    for (channel, variant), count in tally.sent.items():
        summary.sends.setdefault(channel, {})[variant] = count
    summary.failures, summary.errors = tally.failed, tally.errors
    summary.deferred, summary.channels = tally.deferred, channel_statuses(tally)
    summary.status = "sent"
    conn.execute(
        update(OutreachBatch)
        .where(OutreachBatch.batch_id == batch_id)
        .values(status=summary.status, summary=asdict(summary))
    )
    return summary


def channel_statuses(tally: SendTally) -> dict[str, dict]:
    """Each channel's outcome in this run: `sent` (everything it was given), `partial`
    (some sent, some failed or deferred), `failed` (nothing sent, something refused for
    good) or `deferred` (nothing sent, the rest left for the next run), with the counts
    and the first reason something was not sent."""
    channels = {channel for channel, _ in tally.sent} | set(tally.failed) | set(tally.deferred)
    statuses = {}
    for channel in sorted(channels):
        sent = sum(count for (name, _), count in tally.sent.items() if name == channel)
        failed, deferred = tally.failed.get(channel, 0), tally.deferred.get(channel, 0)
        if not failed and not deferred:
            status = "sent"
        else:
            status = "partial" if sent else "failed" if failed else "deferred"
        statuses[channel] = {
            "status": status,
            "sent": sent,
            "failed": failed,
            "deferred": deferred,
            "reason": tally.reasons.get(channel),
        }
    return statuses


def done_share(done: int, summary: BatchSummary) -> float:
    """Percent of the batch handed over, for the progress artifact."""
    return min(100.0, 100.0 * done / max(summary.eligible, done, 1))


class SendProgress:
    """The progress artifact of a batch being sent: the share handed over so far."""

    def __init__(self, campaign_id: str, slot: Slot, summary: BatchSummary) -> None:
        self.summary = summary
        self.shown = 0.0
        self.artifact: UUID = create_progress_artifact(
            progress=0.0,
            key=f"dispatch-{campaign_id}-progress",
            description=f"{campaign_id} {slot.day} {slot.window}",
        )

    def advance(self, done: int) -> None:
        """Show `done` sends handed over, once they are at least `PROGRESS_STEP` further."""
        if done_share(done, self.summary) - self.shown >= PROGRESS_STEP:
            self.shown = done_share(done, self.summary)
            update_progress_artifact(self.artifact, progress=self.shown)

    def finish(self, done: int) -> None:
        """Show where the batch ended, if it is not shown yet."""
        if done_share(done, self.summary) != self.shown:
            update_progress_artifact(self.artifact, progress=done_share(done, self.summary))


def publish_summary(campaign_id: str, day: date, summaries: list[BatchSummary]) -> None:
    """The day's windows as one table artifact (`dispatch-<campaign>`)."""
    rows = []
    for summary in summaries:
        sends = sum(sum(v.values()) for v in summary.sends.values())
        rows.append(
            {
                "window": summary.window,
                "status": summary.status,
                "audience": summary.audience,
                "eligible": summary.eligible,
                "sent": sends,
                "holdout": summary.holdout,
                "held": summary.held,
                "failed": sum(summary.failures.values()),
                "deferred": sum(summary.deferred.values()),
                "excluded": ", ".join(f"{k} {v}" for k, v in summary.excluded.items()),
            }
        )
    create_table_artifact(
        key=f"dispatch-{campaign_id}", table=rows, description=f"Dispatch of {campaign_id} on {day}"
    )
