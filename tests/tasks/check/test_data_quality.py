"""Data quality first: the Check stage's verdict on a period's data, on SQLite and PostgreSQL.

A small world in campaign `spring-test` (tests/scenario.py: Asia/Shanghai, quiet hours
21:00-09:00, apr_cap 24 %): three touches (one a hold-out row sent at night, which is
never judged), two applications (one naming the campaign, one attributed by its touch),
an approval with its loan and a repayment snapshot, a rejection with its reason, and a
complaint — all in ISO week 2026-W10 (local days 2026-03-02 .. 2026-03-08). Each failure
case spoils one thing and checks the verdict, the suite that says so and what it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, insert, update

from pdca.models import (
    Application,
    Complaint,
    Customer,
    Decision,
    Import,
    Loan,
    QuarantinedRow,
    Repayment,
    Touch,
)
from tasks.check.data_quality import (
    DataQuality,
    assess,
    of_applications,
    quarantine_shares,
    touch_timing,
    with_labels_as_categories,
)
from tasks.common.campaigns import CampaignSpec, TimeRange
from tasks.common.periods import Period
from tests.scenario import CAMPAIGN_ID, DAY, TIMEZONE, apply, customer, local_utc, spec_dict, touch

WEEK = "2026-W10"
NEXT_DAY = DAY + timedelta(days=1)

QUIET_HOURS = "is_in_quiet_hours: must be in set ['False'] when is_holdout==False"
APR_CAP = "apr_within_cap: must be in set ['True'] when decision==\"approved\""
REJECT_REASON = "has_reject_reason: must be in set ['True'] when decision==\"rejected\""
REJECT_REASON_FEED = 'reject_reason: must not be null when decision=="rejected"'
APPROVED_LOAN = "is_of_approved_application: must be in set ['True']"
LOAN_AMOUNT = (
    "amount_within_approved: must be in set ['True'] when is_of_approved_application==True"
)
DISBURSED_LATE = "approved: must be >= disbursements"
AFTER_DELIVERY = "applications_after_delivery: must be >= applications"
DECIDED_EARLY = "decided_after_application: must be in set ['True']"
HOLDOUT_DELIVERED = "delivered: must be in set ['False'] when variant==\"holdout\""
MISSING_AMOUNT = "amount_requested: must not be null"

FEED_SUITES = ["touches", "applications", "decisions", "loans", "repayments", "complaints"]
SUITES = [
    "touches",
    "touch_timing",
    "applications",
    "decisions",
    "campaign_decisions",
    "loans",
    "campaign_loans",
    "repayments",
    "complaints",
    "funnel_consistency",
]


# --- the world ---------------------------------------------------------------------------


def build_world(conn: Connection) -> CampaignSpec:
    """The clean week: every suite passes, nothing is quarantined."""
    spec = apply(conn, spec_dict())
    conn.execute(insert(Customer), [customer(cid) for cid in ("c1", "c2", "c3", "c4")])
    conn.execute(
        insert(Touch),
        [
            touch("t1", "c1", local_utc(DAY, 12, 30), campaign_id=CAMPAIGN_ID),
            touch("t2", "c2", local_utc(DAY, 19, 30), campaign_id=CAMPAIGN_ID, channel="im"),
            touch(
                "t3",
                "c3",
                local_utc(DAY, 23, 0),  # a hold-out row at night: an assignment, never sent
                campaign_id=CAMPAIGN_ID,
                variant="holdout",
                delivered=False,
                cost=0.0,
            ),
        ],
    )
    conn.execute(
        insert(Application),
        [
            application("a1", "c1", local_utc(DAY, 14), campaign_id=CAMPAIGN_ID),
            application("a2", "c2", local_utc(NEXT_DAY, 10), channel="im"),  # by its touch
        ],
    )
    conn.execute(
        insert(Decision),
        [
            approval("a1", local_utc(DAY, 16)),
            rejection("a2", local_utc(NEXT_DAY, 12), "score_too_low"),
        ],
    )
    conn.execute(insert(Loan), [loan("l1", "a1", local_utc(NEXT_DAY, 10))])
    conn.execute(
        insert(Repayment),
        [{"loan_id": "l1", "as_of": DAY + timedelta(days=3), "dpd": 0, "outstanding": 1e4}],
    )
    conn.execute(
        insert(Complaint).values(
            complaint_id="k1",
            customer_id="c2",
            campaign_id=CAMPAIGN_ID,
            received_at=local_utc(DAY + timedelta(days=2), 10),
            category="too_many_messages",
        )
    )
    return spec


def application(
    application_id: str,
    customer_id: str,
    applied_at: datetime,
    *,
    campaign_id: str | None = None,
    channel: str = "sms",
) -> dict:
    return {
        "application_id": application_id,
        "customer_id": customer_id,
        "campaign_id": campaign_id,
        "channel": channel,
        "applied_at": applied_at,
        "product_code": "sme-revolving",
        "amount_requested": 10_000.0,
    }


def approval(application_id: str, decided_at: datetime, *, apr: float = 18.0) -> dict:
    return {
        "application_id": application_id,
        "decided_at": decided_at,
        "decision": "approved",
        "reject_reason": None,
        "approved_amount": 10_000.0,
        "apr": apr,
    }


def rejection(application_id: str, decided_at: datetime, reason: str | None) -> dict:
    return {
        "application_id": application_id,
        "decided_at": decided_at,
        "decision": "rejected",
        "reject_reason": reason,
        "approved_amount": None,
        "apr": None,
    }


def loan(
    loan_id: str, application_id: str, disbursed_at: datetime, *, amount: float = 10_000.0
) -> dict:
    return {
        "loan_id": loan_id,
        "application_id": application_id,
        "disbursed_at": disbursed_at,
        "amount": amount,
        "apr": 18.0,
        "term_months": 12,
    }


def quarantine(conn: Connection, feed: str, occurred: list[datetime | None]) -> None:
    """Quarantined rows of `feed` with these timestamps (None: unreadable), in one import."""
    import_id = conn.execute(
        insert(Import)
        .values(feed=feed, file=f"{feed}.csv", started_at=datetime(2026, 3, 9), status="done")
        .returning(Import.import_id)
    ).scalar_one()
    conn.execute(
        insert(QuarantinedRow),
        [
            {
                "import_id": import_id,
                "feed": feed,
                "file": f"{feed}.csv",
                "line": line,
                "field": "cost",
                "reason": "cost is negative",
                "raw": "…",
                "occurred_at": moment,
            }
            for line, moment in enumerate(occurred, start=2)
        ],
    )


def more_touches(conn: Connection, count: int) -> None:
    """`count` clean touches of the campaign at noon on DAY (feed rows of the period)."""
    conn.execute(
        insert(Touch),
        [
            touch(f"tx{n:04d}", "c4", local_utc(DAY, 12, 0, n % 60), campaign_id=CAMPAIGN_ID)
            for n in range(count)
        ],
    )


# --- running the check -------------------------------------------------------------------


@pytest.fixture
def world(engine: Engine) -> Iterator[tuple[Engine, CampaignSpec]]:
    with engine.begin() as conn:
        spec = build_world(conn)
    yield engine, spec


def check(
    engine: Engine,
    spec: CampaignSpec,
    period: str = WEEK,
    *,
    max_share: float = 0.01,
    docs_dir: Path | None = None,
) -> DataQuality:
    with engine.connect() as conn:
        return assess(
            conn,
            spec,
            Period.parse(period),
            attribution_days=14,
            quarantine_max_share=max_share,
            docs_dir=docs_dir,
        )


def shares(engine: Engine, period: str = WEEK, max_share: float = 0.01) -> dict[str, dict]:
    """`quarantine_shares` alone (no Great Expectations), by feed."""
    with engine.connect() as conn:
        entries = quarantine_shares(conn, Period.parse(period), TIMEZONE, max_share)
    return {entry["feed"]: entry for entry in entries}


def suite(result: DataQuality, name: str) -> dict:
    found = [entry for entry in result.suites if entry["name"] == name]
    assert len(found) == 1, f"suite {name!r} reported {len(found)} times: {result.suites}"
    return found[0]


def feed(result: DataQuality, name: str) -> dict:
    return next(entry for entry in result.quarantine if entry["feed"] == name)


def assert_trusted(result: DataQuality) -> None:
    assert result.trusted, "expected trusted data, but:\n" + "\n".join(result.failed)


def assert_fails(result: DataQuality, suite_name: str, expectation: str) -> None:
    entry = suite(result, suite_name)
    assert not result.trusted, f"expected untrusted data; suites: {result.suites}"
    assert not entry["success"], f"{suite_name} passed: {entry}"
    assert expectation in entry["failed"], f"{expectation!r} not among {entry['failed']}"
    assert entry["unexpected"][expectation] >= 1, entry


def assert_warns(result: DataQuality, suite_name: str, expectation: str) -> None:
    entry = suite(result, suite_name)
    assert entry["success"], f"{suite_name} failed: {entry['failed']}"
    assert expectation in entry["warnings"], f"{expectation!r} not among {entry['warnings']}"
    assert_trusted(result)


# --- the clean week ------------------------------------------------------------------------


class TestCleanPeriod:
    def test_trusted_with_every_suite_passing(self, world):
        result = check(*world)
        assert_trusted(result)
        assert [entry["name"] for entry in result.suites] == SUITES
        assert all(entry["evaluated"] > 0 for entry in result.suites), result.suites
        assert all(not entry["failed"] and not entry["warnings"] for entry in result.suites)
        assert [entry["feed"] for entry in result.quarantine] == [
            "customers",
            "touches",
            "applications",
            "decisions",
            "loans",
            "repayments",
            "complaints",
            "surveys",
        ]
        assert all(entry["success"] for entry in result.quarantine)
        assert result.docs_path is None

    def test_rows_in_counts_the_period_data(self, world):
        result = check(*world)
        rows = {entry["name"]: entry["rows_in"] for entry in result.suites}
        assert rows == {
            "touches": 3,  # the hold-out row included: the touches suite checks it
            "touch_timing": 3,
            "applications": 2,
            "decisions": 2,
            "campaign_decisions": 2,
            "loans": 1,
            "campaign_loans": 1,
            "repayments": 1,
            "complaints": 1,
            "funnel_consistency": 2,  # 2026-W10 × sms, im
        }

    def test_json_shape(self, world):
        document = json.loads(json.dumps(check(*world).to_json()))
        assert set(document) == {"trusted", "suites", "quarantine", "docs_path", "status"}
        assert document["status"] == ("trusted" if document["trusted"] else "untrusted")
        assert set(document["suites"][0]) == {
            "name",
            "success",
            "evaluated",
            "failed",
            "warnings",
            "rows_in",
            "rows_quarantined",
            "unexpected",
            "examples",
        }
        assert set(document["quarantine"][0]) == {
            "feed",
            "rows_in",
            "rows_quarantined",
            "share",
            "max_share",
            "success",
        }

    def test_an_empty_period_is_no_data_not_trusted(self, world):
        """CONTRACT: a period with no rows at all is `no_data`; no expectation failed, yet
        nothing was there to pass them, so it must not read as a trusted, quiet period."""
        result = check(*world, period="2026-W20")
        assert result.status == "no_data" and result.trusted is False
        assert result.failed == []
        assert all(entry["rows_in"] == 0 for entry in result.suites)
        assert all(entry["rows_in"] == 0 for entry in result.quarantine)

    def test_a_month_validates_week_by_week(self, world):
        """2026-03 spans five ISO weeks; the touch suites report their sum."""
        result = check(*world, period="2026-03")
        assert_trusted(result)
        assert suite(result, "touches")["rows_in"] == 3
        assert suite(result, "funnel_consistency")["rows_in"] == 2

    def test_weeks_validated_together_report_what_they_report_one_by_one(self, world):
        """Touches in quiet hours in two weeks of 2026-03: one chunk of the whole month
        and five chunks of one week each give the same tallies and examples."""
        engine, spec = world
        with engine.begin() as conn:
            for touch_id, day in (("late-1", DAY), ("late-2", DAY + timedelta(days=7))):
                sent_at = local_utc(day, 22, 0, 0)
                conn.execute(
                    insert(Touch).values(touch(touch_id, "c4", sent_at, campaign_id=spec.id))
                )
        reports = []
        for chunk_rows in (1, 1_000_000):
            with engine.connect() as conn:
                result = assess(
                    conn,
                    spec,
                    Period.parse("2026-03"),
                    attribution_days=14,
                    quarantine_max_share=0.01,
                    chunk_rows=chunk_rows,
                )
            assert_fails(result, "touch_timing", QUIET_HOURS)
            reports.append(result.suites)
        assert reports[0] == reports[1]
        timing = next(entry for entry in reports[0] if entry["name"] == "touch_timing")
        assert timing["unexpected"][QUIET_HOURS] == 2
        assert timing["examples"][QUIET_HOURS] == ["late-1", "late-2"]


# --- critical failures ---------------------------------------------------------------------


class TestOnlyTheAttributedApplications:
    """Decisions, loans and snapshots are read for every application attribution might give
    the campaign (sql/dq_candidates.sql) and kept for those it does: a faulty row of an
    application it does not give the campaign is no row of the campaign's data."""

    def test_candidates_that_are_not_attributed_count_in_no_suite(self, world):
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(
                insert(Application),
                [
                    application("a8", "c4", local_utc(DAY, 15)),  # no campaign, no touch
                    # a hold-out member's own application: no figure counts it
                    application("a9", "c3", local_utc(DAY, 16), campaign_id=CAMPAIGN_ID),
                ],
            )
            conn.execute(
                insert(Decision),
                [rejection("a8", local_utc(DAY, 17), None), approval("a9", local_utc(DAY, 18))],
            )
            conn.execute(insert(Loan), [loan("l9", "a9", local_utc(DAY, 19), amount=9e9)])
            conn.execute(
                insert(Repayment),
                [{"loan_id": "l9", "as_of": DAY + timedelta(days=1), "dpd": 0, "outstanding": -1}],
            )
        result = check(engine, spec)
        rows = {entry["name"]: entry["rows_in"] for entry in result.suites}
        assert rows["applications"] == 2
        assert (rows["decisions"], rows["loans"], rows["repayments"]) == (2, 1, 1)
        assert result.trusted, result.failed
        assert not any(entry["warnings"] for entry in result.suites)


class TestOfApplications:
    """`of_applications` keeps a frame's rows of the attributed applications, whichever way
    the rows were read: Arrow-backed strings (the Arrow reads) or Python objects (the
    DB-API), each side either way."""

    @pytest.mark.parametrize("frame_dtype", ["str", "object"])
    @pytest.mark.parametrize("ids_dtype", ["str", "object"])
    def test_keeps_the_attributed_rows_in_order(self, frame_dtype, ids_dtype):
        frame = pd.DataFrame(
            {"application_id": ["a3", "a1", "a2", "a1", None], "amount": [3, 1, 2, 4, 5]}
        ).astype({"application_id": frame_dtype})
        ids = pd.Series(["a1", "a3", "a9"], dtype=ids_dtype)
        kept = of_applications(frame, ids)
        assert kept["application_id"].tolist() == ["a3", "a1", "a1"]
        assert kept["amount"].tolist() == [3, 1, 4]
        assert kept.index.tolist() == [0, 1, 2]
        assert kept.dtypes.equals(frame.dtypes)

    def test_no_attributed_application_keeps_no_row(self):
        frame = pd.DataFrame({"application_id": ["a1"], "amount": [1]})
        assert of_applications(frame, pd.Series([], dtype="str")).empty
        assert of_applications(frame.iloc[:0], pd.Series(["a1"])).empty


class TestTouchTiming:
    @pytest.mark.parametrize(
        ("hour", "minute", "second"), [(21, 0, 0), (23, 30, 0), (3, 0, 0), (8, 59, 59)]
    )
    def test_failure_touch_in_quiet_hours(self, world, hour, minute, second):
        engine, spec = world
        with engine.begin() as conn:
            sent_at = local_utc(DAY, hour, minute, second)
            conn.execute(insert(Touch).values(touch("late", "c4", sent_at, campaign_id=spec.id)))
        result = check(engine, spec)
        assert_fails(result, "touch_timing", QUIET_HOURS)
        assert suite(result, "touch_timing")["unexpected"][QUIET_HOURS] == 1
        assert suite(result, "touch_timing")["examples"][QUIET_HOURS] == ["late"]

    @pytest.mark.parametrize(("hour", "minute", "second"), [(9, 0, 0), (20, 59, 59)])
    def test_success_at_the_edges_of_quiet_hours(self, world, hour, minute, second):
        engine, spec = world
        with engine.begin() as conn:
            sent_at = local_utc(DAY, hour, minute, second)
            conn.execute(insert(Touch).values(touch("edge", "c4", sent_at, campaign_id=spec.id)))
        assert_trusted(check(engine, spec))


class TestLabelsAsCategories:
    """The touches reach GE with campaign, channel and variant as categories (its row
    filters copy them as codes); GE must judge them exactly as it judges the strings."""

    @staticmethod
    def tally(frame: pd.DataFrame) -> dict:
        from tasks.check.gx_runs import ValidationRun

        run = ValidationRun("labels")
        try:
            run.validate("touches", frame)
        finally:
            run.forget()
        return run.tallies["touches"].to_json(0)

    def test_the_touches_suite_finds_the_same_failures(self):
        sent = datetime(2026, 3, 3, 2)
        rows = [
            ("t1", CAMPAIGN_ID, "c1", "sms", "A", True, True, 0.1),
            ("t2", CAMPAIGN_ID, "c2", "fax", "B", True, False, 0.1),  # not a channel
            ("t3", None, "c3", None, "A", False, False, 0.1),  # no campaign, no channel
            ("t4", CAMPAIGN_ID, "c4", "im", "A B", True, False, 0.1),  # variant's pattern
            ("t5", CAMPAIGN_ID, "c5", "im", "holdout", True, False, 0.0),  # delivered
            ("t6", CAMPAIGN_ID, "c6", "im", None, False, False, 0.1),  # no variant
        ]
        columns = ["touch_id", "campaign_id", "customer_id", "channel", "variant"]
        columns += ["delivered", "responded", "cost"]
        frame = pd.DataFrame(rows, columns=columns).assign(sent_at=sent)
        frame = frame.astype({"sent_at": "datetime64[us]"})
        as_strings = self.tally(frame)
        as_categories = self.tally(with_labels_as_categories(frame))
        assert as_categories == as_strings
        assert len(as_strings["failed"]) == 6, as_strings["failed"]
        assert as_strings["examples"] and as_strings["unexpected"]


class TestQuietHoursColumn:
    """`touch_timing` on frames, without a database."""

    @pytest.mark.parametrize(
        ("quiet", "local", "expected"),
        [
            ("21:00-09:00", "2026-03-04 21:00:00", True),
            ("21:00-09:00", "2026-03-04 08:59:59", True),
            ("21:00-09:00", "2026-03-04 09:00:00", False),
            ("12:00-13:00", "2026-03-04 12:30:00", True),
            ("12:00-13:00", "2026-03-04 13:00:00", False),
            ("12:00-13:00", "2026-03-04 11:59:59", False),
        ],
    )
    def test_local_time_in_range(self, quiet, local, expected):
        sent_at = pd.Timestamp(local, tz=TIMEZONE).tz_convert("UTC").tz_localize(None)
        frame = pd.DataFrame({"touch_id": ["t"], "variant": ["A"], "sent_at": [sent_at]})
        out = touch_timing(frame, TIMEZONE, TimeRange.parse(quiet))
        assert out["is_in_quiet_hours"].tolist() == [expected]
        assert out["is_holdout"].tolist() == [False]


class TestDecisions:
    def test_failure_approval_above_the_apr_cap(self, world):
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(update(Decision).where(Decision.application_id == "a1").values(apr=24.5))
        assert_fails(check(engine, spec), "campaign_decisions", APR_CAP)

    def test_success_approval_at_the_apr_cap(self, world):
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(update(Decision).where(Decision.application_id == "a1").values(apr=24.0))
        assert_trusted(check(engine, spec))

    def test_cap_is_the_campaigns(self, world):
        """The same 18 % approval breaks a campaign whose cap is 15 %."""
        engine, spec = world
        stricter = spec.model_copy(update={"risk": spec.risk.model_copy(update={"apr_cap": 15})})
        assert_fails(check(engine, stricter), "campaign_decisions", APR_CAP)

    def test_failure_rejection_without_a_reason(self, world):
        """Critical, as the contract requires the field: the feed suite and the derived one
        both say so."""
        engine, spec = world
        with engine.begin() as conn:
            rejected = Decision.application_id == "a2"
            conn.execute(update(Decision).where(rejected).values(reject_reason=None))
        result = check(engine, spec)
        assert_fails(result, "campaign_decisions", REJECT_REASON)
        assert_fails(result, "decisions", REJECT_REASON_FEED)

    def test_failure_rejection_with_a_blank_reason(self, world):
        """A blank reason passes the feed's not-null rule; campaign_decisions catches it."""
        engine, spec = world
        with engine.begin() as conn:
            rejected = Decision.application_id == "a2"
            conn.execute(update(Decision).where(rejected).values(reject_reason="  "))
        result = check(engine, spec)
        assert_fails(result, "campaign_decisions", REJECT_REASON)
        assert suite(result, "decisions")["success"]

    def test_warning_decided_before_applied(self, world):
        engine, spec = world
        with engine.begin() as conn:
            early = local_utc(DAY, 13)  # a1 was applied at 14:00
            conn.execute(
                update(Decision).where(Decision.application_id == "a1").values(decided_at=early)
            )
        assert_warns(check(engine, spec), "campaign_decisions", DECIDED_EARLY)


class TestLoans:
    def test_failure_loan_of_a_rejected_application(self, world):
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(insert(Loan).values(loan("l2", "a2", local_utc(NEXT_DAY, 15))))
        result = check(engine, spec)
        assert_fails(result, "campaign_loans", APPROVED_LOAN)
        assert suite(result, "campaign_loans")["examples"][APPROVED_LOAN] == ["l2"]
        assert_fails(result, "funnel_consistency", DISBURSED_LATE)

    def test_failure_loan_before_its_decision(self, world):
        engine, spec = world
        with engine.begin() as conn:
            early = local_utc(DAY, 15)  # a1 was approved at 16:00
            conn.execute(update(Loan).where(Loan.loan_id == "l1").values(disbursed_at=early))
        result = check(engine, spec)
        assert_fails(
            result,
            "campaign_loans",
            "disbursed_after_decision: must be in set ['True'] "
            "when is_of_approved_application==True",
        )

    def test_warning_loan_above_the_approved_amount(self, world):
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(update(Loan).where(Loan.loan_id == "l1").values(amount=12_000.0))
        assert_warns(check(engine, spec), "campaign_loans", LOAN_AMOUNT)


class TestFeedSuites:
    def test_failure_delivered_hold_out_row(self, world):
        """The touches feed suite on stored rows: booleans typed (SQLite returns 0/1)."""
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(update(Touch).where(Touch.touch_id == "t3").values(delivered=True))
        result = check(engine, spec)
        assert_fails(result, "touches", HOLDOUT_DELIVERED)
        assert suite(result, "touches")["examples"][HOLDOUT_DELIVERED] == ["t3"]

    def test_failure_negative_outstanding(self, world):
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(update(Repayment).values(outstanding=-1.0))
        assert_fails(check(engine, spec), "repayments", "outstanding: must be between [0.0, ]")

    @pytest.mark.parametrize("source", [None, "applications"])
    def test_failure_amount_missing_from_a_feed_that_carries_it(self, world, source):
        """A row of the applications feed (or written before sources were recorded)
        without its requested amount is a critical failure."""
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(update(Application).values(amount_requested=None, source_feed=source))
        result = check(engine, spec)
        assert_fails(result, "applications", MISSING_AMOUNT)
        assert sorted(suite(result, "applications")["examples"][MISSING_AMOUNT]) == ["a1", "a2"]

    def test_success_amount_missing_from_a_feed_that_cannot_carry_it(self, world):
        """The UCI file has no amounts (CONTRACT: "a field that a feed cannot carry is not
        a critical failure"): its rows pass, while the other feed's row beside them fails."""
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(update(Application).values(amount_requested=None, source_feed="uci-bank"))
        assert_trusted(check(engine, spec))
        with engine.begin() as conn:
            conn.execute(
                update(Application)
                .where(Application.application_id == "a2")
                .values(source_feed="applications")
            )
        result = check(engine, spec)
        assert_fails(result, "applications", MISSING_AMOUNT)
        assert suite(result, "applications")["examples"][MISSING_AMOUNT] == ["a2"]


class TestFunnelConsistency:
    def test_warning_application_without_a_delivered_touch(self, world):
        """An application naming the campaign from a customer it never reached."""
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(
                insert(Application).values(
                    application("a3", "c4", local_utc(DAY, 15), campaign_id=spec.id)
                )
            )
        assert_warns(check(engine, spec), "funnel_consistency", AFTER_DELIVERY)


# --- quarantine shares ---------------------------------------------------------------------


class TestQuarantineShare:
    @pytest.mark.parametrize(
        ("quarantined", "trusted"),
        [
            (1, True),  # 1 of 100 rows: exactly 1 %, at the limit
            (2, False),  # 2 of 101 rows: above it
        ],
    )
    def test_share_against_the_limit(self, world, quarantined, trusted):
        engine, spec = world
        with engine.begin() as conn:
            more_touches(conn, 96)  # 3 + 96 = 99 touches of the period
            quarantine(conn, "touches", [local_utc(DAY, 12)] * quarantined)
        result = check(engine, spec)
        entry = feed(result, "touches")
        assert entry["rows_in"] == 99 + quarantined
        assert entry["rows_quarantined"] == quarantined
        assert entry["share"] == pytest.approx(quarantined / (99 + quarantined))
        assert entry["success"] is trusted
        assert result.trusted is trusted, result.failed
        assert suite(result, "touches")["rows_quarantined"] == quarantined
        assert suite(result, "touches")["success"]  # the stored rows themselves are fine

    def test_rows_of_other_periods_and_undated_rows_do_not_count(self, world):
        engine, _ = world
        with engine.begin() as conn:
            before = local_utc(DAY - timedelta(days=3), 23, 59, 59)  # Sunday, 2026-W09
            quarantine(conn, "touches", [before, local_utc(DAY + timedelta(days=5), 0), None])
        entry = shares(engine)["touches"]
        assert (entry["rows_in"], entry["rows_quarantined"], entry["success"]) == (3, 0, True)

    def test_repayments_count_by_their_local_day(self, world):
        """Snapshots are days: the quarantine stores a day as its midnight, no time zone."""
        engine, _ = world
        with engine.begin() as conn:
            quarantine(conn, "repayments", [datetime(2026, 3, 8), datetime(2026, 3, 9)])
        entry = shares(engine)["repayments"]
        assert (entry["rows_in"], entry["rows_quarantined"], entry["success"]) == (2, 1, False)

    def test_customers_count_by_created_at(self, world):
        engine, _ = world
        with engine.begin() as conn:
            joined = customer("c5") | {"created_at": local_utc(DAY, 10)}
            conn.execute(insert(Customer).values(joined))
            quarantine(conn, "customers", [local_utc(DAY, 11)])
        entry = shares(engine, max_share=0.5)["customers"]
        assert (entry["rows_in"], entry["rows_quarantined"], entry["share"]) == (2, 1, 0.5)
        assert entry["success"]  # at the limit


# --- Data Docs -----------------------------------------------------------------------------


class TestDataDocs:
    def test_docs_written(self, world, tmp_path):
        engine, spec = world
        docs = tmp_path / "data-docs"
        result = check(engine, spec, docs_dir=docs)
        assert result.docs_path == (docs / "index.html").resolve()
        assert result.docs_path.is_file()
        index = result.docs_path.read_text(encoding="utf-8")
        for name in SUITES:
            assert name in index, f"{name} missing from the Data Docs index"
        pages = sorted(
            path.parent.parent.parent.name for path in docs.glob("validations/**/*.html")
        )
        assert pages == sorted(SUITES)
        assert json.loads(json.dumps(result.to_json()))["docs_path"] == str(result.docs_path)

    def test_a_second_run_replaces_the_first(self, world, tmp_path):
        engine, spec = world
        docs = tmp_path / "data-docs"
        check(engine, spec, docs_dir=docs)
        check(engine, spec, docs_dir=docs)
        assert len(list(docs.glob("validations/**/*.html"))) == len(SUITES)


class TestResultFormat:
    """Each suite runs first in GE's BASIC format and again in SUMMARY only when it fails:
    a passing suite's Data Docs page must not lose anything, and a failing one must still
    name its failing rows, in the tallies and in the stored result Data Docs read."""

    @staticmethod
    def touches(channel: str = "sms") -> pd.DataFrame:
        rows = [(f"t{i}", CAMPAIGN_ID, f"c{i}", "sms", "A", True, True, 0.1) for i in range(20)]
        columns = ["touch_id", "campaign_id", "customer_id", "channel", "variant"]
        columns += ["delivered", "responded", "cost"]
        frame = pd.DataFrame(rows, columns=columns).assign(sent_at=datetime(2026, 3, 3, 2))
        frame.loc[3, "channel"] = channel
        return frame.astype({"sent_at": "datetime64[us]"})

    @staticmethod
    def page(result) -> str:
        """The Data Docs page of a validation result, without its random element ids and
        the moment it was validated."""
        import re

        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        html = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
        html = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "", html)
        return re.sub(r"\d{8}T\d{6}\.\d+Z", "", html)

    @staticmethod
    def stored(result, run_id):
        from tasks.check import gx_runs

        store = gx_runs._context().validation_results_store
        return store.get(gx_runs._result_identifier(result, run_id))

    def test_a_passing_suites_page_is_the_detailed_formats_page(self):
        from great_expectations.core.run_identifier import RunIdentifier

        from tasks.check import gx_runs

        run_id = RunIdentifier(run_name="format.passing", run_time=datetime(2026, 1, 1))
        result = gx_runs.validate_suite("touches", "touches", self.touches(), run_id)
        assert result.success
        assert not any("partial_unexpected_index_list" in r.result for r in result.results)
        detailed = gx_runs._run(
            "touches",
            "touches",
            self.touches(),
            run_id,
            {"result_format": "SUMMARY", "unexpected_index_column_names": ["touch_id"]},
        )
        assert self.page(result) == self.page(detailed)

    def test_a_failing_suite_names_its_rows_in_the_tally_and_the_stored_result(self):
        from great_expectations.core.run_identifier import RunIdentifier

        from tasks.check import gx_runs

        run_id = RunIdentifier(run_name="format.failing", run_time=datetime(2026, 1, 1))
        result = gx_runs.validate_suite("touches", "touches", self.touches("fax"), run_id)
        tally = gx_runs.Tally("touches")
        tally.add(result, 20, gx_runs.KEYS["touches"])
        [label] = tally.failed
        assert label.startswith("channel: must be in set"), label
        assert tally.examples == {label: ["t3"]}
        failed = [r for r in self.stored(result, run_id).results if not r.success]
        assert [r.result["partial_unexpected_index_list"] for r in failed] == [
            [{"channel": "fax", "touch_id": "t3"}]
        ]


class TestEmptyDatasets:
    """A dataset without rows is not handed to GE: every expectation passes on it, which
    must be GE's own verdict on an empty frame with the same columns."""

    def test_same_tallies_as_great_expectations_on_the_empty_frames(self, world):
        from great_expectations.core.run_identifier import RunIdentifier

        from tasks.check import gx_runs

        engine, spec = world
        empty = check(engine, spec, "2026-W02")
        assert empty.status == "no_data"
        frames = _empty_frames(engine, spec)
        for dataset, suites in gx_runs.DATASETS.items():
            for name in suites:
                run_id = RunIdentifier(run_name=f"direct.{name}")
                direct = gx_runs.validate_suite(dataset, name, frames[dataset], run_id)
                tally = gx_runs.Tally(name)
                tally.add(direct, 0, gx_runs.KEYS[dataset])
                assert suite(empty, name) == tally.to_json(0), name

    def test_the_data_docs_show_the_validations_that_had_rows(self, world, tmp_path):
        engine, spec = world
        with engine.begin() as conn:
            conn.execute(update(Complaint).values(received_at=local_utc(DAY - timedelta(60), 9)))
        docs = tmp_path / "data-docs"
        result = check(engine, spec, docs_dir=docs)
        assert suite(result, "complaints")["rows_in"] == 0
        pages = {path.parent.parent.parent.name for path in docs.glob("validations/**/*.html")}
        assert pages == set(SUITES) - {"complaints"}


def _empty_frames(engine: Engine, spec: CampaignSpec) -> dict[str, pd.DataFrame]:
    """Each dataset's frame for a period without rows, as the check builds it."""
    from tasks.check import data_quality as dq

    frames: dict[str, pd.DataFrame] = {}
    real = dq.ValidationRun.validate

    def keep(run, dataset, frame, part=None):
        frames.setdefault(dataset, frame)
        return real(run, dataset, frame, part)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dq.ValidationRun, "validate", keep)
        check(engine, spec, "2026-W02")
    return frames


def test_feed_suites_report_their_feeds_quarantine(world):
    engine, _ = world
    with engine.begin() as conn:
        quarantine(conn, "complaints", [local_utc(DAY, 9)])
    result = check(*world, max_share=1.0)
    for name in FEED_SUITES:
        expected = 1 if name == "complaints" else 0
        assert suite(result, name)["rows_quarantined"] == expected, name
    assert suite(result, "campaign_decisions")["rows_quarantined"] == 0
