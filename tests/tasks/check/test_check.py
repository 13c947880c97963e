"""tasks.check.check: which weeks and scopes a check counts, the stored rollups, the targets."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine, insert, select

from pdca.models import Customer, Plan, Target, Touch, WeeklyRollup
from tasks.check.check import (
    KPI_ROLLUP_COUNTS,
    ROLLUP_COLUMNS,
    current_targets,
    kpi_actuals,
    period_anomalies,
    read_rollups,
    store_rollups,
    trailing_weeks,
    whole_weeks,
)
from tasks.common import metrics
from tasks.common.periods import Period
from tests.scenario import CAMPAIGN_ID, apply, customer, local_utc, spec_dict, touch


def add_touches(engine: Engine, days: list[date], channel: str = "sms") -> None:
    """One delivered touch at local noon on each day, each to a new customer."""
    with engine.begin() as conn:
        existing = len(conn.execute(select(Touch.touch_id)).all())
        rows = []
        for number, day in enumerate(days, start=existing):
            customer_id = f"c{number:04d}"
            conn.execute(insert(Customer).values(customer(customer_id)))
            rows.append(
                touch(
                    f"t{number:04d}",
                    customer_id,
                    local_utc(day, 12),
                    campaign_id=CAMPAIGN_ID,
                    channel=channel,
                )
            )
        conn.execute(insert(Touch), rows)


@pytest.fixture
def campaign(engine: Engine) -> Engine:
    with engine.begin() as conn:
        apply(conn, spec_dict())
    return engine


class TestWholeWeeks:
    def test_a_month_counts_its_edge_weeks_whole(self, campaign: Engine) -> None:
        # March 2026 starts on a Sunday (W09) and ends on a Tuesday (W14)
        add_touches(campaign, [date(2026, 2, 27), date(2026, 3, 1), date(2026, 3, 4)])
        add_touches(campaign, [date(2026, 3, 31), date(2026, 4, 2)])
        march = Period.parse("2026-03")
        with campaign.connect() as conn:
            funnel = metrics.funnel(conn, CAMPAIGN_ID, march)
            weeks = whole_weeks(conn, CAMPAIGN_ID, march, funnel)
        touches = weeks.groupby("week")["touches"].sum().to_dict()
        assert touches == {"2026-W09": 2, "2026-W10": 1, "2026-W14": 2}
        assert int(funnel["touches"].sum()) == 3, "the period itself stays clipped"

    def test_a_week_inside_the_period_is_not_counted_twice(self, campaign: Engine) -> None:
        add_touches(campaign, [date(2026, 3, 10)])
        week = Period.parse("2026-W11")
        with campaign.connect() as conn:
            funnel = metrics.funnel(conn, CAMPAIGN_ID, week)
            weeks = whole_weeks(conn, CAMPAIGN_ID, week, funnel)
        expected = funnel[ROLLUP_COLUMNS].reset_index(drop=True)
        pd.testing.assert_frame_equal(weeks[ROLLUP_COLUMNS], expected)
        # its KPI counts are the period's own too: the check fills them in (with_week_kpis)
        assert weeks[KPI_ROLLUP_COUNTS].isna().all().all()


class TestRollups:
    def test_round_trip(self, campaign: Engine) -> None:
        add_touches(campaign, [date(2026, 3, 10), date(2026, 3, 11)])
        week = Period.parse("2026-W11")
        with campaign.connect() as conn:
            funnel = metrics.funnel(conn, CAMPAIGN_ID, week)
            store_rollups(conn, CAMPAIGN_ID, [week.name], funnel)
            conn.commit()
            back = read_rollups(conn, CAMPAIGN_ID, [week.name])
        pd.testing.assert_frame_equal(back, funnel[ROLLUP_COLUMNS], check_dtype=False)

    def test_storing_again_replaces(self, campaign: Engine) -> None:
        add_touches(campaign, [date(2026, 3, 10)])
        week = Period.parse("2026-W11")
        with campaign.connect() as conn:
            funnel = metrics.funnel(conn, CAMPAIGN_ID, week)
            store_rollups(conn, CAMPAIGN_ID, [week.name], funnel)
            store_rollups(conn, CAMPAIGN_ID, [week.name], funnel)
            conn.commit()
            rows = conn.execute(select(WeeklyRollup.week)).all()
        assert len(rows) == len(funnel) == 1

    def test_trailing_weeks_are_counted_once_then_read(self, campaign: Engine) -> None:
        add_touches(campaign, [date(2026, 3, 3), date(2026, 3, 10), date(2026, 3, 17)])
        with campaign.connect() as conn:
            first = trailing_weeks(conn, CAMPAIGN_ID, Period.parse("2026-W13"), 8)
            conn.commit()
            stored = {row.week for row in conn.execute(select(WeeklyRollup.week))}
        assert stored == {"2026-W10", "2026-W11", "2026-W12"}
        assert first.groupby("week")["touches"].sum().to_dict() == {
            "2026-W10": 1,
            "2026-W11": 1,
            "2026-W12": 1,
        }
        add_touches(campaign, [date(2026, 3, 18)])  # late data: the stored week is kept
        with campaign.connect() as conn:
            again = trailing_weeks(conn, CAMPAIGN_ID, Period.parse("2026-W13"), 8)
        assert int(again["touches"].sum()) == 3, "trailing weeks come from the stored rollups"

    def test_no_touches_no_rollups(self, campaign: Engine) -> None:
        with campaign.connect() as conn:
            trailing = trailing_weeks(conn, CAMPAIGN_ID, Period.parse("2026-W13"), 8)
        assert trailing.empty


class TestKpiRollups:
    """The new KPIs' counts in the weekly rollups (migration 0007), and their anomalies."""

    def test_a_week_stored_before_its_kpi_counts_is_recounted(self, campaign: Engine) -> None:
        add_touches(campaign, [date(2026, 3, 10)])
        week = Period.parse("2026-W11")
        with campaign.connect() as conn:
            funnel = metrics.funnel(conn, CAMPAIGN_ID, week)
            store_rollups(conn, CAMPAIGN_ID, [week.name], funnel)  # funnel only: as before
            conn.commit()
            before = read_rollups(conn, CAMPAIGN_ID, [week.name], kpis=True)
            trailing_weeks(conn, CAMPAIGN_ID, Period.parse("2026-W12"), 8)
            conn.commit()
            after = read_rollups(conn, CAMPAIGN_ID, [week.name], kpis=True)
        assert before[KPI_ROLLUP_COUNTS].isna().all().all(), "null: not counted, not 0"
        assert (after[KPI_ROLLUP_COUNTS] == 0).all().all(), "counted now: nothing happened"
        assert after["touches"].tolist() == [1]

    @staticmethod
    def weeks(answers: list[float], promoters: list[float]) -> pd.DataFrame:
        """Seven weeks of one sms row each: 100 touches, the given answers and promoters."""
        rows = []
        for number, (answer, promoter) in enumerate(zip(answers, promoters, strict=True)):
            row = dict.fromkeys([*ROLLUP_COLUMNS, *KPI_ROLLUP_COUNTS], 0.0)
            row.update(week=f"2026-W{10 + number}", channel="sms", segment="sme", variant="A")
            row.update(touches=100, delivered=100, answers=answer, promoters=promoter)
            rows.append(row)
        return pd.DataFrame(rows)

    def test_nps_breaking_from_its_weeks_is_an_anomaly(self) -> None:
        history = self.weeks([40] * 7, [20, 22, 19, 21, 20, 21, 2])
        found = period_anomalies(
            history, Period.parse("2026-W16"), z=3, min_volume=20, window=8, min_weeks=4
        )
        assert {(a["metric"], tuple(a["scope"].items())) for a in found} == {
            ("nps", ()),
            ("nps", (("channel", "sms"),)),
        }

    def test_weeks_without_counts_give_no_baseline(self) -> None:
        """Rows stored before the counts (NaN) are no weeks of 0 answers: no judgement."""
        nan = float("nan")
        history = self.weeks([nan] * 6 + [40], [nan] * 6 + [2])
        found = period_anomalies(
            history, Period.parse("2026-W16"), z=3, min_volume=20, window=8, min_weeks=4
        )
        assert found == []


class TestCurrentTargets:
    def add_plan(self, engine: Engine, period: str, targets: dict[str, float]) -> None:
        with engine.begin() as conn:
            plan_id = conn.execute(
                insert(Plan)
                .values(campaign_id=CAMPAIGN_ID, period=period, version=1, is_current=True)
                .returning(Plan.plan_id)
            ).scalar_one()
            conn.execute(
                insert(Target),
                [
                    {
                        "plan_id": plan_id,
                        "metric": metric,
                        "channel": None,
                        "segment": None,
                        "target": value,
                        "tolerance_warn": 0.05,
                        "tolerance_fail": 0.15,
                        "lower_is_better": metric == "cac",
                    }
                    for metric, value in targets.items()
                ],
            )

    def test_the_periods_own_plan(self, campaign: Engine) -> None:
        self.add_plan(campaign, "2026-W11", {"touches": 700.0, "cac": 50.0})
        with campaign.connect() as conn:
            targets = current_targets(conn, CAMPAIGN_ID, Period.parse("2026-W11"))
        assert {t["metric"]: t["target"] for t in targets} == {"touches": 700.0, "cac": 50.0}

    def test_a_week_of_a_monthly_plan_gets_its_share_of_volumes(self, campaign: Engine) -> None:
        self.add_plan(campaign, "2026-03", {"touches": 3100.0, "cac": 50.0})
        with campaign.connect() as conn:
            targets = current_targets(conn, CAMPAIGN_ID, Period.parse("2026-W11"))
        values = {t["metric"]: t["target"] for t in targets}
        assert values["touches"] == pytest.approx(3100.0 * 7 / 31)
        assert values["cac"] == 50.0, "ratios are not scaled"

    def test_a_week_across_two_months_has_no_containing_plan(self, campaign: Engine) -> None:
        self.add_plan(campaign, "2026-03", {"touches": 3100.0})
        with campaign.connect() as conn:
            assert current_targets(conn, CAMPAIGN_ID, Period.parse("2026-W14")) == []

    def test_no_plan(self, campaign: Engine) -> None:
        with campaign.connect() as conn:
            assert current_targets(conn, CAMPAIGN_ID, Period.parse("2026-W11")) == []


class TestKpiActuals:
    def funnel(self) -> pd.DataFrame:
        rows = [
            ("2026-W11", "sms", "sme", "A", 100, 90, 9, 6, 6, 3, 2, 20000.0, 5.0, 900.0, 0.0),
            ("2026-W11", "sms", "farmer", "B", 50, 40, 4, 2, 2, 1, 1, 8000.0, 2.5, 300.0, 60.0),
            ("2026-W11", "phone", "sme", "A", 10, 8, 4, 4, 4, 2, 2, 50000.0, 80.0, 2000.0, 0.0),
        ]
        return pd.DataFrame(rows, columns=ROLLUP_COLUMNS)

    def overdue(self) -> pd.DataFrame:
        rows = [("sms", "sme", "A", 5, 4, 1), ("phone", "sme", "A", 2, 2, 0)]
        return pd.DataFrame(rows, columns=[*metrics.KEYS, *metrics.OVERDUE_COUNTS])

    def complaints(self) -> pd.DataFrame:
        rows = [("sms", "farmer", "B", 2)]
        return pd.DataFrame(rows, columns=[*metrics.KEYS, "complaints"])

    def test_campaign_channel_and_segment_scopes(self) -> None:
        actuals = kpi_actuals(self.funnel(), self.overdue(), self.complaints())
        scopes = list(zip(actuals["channel"], actuals["segment"], strict=True))
        assert scopes == [
            (None, None),
            ("phone", None),
            ("sms", None),
            (None, "farmer"),
            (None, "sme"),
        ]

    def test_campaign_figures_by_hand(self) -> None:
        total = kpi_actuals(self.funnel(), self.overdue(), self.complaints()).iloc[0]
        assert total["touches"] == 160
        assert total["approval_rate"] == pytest.approx(6 / 12)
        assert total["cac"] == pytest.approx(87.5 / 5)
        assert total["overdue_rate_30"] == pytest.approx(1 / 6)
        assert total["complaint_rate"] == pytest.approx(1000 * 2 / 138)

    def test_a_scope_without_complaints_has_rate_zero(self) -> None:
        actuals = kpi_actuals(self.funnel(), self.overdue(), self.complaints())
        phone = actuals[actuals["channel"] == "phone"].iloc[0]
        assert phone["complaint_rate"] == 0.0
        farmer = actuals[actuals["segment"] == "farmer"].iloc[0]
        assert pd.isna(farmer["overdue_rate_30"]), "no seasoned loans: no rate"


def test_rollup_week_names_sort_in_time_order() -> None:
    """The trailing-week logic compares week names as text: that must follow time."""
    start = datetime(2025, 12, 1)
    names = [Period.week_of((start + timedelta(weeks=n)).date()).name for n in range(60)]
    assert names == sorted(names)
