"""Gathering the weekly review, on a small hand-built world whose numbers are known.

Campaign `spring-test` has a stored check result for 2026-W12 written by hand (three
funnel rows, a few KPIs, an anomaly), rollups for its weeks, the period's adjustments and
SOP versions; `script-name` (named `<script>alert(1)</script>`) is active for one day of
the week and has no check result; `ended` stopped the day before the week began;
`late-start` starts on the week's last day. Every expected figure below is worked out by
hand from those rows.
"""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from sqlalchemy import Connection, Engine, func, insert, select

from pdca.models import Action, AuditEntry, CheckResult, Report, SopVersion, WeeklyRollup
from tasks.check import result as check_result
from tasks.check.result import FunnelRow
from tasks.common.periods import Period
from tasks.review.artifacts import summary_markdown
from tasks.review.review import (
    CampaignReview,
    Review,
    active_campaigns,
    asset_quality,
    channel_cac_roi,
    data_quality_summary,
    funnel_stages,
    measured_lines,
    record_review,
    render_review,
    review_campaign,
    review_recipients,
    sop_changes,
    stored_checks,
    trend_week_names,
)
from tests.scenario import CAMPAIGN_ID, apply, spec_dict

PERIOD = Period.parse("2026-W12")
"""Monday 2026-03-16 to Sunday 2026-03-22; in Asia/Shanghai, 2026-03-15 16:00 UTC on."""
SCRIPT_ID, SCRIPT_NAME = "script-name", "<script>alert(1)</script>"

FUNNEL = [
    {
        "channel": "sms",
        "segment": "sme",
        "variant": "A",
        "touches": 1000,
        "delivered": 900,
        "responded": 90,
        "applications": 18,
        "approved": 9,
        "disbursements": 6,
        "disbursed_amount": 60_000.0,
        "cost": 50.0,
        "net_interest": 1_200.0,
        "expected_loss": 100.0,
    },
    {
        "channel": "phone",
        "segment": "sme",
        "variant": "B",
        "touches": 100,
        "delivered": 80,
        "responded": 40,
        "applications": 12,
        "approved": 6,
        "disbursements": 4,
        "disbursed_amount": 80_000.0,
        "cost": 800.0,
        "net_interest": 2_000.0,
        "expected_loss": 0.0,
    },
    {
        "channel": "sms",
        "segment": "salaried",
        "variant": "holdout",
        "touches": 0,
        "delivered": 0,
        "responded": 0,
        "applications": 2,
        "approved": 1,
        "disbursements": 1,
        "disbursed_amount": 5_000.0,
        "cost": 0.0,
        "net_interest": 100.0,
        "expected_loss": 0.0,
    },
]
"""Totals: 1,100 touches, 980 delivered, 130 responded, 32 applications, 16 approved,
11 disbursements. sms: cost 50, 7 disbursements, net interest 1,300, loss 100;
phone: cost 800, 4 disbursements, net interest 2,000."""

CAMPAIGN = {"channel": None, "segment": None}


def kpi(metric, actual, target, status, scope=CAMPAIGN):
    variance = None if target is None else actual - target
    return {
        "metric": metric,
        "scope": dict(scope),
        "target": target,
        "actual": actual,
        "variance": variance,
        "variance_pct": None if target is None else variance / target,
        "status": status,
    }


RESULT = {
    "campaign": CAMPAIGN_ID,
    "period": PERIOD.name,
    "trusted": False,
    "data_quality": {
        "trusted": False,
        "suites": [
            {"name": "touches", "success": True, "failed": [], "examples": {}},
            {
                "name": "decisions",
                "success": False,
                "failed": ["reject_reason: must not be null"],
                "examples": {"reject_reason": ["13800000000", "c1@example.com"]},
            },
        ],
        "quarantine": [
            {
                "feed": "decisions",
                "rows_in": 100,
                "rows_quarantined": 5,
                "share": 0.05,
                "max_share": 0.01,
                "success": False,
            },
            {
                "feed": "touches",
                "rows_in": 1000,
                "rows_quarantined": 0,
                "share": 0.0,
                "max_share": 0.01,
                "success": True,
            },
        ],
    },
    "funnel": FUNNEL,
    "kpis": [
        kpi("touches", 1100, 1000.0, "on_track"),
        kpi("cac", 77.27, 70.0, "at_risk"),
        kpi("overdue_rate_30", 0.04, 0.03, "off_track"),
        kpi("overdue_rate_30", 0.02, 0.03, "on_track", {"channel": "sms", "segment": None}),
        kpi("approval_rate", 0.5, 0.5, "on_track", {"channel": None, "segment": "sme"}),
    ],
    "anomalies": [
        {
            "metric": "application_rate",
            "scope": {},
            "week": "2026-W12",
            "value": 0.0327,
            "baseline_mean": 0.02,
            "baseline_std": 0.002,
            "z": 6.3,
        }
    ],
    "experiments": [],
    "bottleneck": {
        "stage": "approval",
        "metric": "approval_rate",
        "actual": 0.5,
        "reference": 0.6,
        "reference_kind": "target",
        "gap_pct": -1 / 6,
        "diagnosis": "Many applications, low approval: the targeting is off.",
        "note": None,
        "evidence": [],
    },
    "reject_reasons": [
        {"channel": None, "reason": "low_score", "count": 10, "share": 0.625},
        {"channel": "sms", "reason": "low_score", "count": 8, "share": 0.8},
    ],
}


CHECK = check_result.CheckResult.from_json(RESULT)
"""The stored result as the review reads it."""
FUNNEL_ROWS = CHECK.funnel


def rollup(week: str, channel: str, touches: int, delivered: int, applications: int) -> dict:
    return {
        "campaign_id": CAMPAIGN_ID,
        "week": week,
        "channel": channel,
        "segment": "sme",
        "variant": "A",
        "touches": touches,
        "delivered": delivered,
        "responded": 0,
        "applications": applications,
        "approved": 0,
        "disbursements": 0,
        "disbursed_amount": 0.0,
        "cost": 0.0,
        "net_interest": 0.0,
        "expected_loss": 0.0,
        "computed_at": datetime(2026, 3, 23),
    }


def action(period: str, type_: str, status: str, **extra) -> dict:
    return {
        "campaign_id": CAMPAIGN_ID,
        "period": period,
        "type": type_,
        "scope": {"channel": "sms"},
        "params": {},
        "rationale": f"{type_} because",
        "expected_impact": "",
        "status": status,
        "decided_by": None,
        "comment": None,
        **extra,
    }


def sop(version: int, created_at: datetime, entries: list) -> dict:
    return {
        "campaign_id": CAMPAIGN_ID,
        "version": version,
        "created_at": created_at,
        "body": f"SOP v{version}",
        "changelog": entries,
    }


@pytest.fixture
def world(engine: Engine) -> dict[str, int]:
    """The four campaigns and spring-test's stored week; returns the action ids."""
    with engine.begin() as conn:
        apply(conn, spec_dict())
        apply(
            conn,
            spec_dict(
                SCRIPT_ID,
                name=SCRIPT_NAME,
                start="2026-03-16",
                end="2026-03-16",
                recipients=["risk-head@example.com", "OPS-LEAD@example.com"],
            ),
        )
        apply(conn, spec_dict("ended", start="2026-01-05", end="2026-03-15", recipients=[]))
        apply(
            conn,
            spec_dict("late-start", start="2026-03-22", end="2026-04-30", recipients=["x@y.z"]),
        )
        conn.execute(
            insert(CheckResult).values(
                campaign_id=CAMPAIGN_ID,
                period=PERIOD.name,
                checked_at=datetime(2026, 3, 23, 1),
                trusted=False,
                result=RESULT,
            )
        )
        conn.execute(
            insert(WeeklyRollup),
            [
                rollup("2026-W10", "sms", 500, 400, 8),
                rollup("2026-W11", "sms", 600, 500, 10),
                rollup("2026-W11", "phone", 100, 100, 10),
                rollup("2026-W12", "sms", 1000, 900, 18),
            ],
        )
        ids = list(
            conn.execute(
                insert(Action).returning(Action.action_id),
                [
                    action(
                        "2026-W12",
                        "reallocate_budget",
                        "approved",
                        decided_by="ops-lead",
                        comment="ok",
                    ),
                    action("2026-W12", "shift_window", "proposed"),
                    action("2026-W11", "hold", "approved", decided_by="ops-lead"),
                ],
            ).scalars()
        )
        v1 = {"version": 1, "date": "2026-03-18", "action": "initial", "reason": "the spec"}
        v2 = {
            "version": 2,
            "date": "2026-03-24",
            "action": f"reallocate_budget (channel=sms): share=0.1, action {ids[0]}",
            "reason": "sms earns more",
        }
        v3 = {
            "version": 3,
            "date": "2026-03-25",
            "action": f"hold (campaign), action {ids[2]}",
            "reason": "late",
        }
        conn.execute(
            insert(SopVersion),
            [
                sop(1, datetime(2026, 3, 18, 2), [v1]),
                sop(2, datetime(2026, 3, 24, 2), [v1, v2]),
                sop(3, datetime(2026, 3, 25, 2), [v1, v2, v3]),
            ],
        )
    return {"approved": ids[0], "proposed": ids[1], "other_week": ids[2]}


def gathered(conn: Connection) -> list[CampaignReview]:
    campaigns = active_campaigns(conn, PERIOD)
    stored = stored_checks(conn, [c.campaign_id for c in campaigns], PERIOD.name)
    weeks = trend_week_names(PERIOD, 8)
    return [
        review_campaign(conn, campaign, PERIOD, stored.get(campaign.campaign_id), weeks)
        for campaign in campaigns
    ]


class TestWhichCampaigns:
    def test_dates_overlapping_the_period_inclusive(self, engine: Engine, world) -> None:
        with engine.connect() as conn:
            found = [c.campaign_id for c in active_campaigns(conn, PERIOD)]
        assert found == ["late-start", SCRIPT_ID, CAMPAIGN_ID]

    def test_stored_checks(self, engine: Engine, world) -> None:
        with engine.connect() as conn:
            stored = stored_checks(conn, [CAMPAIGN_ID, SCRIPT_ID], PERIOD.name)
            assert stored_checks(conn, [], PERIOD.name) == {}
        assert list(stored) == [CAMPAIGN_ID]
        assert stored[CAMPAIGN_ID][0].kpis[0].metric == "touches"

    def test_recipients_are_the_union_once_each(self, engine: Engine, world) -> None:
        with engine.connect() as conn:
            campaigns = active_campaigns(conn, PERIOD)
        recipients = review_recipients(campaigns)
        assert [address.lower() for address in recipients] == [
            "ops-lead@example.com",
            "risk-head@example.com",
            "x@y.z",
        ], "one address per person, whatever its case"
        assert review_recipients([]) == []


class TestCampaignReview:
    def test_funnel_stages_from_the_check_result(self) -> None:
        stages = {stage["label"]: stage for stage in funnel_stages(FUNNEL_ROWS)}
        assert [stage["count"] for stage in stages.values()] == [1100, 980, 130, 32, 16, 11]
        assert stages["touches"]["rate"] is None
        assert stages["delivered"]["rate"] == pytest.approx(980 / 1100)
        assert stages["responded"]["rate"] == pytest.approx(130 / 980)
        assert stages["applications"]["rate"] == pytest.approx(32 / 980)
        assert stages["approved"]["rate"] == pytest.approx(0.5)
        assert stages["disbursements"]["rate"] == pytest.approx(11 / 16)

    def test_whole_counts_are_ints_for_the_templates(self) -> None:
        """A count summed as a float (70.0) is shown as 70, never 70.0."""
        rows = [
            FunnelRow.from_json({**row, "responded": float(row["responded"])}) for row in FUNNEL
        ]
        stages = {stage["label"]: stage for stage in funnel_stages(rows)}
        assert type(stages["responded"]["count"]) is int and stages["responded"]["count"] == 130

    def test_empty_funnel(self) -> None:
        stages = funnel_stages([])
        assert [stage["count"] for stage in stages] == [0] * 6
        assert all(stage["rate"] is None for stage in stages)

    def test_channel_cac_and_roi(self) -> None:
        channels = {row["channel"]: row for row in channel_cac_roi(FUNNEL_ROWS)}
        assert list(channels) == ["phone", "sms"]
        assert channels["sms"]["applications"] == 20 and channels["sms"]["disbursements"] == 7
        assert channels["sms"]["cac"] == pytest.approx(50 / 7)
        assert channels["sms"]["roi"] == pytest.approx((1300 - 50 - 100) / 50)
        assert channels["phone"]["cac"] == pytest.approx(200.0)
        assert channels["phone"]["roi"] == pytest.approx((2000 - 800) / 800)

    def test_a_channel_without_disbursements_has_no_cac(self) -> None:
        row = FunnelRow.from_json({**FUNNEL[0], "disbursements": 0})
        assert channel_cac_roi([row])[0]["cac"] is None

    def test_asset_quality_against_the_risk_limit(self) -> None:
        rows = asset_quality(CHECK.kpis, 0.03)
        assert [(row["actual"], row["above_limit"]) for row in rows] == [
            (0.04, True),
            (0.02, False),
        ]
        assert [row["status"] for row in rows] == ["off_track", "on_track"]
        assert asset_quality(CHECK.kpis, None)[0]["above_limit"] is None

    def test_data_quality_without_the_failing_values(self) -> None:
        summary = data_quality_summary(CHECK)
        assert summary["trusted"] is False and summary["suites"] == 2
        assert summary["suites_failed"] == [
            {"name": "decisions", "failed": "reject_reason: must not be null"}
        ]
        assert [entry["feed"] for entry in summary["quarantine_failed"]] == ["decisions"]
        assert "13800000000" not in str(summary) and "c1@example.com" not in str(summary)

    def test_the_whole_campaign(self, engine: Engine, world) -> None:
        with engine.connect() as conn:
            reviews = {review.campaign_id: review for review in gathered(conn)}
        spring = reviews[CAMPAIGN_ID]
        assert spring.checked and spring.trusted is False
        assert spring.checked_at == datetime(2026, 3, 23, 1)
        assert spring.status_counts() == {"on_track": 1, "at_risk": 1, "off_track": 1}
        assert [k.metric for k in spring.campaign_kpis()] == [
            "touches",
            "cac",
            "overdue_rate_30",
        ]
        assert spring.bottleneck.stage == "approval"
        assert spring.reject_reasons == [CHECK.reject_reasons[0]]
        assert spring.reject_reasons[0].to_json() == RESULT["reject_reasons"][0]
        assert len(spring.anomalies) == 1

    def test_trend_from_the_rollups_from_the_campaigns_first_week(
        self, engine: Engine, world
    ) -> None:
        """Trailing weeks before the campaign started (W04 to W09) are left out."""
        with engine.connect() as conn:
            trend = {review.campaign_id: review for review in gathered(conn)}[CAMPAIGN_ID].trend
        assert list(trend["week"]) == ["2026-W10", "2026-W11", "2026-W12"]
        assert list(trend["touches"]) == [500, 700, 1000]
        assert list(trend["application_rate"]) == pytest.approx([8 / 400, 20 / 600, 18 / 900])

    def test_a_week_without_rollups_has_zero_counts_and_no_rates(
        self, engine: Engine, world
    ) -> None:
        with engine.connect() as conn:
            script = {review.campaign_id: review for review in gathered(conn)}[SCRIPT_ID]
        assert list(script.trend["week"]) == ["2026-W12"]
        assert script.trend["touches"].tolist() == [0]
        assert math.isnan(script.trend["application_rate"].iloc[0])

    def test_the_periods_actions_only(self, engine: Engine, world) -> None:
        with engine.connect() as conn:
            spring = {review.campaign_id: review for review in gathered(conn)}[CAMPAIGN_ID]
        assert [
            (a["type"], a["status"], a["decided_by"], a["comment"]) for a in spring.actions
        ] == [
            ("reallocate_budget", "approved", "ops-lead", "ok"),
            ("shift_window", "proposed", None, None),
        ]
        assert {a["action_id"] for a in spring.actions} == {world["approved"], world["proposed"]}

    def test_sop_versions_made_in_or_for_the_period(self, engine: Engine, world) -> None:
        """v1 was created during the week; v2 applies one of the week's actions (after the
        week); v3 applies another week's action."""
        with engine.connect() as conn:
            spring = {review.campaign_id: review for review in gathered(conn)}[CAMPAIGN_ID]
            campaign = next(
                c for c in active_campaigns(conn, PERIOD) if c.campaign_id == CAMPAIGN_ID
            )
            assert sop_changes(conn, campaign, PERIOD, []) == spring.sop_changes[:1]
        assert [sop["version"] for sop in spring.sop_changes] == [1, 2]
        assert spring.sop_changes[1]["changes"] == [
            f"v2 2026-03-24: reallocate_budget (channel=sms): share=0.1, action "
            f"{world['approved']} — sms earns more"
        ]

    def test_a_campaign_without_a_check_result_says_so(self, engine: Engine, world) -> None:
        with engine.connect() as conn:
            script = {review.campaign_id: review for review in gathered(conn)}[SCRIPT_ID]
        assert not script.checked and script.kpis == [] and script.funnel == []
        assert "no check result for 2026-W12" in script.note
        assert script.status_counts() == {"on_track": 0, "at_risk": 0, "off_track": 0}


class TestRendering:
    @pytest.fixture
    def review(self, engine: Engine, world) -> Review:
        with engine.connect() as conn:
            return Review(
                PERIOD, gathered(conn), trend_week_names(PERIOD, 8), datetime(2026, 3, 23)
            )

    @pytest.fixture
    def measured(self) -> list[str]:
        from pdca.settings import Settings

        return measured_lines(PERIOD, Settings())

    def test_html_escapes_the_campaign_name(self, review: Review, measured) -> None:
        page = render_review(review, [], {}, measured=measured)
        assert SCRIPT_NAME not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert page.count('id="kpis"') == 1, "one summary of the KPIs (no second KPI block)"
        assert 'id="kpi-table-spring-test"' in page

    def test_html_units(self, review: Review, measured) -> None:
        """ROI a multiple, no CAC, cost or ROI for a channel without touches."""
        spring = next(part for part in review.campaigns if part.campaign_id == CAMPAIGN_ID)
        spring.channels.append(
            {
                "channel": "branch",
                "touches": 0,
                "delivered": 0,
                "applications": 2,
                "disbursements": 1,
                "disbursed_amount": 5_000.0,
                "cost": 0.0,
                "cac": 0.0,
                "roi": None,
            }
        )
        page = render_review(review, [], {}, measured=measured)
        channels = page[page.index('<table class="data-table channels">') :]
        channels = channels[: channels.index("</table>")]
        branch = channels[channels.index("<td>branch</td>") :].split("</tr>")[0]
        assert branch.count('<td class="num">—</td>') == 3, branch
        assert "23.0×" in channels and "2300" not in channels

    def test_html_has_the_status_colours(self, review: Review, measured) -> None:
        page = render_review(review, [], {}, measured=measured)
        for status in ("on_track", "at_risk", "off_track"):
            assert f"badge-{status}" in page
        assert "#cf222e" in page and "#9a6700" in page and "#1a7f37" in page

    def test_html_says_what_was_measured(self, review: Review, measured) -> None:
        page = render_review(review, [], {}, measured=measured)
        assert "What was measured" in page and "CAC = cost / disbursements" in page
        assert "untrusted" in page and "reject_reason: must not be null" in page

    def test_text_version(self, review: Review, measured) -> None:
        text = render_review(review, [], {}, measured=measured, template="weekly_review.txt.j2")
        assert text.startswith("Weekly review 2026-W12\n")
        assert SCRIPT_NAME in text, "plain text needs no escaping"
        assert "off track: overdue_rate_30 (campaign) 4.0 % vs target 3.0 %" in text
        assert "Funnel: touches 1,100 > delivered 980 > responded 130" in text
        assert "sms: cost 50.00, CAC 7.14, ROI 23.0×" in text, "ROI as a multiple"
        head = text[: text.index("DETAIL")]
        assert "HOW WE ARE DOING" in head and "EXCEPTIONS, BY WHAT THEY COST OR RISK" in head
        assert "DECISIONS WAITING FOR YOU" in head and "WHAT CHANGED SINCE LAST WEEK" in head
        assert "reallocate_budget (channel=sms): approved by ops-lead" in text

    def test_markdown_summary_escapes_names(self, review: Review, tmp_path) -> None:
        markdown = summary_markdown(review, tmp_path / "r.html")
        assert SCRIPT_NAME not in markdown and "&lt;script&gt;" in markdown
        assert "| UNTRUSTED | 1 | 1 | 1 | 1 | approval | 2 |" in markdown

    def test_markdown_says_what_the_emails_first_screen_says(self, review: Review, tmp_path):
        markdown = summary_markdown(review, tmp_path / "r.html")
        assert "| Channel | cac | 70.00 | 77.27 | at risk |" in markdown
        assert "| Risk | overdue_rate_30 | 3.0 % | 4.0 % | off track |" in markdown
        exceptions = markdown[markdown.index("## Exceptions") : markdown.index("## Decisions")]
        assert exceptions.index("cac 77.27") < exceptions.index("overdue_rate_30 4.0 %")
        assert "`pdca actions approve 2 --by NAME`" in markdown
        assert "action 1 reallocate_budget (channel=sms): approved by ops-lead" in markdown


class TestRecord:
    def test_a_rerun_replaces_the_periods_row(self, engine: Engine, world, tmp_path) -> None:
        with engine.connect() as conn:
            record_review(conn, PERIOD.name, tmp_path / "a.html", "test")
            record_review(conn, PERIOD.name, tmp_path / "b.html", "test")
            rows = conn.execute(select(Report.kind, Report.campaign_id, Report.path)).all()
            audits = conn.execute(
                select(func.count()).where(AuditEntry.action == "review.write")
            ).scalar_one()
        assert rows == [("weekly_review", None, str(tmp_path / "b.html"))]
        assert audits == 2


class TestSharedMacros:
    """reports/macros.html.j2, which the adjustment report imports too: signatures stable."""

    @staticmethod
    def render(source: str, **context) -> str:
        from tasks.common.reports import environment

        template = '{% import "macros.html.j2" as m %}' + source
        return environment().from_string(template).render(**context)

    @pytest.mark.parametrize(
        ("status", "colour", "label"),
        [
            ("on_track", "#1a7f37", "on track"),
            ("at_risk", "#9a6700", "at risk"),
            ("off_track", "#cf222e", "off track"),
            ("no_target", "#57606a", "no target"),
            (None, "#57606a", "n/a"),
        ],
    )
    def test_status_badge(self, status, colour: str, label: str) -> None:
        html = self.render("{{ m.status_badge(status) }}", status=status)
        assert f"color: {colour}" in html and f">{label}</span>" in html

    def test_data_table(self) -> None:
        rows = [
            {"name": "<b>x</b>", "scope": {"channel": "sms", "segment": None}, "n": 1234567},
            {"name": "y", "scope": {}, "n": None},
        ]
        columns = [("name", "Name"), ("scope.channel", "Channel"), ("n", "Count")]
        html = self.render(
            "{{ m.data_table(rows, columns, caption='Rows & more') }}", rows=rows, columns=columns
        )
        assert "<caption>Rows &amp; more</caption>" in html
        assert "<th>Name</th><th>Channel</th><th>Count</th>" in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
        assert ">sms</td>" in html and ">1,234,567</td>" in html

    def test_data_table_without_rows(self) -> None:
        html = self.render("{{ m.data_table([], [('a', 'A')]) }}")
        assert 'colspan="1"' in html and ">none</td>" in html

    def test_kpi_table(self) -> None:
        html = self.render("{{ m.kpi_table(kpis) }}", kpis=RESULT["kpis"])
        assert '<table class="kpi-table" id="kpi-table">' in html
        assert html.count("<tr class=") == len(RESULT["kpis"])
        assert ">4.0 %</td>" in html and ">3.0 %</td>" in html, "overdue_rate_30 as a percentage"
        assert ">+33.3 %</td>" in html, "variance_pct of overdue_rate_30"
        assert ">channel=sms</td>" in html and ">campaign</td>" in html

    def test_experiment_table_says_which_test_decides(self) -> None:
        test = {
            "metric": "application_rate",
            "control": "A",
            "treatment": "B",
            "control_n": 1000,
            "control_rate": 0.02,
            "treatment_n": 1000,
            "treatment_rate": 0.0458,
            "lift": 0.02576,
            "ci_low": 0.0047,
            "ci_high": 0.0468,
            "p_value": 0.0969,
            "p_value_adjusted": 0.2908,
            "srm_p_value": 0.5,
            "sequential_p_value": 0.3,
            "sequential_p_value_adjusted": 0.6,
            "cs_low": -0.01,
            "cs_high": 0.06,
            "decision": "inconclusive",
        }
        html = self.render("{{ m.experiment_table([test]) }}", test=test)
        assert "Decides: sequential p (Holm)" in html and "Reference only: fixed-horizon" in html
        assert "<strong>p 0.600</strong> · [-1.0 %, 6.0 %]" in html
        assert ">2.6 %</td>" in html, "the lift in the metric's unit, not 0.02576"
        assert "p 0.291 · [0.5 %, 4.7 %]" in html
