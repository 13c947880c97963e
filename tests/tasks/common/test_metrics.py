"""The contract's metrics, with hand-computed numbers, on SQLite and PostgreSQL.

Each test runs on both back ends (the `engine` fixture) against the same expected
numbers, and `TestBackEndsAgree` compares whole frames across the two directly. Data is
inserted row by row: campaign S (`sme-spring-2026`, Asia/Shanghai = UTC+8, no daylight
saving) and campaign O (`other-2026`, same zone). Period 2026-W12 is the local days
2026-03-16 .. 2026-03-22, i.e. UTC [2026-03-15 16:00, 2026-03-22 16:00).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, insert, select

from pdca.db import make_engine
from pdca.errors import UserError
from pdca.models import Application, Complaint, Customer, Decision, Loan, Repayment, Touch
from tasks.common.campaigns import apply_spec, parse_spec
from tasks.common.metrics import (
    COUNTS,
    RATES,
    SHARES,
    complaint_rate,
    funnel,
    overdue_rate_30,
    reject_reasons,
    rollup,
    week_slices,
    with_rates,
)
from tasks.common.periods import Period

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sme-spring-2026.yaml"
S = "sme-spring-2026"
O = "other-2026"  # noqa: E741 (the other campaign)
W12 = Period.parse("2026-W12")
W12_START = datetime(2026, 3, 15, 16)  # Monday 2026-03-16 00:00 in Shanghai
W12_END = datetime(2026, 3, 22, 16)  # Monday 2026-03-23 00:00 in Shanghai
MICROSECOND = timedelta(microseconds=1)


# --- building data ----------------------------------------------------------------------


class Data:
    """Inserts rows with sensible defaults; keys are generated unless given."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._numbers = itertools.count(1)

    def _key(self, prefix: str) -> str:
        return f"{prefix}{next(self._numbers):04d}"

    def customer(self, customer_id: str, segment: str = "sme") -> str:
        self.conn.execute(
            insert(Customer).values(
                customer_id=customer_id,
                segment=segment,
                credit_score=700,
                marketing_consent=True,
                do_not_contact=False,
            )
        )
        return customer_id

    def touch(
        self,
        customer_id: str,
        sent_at: datetime,
        *,
        campaign: str = S,
        channel: str = "sms",
        variant: str = "A",
        delivered: bool = True,
        responded: bool = False,
        cost: float = 1.0,
        touch_id: str | None = None,
    ) -> str:
        touch_id = touch_id or self._key("t")
        self.conn.execute(
            insert(Touch).values(
                touch_id=touch_id,
                campaign_id=campaign,
                customer_id=customer_id,
                channel=channel,
                variant=variant,
                sent_at=sent_at,
                delivered=delivered,
                responded=responded,
                cost=cost,
            )
        )
        return touch_id

    def holdout(self, customer_id: str, sent_at: datetime, campaign: str = S) -> str:
        """The contract's hold-out row: an assignment, never sent, cost 0."""
        return self.touch(
            customer_id, sent_at, campaign=campaign, variant="holdout", delivered=False, cost=0.0
        )

    def application(
        self,
        customer_id: str,
        applied_at: datetime,
        *,
        campaign: str | None = None,
        channel: str = "sms",
    ) -> str:
        application_id = self._key("a")
        self.conn.execute(
            insert(Application).values(
                application_id=application_id,
                customer_id=customer_id,
                campaign_id=campaign,
                channel=channel,
                applied_at=applied_at,
                product_code="sme-revolving",
                amount_requested=10_000.0,
            )
        )
        return application_id

    def decision(
        self,
        application_id: str,
        decided_at: datetime,
        decision: str = "approved",
        reject_reason: str | None = None,
    ) -> None:
        self.conn.execute(
            insert(Decision).values(
                application_id=application_id,
                decided_at=decided_at,
                decision=decision,
                reject_reason=reject_reason,
                approved_amount=10_000.0 if decision == "approved" else None,
                apr=12.0 if decision == "approved" else None,
            )
        )

    def loan(
        self,
        application_id: str,
        disbursed_at: datetime,
        amount: float = 10_000.0,
        apr: float = 12.0,
        term_months: int = 12,
    ) -> str:
        loan_id = self._key("l")
        self.conn.execute(
            insert(Loan).values(
                loan_id=loan_id,
                application_id=application_id,
                disbursed_at=disbursed_at,
                amount=amount,
                apr=apr,
                term_months=term_months,
            )
        )
        return loan_id

    def snapshot(self, loan_id: str, as_of: date, dpd: int, outstanding: float = 0.0) -> None:
        self.conn.execute(
            insert(Repayment).values(loan_id=loan_id, as_of=as_of, dpd=dpd, outstanding=outstanding)
        )

    def complaint(self, customer_id: str, received_at: datetime, campaign: str | None = S) -> None:
        self.conn.execute(
            insert(Complaint).values(
                complaint_id=self._key("k"),
                customer_id=customer_id,
                campaign_id=campaign,
                received_at=received_at,
                category="too_many_messages",
            )
        )

    def disbursed_application(self, customer_id: str, disbursed_at: datetime, **loan) -> str:
        """An application of S (own campaign_id) a week before, approved, with one loan."""
        applied_at = disbursed_at - timedelta(days=7)
        application_id = self.application(customer_id, applied_at, campaign=S)
        self.decision(application_id, applied_at + timedelta(days=1))
        return self.loan(application_id, disbursed_at, **loan)


def apply_campaigns(conn: Connection) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    apply_spec(conn, parse_spec(text, str(EXAMPLE)))
    apply_spec(conn, parse_spec(text.replace(f"id: {S}", f"id: {O}"), "other"))


@pytest.fixture
def data(engine: Engine) -> Iterator[Data]:
    """Campaigns S and O, and an open transaction to add rows to and query in."""
    with engine.begin() as conn:
        apply_campaigns(conn)
        yield Data(conn)


# --- assertion helpers ------------------------------------------------------------------


def rows_of(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> dict[tuple, dict]:
    """{key value(s): {column: value}}, for comparing with hand-written expectations."""

    def key(row: pd.Series) -> tuple | str:
        return tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]]

    return {key(row): {column: row[column] for column in columns} for _, row in frame.iterrows()}


def assert_numbers(actual: dict, expected: dict, what: str) -> None:
    """Equal keys, and equal numbers (floats to 1e-9, NaN equal to NaN)."""
    assert set(actual) == set(expected), f"{what}: rows {sorted(actual)} != {sorted(expected)}"
    for key, numbers in expected.items():
        for column, value in numbers.items():
            got = actual[key][column]
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got), f"{what} {key} {column}: expected NaN, got {got}"
            else:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (
                    f"{what} {key} {column}: expected {value}, got {got}"
                )


def total(frame: pd.DataFrame) -> dict:
    """The campaign total of a funnel frame, with rates."""
    return rollup(frame, []).iloc[0].to_dict()


# --- touches, delivered, responded, cost ------------------------------------------------


class TestTouchCounts:
    def test_success(self, data: Data) -> None:
        c1, c2 = data.customer("c1", "sme"), data.customer("c2", "retail")
        data.touch(c1, W12_START, responded=True, cost=2.0)  # the week's first instant
        data.touch(c1, W12_END - MICROSECOND, cost=1.5)  # its last instant
        data.touch(
            c2, datetime(2026, 3, 18, 3), channel="phone", variant="B", delivered=False, cost=3.0
        )
        frame = funnel(data.conn, S, W12)
        assert list(frame.columns) == ["week", "channel", "segment", "variant", *COUNTS]
        assert_numbers(
            rows_of(frame, ["week", "channel", "segment", "variant"], COUNTS),
            {
                ("2026-W12", "sms", "sme", "A"): {
                    "touches": 2,
                    "delivered": 2,
                    "responded": 1,
                    "cost": 3.5,
                    "applications": 0,
                    "disbursed_amount": 0.0,
                },
                ("2026-W12", "phone", "retail", "B"): {
                    "touches": 1,
                    "delivered": 0,
                    "responded": 0,
                    "cost": 3.0,
                },
            },
            "funnel",
        )

    def test_holdout_counts_in_no_touch_figure(self, data: Data) -> None:
        c1, c2 = data.customer("c1"), data.customer("c2")
        data.touch(c1, datetime(2026, 3, 17, 4), cost=2.0)
        data.holdout(c2, datetime(2026, 3, 17, 4))
        frame = funnel(data.conn, S, W12)
        assert set(frame["variant"]) == {"A"}
        assert_numbers(
            {"total": total(frame)},
            {"total": {"touches": 1, "delivered": 1, "cost": 2.0, "reach_rate": 1.0}},
            "total",
        )

    @pytest.mark.parametrize(
        "sent_at",
        [
            pytest.param(W12_START - MICROSECOND, id="last instant before the period"),
            pytest.param(W12_END, id="the period's exclusive end"),
            pytest.param(datetime(2026, 3, 30), id="a later week"),
        ],
    )
    def test_outside_the_period(self, data: Data, sent_at: datetime) -> None:
        data.touch(data.customer("c1"), sent_at)
        assert funnel(data.conn, S, W12).empty

    def test_other_campaign_not_counted(self, data: Data) -> None:
        data.touch(data.customer("c1"), datetime(2026, 3, 17), campaign=O)
        assert funnel(data.conn, S, W12).empty

    def test_null_nothing_at_all(self, data: Data) -> None:
        frame = funnel(data.conn, S, W12)
        assert frame.empty
        assert list(frame.columns) == ["week", "channel", "segment", "variant", *COUNTS]
        summed = total(frame)
        assert summed["touches"] == 0 and summed["cost"] == 0.0
        assert all(math.isnan(summed[rate]) for rate in RATES)

    def test_customer_without_a_row_is_segment_unknown(self, data: Data) -> None:
        data.touch("ghost", datetime(2026, 3, 17))
        assert funnel(data.conn, S, W12)["segment"].tolist() == ["unknown"]

    def test_unknown_campaign_is_a_user_error(self, data: Data) -> None:
        with pytest.raises(UserError, match="nope"):
            funnel(data.conn, "nope", W12)


# --- weeks in the campaign's time zone --------------------------------------------------


class TestWeeks:
    def test_event_belongs_to_its_local_week(self, data: Data) -> None:
        """2026-03-15 17:00 UTC is Monday 01:00 in Shanghai: week 2026-W12, not W11."""
        c1 = data.customer("c1")
        data.touch(c1, datetime(2026, 3, 15, 17))  # Mon 01:00 local
        data.touch(c1, datetime(2026, 3, 15, 15, 59))  # Sun 23:59 local
        data.application(c1, datetime(2026, 3, 15, 17), campaign=S)
        frame = funnel(data.conn, S, Period.parse("2026-03"))
        assert_numbers(
            rows_of(frame, ["week"], ["touches", "applications"]),
            {
                "2026-W11": {"touches": 1, "applications": 0},
                "2026-W12": {"touches": 1, "applications": 1},
            },
            "weeks",
        )

    def test_weeks_are_clipped_to_the_period(self, data: Data) -> None:
        """March 2026 starts on a Sunday (W09) and ends on a Tuesday (W14)."""
        c1 = data.customer("c1")
        data.touch(c1, datetime(2026, 2, 28, 16))  # Sun 1 March 00:00 local: W09, in March
        data.touch(c1, datetime(2026, 2, 28, 15, 59))  # Sat 28 Feb local: not in March
        data.touch(c1, datetime(2026, 3, 31, 15, 59))  # Tue 31 March 23:59 local: W14
        data.touch(c1, datetime(2026, 3, 31, 16))  # Wed 1 April local: not in March
        frame = funnel(data.conn, S, Period.parse("2026-03"))
        assert frame["week"].tolist() == ["2026-W09", "2026-W14"]
        assert frame["touches"].tolist() == [1, 1]

    def test_week_slices(self) -> None:
        slices = week_slices(Period.parse("2026-03"), "Asia/Shanghai")
        assert [s.name for s in slices] == [f"2026-W{n:02d}" for n in range(9, 15)]
        assert (slices[0].start, slices[0].end) == (date(2026, 3, 1), date(2026, 3, 2))
        assert slices[0].starts_at == datetime(2026, 2, 28, 16)
        assert (slices[-1].start, slices[-1].end) == (date(2026, 3, 30), date(2026, 4, 1))
        assert slices[-1].ends_at == datetime(2026, 3, 31, 16)
        assert all(a.ends_at == b.starts_at for a, b in itertools.pairwise(slices))


# --- attribution ------------------------------------------------------------------------

APPLIED = datetime(2026, 3, 18, 10, 0, 0, 500)
"""An application in W12, with a sub-millisecond fraction to prove the window is exact."""


class TestAttribution:
    @pytest.mark.parametrize(
        ("own", "touches", "attributed"),
        [
            pytest.param(S, [], True, id="own campaign_id, no touch"),
            pytest.param(
                O,
                [(S, timedelta(days=1), True)],
                False,
                id="another campaign's own id beats our touch",
            ),
            pytest.param(None, [(S, timedelta(days=1), True)], True, id="delivered touch"),
            pytest.param(
                "", [(S, timedelta(days=1), True)], True, id="empty-string campaign_id is empty"
            ),
            pytest.param(
                None, [(S, timedelta(days=14), True)], True, id="exactly 14 days before counts"
            ),
            pytest.param(
                None,
                [(S, timedelta(days=14, microseconds=1), True)],
                False,
                id="14 days and 1 microsecond before does not",
            ),
            pytest.param(
                None,
                [(S, timedelta(days=14, microseconds=100), True)],
                False,
                id="100 microseconds outside (below SQLite's millisecond)",
            ),
            pytest.param(None, [(S, timedelta(0), True)], True, id="same instant counts"),
            pytest.param(None, [(S, -MICROSECOND, True)], False, id="touch after it"),
            pytest.param(None, [(S, timedelta(days=1), False)], False, id="only undelivered"),
            pytest.param(None, [(S, timedelta(days=20), True)], False, id="outside the window"),
            pytest.param(
                None,
                [(S, timedelta(days=5), True), (O, timedelta(days=2), True)],
                False,
                id="another campaign's touch is the last delivered",
            ),
            pytest.param(
                None,
                [(O, timedelta(days=5), True), (S, timedelta(days=2), True)],
                True,
                id="ours is the last delivered",
            ),
            pytest.param(
                None,
                [
                    (O, timedelta(days=5), True),
                    (S, timedelta(days=2), True),
                    (O, timedelta(days=1), False),
                ],
                True,
                id="a later undelivered touch does not take it",
            ),
            pytest.param(
                None,
                [(S, timedelta(days=30), True), (O, timedelta(days=3), True)],
                False,
                id="our touch outside, theirs inside the window",
            ),
        ],
    )
    @pytest.mark.parametrize("bystanders", [False, True], ids=["alone", "with bystanders"])
    def test_success(self, data: Data, own, touches, attributed, bystanders) -> None:
        """With bystanders, S also touched someone else long before and after, so the
        campaign's first and last touch bound no application: only the window decides."""
        if bystanders:
            bystander = data.customer("bystander")
            data.touch(bystander, APPLIED - timedelta(days=60))
            data.touch(bystander, APPLIED + timedelta(days=1))
        customer = data.customer("c1")
        for campaign, before, delivered in touches:
            data.touch(customer, APPLIED - before, campaign=campaign, delivered=delivered)
        data.application(customer, APPLIED, campaign=own)
        assert total(funnel(data.conn, S, W12))["applications"] == int(attributed)

    def test_exact_window_on_whole_seconds(self, data: Data) -> None:
        applied = datetime(2026, 3, 18, 10)
        inside, outside = data.customer("in"), data.customer("out")
        data.touch(inside, applied - timedelta(days=14))
        data.touch(outside, applied - timedelta(days=14) - MICROSECOND)
        data.application(inside, applied)
        data.application(outside, applied)
        frame = funnel(data.conn, S, W12)
        assert total(frame)["applications"] == 1

    def test_attribution_window_setting(self, data: Data) -> None:
        customer = data.customer("c1")
        data.touch(customer, APPLIED - timedelta(days=10))
        data.application(customer, APPLIED)
        assert total(funnel(data.conn, S, W12, attribution_days=14))["applications"] == 1
        assert total(funnel(data.conn, S, W12, attribution_days=7))["applications"] == 0

    def test_channel_segment_and_variant(self, data: Data) -> None:
        """Channel is the application's own, segment the customer's, variant the customer's
        assignment in the campaign (first touch); a hold-out member's application counts
        in no row (the hold-out is only the experiment's control group)."""
        treated, control = data.customer("c1", "sme"), data.customer("c2", "retail")
        data.touch(treated, datetime(2026, 3, 1), channel="phone", variant="B", delivered=False)
        data.touch(treated, datetime(2026, 3, 16), channel="sms", variant="B")
        data.holdout(control, datetime(2026, 3, 1))
        data.application(treated, APPLIED, channel="branch")  # by touch
        data.application(control, APPLIED, campaign=S, channel="app_push")  # own id
        data.application(data.customer("c3", "farm"), APPLIED, campaign=S, channel="sms")
        frame = funnel(data.conn, S, W12)
        apps = frame[frame["applications"] > 0]
        assert_numbers(
            rows_of(apps, ["channel", "segment", "variant"], ["applications", "touches"]),
            {
                ("branch", "sme", "B"): {"applications": 1, "touches": 0},
                ("sms", "farm", "unassigned"): {"applications": 1, "touches": 0},
            },
            "applications",
        )

    def test_holdout_members_count_in_no_figure(self, data: Data) -> None:
        """A hold-out member who applies under the campaign's id (at a branch, say) is the
        experiment's control, not a campaign result: the application, its rejection, its
        loan and that loan's overdue status count nowhere in the campaign's figures."""
        member, treated = data.customer("c1"), data.customer("c2")
        data.holdout(member, datetime(2026, 1, 10))
        data.touch(treated, datetime(2026, 1, 10))
        rejected = data.application(member, APPLIED, campaign=S, channel="branch")
        data.decision(rejected, APPLIED + timedelta(hours=1), "rejected", "low_score")
        overdue = data.disbursed_application(member, datetime(2026, 2, 1, 10))
        data.snapshot(overdue, date(2026, 3, 22), dpd=60)
        counted = data.disbursed_application(treated, datetime(2026, 2, 1, 10))
        data.snapshot(counted, date(2026, 3, 22), dpd=0)
        assert set(funnel(data.conn, S, Period.parse("2026-Q1"))["variant"]) == {"A"}
        assert total(funnel(data.conn, S, W12))["applications"] == 0
        assert reject_reasons(data.conn, S, W12).empty
        for by in ([], ["variant"]):
            overdue_loans = overdue_rate_30(data.conn, S, W12, by=by)
            assert overdue_loans["loans"].sum() == 1, by
            assert overdue_loans["overdue_loans"].sum() == 0, by

    def test_same_instant_touches_go_to_the_higher_touch_id(self, data: Data) -> None:
        customer = data.customer("c1")
        sent = APPLIED - timedelta(days=1)
        data.touch(customer, sent, campaign=O, touch_id="t-1")
        data.touch(customer, sent, campaign=S, touch_id="t-2")
        data.application(customer, APPLIED)
        assert total(funnel(data.conn, S, W12))["applications"] == 1
        assert total(funnel(data.conn, O, W12))["applications"] == 0

    def test_counted_by_applied_at(self, data: Data) -> None:
        customer = data.customer("c1")
        data.application(customer, W12_START - MICROSECOND, campaign=S)
        data.application(customer, W12_START, campaign=S)
        data.application(customer, W12_END - MICROSECOND, campaign=S)
        data.application(customer, W12_END, campaign=S)
        assert total(funnel(data.conn, S, W12))["applications"] == 2


# --- decisions, loans and what roi needs -------------------------------------------------


class TestApplicationOutcomes:
    @pytest.fixture
    def outcomes(self, data: Data) -> Data:
        """Four applications of S in W12 and one in W11 (a5), with:

        a1 sms    approved after the period; loan 10 000 at 12 % for 24 months, disbursed
                  after the period (net interest 10 000 × 0.09 × 12/12 = 900); its only
                  snapshot (dpd 95) is after the period, so no expected loss
        a2 phone  approved; loan 5 000 at 18 % for 6 months (5 000 × 0.15 × 6/12 = 375);
                  latest snapshot before the period's end dpd 91, outstanding 4 000
                  (loss 4 000 × 0.6 = 2 400); a later snapshot (dpd 0) is after the end
        a3 sms    rejected
        a4 sms    no decision yet
        a5 sms    approved with a loan, but applied in W11: not in W12
        """
        c1, c2 = data.customer("c1", "sme"), data.customer("c2", "retail")
        a1 = data.application(c1, datetime(2026, 3, 17), campaign=S)
        data.decision(a1, datetime(2026, 4, 10))
        l1 = data.loan(a1, datetime(2026, 4, 12), amount=10_000, apr=12, term_months=24)
        data.snapshot(l1, date(2026, 5, 20), dpd=95, outstanding=9_000)
        a2 = data.application(c2, datetime(2026, 3, 17), campaign=S, channel="phone")
        data.decision(a2, datetime(2026, 3, 18))
        l2 = data.loan(a2, datetime(2026, 3, 19), amount=5_000, apr=18, term_months=6)
        data.snapshot(l2, date(2026, 3, 20), dpd=0, outstanding=5_000)
        data.snapshot(l2, date(2026, 3, 22), dpd=91, outstanding=4_000)
        data.snapshot(l2, date(2026, 3, 23), dpd=0, outstanding=0)
        a3 = data.application(c1, datetime(2026, 3, 18), campaign=S)
        data.decision(a3, datetime(2026, 3, 19), "rejected", "low_score")
        data.application(c1, datetime(2026, 3, 19), campaign=S)
        a5 = data.application(c1, datetime(2026, 3, 10), campaign=S)
        data.decision(a5, datetime(2026, 3, 11))
        data.loan(a5, datetime(2026, 3, 12))
        return data

    def test_success(self, outcomes: Data) -> None:
        frame = funnel(outcomes.conn, S, W12)
        columns = [
            "applications",
            "approved",
            "disbursements",
            "disbursed_amount",
            "net_interest",
            "expected_loss",
        ]
        assert_numbers(
            rows_of(frame, ["channel", "segment"], columns),
            {
                ("sms", "sme"): {
                    "applications": 3,
                    "approved": 1,
                    "disbursements": 1,
                    "disbursed_amount": 10_000.0,
                    "net_interest": 900.0,
                    "expected_loss": 0.0,
                },
                ("phone", "retail"): {
                    "applications": 1,
                    "approved": 1,
                    "disbursements": 1,
                    "disbursed_amount": 5_000.0,
                    "net_interest": 375.0,
                    "expected_loss": 2_400.0,
                },
            },
            "outcomes",
        )

    def test_settings_ftp_rate_and_lgd(self, outcomes: Data) -> None:
        summed = total(funnel(outcomes.conn, S, W12, ftp_rate=0.05, lgd=0.5))
        # 10 000 × 0.07 × 1 + 5 000 × 0.13 × 0.5 = 700 + 325; 4 000 × 0.5
        assert summed["net_interest"] == pytest.approx(1_025.0)
        assert summed["expected_loss"] == pytest.approx(2_000.0)

    def test_approval_rate_cac_and_roi(self, outcomes: Data) -> None:
        c3 = outcomes.customer("c3")
        outcomes.touch(c3, datetime(2026, 3, 17), cost=60.0)
        outcomes.touch(c3, datetime(2026, 3, 18), cost=40.0, responded=True)
        summed = total(funnel(outcomes.conn, S, W12))
        assert_numbers(
            {"total": summed},
            {
                "total": {
                    "approval_rate": 2 / 4,
                    "application_rate": 4 / 2,  # attributed applications need no touch
                    "response_rate": 1 / 2,
                    "cac": 100.0 / 2,
                    "roi": (1_275.0 - 100.0 - 2_400.0) / 100.0,
                }
            },
            "rates",
        )

    def test_period_end_moves_expected_loss(self, outcomes: Data) -> None:
        """The latest snapshot is the last before the period's end: for 2026-Q1 it is l2's
        of 23 March (dpd 0, no loss); a1's of 20 May is still after the end."""
        frame = funnel(outcomes.conn, S, Period.parse("2026-Q1"))
        assert total(frame)["expected_loss"] == pytest.approx(0.0)
        assert total(frame)["disbursements"] == 3  # a5's loan too: it applied in W11


# --- rates ------------------------------------------------------------------------------


def funnel_row(**counts: float) -> dict:
    """A funnel row of `counts`, zero elsewhere; every application decided unless
    `decided` says otherwise."""
    counts.setdefault("decided", counts.get("applications", 0))
    return {column: counts.get(column, 0) for column in COUNTS}


class TestWithRates:
    @pytest.mark.parametrize(
        ("counts", "expected"),
        [
            pytest.param(
                funnel_row(
                    touches=200,
                    delivered=180,
                    responded=36,
                    applications=9,
                    approved=6,
                    disbursements=4,
                    disbursed_amount=200_000,
                    cost=400,
                    net_interest=9_000,
                    expected_loss=1_200,
                ),
                {
                    "reach_rate": 0.9,
                    "response_rate": 0.2,
                    "application_rate": 0.05,
                    "approval_rate": 6 / 9,
                    "cac": 100.0,
                    "roi": (9_000 - 400 - 1_200) / 400,
                },
                id="a full funnel",
            ),
            pytest.param(
                funnel_row(touches=10, delivered=0, cost=5),
                {
                    "reach_rate": 0.0,
                    "response_rate": np.nan,
                    "application_rate": np.nan,
                    "approval_rate": np.nan,
                    "cac": np.nan,
                    "roi": -1.0,
                },
                id="nothing delivered",
            ),
            pytest.param(
                funnel_row(applications=3, approved=1, disbursements=1, net_interest=50),
                {"reach_rate": np.nan, "approval_rate": 1 / 3, "cac": 0.0, "roi": np.nan},
                id="applications without touches or cost",
            ),
            pytest.param(funnel_row(), dict.fromkeys(RATES, np.nan), id="all zero"),
            pytest.param(
                funnel_row(touches=100, delivered=90, applications=4, decided=0, cost=50),
                {"application_rate": 4 / 90, "approval_rate": np.nan, "roi": np.nan},
                id="applications none of which is decided: no data, not 0 and -1",
            ),
            pytest.param(
                funnel_row(touches=100, delivered=90, applications=4, decided=1, cost=50),
                {"approval_rate": 0.0, "cac": np.nan, "roi": -1.0},
                id="one decided, rejected: a true zero",
            ),
        ],
    )
    def test_success(self, counts: dict, expected: dict) -> None:
        frame = with_rates(pd.DataFrame([counts]))
        assert_numbers({"row": frame.iloc[0].to_dict()}, {"row": expected}, "rates")

    def test_division_by_zero_is_nan_never_inf(self) -> None:
        frame = with_rates(pd.DataFrame([funnel_row(cost=10.0, net_interest=5.0)]))
        assert not np.isinf(frame[RATES].to_numpy(dtype=float)).any()
        assert math.isnan(frame.loc[0, "cac"])

    def test_overflowing_quotient_is_nan(self) -> None:
        frame = with_rates(pd.DataFrame([funnel_row(cost=5e-324, expected_loss=1.0)]))
        assert math.isnan(frame.loc[0, "roi"])

    def test_replaces_existing_rates(self) -> None:
        frame = with_rates(pd.DataFrame([funnel_row(touches=4, delivered=2)]))
        frame.loc[0, "delivered"] = 4
        assert with_rates(frame).loc[0, "reach_rate"] == 1.0
        assert list(with_rates(frame).columns).count("reach_rate") == 1

    def test_failure_missing_count(self) -> None:
        with pytest.raises(KeyError):
            with_rates(pd.DataFrame([{"touches": 1}]))


class TestRollup:
    def test_rates_from_sums_not_averages(self) -> None:
        frame = pd.DataFrame(
            [
                {"week": "2026-W12", "channel": "sms", **funnel_row(touches=1, delivered=1)},
                {"week": "2026-W12", "channel": "im", **funnel_row(touches=3, delivered=1)},
            ]
        )
        summed = rollup(frame, [])
        assert summed.loc[0, "reach_rate"] == 0.5  # 2 / 4, not mean(1, 1/3)
        assert summed.loc[0, "touches"] == 4

    def test_by_columns(self) -> None:
        frame = pd.DataFrame(
            [
                {"week": "2026-W12", "channel": "sms", **funnel_row(touches=2, cost=1.0)},
                {"week": "2026-W13", "channel": "sms", **funnel_row(touches=3, cost=2.0)},
                {"week": "2026-W13", "channel": "im", **funnel_row(touches=5, cost=4.0)},
            ]
        )
        by_channel = rollup(frame, ["channel"])
        assert by_channel[["channel", "touches", "cost"]].to_dict("records") == [
            {"channel": "im", "touches": 5, "cost": 4.0},
            {"channel": "sms", "touches": 5, "cost": 3.0},
        ]
        assert len(rollup(frame, ["week", "channel"])) == 3

    def test_null_empty_frame_has_a_zero_total(self) -> None:
        empty = pd.DataFrame({column: pd.Series(dtype="int64") for column in COUNTS})
        summed = rollup(empty, [])
        assert len(summed) == 1 and summed.loc[0, "touches"] == 0
        assert rollup(empty.assign(channel=pd.Series(dtype="str")), ["channel"]).empty

    def test_failure_unknown_column(self) -> None:
        with pytest.raises(ValueError, match="region"):
            rollup(pd.DataFrame([funnel_row()]), ["region"])


@st.composite
def funnel_frames(draw) -> pd.DataFrame:
    """Funnel rows whose counts nest as they do in life (delivered ≤ touches …)."""
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        touches = draw(st.integers(0, 1_000))
        delivered = draw(st.integers(0, touches))
        applications = draw(st.integers(0, 50))
        approved = draw(st.integers(0, applications))
        money = st.integers(0, 100_000_000).map(lambda cents: cents / 100)
        rows.append(
            {
                "week": draw(st.sampled_from(["2026-W11", "2026-W12", "2026-W13"])),
                "channel": draw(st.sampled_from(["sms", "im", "phone"])),
                "segment": draw(st.sampled_from(["sme", "retail"])),
                "variant": draw(st.sampled_from(["A", "B", "holdout"])),
                "touches": touches,
                "delivered": delivered,
                "responded": draw(st.integers(0, delivered)),
                "applications": applications,
                "approved": approved,
                "disbursements": draw(st.integers(0, approved)),
                "disbursed_amount": draw(money),
                "cost": draw(money),
                "net_interest": draw(money),
                "expected_loss": draw(money),
            }
        )
    columns = ["week", "channel", "segment", "variant", *COUNTS]
    return pd.DataFrame(rows, columns=columns).astype(
        {
            column: "int64"
            for column in [
                "touches",
                "delivered",
                "responded",
                "applications",
                "approved",
                "disbursements",
            ]
        }
    )


class TestRollupProperties:
    @given(funnel_frames(), st.sampled_from([[], ["channel"], ["week", "channel"], ["variant"]]))
    @settings(max_examples=60, deadline=None)
    def test_shares_are_in_unit_interval(self, frame: pd.DataFrame, by: list[str]) -> None:
        out = rollup(frame, by)
        values = out[SHARES].to_numpy(dtype=float)
        finite = values[~np.isnan(values)]
        assert ((finite >= 0) & (finite <= 1)).all()
        assert not np.isinf(out[RATES].to_numpy(dtype=float)).any()

    @given(funnel_frames(), st.sampled_from([["channel"], ["week"], ["segment", "variant"]]))
    @settings(max_examples=60, deadline=None)
    def test_total_equals_sum_of_parts(self, frame: pd.DataFrame, by: list[str]) -> None:
        parts, whole = rollup(frame, by), rollup(frame, [])
        for column in COUNTS:
            assert parts[column].sum() == pytest.approx(whole.loc[0, column], rel=1e-9)
            assert whole.loc[0, column] == pytest.approx(frame[column].sum(), rel=1e-9)

    @given(funnel_frames())
    @settings(max_examples=60, deadline=None)
    def test_rollup_of_rollup_is_rollup(self, frame: pd.DataFrame) -> None:
        twice = rollup(rollup(frame, ["week", "channel"]), ["channel"])
        once = rollup(frame, ["channel"])
        pd.testing.assert_frame_equal(twice, once, check_exact=False, rtol=1e-9)

    @given(funnel_frames())
    @settings(max_examples=60, deadline=None)
    def test_total_rates_are_ratios_of_sums(self, frame: pd.DataFrame) -> None:
        whole = rollup(frame, []).iloc[0]
        touches, delivered = frame["touches"].sum(), frame["delivered"].sum()
        expected = delivered / touches if touches else math.nan
        assert whole["reach_rate"] == pytest.approx(expected, nan_ok=True)


# --- overdue_rate_30 --------------------------------------------------------------------


class TestOverdueRate30:
    @pytest.fixture
    def loans(self, data: Data) -> Data:
        """Loans of S judged at the end of W12 (snapshots before 23 March count):

        L1 disbursed 1 Feb,  latest 22 Mar dpd 35          seasoned, overdue
        L2 disbursed 1 Feb,  1 Mar dpd 40, 20 Mar dpd 0    seasoned, cured
        L3 disbursed 20 Feb, latest 22 Mar (30 days) dpd 0 seasoned (exactly 30 days)
        L4 disbursed 21 Feb, latest 22 Mar (29 days) dpd 30 not seasoned, so not overdue
        L5 disbursed 1 Feb,  10 Mar dpd 10, 23 Mar dpd 60  seasoned, not overdue (23 Mar
                                                           is after the end)
        L6 disbursed 23 Mar 10:00 UTC                      after the period: not counted
        L7 disbursed 1 Mar,  no snapshot                   a loan, not seasoned
        L8 another campaign's loan                         not counted
        L9 attributed by touch, channel phone, dpd 45      seasoned, overdue
        """
        c1, c2 = data.customer("c1", "sme"), data.customer("c2", "retail")
        l1 = data.disbursed_application(c1, datetime(2026, 2, 1, 10))
        data.snapshot(l1, date(2026, 3, 22), dpd=35)
        l2 = data.disbursed_application(c1, datetime(2026, 2, 1, 10))
        data.snapshot(l2, date(2026, 3, 1), dpd=40)
        data.snapshot(l2, date(2026, 3, 20), dpd=0)
        l3 = data.disbursed_application(c1, datetime(2026, 2, 20, 10))
        data.snapshot(l3, date(2026, 3, 22), dpd=0)
        l4 = data.disbursed_application(c1, datetime(2026, 2, 21, 10))
        data.snapshot(l4, date(2026, 3, 22), dpd=30)
        l5 = data.disbursed_application(c1, datetime(2026, 2, 1, 10))
        data.snapshot(l5, date(2026, 3, 10), dpd=10)
        data.snapshot(l5, date(2026, 3, 23), dpd=60)
        data.disbursed_application(c1, datetime(2026, 3, 23, 10))
        data.disbursed_application(c1, datetime(2026, 3, 1, 10))
        other = data.application(c1, datetime(2026, 1, 20), campaign=O)
        l8 = data.loan(other, datetime(2026, 1, 25))
        data.snapshot(l8, date(2026, 3, 22), dpd=60)
        data.touch(c2, datetime(2026, 1, 17), channel="phone")
        by_touch = data.application(c2, datetime(2026, 1, 20), channel="phone")
        l9 = data.loan(by_touch, datetime(2026, 1, 25))
        data.snapshot(l9, date(2026, 3, 21), dpd=45)
        return data

    def test_success(self, loans: Data) -> None:
        frame = overdue_rate_30(loans.conn, S, W12)
        assert_numbers(
            {"total": frame.iloc[0].to_dict()},
            {
                "total": {
                    "loans": 7,
                    "seasoned_loans": 5,
                    "overdue_loans": 2,
                    "overdue_rate_30": 2 / 5,
                }
            },
            "overdue",
        )

    def test_by_channel_and_segment(self, loans: Data) -> None:
        frame = overdue_rate_30(loans.conn, S, W12, by=["channel", "segment"])
        assert_numbers(
            rows_of(frame, ["channel", "segment"], ["loans", "seasoned_loans", "overdue_rate_30"]),
            {
                ("sms", "sme"): {"loans": 6, "seasoned_loans": 4, "overdue_rate_30": 1 / 4},
                ("phone", "retail"): {"loans": 1, "seasoned_loans": 1, "overdue_rate_30": 1.0},
            },
            "overdue by channel",
        )

    def test_by_week_judges_each_week_at_its_end(self, loans: Data) -> None:
        """At the end of W13 L6 is a loan (not seasoned) and L5's 23 March dpd 60 counts."""
        frame = overdue_rate_30(loans.conn, S, Period.parse("2026-03"), by=["week"])
        weeks = rows_of(frame, ["week"], ["loans", "seasoned_loans", "overdue_loans"])
        assert_numbers(
            {week: weeks[week] for week in ("2026-W12", "2026-W13")},
            {
                "2026-W12": {"loans": 7, "seasoned_loans": 5, "overdue_loans": 2},
                "2026-W13": {"loans": 8, "seasoned_loans": 5, "overdue_loans": 3},
            },
            "overdue by week",
        )

    def test_null_no_loans_is_nan(self, data: Data) -> None:
        frame = overdue_rate_30(data.conn, S, W12)
        assert frame.loc[0, "loans"] == 0
        assert math.isnan(frame.loc[0, "overdue_rate_30"])

    def test_failure_unknown_grain(self, data: Data) -> None:
        with pytest.raises(ValueError, match="region"):
            overdue_rate_30(data.conn, S, W12, by=["region"])


# --- complaint_rate ---------------------------------------------------------------------


class TestComplaintRate:
    @pytest.fixture
    def complaints(self, data: Data) -> Data:
        """W12: 4 delivered touches (3 sms, 1 phone) and 3 complaints about S (one from a
        customer S never reached); plus complaints that do not count."""
        c1, c2, c3, c4 = (data.customer(name) for name in ("c1", "c2", "c3", "c4"))
        data.touch(c1, datetime(2026, 3, 16), channel="sms")
        data.touch(c4, datetime(2026, 3, 16), channel="sms")
        data.touch(c4, datetime(2026, 3, 17), channel="sms")
        data.touch(c4, datetime(2026, 3, 17), channel="sms", delivered=False)
        data.touch(c2, datetime(2026, 3, 16), channel="phone")
        data.complaint(c1, datetime(2026, 3, 17))  # sms
        data.complaint(c2, datetime(2026, 3, 18))  # phone
        data.complaint(c3, datetime(2026, 3, 18))  # no touch: channel unknown
        data.complaint(c1, datetime(2026, 3, 18), campaign=O)  # another campaign
        data.complaint(c1, datetime(2026, 3, 18), campaign=None)  # no campaign
        data.complaint(c1, W12_END)  # next week
        return data

    def test_success(self, complaints: Data) -> None:
        frame = complaint_rate(complaints.conn, S, W12)
        assert_numbers(
            {"total": frame.iloc[0].to_dict()},
            {"total": {"complaints": 3, "delivered": 4, "complaint_rate": 750.0}},
            "complaints",
        )

    def test_by_channel(self, complaints: Data) -> None:
        frame = complaint_rate(complaints.conn, S, W12, by=["channel"])
        assert_numbers(
            rows_of(frame, ["channel"], ["complaints", "delivered", "complaint_rate"]),
            {
                "sms": {"complaints": 1, "delivered": 3, "complaint_rate": 1000 / 3},
                "phone": {"complaints": 1, "delivered": 1, "complaint_rate": 1000.0},
                "unknown": {"complaints": 1, "delivered": 0, "complaint_rate": np.nan},
            },
            "complaints by channel",
        )

    def test_reuses_a_funnel_frame(self, complaints: Data) -> None:
        frame = funnel(complaints.conn, S, W12)
        direct = complaint_rate(complaints.conn, S, W12, by=["channel"])
        reused = complaint_rate(complaints.conn, S, W12, by=["channel"], funnel_frame=frame)
        pd.testing.assert_frame_equal(direct, reused)

    def test_null_nothing_delivered_is_nan(self, data: Data) -> None:
        data.complaint(data.customer("c1"), datetime(2026, 3, 18))
        frame = complaint_rate(data.conn, S, W12)
        assert frame.loc[0, "complaints"] == 1
        assert math.isnan(frame.loc[0, "complaint_rate"])


# --- reject reasons ---------------------------------------------------------------------


class TestRejectReasons:
    @pytest.fixture
    def rejections(self, data: Data) -> Data:
        c1 = data.customer("c1")
        decided = datetime(2026, 4, 2)  # after the period: still the period's applications
        for channel, reason in [
            ("sms", "low_score"),
            ("sms", "low_score"),
            ("sms", "high_debt"),
            ("phone", "low_score"),
            ("phone", ""),
        ]:
            application = data.application(c1, datetime(2026, 3, 17), campaign=S, channel=channel)
            data.decision(application, decided, "rejected", reason)
        approved = data.application(c1, datetime(2026, 3, 17), campaign=S)
        data.decision(approved, decided)
        earlier = data.application(c1, datetime(2026, 3, 1), campaign=S)
        data.decision(earlier, decided, "rejected", "fraud")
        return data

    def test_success(self, rejections: Data) -> None:
        frame = reject_reasons(rejections.conn, S, W12)
        assert frame[["reject_reason", "rejections"]].to_dict("records") == [
            {"reject_reason": "low_score", "rejections": 3},
            {"reject_reason": "high_debt", "rejections": 1},
            {"reject_reason": "unspecified", "rejections": 1},
        ]
        assert frame["share"].tolist() == pytest.approx([0.6, 0.2, 0.2])

    def test_by_channel_top(self, rejections: Data) -> None:
        frame = reject_reasons(rejections.conn, S, W12, by=["channel"], top=1)
        assert frame[["channel", "reject_reason", "rejections", "share"]].to_dict("records") == [
            {"channel": "phone", "reject_reason": "low_score", "rejections": 1, "share": 0.5},
            {"channel": "sms", "reject_reason": "low_score", "rejections": 2, "share": 2 / 3},
        ]

    def test_null_no_rejections(self, data: Data) -> None:
        frame = reject_reasons(data.conn, S, W12, by=["channel"])
        assert frame.empty
        assert list(frame.columns) == ["channel", "reject_reason", "rejections", "share"]


# --- the two back ends agree ------------------------------------------------------------


def seed_everything(conn: Connection) -> None:
    """A bit of every rule above, for comparing whole frames across back ends."""
    apply_campaigns(conn)
    data = Data(conn)
    for number in range(12):
        customer = data.customer(f"c{number}", ["sme", "retail", "farm"][number % 3])
        channel = ["sms", "phone", "im"][number % 3]
        variant = ["A", "B", "holdout"][number % 3]
        for day in range(0, 20, 3):
            sent = datetime(2026, 3, 8, 3) + timedelta(days=day, minutes=number)
            if variant == "holdout":
                data.holdout(customer, sent)
            else:
                data.touch(
                    customer,
                    sent,
                    channel=channel,
                    variant=variant,
                    delivered=day % 2 == 0,
                    responded=day % 4 == 0,
                    cost=0.5 + number,
                )
        applied = datetime(2026, 3, 14, 5) + timedelta(days=number % 7, hours=number)
        application = data.application(customer, applied, campaign=S if number % 4 == 0 else None)
        if number % 3 != 1:  # B's rejected: the hold-out's (2) count in no figure
            data.decision(application, applied + timedelta(days=1))
            loan = data.loan(
                application,
                applied + timedelta(days=2),
                amount=1_000.0 * number,
                apr=10.0 + number,
                term_months=6 + number,
            )
            for as_of in (date(2026, 3, 30), date(2026, 4, 25)):
                data.snapshot(loan, as_of, dpd=number * 10, outstanding=100.0 * number)
        else:
            data.decision(application, applied + timedelta(days=1), "rejected", "low_score")
        data.complaint(customer, applied + timedelta(hours=3))


@pytest.fixture
def postgres_url(postgres) -> str:
    """A fresh migrated PostgreSQL database beside the session's template."""
    name = f"pdca_metrics_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'create database "{name}" template pdca_template')
    return postgres.url(name)


_databases = itertools.count()


@pytest.mark.postgres
class TestBackEndsAgree:
    def test_success(self, sqlite_url: str, postgres_url: str) -> None:
        period = Period.parse("2026-03")
        results = []
        for url in (sqlite_url, postgres_url):
            engine = make_engine(url)
            try:
                with engine.begin() as conn:
                    seed_everything(conn)
                    frame = funnel(conn, S, period)
                    results.append(
                        [
                            frame,
                            rollup(frame, ["week", "channel"]),
                            overdue_rate_30(conn, S, Period.parse("2026-Q2"), by=["channel"]),
                            complaint_rate(conn, S, period, by=["week", "segment"]),
                            reject_reasons(conn, S, period, by=["channel"]),
                        ]
                    )
            finally:
                engine.dispose()
        sqlite, postgres = results
        assert total(sqlite[0])["applications"] > 0 and total(sqlite[0])["expected_loss"] > 0
        assert sqlite[2]["seasoned_loans"].sum() > 0
        for left, right in zip(sqlite, postgres, strict=True):
            assert not left.empty
            pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-12)


# --- an independent reference on a realistic history ------------------------------------


def reference_funnel(conn: Connection, campaign: str, period: Period, timezone: str):
    """The contract's funnel recomputed in pandas from the raw tables, for comparison."""
    tables = {
        name: pd.read_sql(select(model), conn)
        for name, model in [
            ("touches", Touch),
            ("customers", Customer),
            ("applications", Application),
            ("decisions", Decision),
            ("loans", Loan),
            ("repayments", Repayment),
        ]
    }
    touches, customers = tables["touches"], tables["customers"][["customer_id", "segment"]]
    applications = tables["applications"]

    def local_week(moments: pd.Series) -> pd.DataFrame:
        local = moments.dt.tz_localize("UTC").dt.tz_convert(timezone)
        iso = local.dt.isocalendar()
        weeks = iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)
        inside = (local.dt.date >= period.start) & (local.dt.date < period.end)
        return pd.DataFrame({"week": weeks, "inside": inside})

    sent = touches[(touches["campaign_id"] == campaign) & (touches["variant"] != "holdout")]
    sent = sent.join(local_week(sent["sent_at"]))
    sent = sent[sent["inside"]].merge(customers, on="customer_id", how="left")
    touch_counts = sent.groupby(["week", "channel", "segment", "variant"]).agg(
        touches=("touch_id", "size"),
        delivered=("delivered", "sum"),
        responded=("responded", "sum"),
        cost=("cost", "sum"),
    )

    apps = applications.join(local_week(applications["applied_at"]))
    apps = apps[apps["inside"]]
    own = apps[apps["campaign_id"] == campaign]
    empty = apps[apps["campaign_id"].isna() | (apps["campaign_id"] == "")]
    candidates = empty.merge(
        touches[touches["delivered"].astype(bool)], on="customer_id", suffixes=("", "_touch")
    )
    window = timedelta(days=14)
    candidates = candidates[
        (candidates["sent_at"] <= candidates["applied_at"])
        & (candidates["sent_at"] >= candidates["applied_at"] - window)
    ].sort_values(["application_id", "sent_at", "touch_id"])
    last = candidates.groupby("application_id").tail(1)
    by_touch = empty[
        empty["application_id"].isin(
            last.loc[last["campaign_id_touch"] == campaign, "application_id"]
        )
    ]
    attributed = pd.concat([own, by_touch]).merge(customers, on="customer_id", how="left")
    first = (
        touches[touches["campaign_id"] == campaign]
        .sort_values(["sent_at", "touch_id"])
        .groupby("customer_id")
        .head(1)[["customer_id", "variant"]]
    )
    attributed = attributed.merge(first, on="customer_id", how="left")
    attributed["variant"] = attributed["variant"].fillna("unassigned")
    attributed = attributed[attributed["variant"] != "holdout"]  # the control group only

    loans = tables["loans"].merge(attributed[["application_id"]], on="application_id")
    loans["net_interest"] = (
        loans["amount"] * (loans["apr"] / 100 - 0.03) * loans["term_months"].clip(upper=12) / 12
    )
    snapshots = tables["repayments"]
    snapshots = snapshots[pd.to_datetime(snapshots["as_of"]) < pd.Timestamp(period.end)]
    latest = snapshots.sort_values("as_of").groupby("loan_id").tail(1)
    loans = loans.merge(latest, on="loan_id", how="left")
    loans["expected_loss"] = np.where(loans["dpd"] >= 90, loans["outstanding"] * 0.6, 0.0)
    per_application = loans.groupby("application_id").agg(
        disbursements=("loan_id", "size"),
        disbursed_amount=("amount", "sum"),
        net_interest=("net_interest", "sum"),
        expected_loss=("expected_loss", "sum"),
    )
    approved = tables["decisions"].loc[
        tables["decisions"]["decision"] == "approved", "application_id"
    ]
    attributed["approved"] = attributed["application_id"].isin(approved).astype(int)
    decided = tables["decisions"]["application_id"]
    attributed["decided"] = attributed["application_id"].isin(decided).astype(int)
    attributed = attributed.merge(per_application, on="application_id", how="left").fillna(
        {"disbursements": 0, "disbursed_amount": 0.0, "net_interest": 0.0, "expected_loss": 0.0}
    )
    application_counts = attributed.groupby(["week", "channel", "segment", "variant"]).agg(
        applications=("application_id", "size"),
        decided=("decided", "sum"),
        approved=("approved", "sum"),
        disbursements=("disbursements", "sum"),
        disbursed_amount=("disbursed_amount", "sum"),
        net_interest=("net_interest", "sum"),
        expected_loss=("expected_loss", "sum"),
    )
    frame = touch_counts.join(application_counts, how="outer").fillna(0).reset_index()
    return frame[["week", "channel", "segment", "variant", *COUNTS]]


class TestAgainstReference:
    def test_funnel_equals_a_pandas_reference(self, engine: Engine, demo_worlds) -> None:
        from pdca.synthetic.demo_history import CAMPAIGN_ID, TIMEZONE
        from tasks.data.importing import import_feed
        from tests.worlds import World

        files = demo_worlds.feeds(World(customers=3_000, weeks=4, seed=5, start=date(2026, 3, 2)))
        with engine.begin() as conn:
            apply_spec(conn, parse_spec(files.spec.read_text(), str(files.spec)))
        with engine.connect() as conn:
            for feed in (
                "customers",
                "touches",
                "applications",
                "decisions",
                "loans",
                "repayments",
            ):
                import_feed(conn, feed, files.feed(feed), actor="test")
            period = Period.parse("2026-03")
            actual = funnel(conn, CAMPAIGN_ID, period)
            expected = reference_funnel(conn, CAMPAIGN_ID, period, TIMEZONE)
        expected = expected.sort_values(["week", "channel", "segment", "variant"])
        assert total(actual)["applications"] > 20 and total(actual)["disbursements"] > 5
        pd.testing.assert_frame_equal(
            actual.reset_index(drop=True),
            expected.reset_index(drop=True).astype(actual.dtypes.to_dict()),
            check_exact=False,
            rtol=1e-9,
        )
