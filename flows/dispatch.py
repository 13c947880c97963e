"""Do: send the campaign's outreach for one day — compliant, in its windows, exactly once.

For each send window of the day (or the one asked for), under the campaign's dispatch
lock: prepare the window's batch — audience, assignment, routing and capacity in the
database, every distinct message's wording checked, the outbox written — then send it in
chunks. A window that has closed is held for the next one; one that has not opened yet is
not due. Dispatch applies the rules in force (the approved Act actions), and each batch's
summary names them. The story, the rules and the tuning: docs/dispatch.md.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime

from prefect import flow, get_run_logger
from sqlalchemy import Connection

from pdca.db import make_engine
from pdca.errors import UserError
from pdca.settings import Settings, get_settings
from tasks.common.campaigns import CampaignSpec, get_campaign_spec
from tasks.common.rules import RulesInForce, approved_actions, rules_in_force
from tasks.do.artifacts import (
    BatchSummary,
    SendProgress,
    publish_summary,
    rule_names,
    staged_summary,
    store_sent_summary,
)
from tasks.do.audience import (
    apply_capacity_in_stage,
    count_stage,
    current_plan,
    daily_quotas,
    drop_stage,
    segment_propensity,
    stage_audience,
)
from tasks.do.gateways import Gateway, JournaledGateway, open_gateways
from tasks.do.locks import acquire_lock, release_lock
from tasks.do.outbox import (
    next_outbox_id,
    open_batch,
    record_holdouts,
    release_held,
    remaining_quotas,
    requeue_deferred,
    schedule,
    tune_for_batches,
    write_outbox_entries,
)
from tasks.do.pauses import cancel_stopped_sends, exclude_paused
from tasks.do.sending import PreparedBatch, check_earlier_sends, send_chunks
from tasks.do.slots import Slot, slots_for
from tasks.do.wording import preflight

CHUNK = 10_000
"""Sends handed over (and recorded) per step (docs/dispatch.md: Tuning)."""
BULK_CHUNK = 100_000
"""The step when every gateway of the batch is simulated (docs/dispatch.md: Tuning)."""


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
    approved actions folded in (its spec decides everything else). A plain step of the
    flow run, as `send_batch` (see `dispatch_window`)."""
    effective = rules.spec
    plan_id, period = current_plan(conn, spec.id, slot.day)
    windows = [s.window for s in slots_for(effective, slot.day)]
    quotas, costs = daily_quotas(conn, plan_id, period, effective, len(windows))
    batch_id = open_batch(conn, spec.id, slot)
    cancelled = cancel_stopped_sends(conn, spec.id, rules)
    released = release_held(conn, spec.id, slot, batch_id) if at < slot.ends_at else 0
    quotas = remaining_quotas(conn, batch_id, quotas)
    stage_audience(conn, spec, batch_id, slot, windows, propensity, rules)
    exclude_paused(conn, rules)
    staged = count_stage(conn)
    if apply_capacity_in_stage(conn, quotas, staged.chosen_by_channel):
        staged = count_stage(conn)
    rendered = preflight(effective, staged.channels, staged.variants, staged.segments)
    summary = staged_summary(slot, staged, rules)
    scheduled_at, status = schedule(effective, slot, at)
    first_new_id = next_outbox_id(conn)
    write_outbox_entries(conn, batch_id, scheduled_at, status)
    drop_stage(conn)
    summary.holdout = record_holdouts(conn, batch_id, spec.id)
    summary.held = staged.to_send if status == "held" else 0
    summary.status = "held" if status == "held" else "ready"
    summary.cancelled = cancelled
    if cancelled:
        get_run_logger().info("outbox sends cancelled, by reason: %s", cancelled)
    if released:
        get_run_logger().info("%s held sends released into window %s", released, slot.window)
    conn.commit()
    return PreparedBatch(batch_id, summary, costs, rendered, first_new_id)


def send_batch(
    conn: Connection,
    spec: CampaignSpec,
    slot: Slot,
    batch: PreparedBatch,
    at: datetime,
    gateways: dict[str, Gateway],
) -> BatchSummary:
    """Send the batch's pending (and interrupted) sends in chunks, recording each: to a
    simulated gateway set-based, to a real provider one message each; chunks are larger
    when every gateway is simulated. Sends an earlier run deferred go again; sends written
    before this run are checked first."""
    if requeued := requeue_deferred(conn, batch.batch_id):
        get_run_logger().info("%s sends deferred by an earlier run are due again", requeued)
    rendered = check_earlier_sends(conn, spec, batch)
    progress = SendProgress(spec.id, slot, batch.summary)
    bulk = all(isinstance(gateway, JournaledGateway) for gateway in gateways.values())
    size = BULK_CHUNK if bulk else CHUNK
    tally = send_chunks(conn, gateways, spec.id, slot, batch, at, size, rendered, progress.advance)
    progress.finish(tally.handed_over)
    summary = store_sent_summary(conn, batch.batch_id, batch.summary, tally)
    conn.commit()
    return summary


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

    Both steps are plain functions of the flow run, not task runs: they run once each,
    in order, without retries or caching, and a task run's bookkeeping (its states and a
    call to the API for its tags' concurrency slots) cost each dispatch run about 0.2 s
    per step, which the hundreds of runs of a season add up.

    Gateways open for the written spec's channels: a send handed to its provider before
    its channel was retired or paused (interrupted by a crash) still completes; one not
    yet handed over is cancelled (`tasks.do.pauses`), and new sends never route to a
    retired or paused channel, nor to a paused segment's customers."""
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


def read_rules(conn: Connection, spec: CampaignSpec) -> RulesInForce:
    """The spec with the campaign's approved actions folded in; logs the ones applied, so
    that a run's log says why its audience differs from the spec's."""
    rules = rules_in_force(spec, approved_actions(conn, spec.id))
    if rules.applied:
        get_run_logger().info("approved actions in force: %s", ", ".join(rule_names(rules)))
    return rules


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
