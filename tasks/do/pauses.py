"""Do: what a guardrail's pause (and a retirement) means for dispatch.

A paused channel is sent nothing and a paused segment's customers are contacted on no
channel until a manager approves the `resume` (`tasks.common.rules.RulesInForce.paused`):

- `exclude_paused` marks the staged customers of a paused segment, and those routed to a
  paused channel, `paused` — like the other exclusions, counted in the batch summary. It
  runs after routing and before capacity, so a paused customer takes no quota; there is
  no fallback to another channel (the route is what the plan budgeted, as with scoped
  admission). New hold-out draws are judged like the treated, so the control group stays
  comparable;
- `cancel_stopped_sends` cancels what the outbox still holds for a stopped scope — sends
  written before the pause or the retirement (`pending`, `held` for a later window,
  `deferred` by a provider) — with the reason (`paused`, `retired`), so that they are
  never sent. A `sending` entry was handed to its provider already and completes.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, false, or_, select, update

from pdca.models import Customer, OutboxEntry, OutreachBatch
from tasks.common.rules import RulesInForce
from tasks.do.audience import STAGE

PAUSED = "paused"
"""The exclusion reason, and the reason an outbox entry is cancelled for, of a pause."""
RETIRED = "retired"
"""The reason an outbox entry of a retired channel is cancelled for."""
CANCELLED = "cancelled"
"""The outbox status of a send that will never go: its scope was stopped."""
STOPPABLE = ("pending", "held", "deferred")
"""Outbox statuses of sends not yet handed to a provider."""


def exclude_paused(conn: Connection, rules: RulesInForce) -> int:
    """Mark the staged chosen of a paused segment or routed to a paused channel `paused`;
    how many. Nothing to do (and no statement) when nothing is paused."""
    channels, segments = rules.paused_names("channel"), rules.paused_names("segment")
    if not channels and not segments:
        return 0
    stopped = or_(
        STAGE.c.channel.in_(channels) if channels else false(),
        STAGE.c.segment.in_(segments) if segments else false(),
    )
    return conn.execute(
        update(STAGE)
        .where(STAGE.c.exclusion_reason.is_(None), stopped)
        .values(exclusion_reason=PAUSED)
    ).rowcount


def cancel_stopped_sends(conn: Connection, campaign_id: str, rules: RulesInForce) -> dict[str, int]:
    """Cancel the campaign's outbox entries not yet handed over whose channel is retired or
    paused, or whose customer's segment is paused: reason → how many were cancelled."""
    batches = select(OutreachBatch.batch_id).where(OutreachBatch.campaign_id == campaign_id)
    waiting = and_(OutboxEntry.batch_id.in_(batches), OutboxEntry.status.in_(STOPPABLE))
    cancelled: dict[str, int] = {}
    for reason, channels, segments in (
        (RETIRED, rules.retired_channels, []),
        (PAUSED, rules.paused_names("channel"), rules.paused_names("segment")),
    ):
        if not channels and not segments:
            continue
        in_segment = select(Customer.customer_id).where(Customer.segment.in_(segments))
        stopped = or_(
            OutboxEntry.channel.in_(channels) if channels else false(),
            OutboxEntry.customer_id.in_(in_segment) if segments else false(),
        )
        count = conn.execute(
            update(OutboxEntry)
            .where(waiting, stopped)
            .values(status=CANCELLED, error=reason)
            .execution_options(synchronize_session=False)
        ).rowcount
        if count:
            cancelled[reason] = count
    return cancelled
