"""Do: send the campaign's outreach for one day — compliant, in its windows, exactly once.

For each send window of the day (or the one asked for): take the campaign's dispatch
lock, select the audience, assign variants and route by tier within the plan's capacity
(all in the database, set by set), check every distinct message's wording, write the
outbox, then send in chunks — through the simulated gateways set-based, through real
providers message by message. A window that has already closed is not sent late: its
sends are written as `held` for the next window. A window that has not opened yet is not
due.

Dispatch applies the rules in force, not the spec alone: the approved Act actions
(`tasks.common.rules`) shift windows, tighten admission (campaign-wide, per segment or per
channel), promote variants, retire channels and deprioritise segments from the next
dispatch on. Each batch's summary names the actions it applied (`rules`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection, update

from pdca.db import make_engine
from pdca.errors import UserError
from pdca.models import OutreachBatch
from pdca.settings import Settings, get_settings
from tasks.common.campaigns import CampaignSpec, get_campaign_spec
from tasks.common.rules import RulesInForce, approved_actions, rules_in_force
from tasks.do.audience import (
    apply_capacity_in_stage,
    count_stage,
    current_plan,
    daily_quotas,
    drop_stage,
    segment_propensity,
    stage_audience,
)
from tasks.do.gateways import (
    SEND_CHANNELS,
    Gateway,
    JournaledGateway,
    SimulatedGateway,
    gateway_for,
)
from tasks.do.locks import acquire_lock, release_lock
from tasks.do.outbox import (
    earlier_combinations,
    next_outbox_id,
    open_batch,
    record_holdouts,
    release_held,
    remaining_quotas,
    tune_for_batches,
    write_outbox_entries,
)
from tasks.do.sending import SendTally, chunk_parts, mark_sending, next_chunk, send_part
from tasks.do.slots import Slot, next_slot, slots_for
from tasks.do.wording import Message, preflight

CHUNK = 10_000
"""Sends handed over (and recorded) per step; a crash redoes at most one chunk, and a
window that closes while sending stops the batch at the next chunk."""
BULK_CHUNK = 100_000
"""The step when every gateway of the batch is simulated (set-based, a chunk is a few
statements, and goes by in well under a second)."""
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


@dataclass
class PreparedBatch:
    """A batch ready to send: its outbox written, its wording checked."""

    batch_id: int
    summary: BatchSummary
    costs: dict[str, float]
    rendered: dict[tuple[str, str, str], Message]
    """The checked messages by (channel, variant, segment), for the per-message path."""
    first_new_id: int
    """Entries from this outbox id on were written (and checked) by this preparation."""


@task(cache_policy=NO_CACHE)
def prepare_batch(
    conn: Connection,
    spec: CampaignSpec,
    slot: Slot,
    at: datetime,
    propensity: dict[str, float],
    rules: RulesInForce,
) -> PreparedBatch:
    """Audience, assignment, routing, capacity, wording check and outbox, in one transaction.

    `spec` is the campaign as written (its variant split draws new members), `rules` the
    approved actions folded in (its spec decides everything else)."""
    effective = rules.spec
    plan_id, period = current_plan(conn, spec.id, slot.day)
    windows = [s.window for s in slots_for(effective, slot.day)]
    quotas, costs = daily_quotas(conn, plan_id, period, effective, len(windows))
    batch_id = open_batch(conn, spec.id, slot)
    released = release_held(conn, spec.id, slot, batch_id) if at < slot.ends_at else 0
    quotas = remaining_quotas(conn, batch_id, quotas)
    stage_audience(conn, spec, batch_id, slot, windows, propensity, rules)
    staged = count_stage(conn)
    if apply_capacity_in_stage(conn, quotas, staged.chosen_by_channel):
        staged = count_stage(conn)
    rendered = preflight(effective, staged.channels, staged.variants, staged.segments)
    summary = BatchSummary(
        window=slot.window,
        status="open",
        audience=staged.audience,
        eligible=staged.eligible,
        excluded=staged.excluded,
        rules=rule_names(rules),
    )
    closed = at >= slot.ends_at
    if closed:
        following = next_slot(effective, slot.ends_at)
        scheduled_at = following.starts_at if following else slot.ends_at
        status = "held"
    else:
        scheduled_at, status = max(at, slot.starts_at), "pending"
    first_new_id = next_outbox_id(conn)
    write_outbox_entries(conn, batch_id, scheduled_at, status)
    drop_stage(conn)
    summary.holdout = record_holdouts(conn, batch_id, spec.id)
    summary.held = staged.to_send if closed else 0
    summary.status = "held" if closed else "ready"
    if released:
        get_run_logger().info("%s held sends released into window %s", released, slot.window)
    conn.commit()
    return PreparedBatch(batch_id, summary, costs, rendered, first_new_id)


@task(cache_policy=NO_CACHE)
def send_batch(
    conn: Connection,
    spec: CampaignSpec,
    slot: Slot,
    batch: PreparedBatch,
    at: datetime,
    gateways: dict[str, Gateway],
) -> BatchSummary:
    """Send the batch's pending (and interrupted) sends in chunks, recording each.

    Each chunk goes channel by channel (`send_part`): to a simulated gateway set-based,
    to a real provider one message each; chunks are larger when every gateway is
    simulated. Sends written before this run (held sends released into this window, a
    crashed run's leftovers) are checked here, before anything goes, as the new ones were
    when the batch was prepared.
    """
    summary, tally = batch.summary, SendTally()
    rendered = dict(batch.rendered)
    earlier = earlier_combinations(conn, batch.batch_id, batch.first_new_id) - set(rendered)
    if earlier:
        rendered.update(
            preflight(
                spec,
                sorted({c for c, _, _ in earlier}),
                sorted({v for _, v, _ in earlier}),
                sorted({s for _, _, s in earlier}),
            )
        )
    progress = create_progress_artifact(
        progress=0.0,
        key=f"dispatch-{spec.id}-progress",
        description=f"{spec.id} {slot.day} {slot.window}",
    )
    done, started, shown = 0, datetime.now(UTC), 0.0
    bulk = all(isinstance(gateway, JournaledGateway) for gateway in gateways.values())
    size = BULK_CHUNK if bulk else CHUNK
    while (chunk := next_chunk(conn, batch.batch_id, size)) is not None:
        sent_at = at + (datetime.now(UTC) - started)
        if sent_at >= slot.ends_at:
            break  # the window closed while sending: the rest waits, never sent late
        done += mark_sending(conn, chunk)
        conn.commit()
        for part in chunk_parts(conn, chunk):
            gateway = gateways[part.channel]
            send_part(conn, gateway, spec.id, slot, part, sent_at, batch.costs, rendered, tally)
            conn.commit()  # before the next gateway call: a journal writes on its own
        if done_share(done, summary) - shown >= PROGRESS_STEP:
            shown = done_share(done, summary)
            update_progress_artifact(progress, progress=shown)
    if done_share(done, summary) != shown:
        update_progress_artifact(progress, progress=done_share(done, summary))
    for (channel, variant), count in tally.sent.items():
        summary.sends.setdefault(channel, {})[variant] = count
    summary.failures, summary.errors = tally.failed, tally.errors
    summary.status = "sent"
    conn.execute(
        update(OutreachBatch)
        .where(OutreachBatch.batch_id == batch.batch_id)
        .values(status=summary.status, summary=asdict(summary))
    )
    conn.commit()
    return summary


def done_share(done: int, summary: BatchSummary) -> float:
    """Percent of the batch handed over, for the progress artifact."""
    return min(100.0, 100.0 * done / max(summary.eligible, done, 1))


@flow(name="dispatch", flow_run_name="dispatch {campaign_id} {day}")
def dispatch_flow(
    campaign_id: str,
    day: date,
    window: str | None = None,
    at: datetime | None = None,
    simulate_outcomes: bool = False,
) -> list[dict]:
    """Dispatch the campaign's batches due on `day`; `at` (UTC) defaults to now.

    `simulate_outcomes`: the simulated gateways also draw delivery and response (demo).
    """
    settings = get_settings()
    at = at or datetime.now(UTC).replace(tzinfo=None)
    engine = make_engine(settings.database_url)
    tune_for_batches(engine)
    with engine.connect() as conn:
        spec = get_campaign_spec(conn, campaign_id)
        rules = read_rules(conn, spec)
        slots = [s for s in slots_for(rules.spec, day) if window in (None, s.window)]
        if window and not slots:
            known = ", ".join(rules.spec.contact_policy.windows)
            raise UserError(
                f"campaign {campaign_id!r} has no window {window!r} on {day} "
                f"(windows: {known}; weekdays within the campaign only)"
            )
        holder = acquire_lock(conn, campaign_id, datetime.now(UTC).replace(tzinfo=None))
        try:
            summaries = [
                dispatch_window(conn, spec, slot, at, settings, simulate_outcomes, rules)
                for slot in slots
            ]
        finally:
            conn.rollback()  # a failed window's unfinished work is not committed with the lock
            release_lock(conn, campaign_id, holder)
    publish_summary(campaign_id, day, summaries)
    return [asdict(summary) for summary in summaries]


def read_rules(conn: Connection, spec: CampaignSpec) -> RulesInForce:
    """The spec with the campaign's approved actions folded in; logs the ones applied, so
    that a run's log says why its audience differs from the spec's."""
    rules = rules_in_force(spec, approved_actions(conn, spec.id))
    if rules.applied:
        get_run_logger().info("approved actions in force: %s", ", ".join(rule_names(rules)))
    return rules


def rule_names(rules: RulesInForce) -> list[str]:
    """The applied actions as "type action_id", for the summary and the log."""
    return [f"{action['type']} {action['action_id']}" for action in rules.applied]


def dispatch_window(
    conn: Connection,
    spec: CampaignSpec,
    slot: Slot,
    at: datetime,
    settings: Settings,
    simulate_outcomes: bool = False,
    rules: RulesInForce | None = None,
) -> BatchSummary:
    """One window: prepare its batch, then send it unless the window has closed.

    Gateways open for the written spec's channels: a send written before its channel was
    retired (held, or interrupted by a crash) still completes; new sends never route to
    a retired channel (`stage_audience`)."""
    rules = rules or RulesInForce(spec=spec)
    if at < slot.starts_at:
        return BatchSummary(window=slot.window, status="not_open_yet", rules=rule_names(rules))
    propensity = segment_propensity(conn, spec.id, slot.day, settings.attribution_window_days)
    batch = prepare_batch(conn, spec, slot, at, propensity, rules)
    if batch.summary.status == "held":
        return batch.summary
    gateways = open_gateways(spec, settings, conn.engine, simulate_outcomes)
    try:
        return send_batch(conn, spec, slot, batch, at, gateways)
    finally:
        for gateway in gateways.values():
            gateway.close()


SIMULATED_OUTCOMES = {
    "phone": (0.80, 0.35),
    "sms": (0.96, 0.05),
    "im": (0.92, 0.07),
    "app_push": (0.75, 0.03),
    "email": (0.88, 0.02),
}
"""Delivery and response rates the demo's simulated gateways draw (per channel)."""


def open_gateways(
    spec: CampaignSpec, settings: Settings, engine, simulate_outcomes: bool
) -> dict[str, Gateway]:
    """One gateway per channel; simulated ones keep a durable journal of accepted keys."""
    seed = int.from_bytes(hashlib.sha256(spec.id.encode()).digest()[:4], "big")
    outcomes = SIMULATED_OUTCOMES if simulate_outcomes else None
    gateways: dict[str, Gateway] = {}
    for channel in spec.channels:
        if channel not in SEND_CHANNELS:
            continue
        gateway = gateway_for(channel, settings, seed=seed, outcomes=outcomes)
        if isinstance(gateway, SimulatedGateway):
            gateway = JournaledGateway(gateway, engine)
        gateways[channel] = gateway
    return gateways


def publish_summary(campaign_id: str, day: date, summaries: list[BatchSummary]) -> None:
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
                "excluded": ", ".join(f"{k} {v}" for k, v in summary.excluded.items()),
            }
        )
    create_table_artifact(
        key=f"dispatch-{campaign_id}", table=rows, description=f"Dispatch of {campaign_id} on {day}"
    )
