"""Do: send the campaign's outreach for one day — compliant, in its windows, exactly once.

For each send window of the day (or the one asked for): take the campaign's dispatch
lock, select the audience in SQL, assign variants and route by tier within the plan's
capacity, check every message's wording, write the outbox, then send in chunks. A window
that has already closed is not sent late: its sends are written as `held` for the next
window. A window that has not opened yet is not due.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

import pandas as pd
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
from tasks.campaigns import CampaignSpec, get_campaign_spec
from tasks.dispatch import (
    HOLDOUT,
    SendTally,
    Slot,
    acquire_lock,
    already_in_batch,
    apply_capacity,
    assign_variants,
    count_by,
    current_plan,
    daily_quotas,
    held_customers,
    mark_sending,
    messages_for,
    next_chunk,
    next_slot,
    open_batch,
    record_holdouts,
    record_receipts,
    release_held,
    release_lock,
    remaining_quotas,
    route,
    segment_propensity,
    select_audience,
    slots_for,
    window_share,
    write_outbox,
)
from tasks.gateways import (
    SEND_CHANNELS,
    Gateway,
    JournaledGateway,
    SimulatedGateway,
    gateway_for,
    send_with_retries,
)
from tasks.wording import preflight

CHUNK = 10_000


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


@task(cache_policy=NO_CACHE)
def prepare_batch(
    conn: Connection, spec: CampaignSpec, slot: Slot, at: datetime, propensity: dict[str, float]
) -> tuple[int, BatchSummary, dict[str, float], dict]:
    """Audience, assignment, routing, capacity, wording check and outbox, in one transaction."""
    plan_id, period = current_plan(conn, spec.id, slot.day)
    windows = [s.window for s in slots_for(spec, slot.day)]
    quotas, costs = daily_quotas(conn, plan_id, period, spec, len(windows))
    batch_id = open_batch(conn, spec.id, slot)
    released = release_held(conn, spec.id, slot, batch_id) if at < slot.ends_at else 0
    audience = select_audience(conn, spec, batch_id, slot)
    mine = audience[window_share(spec.id, audience, windows) == slot.window]
    skip = already_in_batch(conn, batch_id) | held_customers(conn, spec.id)
    mine = mine[~mine["customer_id"].isin(skip)]
    mine = mine.assign(variant=assign_variants(spec.id, spec, mine))
    already_holdout = mine["assigned_variant"] == HOLDOUT
    quotas = remaining_quotas(conn, batch_id, quotas)
    routed = apply_capacity(route(mine[~already_holdout], spec, propensity), quotas)
    chosen = routed[routed["exclusion_reason"].isna()]
    rendered = preflight(
        spec,
        sorted(set(chosen["channel"])),
        sorted(set(chosen["variant"]) - {HOLDOUT}),
        sorted(set(chosen["segment"])),
    )
    summary = BatchSummary(window=slot.window, status="open", audience=len(mine))
    members = mine[already_holdout]  # recorded once, never sent: counted, not routed
    summary.excluded = count_by(
        pd.concat(
            [
                routed,
                members.assign(
                    exclusion_reason=members["exclusion_reason"].fillna("holdout_member")
                ),
            ]
        ),
        "exclusion_reason",
    )
    summary.eligible = len(chosen)
    closed = at >= slot.ends_at
    if closed:
        following = next_slot(spec, slot.ends_at)
        scheduled_at = following.starts_at if following else slot.ends_at
        status = "held"
    else:
        scheduled_at, status = max(at, slot.starts_at), "pending"
    write_outbox(conn, batch_id, chosen, scheduled_at, status)
    summary.holdout = record_holdouts(conn, batch_id, spec.id)
    summary.held = int((chosen["variant"] != HOLDOUT).sum()) if closed else 0
    summary.status = "held" if closed else "ready"
    if released:
        get_run_logger().info("%s held sends released into window %s", released, slot.window)
    conn.commit()
    return batch_id, summary, costs, rendered


@task(cache_policy=NO_CACHE)
def send_batch(
    conn: Connection,
    spec: CampaignSpec,
    slot: Slot,
    batch_id: int,
    at: datetime,
    costs: dict[str, float],
    gateways: dict[str, Gateway],
    summary: BatchSummary,
    rendered: dict,
) -> BatchSummary:
    """Send the batch's pending (and interrupted) sends in chunks, recording each.

    Held sends released into this window may need messages the audience did not: those
    are rendered (and checked) on the way.
    """
    tally = SendTally()
    total = conn.execute(
        OutreachBatch.__table__.select().where(OutreachBatch.batch_id == batch_id)
    ).first()
    progress = create_progress_artifact(
        progress=0.0,
        key=f"dispatch-{spec.id}-progress",
        description=f"{spec.id} {slot.day} {slot.window}",
    )
    done, started = 0, datetime.now(UTC)
    while not (chunk := next_chunk(conn, batch_id, CHUNK)).empty:
        sent_at = at + (datetime.now(UTC) - started)
        if sent_at >= slot.ends_at:
            break  # the window closed while sending: the rest waits, never sent late
        mark_sending(conn, chunk)
        conn.commit()
        combos = set(zip(chunk["channel"], chunk["variant"], chunk["segment"], strict=True))
        missing = combos - set(rendered)
        if missing:
            rendered.update(
                preflight(
                    spec,
                    sorted({c for c, _, _ in missing}),
                    sorted({v for _, v, _ in missing}),
                    sorted({s for _, _, s in missing}),
                )
            )
        for channel, part in chunk.groupby("channel"):
            messages = messages_for(part, slot, spec.id, rendered)
            receipts = send_with_retries(gateways[channel], messages)
            record_receipts(conn, spec.id, part, receipts, sent_at, costs, tally)
            conn.commit()  # before the next gateway call: a journal writes on its own
        done += len(chunk)
        update_progress_artifact(
            progress, progress=min(100.0, 100.0 * done / max(summary.eligible, done))
        )
    del total
    for (channel, variant), count in tally.sent.items():
        summary.sends.setdefault(channel, {})[variant] = count
    summary.failures, summary.errors = tally.failed, tally.errors
    summary.status = "sent"
    conn.execute(
        update(OutreachBatch)
        .where(OutreachBatch.batch_id == batch_id)
        .values(status=summary.status, summary=asdict(summary))
    )
    conn.commit()
    return summary


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
    with engine.connect() as conn:
        spec = get_campaign_spec(conn, campaign_id)
        slots = [s for s in slots_for(spec, day) if window in (None, s.window)]
        if window and not slots:
            known = ", ".join(spec.contact_policy.windows)
            raise UserError(
                f"campaign {campaign_id!r} has no window {window!r} on {day} "
                f"(windows: {known}; weekdays within the campaign only)"
            )
        holder = acquire_lock(conn, campaign_id, datetime.now(UTC).replace(tzinfo=None))
        try:
            summaries = [
                dispatch_window(conn, spec, slot, at, settings, simulate_outcomes) for slot in slots
            ]
        finally:
            release_lock(conn, campaign_id, holder)
    publish_summary(campaign_id, day, summaries)
    return [asdict(summary) for summary in summaries]


def dispatch_window(
    conn: Connection,
    spec: CampaignSpec,
    slot: Slot,
    at: datetime,
    settings: Settings,
    simulate_outcomes: bool = False,
) -> BatchSummary:
    if at < slot.starts_at:
        return BatchSummary(window=slot.window, status="not_open_yet")
    propensity = segment_propensity(conn, spec.id, slot.day, settings.attribution_window_days)
    batch_id, summary, costs, rendered = prepare_batch(conn, spec, slot, at, propensity)
    if summary.status == "held":
        return summary
    gateways = open_gateways(spec, settings, conn.engine, simulate_outcomes)
    try:
        return send_batch(conn, spec, slot, batch_id, at, costs, gateways, summary, rendered)
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
