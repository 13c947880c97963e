"""The units of the dispatch stage: slots, assignment, routing, capacity, quotas, the lock.

Plain functions on small inline frames; the ones that read the database run on SQLite
and PostgreSQL (`engine`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from pdca.errors import UserError
from pdca.models import Customer, DispatchLock, OutboxEntry, OutreachBatch, SimulatedSend, Touch
from tasks.common.campaigns import CampaignSpec
from tasks.common.sqlfiles import _environment
from tasks.do.assignment import (
    HALF,
    HASH_SPAN,
    HOLDOUT,
    cut,
    hash_binds,
    hash_bits,
    variant_cuts,
    window_cuts,
)
from tasks.do.audience import (
    STAGE,
    apply_capacity_in_stage,
    audience_statement,
    count_stage,
    current_plan,
    daily_quotas,
    segment_propensity,
    stage_audience,
)
from tasks.do.gateways import KEY_PATTERN, JournaledGateway, OutboundMessage, SimulatedGateway
from tasks.do.gateways.journal import journal_key
from tasks.do.locks import LOCK_LEASE, DispatchBusy, acquire_lock, release_lock
from tasks.do.outbox import remaining_quotas
from tasks.do.sending import (
    SendTally,
    _fits_journal,
    chunk_parts,
    idempotency_key,
    mark_sending,
    next_chunk,
    send_messages,
    send_part,
)
from tasks.do.slots import Slot, next_slot, slots_for
from tasks.do.wording import Message
from tests.oracles.dispatch_rules import apply_capacity, assign_variants, route, window_share
from tests.scenario import CAMPAIGN_ID, add_plan, apply, customer, spec_dict, touch

SPEC = CampaignSpec.model_validate(spec_dict())


def spec(**overrides) -> CampaignSpec:
    return CampaignSpec.model_validate(spec_dict(**overrides))


def utc(*args: int) -> datetime:
    return datetime(*args)


# --- slots ---------------------------------------------------------------------------------


class TestSlotsFor:
    def test_weekday_windows_in_utc_for_shanghai(self):
        """Asia/Shanghai is UTC+8: noon 12:00-13:30 is 04:00-05:30 UTC."""
        day = date(2026, 3, 4)
        assert slots_for(SPEC, day) == [
            Slot("noon", day, utc(2026, 3, 4, 4, 0), utc(2026, 3, 4, 5, 30)),
            Slot("evening", day, utc(2026, 3, 4, 11, 0), utc(2026, 3, 4, 13, 0)),
        ]

    @pytest.mark.parametrize("day", [date(2026, 3, 7), date(2026, 3, 8)], ids=["sat", "sun"])
    def test_weekend_has_none(self, day):
        assert slots_for(SPEC, day) == []

    @pytest.mark.parametrize("day", [date(2026, 2, 27), date(2026, 6, 1)], ids=["before", "after"])
    def test_outside_the_campaign_has_none(self, day):
        assert slots_for(SPEC, day) == []

    def test_in_time_order_whatever_the_spec_order(self):
        reordered = spec(
            contact_policy={
                "max_touches_per_7d": 2,
                "quiet_hours": "21:00-09:00",
                "windows": {"evening": "19:00-21:00", "noon": "12:00-13:30"},
            }
        )
        assert [s.window for s in slots_for(reordered, date(2026, 3, 4))] == ["noon", "evening"]

    def test_daylight_saving_moves_the_utc_times(self):
        london = spec(timezone="Europe/London")  # BST starts on 29 March 2026
        before, after = slots_for(london, date(2026, 3, 27)), slots_for(london, date(2026, 3, 30))
        assert before[0].starts_at == utc(2026, 3, 27, 12, 0)
        assert after[0].starts_at == utc(2026, 3, 30, 11, 0)


class TestNextSlot:
    def test_friday_evening_gives_monday_noon(self):
        friday_after_evening = utc(2026, 3, 6, 13, 0)  # 21:00 in Shanghai
        slot = next_slot(SPEC, friday_after_evening)
        assert (slot.window, slot.day, slot.starts_at) == (
            "noon",
            date(2026, 3, 9),
            utc(2026, 3, 9, 4, 0),
        )

    def test_after_noon_gives_the_same_days_evening(self):
        slot = next_slot(SPEC, utc(2026, 3, 4, 5, 30))
        assert (slot.window, slot.day) == ("evening", date(2026, 3, 4))

    def test_a_window_opening_now_is_next(self):
        slot = next_slot(SPEC, utc(2026, 3, 4, 4, 0))
        assert (slot.window, slot.day) == ("noon", date(2026, 3, 4))

    def test_none_after_the_campaign(self):
        assert next_slot(SPEC, utc(2026, 5, 29, 13, 0)) is None  # Friday 21:00, last week


# --- assignment -----------------------------------------------------------------------------


def members(ids, assigned=None) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame({"customer_id": ids, "assigned_variant": assigned or [None] * len(ids)})


class TestAssignVariants:
    def test_stable_across_calls_order_and_company(self):
        ids = [f"c{n:05d}" for n in range(500)]
        whole = assign_variants(CAMPAIGN_ID, SPEC, members(ids))
        again = assign_variants(CAMPAIGN_ID, SPEC, members(reversed(ids)))
        alone = assign_variants(CAMPAIGN_ID, SPEC, members(ids[7:8]))
        assert whole.tolist() == again.tolist()[::-1]
        assert alone.iloc[0] == whole.iloc[7]

    @pytest.mark.parametrize(
        ("variants", "holdout"),
        [({"A": 0.45, "B": 0.45}, 0.10), ({"A": 0.7, "B": 0.2}, 0.10), ({"A": 1.0}, 0.0)],
    )
    def test_shares_respected_on_10000_customers(self, variants, holdout):
        split = spec(experiment={"variants": variants, "holdout": holdout})
        drawn = assign_variants(CAMPAIGN_ID, split, members(f"c{n:06d}" for n in range(10_000)))
        shares = drawn.value_counts(normalize=True)
        for name, share in {**variants, HOLDOUT: holdout}.items():
            assert shares.get(name, 0.0) == pytest.approx(share, abs=0.02), shares.to_dict()

    def test_an_existing_variant_is_kept(self):
        ids = [f"c{n:05d}" for n in range(200)]
        drawn = assign_variants(CAMPAIGN_ID, SPEC, members(ids))
        flipped = ["B" if v == "A" else "A" for v in drawn]
        kept = assign_variants(CAMPAIGN_ID, SPEC, members(ids, flipped))
        assert kept.tolist() == flipped

    def test_campaigns_draw_independently(self):
        ids = [f"c{n:05d}" for n in range(1000)]
        one = assign_variants("campaign-one", SPEC, members(ids))
        two = assign_variants("campaign-two", SPEC, members(ids))
        assert 0.3 < (one == two).mean() < 0.7


# --- routing --------------------------------------------------------------------------------


def audience(*rows) -> pd.DataFrame:
    """(customer_id, segment, credit_score[, contacts_7d[, exclusion_reason]])."""
    defaults = (0, None)
    full = [(*row, *defaults[len(row) - 3 :]) for row in rows]
    return pd.DataFrame(
        full,
        columns=["customer_id", "segment", "credit_score", "contacts_7d", "exclusion_reason"],
    )


PROPENSITY = {"sme": 0.10, "farmer": 0.02}
"""Average 0.06: sme above, farmer below."""


class TestRoute:
    def test_tiers_and_their_channels(self):
        routed = route(
            audience(
                ("a", "sme", 750),
                ("a-low-segment", "farmer", 750),
                ("a-unknown-segment", "student", 720),
                ("b", "sme", 690),
                ("c", "sme", 640),
            ),
            SPEC,
            PROPENSITY,
        ).set_index("customer_id")
        assert routed["tier"].to_dict() == {
            "a": "A",
            "a-low-segment": "B",
            "a-unknown-segment": "A",
            "b": "B",
            "c": "C",
        }
        assert routed.loc["a", "channel"] == "phone"
        assert routed.loc["c", "channel"] == "app_push"
        assert routed.loc["b", "channel"] in ("sms", "im")
        assert routed.loc["a-unknown-segment", "propensity"] == pytest.approx(0.06)

    def test_tier_b_alternates_between_sms_and_im(self):
        frame = audience(*[(f"b{n:03d}", "sme", 690) for n in range(200)])
        channels = route(frame, SPEC, PROPENSITY)["channel"].value_counts(normalize=True)
        assert set(channels.index) == {"sms", "im"}
        assert channels["sms"] == pytest.approx(0.5, abs=0.12)

    @pytest.mark.parametrize(
        ("channels", "expected"),
        [
            (["sms", "app_push"], {"A": {"sms"}, "B": {"sms", "app_push"}, "C": {"app_push"}}),
            (["im", "email"], {"A": {"im"}, "B": {"im", "email"}, "C": {"email"}}),
            (["email"], {"A": {None}, "B": {"email"}, "C": {"email"}}),
            (["phone"], {"A": {"phone"}, "B": {None}, "C": {None}}),
        ],
    )
    def test_falls_back_to_the_channels_the_campaign_has(self, channels, expected):
        """The first of the tier's channels the campaign has (tier B: one of its first two)."""
        scores = {"A": 750, "B": 690, "C": 640}
        rows = [(f"{tier}{n}", "sme", score) for tier, score in scores.items() for n in range(40)]
        routed = route(audience(*rows), spec(channels=channels), PROPENSITY)
        got = routed.groupby(routed["customer_id"].str[0])["channel"].agg(
            lambda values: set(values.replace({np.nan: None}))
        )
        assert got.to_dict() == expected

    def test_tier_c_gets_half_the_frequency_cap(self):
        frame = audience(
            ("c-once", "sme", 640, 1), ("c-never", "sme", 640, 0), ("a", "sme", 750, 1)
        )
        routed = route(frame, SPEC, PROPENSITY).set_index("customer_id")
        assert routed["exclusion_reason"].to_dict() == {
            "c-once": "tier_c_frequency",
            "c-never": None,
            "a": None,
        }

    def test_an_earlier_exclusion_reason_is_kept(self):
        frame = audience(("dnc", "sme", 640, 1, "do_not_contact"))
        assert route(frame, SPEC, PROPENSITY)["exclusion_reason"].tolist() == ["do_not_contact"]


# --- capacity -------------------------------------------------------------------------------


def routed(*rows) -> pd.DataFrame:
    """(customer_id, channel, propensity, credit_score[, exclusion_reason])."""
    full = [(*row, None)[:5] for row in rows]
    return pd.DataFrame(
        full, columns=["customer_id", "channel", "propensity", "credit_score", "exclusion_reason"]
    )


class TestApplyCapacity:
    def test_keeps_the_best_by_propensity_then_score_then_id(self):
        frame = routed(
            ("c3", "phone", 0.1, 700),
            ("c1", "phone", 0.2, 650),
            ("c2", "phone", 0.1, 800),
            ("c0", "phone", 0.1, 700),
            ("s1", "sms", 0.1, 700),
        )
        kept = apply_capacity(frame, {"phone": 3, "sms": 5})
        assert kept["customer_id"].tolist() == frame["customer_id"].tolist(), "order changed"
        assert dict(zip(kept["customer_id"], kept["exclusion_reason"], strict=True)) == {
            "c3": "over_capacity",
            "c1": None,
            "c2": None,
            "c0": None,
            "s1": None,
        }

    def test_no_quota_and_no_channel(self):
        frame = routed(("p", "phone", 0.1, 700), ("x", None, 0.1, 700), ("i", "im", 0.1, 700))
        kept = apply_capacity(frame, {"phone": 0})
        assert kept["exclusion_reason"].tolist() == ["over_capacity", "no_channel", "over_capacity"]

    def test_excluded_customers_take_no_quota(self):
        frame = routed(
            ("dnc", "phone", 0.1, 850, "do_not_contact"),
            ("ok1", "phone", 0.1, 750),
            ("ok2", "phone", 0.1, 740),
        )
        kept = apply_capacity(frame, {"phone": 2})
        assert kept["exclusion_reason"].isna().sum() == 2, kept

    def test_exclusion_reason_survives_a_full_quota(self):
        frame = routed(("ok", "phone", 0.1, 850), ("dnc", "phone", 0.1, 750, "do_not_contact"))
        reasons = apply_capacity(frame, {"phone": 1})["exclusion_reason"]
        assert pd.isna(reasons.iloc[0]) and reasons.iloc[1] == "do_not_contact", reasons


# --- plan, quotas and the outbox (SQL) ---------------------------------------------------------


@pytest.fixture
def campaign(engine: Engine) -> Engine:
    with engine.begin() as conn:
        apply(conn, spec_dict())
    return engine


def open_batch_with(
    engine: Engine, entries: list[tuple[str, str, str]], window: str = "noon"
) -> int:
    """A batch of `window` with outbox entries (customer_id, channel, status)."""
    with engine.begin() as conn:
        batch_id = conn.execute(
            insert(OutreachBatch)
            .values(
                campaign_id=CAMPAIGN_ID,
                send_date=date(2026, 3, 4),
                window=window,
                status="open",
                summary={},
            )
            .returning(OutreachBatch.batch_id)
        ).scalar_one()
        if not entries:
            return batch_id
        conn.execute(
            insert(OutboxEntry),
            [
                {
                    "batch_id": batch_id,
                    "customer_id": customer_id,
                    "channel": channel,
                    "variant": HOLDOUT if status == "holdout" else "A",
                    "scheduled_at": datetime(2026, 3, 4, 4, 5),
                    "status": status,
                    "attempts": 0,
                }
                for customer_id, channel, status in entries
            ],
        )
    return batch_id


class TestRemainingQuotas:
    def test_counts_what_the_batch_already_has_holdouts_included(self, campaign):
        """Hold-out members took their places in the quota: a rerun must not refill them."""
        batch_id = open_batch_with(
            campaign,
            [
                ("c1", "phone", "pending"),
                ("c2", "phone", "sent"),
                ("c3", "phone", "holdout"),
                *[(f"s{n}", "sms", "sent") for n in range(5)],
            ],
        )
        with campaign.connect() as conn:
            left = remaining_quotas(conn, batch_id, {"phone": 3, "sms": 4, "im": 2})
        assert left == {"phone": 0, "sms": 0, "im": 2}

    def test_an_empty_batch_keeps_the_quotas(self, campaign):
        batch_id = open_batch_with(campaign, [])
        with campaign.connect() as conn:
            assert remaining_quotas(conn, batch_id, {"phone": 3}) == {"phone": 3}


class TestPlanQuotas:
    def test_daily_quotas_spread_the_plan_over_send_days_and_windows(self, campaign):
        with campaign.begin() as conn:
            # March 2026 from the 2nd: 22 weekdays
            plan_id = add_plan(
                conn,
                {"phone": 220, "sms": 4400, "im": 0},
                cost_per_touch={"phone": 8.0, "sms": 0.05},
                daily_capacity={"phone": 6},
            )
        with campaign.connect() as conn:
            plan, period = current_plan(conn, CAMPAIGN_ID, date(2026, 3, 4))
            quotas, costs = daily_quotas(conn, plan, period, SPEC, windows=2)
        assert plan == plan_id and str(period) == "2026-03"
        assert quotas == {"phone": 3, "sms": 100, "im": 0}  # phone: min(10, 6) // 2
        assert costs == pytest.approx({"phone": 8.0, "sms": 0.05, "im": 0.0})

    def test_the_shortest_covering_plan_wins(self, campaign):
        with campaign.begin() as conn:
            add_plan(conn, {"phone": 10}, period="2026-Q1")
            week = add_plan(conn, {"phone": 10}, period="2026-W10")
        with campaign.connect() as conn:
            assert current_plan(conn, CAMPAIGN_ID, date(2026, 3, 4))[0] == week
            assert str(current_plan(conn, CAMPAIGN_ID, date(2026, 3, 18))[1]) == "2026-Q1"

    def test_no_plan_is_a_user_error_saying_what_to_run(self, campaign):
        with campaign.connect() as conn, pytest.raises(UserError, match="pdca plan"):
            current_plan(conn, CAMPAIGN_ID, date(2026, 3, 4))


# --- the lock -------------------------------------------------------------------------------

NOW = datetime(2026, 3, 4, 4, 5)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class TestDispatchLock:
    def test_a_second_dispatch_is_refused_until_the_first_releases(self, campaign):
        with campaign.connect() as conn:
            holder = acquire_lock(conn, CAMPAIGN_ID, NOW)
            assert holder.startswith(f"{socket.gethostname()}:{os.getpid()}:")
            with pytest.raises(DispatchBusy, match="another dispatch is running") as caught:
                acquire_lock(conn, CAMPAIGN_ID, NOW + timedelta(minutes=1))
            assert holder in str(caught.value)
            release_lock(conn, CAMPAIGN_ID, holder)
            again = acquire_lock(conn, CAMPAIGN_ID, NOW + timedelta(minutes=2))
            release_lock(conn, CAMPAIGN_ID, again)

    def test_locks_are_per_campaign(self, campaign):
        with campaign.begin() as conn:
            apply(conn, spec_dict("other-one"))
        with campaign.connect() as conn:
            first = acquire_lock(conn, CAMPAIGN_ID, NOW)
            other = acquire_lock(conn, "other-one", NOW)
            assert first.split(":")[:2] == other.split(":")[:2]
            with campaign.connect() as check:
                held = check.execute(select(DispatchLock.campaign_id)).scalars().all()
            assert sorted(held) == ["other-one", CAMPAIGN_ID]

    def test_a_lock_older_than_the_lease_is_taken_over(self, campaign):
        with campaign.begin() as conn:
            conn.execute(
                insert(DispatchLock).values(
                    campaign_id=CAMPAIGN_ID, holder="elsewhere:1:x", acquired_at=NOW - LOCK_LEASE
                )
            )
        with campaign.connect() as conn:
            holder = acquire_lock(conn, CAMPAIGN_ID, NOW + timedelta(seconds=1))
            rows = conn.execute(select(DispatchLock.holder)).scalars().all()
        assert rows == [holder]

    def test_a_dead_holders_lock_on_this_host_is_taken_over(self, campaign):
        gone = f"{socket.gethostname()}:{dead_pid()}:{NOW.isoformat()}"
        with campaign.begin() as conn:
            conn.execute(
                insert(DispatchLock).values(campaign_id=CAMPAIGN_ID, holder=gone, acquired_at=NOW)
            )
        with campaign.connect() as conn:
            acquire_lock(conn, CAMPAIGN_ID, NOW + timedelta(minutes=1))


def test_hash_unit_is_uniform_enough():
    """The hash behind assignment, windows and tier-B alternation spreads evenly."""
    from tests.oracles.dispatch_rules import _hash_unit

    units = _hash_unit("salt", pd.Series([f"c{n}" for n in range(10_000)]))
    counts = np.histogram(units, bins=10, range=(0, 1))[0]
    assert counts.min() > 900 and counts.max() < 1100, counts


# --- the hash, the same in Python, SQLite and PostgreSQL ----------------------------------

KEYS = [f"c{n:05d}" for n in range(400)] + ["Zoë-Ünïcode-客户", "a b", "", "x" * 64]


class TestHashInSql:
    @pytest.mark.parametrize(
        "cuts",
        [
            [HALF],
            [c for _, c in variant_cuts(SPEC)],
            window_cuts(3),
            [0],
            [HASH_SPAN],
            [1, 2, HASH_SPAN - 1],
        ],
        ids=["half", "variants", "three-windows", "zero", "span", "edges"],
    )
    def test_bucket_is_the_python_rule(self, engine: Engine, cuts):
        keys = Table("hash_keys", MetaData(), Column("key", String), prefixes=["TEMPORARY"])
        with engine.connect() as conn:
            keys.create(conn)
            conn.execute(insert(keys), [{"key": key} for key in KEYS])
            sql = _environment(conn.dialect.name).from_string(
                "select key, {{ bucket('test', 'key') }} from hash_keys"
            )
            binds = hash_binds(conn, {"test": ("salt", cuts)})
            drawn = dict(conn.execute(text(sql.render()), binds).all())
            conn.rollback()
        expected = {
            key: int(np.searchsorted(cuts, hash_bits("salt", key), side="right")) for key in KEYS
        }
        assert drawn == expected

    def test_hash_bits_is_the_start_of_sha256(self):
        import hashlib

        digest = hashlib.sha256(b"campaign:c00001").hexdigest()
        assert hash_bits("campaign", "c00001") == int(digest[:15], 16)

    @pytest.mark.parametrize("share", [0.0, 0.1, 0.45, 0.5, 0.9, 1.0, 1.0000000000000002])
    def test_cut_is_exact(self, share):
        """h < cut(share) ⇔ h / 2**60 < share, right at the cut."""
        from fractions import Fraction

        edge = cut(share)
        for h in (edge - 1, edge):
            if 0 <= h < HASH_SPAN:
                assert (h < edge) == (Fraction(h, HASH_SPAN) < Fraction(share))


# --- the staged audience: the SQL equals the rules on DataFrames --------------------------

STAGE_PROPENSITY = {"sme": 0.10, "farmer": 0.02, "salaried": 0.07}
"""Average 0.0633: sme and salaried above it, farmer below, student unknown (average)."""
STAGE_QUOTAS = {"phone": 12, "sms": 10_000, "im": 9, "app_push": 0}
"""Phone and IM bind (ranked), app push takes nobody, SMS has room for all."""


def staged_world(engine: Engine) -> int:
    """Customers of every kind, some already assigned (hold-out included), some touched
    lately; returns an open batch of the noon window."""
    rng = np.random.default_rng(7)
    rows, touched = [], []
    for n in range(500):
        cid = f"s{n:04d}" if n % 50 else f"ü{n}-客"
        score = [None, 550, 640, 665, 700, 725, 780][rng.integers(0, 7)]
        segment = ["sme", "farmer", "salaried", "student"][rng.integers(0, 4)]
        rows.append(customer(cid, credit_score=score, segment=segment, do_not_contact=n % 37 == 0))
        if n % 9 == 0:  # assigned before, imported history included
            variant = ["A", "B", HOLDOUT][n // 9 % 3]
            touched.append(
                touch(f"t{n}", cid, datetime(2026, 2, 1), campaign_id=CAMPAIGN_ID, variant=variant)
            )
        if n % 7 == 0:  # contacted lately elsewhere: tier C's halved cap applies
            touched.append(touch(f"r{n}", cid, datetime(2026, 3, 2)))
    with engine.begin() as conn:
        conn.execute(insert(Customer), rows)
        conn.execute(insert(Touch), touched)
    return open_batch_with(engine, [])


def expected_stage(conn, batch_id: int) -> tuple[dict, dict]:
    """What the flow used to compute in pandas: reasons of everyone in the noon window,
    (channel, variant) of the chosen."""
    slot = slots_for(SPEC, date(2026, 3, 4))[0]
    result = conn.execute(audience_statement(conn, SPEC, batch_id, slot))
    audience = pd.DataFrame(result.all(), columns=list(result.keys()))
    mine = audience[window_share(CAMPAIGN_ID, audience, ["noon", "evening"]) == "noon"]
    mine = mine.assign(variant=assign_variants(CAMPAIGN_ID, SPEC, mine))
    members = mine["assigned_variant"] == HOLDOUT
    routed = apply_capacity(route(mine[~members], SPEC, STAGE_PROPENSITY), STAGE_QUOTAS)
    held_back = mine[members]["exclusion_reason"].fillna("holdout_member")
    reasons = {
        **dict(zip(routed["customer_id"], routed["exclusion_reason"], strict=True)),
        **dict(zip(mine[members]["customer_id"], held_back, strict=True)),
    }
    chosen = routed[routed["exclusion_reason"].isna()]
    sends = {
        cid: (channel, variant)
        for cid, channel, variant in zip(
            chosen["customer_id"], chosen["channel"], chosen["variant"], strict=True
        )
    }
    return {k: (None if pd.isna(v) else v) for k, v in reasons.items()}, sends


class TestStagedAudience:
    def test_the_sql_applies_the_dataframe_rules(self, campaign: Engine):
        batch_id = staged_world(campaign)
        slot = slots_for(SPEC, date(2026, 3, 4))[0]
        with campaign.connect() as conn:
            reasons, sends = expected_stage(conn, batch_id)
            stage_audience(conn, SPEC, batch_id, slot, ["noon", "evening"], STAGE_PROPENSITY)
            staged = count_stage(conn)
            assert apply_capacity_in_stage(conn, STAGE_QUOTAS, staged.chosen_by_channel)
            rows = conn.execute(
                select(
                    STAGE.c.customer_id, STAGE.c.exclusion_reason, STAGE.c.channel, STAGE.c.variant
                )
            ).all()
            after = count_stage(conn)
            conn.rollback()
        got_reasons = {cid: reason for cid, reason, _, _ in rows}
        got_sends = {cid: (ch, v) for cid, reason, ch, v in rows if reason is None}
        assert got_reasons == reasons
        assert got_sends == sends
        # the kinds of case the world is there for all happened
        assert {"over_capacity", "tier_c_frequency", "holdout_member", "do_not_contact"} <= set(
            reasons.values()
        )
        assert {v for _, v in sends.values()} >= {"A", "B", HOLDOUT}
        assert after.audience == len(reasons) and after.eligible == len(sends)
        assert (
            after.excluded == pd.Series([r for r in reasons.values() if r]).value_counts().to_dict()
        )
        assert after.to_send == sum(v != HOLDOUT for _, v in sends.values())

    def test_counts_before_capacity(self, campaign: Engine):
        batch_id = staged_world(campaign)
        slot = slots_for(SPEC, date(2026, 3, 4))[0]
        roomy = dict.fromkeys(STAGE_QUOTAS, 10_000)
        with campaign.connect() as conn:
            stage_audience(conn, SPEC, batch_id, slot, ["noon", "evening"], STAGE_PROPENSITY)
            staged = count_stage(conn)
            assert not apply_capacity_in_stage(conn, roomy, staged.chosen_by_channel)
            by_channel = dict(
                conn.execute(
                    select(STAGE.c.channel, func.count())
                    .where(STAGE.c.exclusion_reason.is_(None))
                    .group_by(STAGE.c.channel)
                ).all()
            )
            conn.rollback()
        assert staged.chosen_by_channel == by_channel
        assert set(staged.channels) == set(by_channel)


# --- sending: the bulk path records what the per-message path records ---------------------

SLOT = Slot("noon", date(2026, 3, 4), utc(2026, 3, 4, 4, 0), utc(2026, 3, 4, 5, 30))
SENT_AT = utc(2026, 3, 4, 4, 6)
COSTS = {"phone": 8.0, "sms": 0.05, "im": 0.03}
OUTCOMES = {"phone": (0.8, 0.35), "sms": (0.5, 0.5)}


def outbox_world(engine: Engine, customers: int = 60) -> int:
    ids = [f"o{n:03d}" for n in range(customers)]
    with engine.begin() as conn:
        conn.execute(insert(Customer), [customer(cid) for cid in ids])
    channels = ("phone", "sms", "im")
    return open_batch_with(engine, [(cid, channels[n % 3], "pending") for n, cid in enumerate(ids)])


def sent_state(engine: Engine) -> dict:
    """Everything sending writes, without the journal's wall-clock times."""
    with engine.connect() as conn:
        box = conn.execute(
            select(
                OutboxEntry.outbox_id,
                OutboxEntry.status,
                OutboxEntry.attempts,
                OutboxEntry.gateway_ref,
                OutboxEntry.touch_id,
                OutboxEntry.sent_at,
                OutboxEntry.error,
            ).order_by(OutboxEntry.outbox_id)
        ).all()
        touches = conn.execute(select(Touch).order_by(Touch.touch_id)).all()
        journal = conn.execute(
            select(
                SimulatedSend.idempotency_key,
                SimulatedSend.channel,
                SimulatedSend.customer_id,
                SimulatedSend.delivered,
                SimulatedSend.responded,
                SimulatedSend.attempts,
            ).order_by(SimulatedSend.idempotency_key)
        ).all()
    return {"outbox": box, "touches": touches, "journal": journal}


def reset_sending(engine: Engine, batch_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(Touch))
        conn.execute(delete(SimulatedSend))
        conn.execute(
            update(OutboxEntry)
            .where(OutboxEntry.batch_id == batch_id)
            .values(status="pending", attempts=0, gateway_ref=None, touch_id=None, sent_at=None)
        )


def send_all(engine: Engine, batch_id: int, bulk: bool, outcomes=None, size: int = 25) -> SendTally:
    """The flow's send loop, through journaled simulated gateways: in bulk or per message."""
    tally = SendTally()
    gateway = JournaledGateway(SimulatedGateway(seed=3, outcomes=outcomes, record=False), engine)
    taken: dict[str, int] = {}
    with engine.connect() as conn:
        while (chunk := next_chunk(conn, batch_id, size, taken)) is not None:
            taken[chunk.status] = chunk.last_id
            mark_sending(conn, chunk)
            conn.commit()
            for part in chunk_parts(conn, chunk):
                rendered = {(part.channel, "A", "sme"): MESSAGE}
                if bulk:  # the flow's choice: in bulk when the part's keys allow it
                    send_part(
                        conn, gateway, CAMPAIGN_ID, SLOT, part, SENT_AT, COSTS, rendered, tally
                    )
                else:
                    send_messages(
                        conn, gateway, CAMPAIGN_ID, SLOT, part, SENT_AT, COSTS, rendered, tally
                    )
                conn.commit()
    return tally


MESSAGE = Message("sms", "A", "templates/sms.j2", None, "text", None)


def crash_after_accepting_half(engine: Engine, batch_id: int) -> None:
    """The state a crash leaves: every entry `sending` (one attempt), every other one
    already in the journal (a phone call there was not delivered)."""
    accepted = SimulatedGateway(seed=3, outcomes={"phone": (0.0, 0.0)})
    with engine.begin() as conn:
        conn.execute(
            update(OutboxEntry)
            .where(OutboxEntry.batch_id == batch_id)
            .values(status="sending", attempts=1)
        )
        journaled = []
        for customer_id, channel in conn.execute(
            select(OutboxEntry.customer_id, OutboxEntry.channel).where(
                OutboxEntry.outbox_id % 2 == 0
            )
        ):
            key = idempotency_key(CAMPAIGN_ID, SLOT.day, SLOT.window, customer_id, channel)
            delivered, responded = accepted.draw_key(channel, key)
            journaled.append(
                {
                    "idempotency_key": key,
                    "channel": channel,
                    "customer_id": customer_id,
                    "accepted_at": SENT_AT,
                    "delivered": delivered,
                    "responded": responded,
                    "attempts": 1,
                }
            )
        conn.execute(insert(SimulatedSend), journaled)


class TestSendJournaled:
    @pytest.mark.parametrize("outcomes", [None, OUTCOMES], ids=["no-outcomes", "outcomes"])
    def test_bulk_writes_what_messages_write(self, campaign: Engine, outcomes):
        batch_id = outbox_world(campaign)
        one_by_one = send_all(campaign, batch_id, bulk=False, outcomes=outcomes)
        expected = sent_state(campaign)
        reset_sending(campaign, batch_id)
        in_bulk = send_all(campaign, batch_id, bulk=True, outcomes=outcomes)
        assert sent_state(campaign) == expected
        assert (
            in_bulk.sent
            == one_by_one.sent
            == {("im", "A"): 20, ("phone", "A"): 20, ("sms", "A"): 20}
        )
        if outcomes:
            delivered = {row.delivered for row in expected["touches"]}
            assert delivered == {True, False}, "the world should draw both outcomes"

    def test_bulk_keeps_the_gateways_counts_and_record(self, campaign: Engine):
        batch_id = outbox_world(campaign, customers=9)
        inner = SimulatedGateway(seed=3, outcomes={"sms": (1.0, 1.0)}, record=True)
        gateway = JournaledGateway(inner, campaign)
        with campaign.connect() as conn:
            chunk = next_chunk(conn, batch_id, 100)
            mark_sending(conn, chunk)
            conn.commit()
            for part in chunk_parts(conn, chunk):
                send_part(conn, gateway, CAMPAIGN_ID, SLOT, part, SENT_AT, COSTS, {}, SendTally())
                conn.commit()
        channels = ("phone", "sms", "im")  # as outbox_world spreads them
        expected = [
            idempotency_key(CAMPAIGN_ID, SLOT.day, "noon", f"o{n:03d}", channels[n % 3])
            for n in range(9)
        ]
        assert sorted(inner.sent) == sorted(expected)
        assert inner.counts["sms", "sent"] == inner.counts["sms", "delivered"] == 3
        assert inner.counts["phone", "sent"] == 3 and inner.counts["phone", "delivered"] == 0

    @pytest.mark.parametrize("outcomes", [None, OUTCOMES], ids=["no-outcomes", "outcomes"])
    def test_resent_after_a_crash_keeps_the_journaled_outcome(self, campaign: Engine, outcomes):
        """Entries left `sending` by a crash, every other one already accepted (journaled,
        phone calls not delivered): resent with one more attempt, recorded once, with the
        journal's outcome — in bulk as one by one."""
        batch_id = outbox_world(campaign)
        states = []
        for bulk in (False, True):
            reset_sending(campaign, batch_id)
            crash_after_accepting_half(campaign, batch_id)
            send_all(campaign, batch_id, bulk=bulk, outcomes=outcomes)
            states.append(sent_state(campaign))
        assert states[1] == states[0]
        journal = states[1]["journal"]
        assert sorted({row.attempts for row in journal}) == [1, 2]
        assert {row.attempts for row in states[1]["outbox"]} == {2}
        resent = {row.customer_id for row in journal if row.attempts == 2}
        phone = [row for row in states[1]["touches"] if row.channel == "phone"]
        assert not any(row.delivered for row in phone if row.customer_id in resent)

    def test_a_reference_too_long_for_the_outbox_goes_one_by_one(self, campaign: Engine):
        """`sim-<key>` longer than the outbox's gateway_ref (the key itself fits the
        journal): the per-message path sends it and shortens the reference with a hash."""
        long_id = "c" * 62
        with campaign.begin() as conn:
            conn.execute(insert(Customer), [customer(long_id)])
        batch_id = open_batch_with(campaign, [(long_id, "sms", "pending")])
        campaign_id = "y" * 45  # the key: 45 + 1 + 8 + 1 + 4 + 1 + 62 + 1 + 3 = 126
        key = idempotency_key(campaign_id, SLOT.day, "noon", long_id, "sms")
        gateway = JournaledGateway(SimulatedGateway(seed=3, record=False), campaign)
        tally = SendTally()
        with campaign.connect() as conn:
            chunk = next_chunk(conn, batch_id, 10)
            mark_sending(conn, chunk)
            conn.commit()
            (part,) = chunk_parts(conn, chunk)
            assert not _fits_journal(gateway, campaign_id, SLOT, part)
            assert _fits_journal(gateway, CAMPAIGN_ID, SLOT, part)
            rendered = {("sms", "A", "sme"): MESSAGE}
            send_part(conn, gateway, campaign_id, SLOT, part, SENT_AT, COSTS, rendered, tally)
            conn.commit()
        state = sent_state(campaign)
        (entry,) = state["outbox"]
        assert (entry.status, entry.attempts) == ("sent", 1)
        assert entry.gateway_ref == SimulatedGateway().send_batch([message_for(key)])[0].gateway_ref
        assert len(key) == 126 and len(entry.gateway_ref) <= 128
        assert [row.idempotency_key for row in state["journal"]] == [key]
        assert tally.sent == {("sms", "A"): 1}


def message_for(key: str) -> OutboundMessage:
    return OutboundMessage(key, "sms", "c", "+86 138 0000 0000", None, "text", None, "A")


class TestSendsUpdateInPlace:
    """`status` is in no index of the outbox, and PostgreSQL fills its pages to 40 %
    (migration 0010): a send's two updates (handed over, sent) add no index entries."""

    def test_chunks_follow_on_from_where_the_last_ended(self, campaign: Engine):
        batch_id = outbox_world(campaign, customers=9)
        with campaign.connect() as conn:
            first = next_chunk(conn, batch_id, 4)
            assert next_chunk(conn, batch_id, 4, {"pending": first.last_id}).first_id > (
                first.last_id
            )
            assert next_chunk(conn, batch_id, 4, {"pending": 10**9}) is None
            assert next_chunk(conn, batch_id, 4, {"sending": 10**9}) == first

    def test_once_a_pending_chunk_was_taken_no_leftover_is_looked_for(self, campaign: Engine):
        """A crash's `sending` leftovers are taken before any `pending` chunk, and every
        chunk ends sent, failed or deferred before the next: after a `pending` chunk the
        search for leftovers (a walk of the whole batch, `status` being in no index) is
        skipped. Here an entry made `sending` behind the loop's back is not found."""
        batch_id = outbox_world(campaign, customers=9)
        with campaign.connect() as conn:
            first = next_chunk(conn, batch_id, 4)
            conn.execute(
                update(OutboxEntry)
                .where(OutboxEntry.outbox_id == first.first_id)
                .values(status="sending")
            )
            assert next_chunk(conn, batch_id, 4).status == "sending"
            after = next_chunk(conn, batch_id, 4, {"pending": first.last_id})
            assert (after.status, after.first_id > first.last_id) == ("pending", True)

    def test_on_postgresql_the_sends_updates_are_heap_only(self, campaign: Engine):
        if campaign.dialect.name != "postgresql":
            pytest.skip("SQLite has no heap-only updates")
        before = outbox_updates(campaign)
        send_all(campaign, outbox_world(campaign, customers=60), bulk=True, size=25)
        campaign.dispose()  # each server process reports its statistics as it ends
        deadline = time.monotonic() + 20
        while (after := outbox_updates(campaign))[0] - before[0] < 120:
            assert time.monotonic() < deadline, (before, after)
            time.sleep(0.2)
        updates, heap_only = after[0] - before[0], after[1] - before[1]
        assert heap_only >= 0.9 * updates, (updates, heap_only)


class TestOutboxNamesOnlyBatchesThatExist:
    """The outbox's batch is a foreign key on SQLite; on PostgreSQL triggers keep the same
    rule with one check per statement (migration 0011). Either way, a write that would
    leave an entry naming a missing batch fails as a foreign-key violation."""

    def test_a_many_row_insert_into_existing_batches_passes(self, campaign: Engine):
        batch_id = outbox_world(campaign, customers=30)
        other = open_batch_with(campaign, [], window="evening")
        with campaign.begin() as conn:
            moved = select(
                literal(other), OutboxEntry.customer_id, OutboxEntry.channel,
                OutboxEntry.variant, OutboxEntry.scheduled_at, OutboxEntry.status,
                OutboxEntry.attempts,
            ).where(OutboxEntry.batch_id == batch_id)  # fmt: skip
            columns = ["batch_id", "customer_id", "channel", "variant", "scheduled_at"]
            conn.execute(insert(OutboxEntry).from_select([*columns, "status", "attempts"], moved))
        assert count_entries(campaign, other) == 30

    def test_an_insert_naming_a_missing_batch_fails(self, campaign: Engine):
        batch_id = outbox_world(campaign, customers=3)
        with pytest.raises(IntegrityError) as raised, campaign.begin() as conn:
            named = select(
                OutboxEntry.batch_id + literal(1000), OutboxEntry.customer_id,
                OutboxEntry.channel, OutboxEntry.variant, OutboxEntry.scheduled_at,
                OutboxEntry.status, OutboxEntry.attempts,
            ).where(OutboxEntry.batch_id == batch_id)  # fmt: skip
            columns = ["batch_id", "customer_id", "channel", "variant", "scheduled_at"]
            conn.execute(insert(OutboxEntry).from_select([*columns, "status", "attempts"], named))
        assert_foreign_key_violation(raised.value, campaign)
        assert count_entries(campaign, batch_id + 1000) == 0

    def test_moving_an_entry_to_a_missing_batch_fails(self, campaign: Engine):
        batch_id = outbox_world(campaign, customers=3)
        with pytest.raises(IntegrityError) as raised, campaign.begin() as conn:
            conn.execute(
                update(OutboxEntry)
                .where(OutboxEntry.batch_id == batch_id)
                .values(batch_id=batch_id + 1000)
            )
        assert_foreign_key_violation(raised.value, campaign)
        assert count_entries(campaign, batch_id) == 3

    def test_a_named_batch_cannot_be_deleted_an_empty_one_can(self, campaign: Engine):
        batch_id = outbox_world(campaign, customers=3)
        empty = open_batch_with(campaign, [], window="evening")
        with pytest.raises(IntegrityError) as raised, campaign.begin() as conn:
            conn.execute(delete(OutreachBatch).where(OutreachBatch.batch_id == batch_id))
        assert_foreign_key_violation(raised.value, campaign)
        with campaign.begin() as conn:
            gone = conn.execute(delete(OutreachBatch).where(OutreachBatch.batch_id == empty))
        assert gone.rowcount == 1
        assert count_entries(campaign, batch_id) == 3

    def test_on_postgresql_the_check_is_per_statement(self, campaign: Engine):
        if campaign.dialect.name != "postgresql":
            pytest.skip("SQLite keeps the declarative foreign key")
        with campaign.connect() as conn:
            keys = conn.execute(
                text(
                    "select count(*) from pg_constraint "
                    "where conrelid = 'outbox'::regclass and contype = 'f'"
                )
            ).scalar_one()
            per_statement = conn.execute(
                text(
                    "select action_orientation from information_schema.triggers "
                    "where event_object_table = 'outbox' and trigger_name = 'outbox_batches_exist'"
                )
            ).scalar_one()
        assert (keys, per_statement) == (0, "STATEMENT")


def count_entries(engine: Engine, batch_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(OutboxEntry.batch_id == batch_id)
        ).scalar_one()


def assert_foreign_key_violation(error: IntegrityError, engine: Engine) -> None:
    """SQLite says FOREIGN KEY constraint failed; PostgreSQL's SQLSTATE is 23503 either
    way (a foreign key's or the triggers')."""
    if engine.dialect.name == "postgresql":
        assert error.orig.sqlstate == "23503", error
    else:
        assert "FOREIGN KEY constraint failed" in str(error), error


def outbox_updates(engine: Engine) -> tuple[int, int]:
    """The outbox's updates so far, and how many of them were heap-only (PostgreSQL)."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables "
                    "where relname = 'outbox'"
                )
            ).one()
        )


class TestKeysTheJournalCannotTakeAsTheyAre:
    """Known from the code: a customer id with whitespace broke the per-message path (a
    key may not carry it); a key over the journal's 128 characters failed on PostgreSQL."""

    IDS = ("o 001", "o_001", "o\t002", "o\u00a0003", "o\u3000004", "o005")

    def test_customer_ids_with_whitespace_are_sent_once_under_keys_without_it(
        self, campaign: Engine
    ):
        with campaign.begin() as conn:
            conn.execute(insert(Customer), [customer(cid) for cid in self.IDS])
        batch_id = open_batch_with(campaign, [(cid, "sms", "pending") for cid in self.IDS])
        states = []
        for bulk in (True, False):
            reset_sending(campaign, batch_id)
            tally = send_all(campaign, batch_id, bulk=bulk)
            assert tally.sent == {("sms", "A"): len(self.IDS)}
            states.append(sent_state(campaign))
        assert states[0] == states[1], "the bulk path and the per-message path agree"
        state = states[0]
        assert {row.status for row in state["outbox"]} == {"sent"}
        keys = sorted(row.idempotency_key for row in state["journal"])
        assert keys == sorted(
            idempotency_key(CAMPAIGN_ID, SLOT.day, "noon", cid, "sms") for cid in self.IDS
        )
        assert all(KEY_PATTERN.fullmatch(key) for key in keys) and len(set(keys)) == len(keys)
        assert idempotency_key(CAMPAIGN_ID, SLOT.day, "noon", "o005", "sms").endswith(":o005:sms")
        # a resend (a crash left them `sending`) is recognised: one journal row each
        with campaign.begin() as conn:
            conn.execute(update(OutboxEntry).values(status="sending"))
        send_all(campaign, batch_id, bulk=True)
        journal = sent_state(campaign)["journal"]
        assert len(journal) == len(self.IDS) and {row.attempts for row in journal} == {2}

    def test_a_key_longer_than_the_journal_is_journaled_by_a_hash(self, campaign: Engine):
        long_id = "c" * 62
        with campaign.begin() as conn:
            conn.execute(insert(Customer), [customer(long_id)])
        batch_id = open_batch_with(campaign, [(long_id, "sms", "pending")])
        campaign_id = "y" * 60  # the key: 60 + 1 + 8 + 1 + 4 + 1 + 62 + 1 + 3 = 141
        key = idempotency_key(campaign_id, SLOT.day, "noon", long_id, "sms")
        assert len(key) == 141
        gateway = JournaledGateway(SimulatedGateway(seed=3, record=False), campaign)
        rendered = {("sms", "A", "sme"): MESSAGE}
        for status in ("pending", "sending"):  # sent, then resent after a "crash"
            with campaign.begin() as conn:
                conn.execute(update(OutboxEntry).values(status=status))
            with campaign.connect() as conn:
                chunk = next_chunk(conn, batch_id, 10)
                mark_sending(conn, chunk)
                conn.commit()
                (part,) = chunk_parts(conn, chunk)
                send_part(
                    conn, gateway, campaign_id, SLOT, part, SENT_AT, COSTS, rendered, SendTally()
                )
                conn.commit()
        state = sent_state(campaign)
        assert [(row.status, row.attempts) for row in state["outbox"]] == [("sent", 2)]
        (journaled,) = state["journal"]
        assert journaled.idempotency_key == journal_key(key, 128) != key
        assert len(journaled.idempotency_key) <= 128 and journaled.attempts == 2


class TestSegmentPropensity:
    """Dispatch ranks by each segment's application rate over the 8 weeks before the day,
    read in one span: the rate the funnel's weeks give (tasks/common/metrics.py)."""

    def test_is_the_funnels_rate_over_the_weeks(self, engine: Engine) -> None:
        from tasks.common.metrics import funnel, rollup
        from tasks.plan.plan import history_window
        from tests.tasks.common.test_metrics import Data, O, S, apply_campaigns

        with engine.begin() as conn:
            apply_campaigns(conn)
            data = Data(conn)
            c1, c2, c3 = data.customer("c1"), data.customer("c2", "retail"), data.customer("c3")
            c4, c5, c6 = data.customer("c4"), data.customer("c5", "farm"), data.customer("c6")
            data.touch(c6, datetime(2026, 2, 3, 2))  # the span's first week
            data.touch(c1, datetime(2026, 3, 15, 15, 59))  # Sun 23:59 local: W11
            data.touch(c1, datetime(2026, 3, 15, 16), responded=True)  # Mon 00:00: W12
            data.touch(c2, datetime(2026, 3, 9, 2), channel="email", variant="B")
            data.touch(c2, datetime(2026, 3, 9, 1), campaign=O)
            data.touch(c3, datetime(2026, 3, 20, 2), delivered=False)
            data.touch(c5, datetime(2026, 3, 20, 2), delivered=False)  # nothing delivered
            data.holdout(c4, datetime(2026, 3, 2, 2))
            data.application(c1, datetime(2026, 3, 16, 1))  # by touch: the W12 one
            data.application(c2, datetime(2026, 3, 17, 1), channel="email")  # across weeks
            data.disbursed_application(c3, datetime(2026, 3, 25, 2))  # own campaign
            data.application(c4, datetime(2026, 3, 10, 2), campaign=S)  # hold-out: not counted
            day = date(2026, 4, 1)
            frame = funnel(conn, S, history_window(day), attribution_days=14)
            weekly = rollup(frame, ["segment"]).set_index("segment")["application_rate"]
            expected = {str(segment): float(rate) for segment, rate in weekly.dropna().items()}

            assert frame["week"].nunique() > 1
            assert expected == {"retail": 1.0, "sme": 2 / 3}
            assert segment_propensity(conn, S, day, 14) == expected
            assert segment_propensity(conn, S, date(2026, 1, 28), 14) == {}
