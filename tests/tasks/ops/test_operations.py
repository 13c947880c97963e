"""The plain logic of reruns, backfills and scheduled runs: ranges, bounded concurrency,
failures as outcomes, and what a scheduled run resolves "now" to."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import pytest

from pdca.errors import UserError
from tasks.ops.operations import (
    CampaignDates,
    Outcome,
    StageRun,
    check_period_for,
    days_between,
    due_runs,
    periods_between,
    review_period_for,
    run_all,
    stage_runs,
)


class TestRanges:
    @pytest.mark.parametrize(
        ("first", "last", "expected"),
        [
            ("2026-W52", "2027-W02", ["2026-W52", "2026-W53", "2027-W01", "2027-W02"]),
            ("2026-11", "2027-01", ["2026-11", "2026-12", "2027-01"]),
            ("2026-Q4", "2027-Q1", ["2026-Q4", "2027-Q1"]),
            ("2026-03", "2026-03", ["2026-03"]),
        ],
    )
    def test_periods_between_includes_both_ends(self, first, last, expected):
        assert [str(p) for p in periods_between(first, last)] == expected

    @pytest.mark.parametrize(
        ("first", "last", "message"),
        [
            ("2026-W10", "2026-03", "both must be a week"),
            ("2026-05", "2026-03", "is after"),
            ("2026-W01", "2036-W01", "more than"),
        ],
    )
    def test_bad_ranges_are_user_errors(self, first, last, message):
        with pytest.raises(UserError, match=message):
            periods_between(first, last)

    def test_days_between(self):
        assert days_between(date(2026, 2, 27), date(2026, 3, 2)) == [
            date(2026, 2, 27),
            date(2026, 2, 28),
            date(2026, 3, 1),
            date(2026, 3, 2),
        ]
        with pytest.raises(UserError, match="is after"):
            days_between(date(2026, 3, 2), date(2026, 3, 1))

    def test_parameters_name_the_flow_arguments(self):
        (run,) = stage_runs("act", "c1", ["2026-W10"], auto_approve=True)
        assert run.parameters == {"campaign_id": "c1", "period": "2026-W10", "auto_approve": True}
        (run,) = stage_runs("dispatch", "c1", ["2026-03-04"])
        assert run.parameters == {"campaign_id": "c1", "day": "2026-03-04"}
        with pytest.raises(UserError, match="unknown stage"):
            stage_runs("review", "c1", ["2026-W10"])


class TestRunAll:
    def test_bounded_concurrency_order_kept_and_failures_do_not_stop_the_rest(self):
        running, most, lock = 0, 0, threading.Lock()

        def runner(run: StageRun) -> Outcome:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            if run.key == "2026-W03":
                raise RuntimeError("injected\nsecond line")
            return Outcome(run, ok=run.key != "2026-W05", state="Completed", message="")

        runs = stage_runs("check", "c1", [f"2026-W{n:02d}" for n in range(1, 8)])
        report = run_all(runs, runner, concurrency=2)

        assert most == 2
        assert [o.run.key for o in report.outcomes] == [r.key for r in runs]
        assert [o.run.key for o in report.failed] == ["2026-W03", "2026-W05"]
        raised = report.failed[0]
        assert (raised.state, raised.message) == ("RuntimeError", "injected")
        assert report.summary() == "5 of 7 runs completed; failed: 2026-W03, 2026-W05"
        assert all(o.seconds > 0 for o in report.outcomes)


SHANGHAI = CampaignDates("cn", "Asia/Shanghai", date(2026, 3, 2), date(2026, 5, 31))
NEW_YORK = CampaignDates("us", "America/New_York", date(2026, 3, 2), date(2026, 3, 31))


class TestDueRuns:
    def test_dispatch_uses_each_campaigns_local_day(self):
        # Tuesday 2026-03-31 03:05 UTC: 11:05 in Shanghai, still Monday 23:05 in New York
        now = datetime(2026, 3, 31, 3, 5, tzinfo=UTC)
        runs = due_runs("dispatch", [SHANGHAI, NEW_YORK], now)
        assert [(r.campaign_id, r.key) for r in runs] == [
            ("cn", "2026-03-31"),
            ("us", "2026-03-30"),
        ]

    def test_dispatch_skips_campaigns_not_running_that_day(self):
        now = datetime(2026, 4, 2, 4, 5, tzinfo=UTC)
        assert [r.campaign_id for r in due_runs("dispatch", [SHANGHAI, NEW_YORK], now)] == ["cn"]

    def test_check_looks_at_the_week_of_yesterday(self):
        monday = datetime(2026, 3, 16, 22, 30, tzinfo=UTC)  # Tuesday 06:30 in Shanghai
        (run,) = due_runs("check", [SHANGHAI], monday)
        assert run.key == "2026-W12"  # Monday 03-16's week, so far
        assert check_period_for(date(2026, 3, 16)) == check_period_for(date(2026, 3, 15))
        assert str(check_period_for(date(2026, 3, 16))) == "2026-W11"  # Monday: last week

    def test_plan_plans_the_month_and_only_for_campaigns_in_it(self):
        first = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)  # 1 April 06:00 in Shanghai
        runs = due_runs("plan", [SHANGHAI, NEW_YORK], first)
        assert [(r.campaign_id, r.key) for r in runs] == [("cn", "2026-04"), ("us", "2026-03")]

    def test_only_the_named_campaigns(self):
        now = datetime(2026, 3, 10, 4, 5, tzinfo=UTC)
        assert [r.campaign_id for r in due_runs("dispatch", [SHANGHAI, NEW_YORK], now, ["us"])] == [
            "us"
        ]

    @pytest.mark.parametrize(
        "today", [date(2026, 3, 16), date(2026, 3, 18), date(2026, 3, 22)], ids=str
    )
    def test_review_covers_the_last_complete_week(self, today):
        assert str(review_period_for(today)) == "2026-W11"
