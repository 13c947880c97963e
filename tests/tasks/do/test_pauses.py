"""What a pause or a retirement cancels in the outbox (tasks/do/pauses.py), on SQLite and
PostgreSQL: sends not yet handed to a provider on a stopped channel or for a paused
segment's customers, with the reason; nothing handed over, sent or of another campaign."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Engine, insert, select

from pdca.models import Customer, OutboxEntry, OutreachBatch
from tasks.common.campaigns import CampaignSpec
from tasks.common.rules import PausedScope, RulesInForce
from tasks.do.pauses import cancel_stopped_sends
from tests.scenario import CAMPAIGN_ID, apply, customer, spec_dict

SPEC = CampaignSpec.model_validate(spec_dict())
ENTRIES = [
    # (customer, segment, channel, status, campaign)
    ("c-sms-pending", "sme", "sms", "pending", CAMPAIGN_ID),
    ("c-sms-held", "sme", "sms", "held", CAMPAIGN_ID),
    ("c-sms-deferred", "sme", "sms", "deferred", CAMPAIGN_ID),
    ("c-sms-sending", "sme", "sms", "sending", CAMPAIGN_ID),
    ("c-sms-sent", "sme", "sms", "sent", CAMPAIGN_ID),
    ("c-sms-other", "sme", "sms", "pending", "other-campaign"),
    ("c-im-farmer", "farmer", "im", "held", CAMPAIGN_ID),
    ("c-im-sme", "sme", "im", "pending", CAMPAIGN_ID),
    ("c-phone", "sme", "phone", "pending", CAMPAIGN_ID),
]


def outcome(engine: Engine, rules: RulesInForce) -> tuple[dict[str, int], dict[str, tuple]]:
    with engine.begin() as conn:
        apply(conn, spec_dict())
        apply(conn, spec_dict("other-campaign"))
        segments = {cid: segment for cid, segment, *_ in ENTRIES}
        conn.execute(insert(Customer), [customer(c, segment=s) for c, s in segments.items()])
        batches = {
            campaign: conn.execute(
                insert(OutreachBatch)
                .values(
                    campaign_id=campaign,
                    send_date=date(2026, 3, 4),
                    window="noon",
                    status="open",
                    summary={},
                )
                .returning(OutreachBatch.batch_id)
            ).scalar_one()
            for campaign in (CAMPAIGN_ID, "other-campaign")
        }
        conn.execute(
            insert(OutboxEntry),
            [
                {
                    "batch_id": batches[campaign],
                    "customer_id": cid,
                    "channel": channel,
                    "variant": "A",
                    "scheduled_at": datetime(2026, 3, 4, 4),
                    "status": status,
                    "attempts": 0,
                }
                for cid, _, channel, status, campaign in ENTRIES
            ],
        )
        cancelled = cancel_stopped_sends(conn, CAMPAIGN_ID, rules)
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxEntry.customer_id, OutboxEntry.status, OutboxEntry.error)
        ).all()
    return cancelled, {cid: (status, error) for cid, status, error in rows}


def test_a_paused_channel_and_segment_cancel_what_has_not_been_handed_over(engine: Engine):
    rules = RulesInForce(
        spec=SPEC, paused=[PausedScope("channel", "sms", 1), PausedScope("segment", "farmer", 2)]
    )
    cancelled, rows = outcome(engine, rules)
    assert cancelled == {"paused": 4}
    stopped = {"c-sms-pending", "c-sms-held", "c-sms-deferred", "c-im-farmer"}
    assert {cid for cid, (status, _) in rows.items() if status == "cancelled"} == stopped
    assert {rows[cid][1] for cid in stopped} == {"paused"}
    assert rows["c-sms-sending"] == ("sending", None), "handed over: it completes"
    assert rows["c-sms-other"][0] == "pending", "another campaign's send"
    assert rows["c-im-sme"][0] == rows["c-phone"][0] == "pending"


def test_a_retired_channel_cancels_with_its_reason_and_nothing_stopped_cancels_nothing(
    engine: Engine,
):
    cancelled, rows = outcome(engine, RulesInForce(spec=SPEC, retired_channels=["phone"]))
    assert cancelled == {"retired": 1} and rows["c-phone"] == ("cancelled", "retired")
    assert sum(status == "cancelled" for status, _ in rows.values()) == 1


def test_no_rules_no_change(engine: Engine):
    cancelled, rows = outcome(engine, RulesInForce(spec=SPEC))
    assert cancelled == {} and "cancelled" not in {status for status, _ in rows.values()}
