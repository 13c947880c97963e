"""The plan flow from the user's side: targets and a budget split from real-looking history.

The history is the demo's synthetic campaign (pdca.synthetic.demo_history: 3,000 customers,
six weeks), loaded through the feed importers once per session and back end (tests/worlds.py;
the act flow's tests load the same world) and copied for this module. The period planned is
the first week after the history, inside the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, insert, select

from flows.plan import plan_flow
from pdca.db import make_engine
from pdca.errors import UserError
from pdca.models import (
    Action,
    Application,
    AuditEntry,
    Budget,
    Complaint,
    Customer,
    Decision,
    Loan,
    Plan,
    Repayment,
    Target,
    Touch,
)
from pdca.synthetic.demo_history import CAMPAIGN_ID, SEGMENTS
from tasks.common.campaigns import CampaignSpec, load_spec
from tasks.common.metrics import LOWER_IS_BETTER
from tasks.common.periods import Period
from tasks.common.value_metrics import NEW_KPIS
from tasks.plan.plan import period_budget, send_days
from tests.scenario import (
    BACKENDS,
    apply,
    customer,
    database,
    local_utc,
    new_database,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    spec_dict,
    touch,
)
from tests.worlds import World

pytestmark = pytest.mark.usefixtures("prefect_env")

DEMO_START = date(2026, 3, 2)
WEEKS = 6
WORLD = World(customers=3000, weeks=WEEKS, start=DEMO_START)
PERIOD = Period.week_of(DEMO_START + timedelta(weeks=WEEKS))
"""The first week after the history (2026-W16), still inside the demo campaign."""
NEXT = PERIOD.shifted(1)
METRICS = (
    "touches",
    "delivered",
    "applications",
    "approval_rate",
    "disbursements",
    "disbursed_amount",
    "cac",
    "roi",
    "overdue_rate_30",
    "complaint_rate",
    *NEW_KPIS,
)
ALWAYS = ("touches", "delivered", "applications", "disbursements", "disbursed_amount")
ALWAYS += ("roi", "overdue_rate_30", "complaint_rate")
"""Metrics every channel gets; cac and approval_rate need loans and applications."""


@dataclass
class Planned:
    url: str
    engine: Engine
    spec: CampaignSpec
    first: dict
    second: dict


@pytest.fixture(scope="module", params=BACKENDS)
def planned(request, tmp_path_factory, demo_worlds) -> Planned:
    """The demo history loaded, and the week after it planned twice."""
    url = demo_worlds.database(request, tmp_path_factory.mktemp("plan-db"), request.param, WORLD)
    engine = make_engine(url)
    spec = load_spec(demo_worlds.feeds(WORLD).spec)
    with database(url):
        first = plan_flow(CAMPAIGN_ID, str(PERIOD))
        second = plan_flow(CAMPAIGN_ID, str(PERIOD))
    yield Planned(url, engine, spec, first, second)
    engine.dispose()


def by_scope(targets: list[dict]) -> dict[tuple, dict[str, dict]]:
    """(channel, segment) → metric → target row."""
    scopes: dict[tuple, dict[str, dict]] = {}
    for row in targets:
        scopes.setdefault((row["channel"], row["segment"]), {})[row["metric"]] = row
    return scopes


def budget_rows(engine: Engine, plan_id: int) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(Budget).where(Budget.plan_id == plan_id)).mappings().all()
    return {row["channel"]: dict(row) for row in rows}


class TestPlanOnDemoData:
    def test_targets_for_the_campaign_each_channel_and_segment(self, planned):
        scopes = by_scope(planned.first["targets"])
        campaign = scopes[(None, None)]
        assert sorted(campaign) == sorted(METRICS)
        for channel in planned.spec.channels:
            metrics = scopes.get((channel, None), {})
            missing = set(ALWAYS) - set(metrics)
            assert not missing, f"{channel}: no target for {sorted(missing)}"
            if "cac" not in metrics:  # no loans expected: cac has no value
                assert metrics["disbursements"]["target"] == 0, channel
            if "approval_rate" not in metrics:  # no applications in its history
                assert metrics["touches"]["evidence"]["history"]["applications"] in (0, None)
        segments = {segment for _, segment in scopes if segment is not None}
        assert segments == set(SEGMENTS)
        for segment in segments:
            assert set(ALWAYS) <= set(scopes[(None, segment)]), segment

    def test_overdue_target_never_above_the_cap(self, planned):
        cap = planned.spec.risk.max_overdue_rate_30
        overdue = [t for t in planned.first["targets"] if t["metric"] == "overdue_rate_30"]
        assert overdue
        for row in overdue:
            assert 0 <= row["target"] <= cap, row
            assert row["evidence"]["cap"] == cap
            assert row["lower_is_better"]

    def test_bands_and_evidence_on_every_target(self, planned):
        for row in planned.first["targets"]:
            assert (row["tolerance_warn"], row["tolerance_fail"]) == (0.05, 0.15), row
            assert row["lower_is_better"] == (row["metric"] in LOWER_IS_BETTER)
            evidence = row["evidence"]
            assert evidence["sources"] and evidence["sources"][0].startswith(CAMPAIGN_ID)
            assert "history" in evidence and evidence["growth"] == planned.spec.growth
        assert "own trailing weeks" in planned.first["inputs"]["history"][0]

    def test_budget_split_within_the_periods_budget(self, planned):
        budget = period_budget(planned.spec, PERIOD)
        rows = budget_rows(planned.engine, planned.first["plan_id"])
        assert sorted(rows) == sorted(planned.spec.channels)
        assert all(row["amount"] >= 0 for row in rows.values())
        assert sum(row["amount"] for row in rows.values()) <= budget + 1e-6
        assert sum(row["amount"] for row in rows.values()) > 0

    def test_budget_respects_daily_capacity(self, planned):
        assert planned.spec.daily_capacity, "the demo spec has a daily capacity"
        days = send_days(planned.spec, PERIOD)
        rows = budget_rows(planned.engine, planned.first["plan_id"])
        for channel, per_day in planned.spec.daily_capacity.items():
            assert rows[channel]["touches"] <= per_day * days, rows[channel]
            assert rows[channel]["daily_capacity"] == per_day

    def test_volume_targets_follow_the_split(self, planned):
        campaign = by_scope(planned.first["targets"])[(None, None)]
        touches = sum(row["touches"] for row in planned.first["budget"])
        assert campaign["touches"]["target"] == pytest.approx(touches)

    def test_replanning_makes_version_2_and_keeps_version_1(self, planned):
        assert (planned.first["version"], planned.second["version"]) == (1, 2)
        with planned.engine.connect() as conn:
            plans = conn.execute(
                select(Plan.plan_id, Plan.version, Plan.is_current)
                .where(Plan.campaign_id == CAMPAIGN_ID, Plan.period == str(PERIOD))
                .order_by(Plan.version)
            ).all()
            kept = conn.execute(
                select(Target.target_id).where(Target.plan_id == planned.first["plan_id"])
            ).all()
            audit = conn.execute(
                select(AuditEntry.detail).where(
                    AuditEntry.action == "plan.create",
                    AuditEntry.subject == f"{CAMPAIGN_ID}:{PERIOD}",
                )
            ).scalars()
            audited = sorted(detail["version"] for detail in audit)
        assert [(v, bool(c)) for _, v, c in plans] == [(1, False), (2, True)]
        assert len(kept) == len(planned.first["targets"]), "version 1 lost its targets"
        assert budget_rows(planned.engine, planned.first["plan_id"]), "version 1 lost its budget"
        assert audited == [1, 2]


# --- where the history comes from -------------------------------------------------------------


def new_campaign(engine: Engine, campaign_id: str, **overrides) -> CampaignSpec:
    """A campaign with no touches of its own, starting with the planned week."""
    spec = spec_dict(
        campaign_id,
        start=PERIOD.start.isoformat(),
        end=(PERIOD.start + timedelta(weeks=4) - timedelta(days=1)).isoformat(),
        channels=["phone", "sms", "im", "app_push", "email"],
        **overrides,
    )
    with engine.begin() as conn:
        return apply(conn, spec)


class TestHistorySources:
    def test_new_campaign_plans_from_the_same_products_history(self, planned):
        new_campaign(planned.engine, "sme-next")
        with database(planned.url):
            result = plan_flow("sme-next", str(PERIOD))
        (source,) = result["inputs"]["history"]
        assert source.startswith(CAMPAIGN_ID) and "same product (sme-revolving)" in source
        campaign = by_scope(result["targets"])[(None, None)]
        assert sorted(campaign) == sorted(METRICS)
        assert campaign["touches"]["target"] > 0

    def test_other_product_falls_back_to_any_history(self, planned):
        new_campaign(planned.engine, "farm-next", product="farm-seasonal")
        with database(planned.url):
            result = plan_flow("farm-next", str(PERIOD))
        (source,) = result["inputs"]["history"]
        assert source.startswith(CAMPAIGN_ID) and "no campaign of this product" in source

    def test_no_history_at_all_names_what_to_import(self, sqlite_url):
        engine = make_engine(sqlite_url)
        with engine.begin() as conn:
            apply(conn, spec_dict("lonely"))
        with database(sqlite_url), pytest.raises(UserError) as caught:
            plan_flow("lonely", "2026-W12")
        message = str(caught.value)
        assert "'lonely'" in message and "no history" in message
        assert "import touches" in message and "pdca import uci-bank" in message
        with engine.connect() as conn:
            assert conn.execute(select(Plan)).all() == [], "a plan was written"
        engine.dispose()


# --- approved actions feed the next plan -------------------------------------------------------


def approve(engine: Engine, campaign_id: str, kind: str, params: dict) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(Action)
            .values(
                campaign_id=campaign_id,
                period=str(PERIOD),
                type=kind,
                params=params,
                rationale="test",
                status="approved",
                decided_by="manager@example.com",
            )
            .returning(Action.action_id)
        ).scalar_one()


def record(engine: Engine, campaign_id: str, kind: str, status: str, scope: dict) -> int:
    """A guardrail's `pause` (status applied) or a `resume` of `scope`, as act stores them."""
    with engine.begin() as conn:
        return conn.execute(
            insert(Action)
            .values(
                campaign_id=campaign_id,
                period=str(PERIOD),
                type=kind,
                scope=scope,
                params={},
                rationale="test",
                status=status,
                decided_by="guardrail" if kind == "pause" else None,
            )
            .returning(Action.action_id)
        ).scalar_one()


def applied_to(engine: Engine, action_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(Action.applied_to_period).where(Action.action_id == action_id)
        ).scalar_one()


class TestApprovedActions:
    def test_reallocation_moves_budget_in_the_next_plan(self, planned):
        # 300 a week: the budget binds (not the channels' reach), so a shift can be honoured
        spec = new_campaign(planned.engine, "sme-shift", budget_total=1200)
        with database(planned.url):
            before = plan_flow("sme-shift", str(PERIOD))
        previous = {
            c: r["amount"] for c, r in budget_rows(planned.engine, before["plan_id"]).items()
        }
        action = approve(
            planned.engine,
            "sme-shift",
            "reallocate_budget",
            {"from_channel": "sms", "to_channel": "phone", "share": 0.5},
        )
        with database(planned.url):
            after = plan_flow("sme-shift", str(NEXT))
            later = plan_flow("sme-shift", str(NEXT.shifted(1)))
        now = {c: r["amount"] for c, r in budget_rows(planned.engine, after["plan_id"]).items()}
        scale = period_budget(spec, NEXT) / sum(previous.values())
        moved = 0.5 * previous["sms"] * scale
        assert previous["sms"] > 0
        assert now["sms"] <= previous["sms"] * scale - moved + 1e-6, (previous, now)
        assert now["phone"] >= previous["phone"] * scale + moved - 1e-6, (previous, now)
        assert after["inputs"]["applied_actions"] == [action]
        assert any(f"action {action}" in note for note in after["inputs"]["notes"])
        assert applied_to(planned.engine, action) == str(NEXT)
        assert later["inputs"]["applied_actions"] == [], "an action was applied twice"

    def test_retired_channel_gets_nothing(self, planned):
        new_campaign(planned.engine, "sme-retire")
        action = approve(planned.engine, "sme-retire", "retire_channel", {"channel": "im"})
        with database(planned.url):
            result = plan_flow("sme-retire", str(PERIOD))
        rows = budget_rows(planned.engine, result["plan_id"])
        assert rows["im"]["amount"] == 0 and rows["im"]["touches"] == 0
        assert all(rows[c]["amount"] > 0 for c in rows if c != "im"), rows
        channel_touches = by_scope(result["targets"])[("im", None)]["touches"]["target"]
        assert channel_touches == 0
        assert applied_to(planned.engine, action) == str(PERIOD)

    def test_a_retired_channel_stays_out_of_every_later_plan(self, planned):
        new_campaign(planned.engine, "sme-retired")
        approve(planned.engine, "sme-retired", "retire_channel", {"channel": "im"})
        with database(planned.url):
            plan_flow("sme-retired", str(PERIOD))
            later = plan_flow("sme-retired", str(NEXT))
        rows = budget_rows(planned.engine, later["plan_id"])
        assert rows["im"]["amount"] == 0 and rows["im"]["touches"] == 0, rows
        assert later["inputs"]["applied_actions"] == []
        assert any("retired channel" in note for note in later["inputs"]["notes"]), later

    def test_a_paused_channel_gets_nothing_until_its_resume_is_approved(self, planned):
        new_campaign(planned.engine, "sme-paused")
        pause = record(planned.engine, "sme-paused", "pause", "applied", {"channel": "im"})
        with database(planned.url):
            paused = plan_flow("sme-paused", str(PERIOD))
            still = plan_flow("sme-paused", str(NEXT))
        for plan in (paused, still):
            rows = budget_rows(planned.engine, plan["plan_id"])
            assert rows["im"]["amount"] == 0 and rows["im"]["touches"] == 0, rows
            assert all(rows[c]["amount"] > 0 for c in rows if c != "im"), rows
            assert any(f"pause action {pause}" in n for n in plan["inputs"]["notes"]), plan
            assert plan["inputs"]["applied_actions"] == [], "a pause is never used up"
        record(planned.engine, "sme-paused", "resume", "proposed", {"channel": "im"})
        with database(planned.url):
            proposed = plan_flow("sme-paused", str(NEXT))
        assert budget_rows(planned.engine, proposed["plan_id"])["im"]["amount"] == 0
        record(planned.engine, "sme-paused", "resume", "approved", {"channel": "im"})
        with database(planned.url):
            resumed = plan_flow("sme-paused", str(NEXT))
        assert budget_rows(planned.engine, resumed["plan_id"])["im"]["amount"] > 0

    def test_a_shift_into_a_paused_channel_waits_for_the_resume(self, planned):
        new_campaign(planned.engine, "sme-wait", budget_total=1200)
        with database(planned.url):
            plan_flow("sme-wait", str(PERIOD))
        shift = approve(
            planned.engine,
            "sme-wait",
            "reallocate_budget",
            {"from_channel": "sms", "to_channel": "im", "share": 0.5},
        )
        record(planned.engine, "sme-wait", "pause", "applied", {"channel": "im"})
        with database(planned.url):
            result = plan_flow("sme-wait", str(NEXT))
        assert budget_rows(planned.engine, result["plan_id"])["im"]["amount"] == 0
        assert applied_to(planned.engine, shift) is None, "applied while its target is paused"
        assert any("waits: im is paused" in n for n in result["inputs"]["notes"]), result

    def test_unapproved_actions_change_nothing(self, planned):
        new_campaign(planned.engine, "sme-proposed")
        with planned.engine.begin() as conn:
            conn.execute(
                insert(Action).values(
                    campaign_id="sme-proposed",
                    period=str(PERIOD),
                    type="retire_channel",
                    params={"channel": "im"},
                    rationale="test",
                    status="proposed",
                )
            )
        with database(planned.url):
            result = plan_flow("sme-proposed", str(PERIOD))
        assert result["inputs"]["applied_actions"] == []
        assert budget_rows(planned.engine, result["plan_id"])["im"]["amount"] > 0


# --- each scope's targets from its own history -------------------------------------------------

OWN_RATES = "own-rates"
OWN_PERIOD = "2026-W10"
"""Planned from the trailing weeks 2026-W02..W09, where the whole history lies (January)."""
GROWTH = 1.1
COST = {"sms": 0.05, "phone": 8.0}
HISTORY = {
    "sme": {
        "touches": {"sms": 300, "phone": 100},
        "applied": {"sms": 60, "phone": 20, "branch": 8},
        "loans": {"sms": 48, "phone": 16, "branch": 6},
        "amount": 50_000.0,
        "complaints": {"sms": 5, "phone": 1},
    },
    "student": {
        "touches": {"sms": 300, "phone": 100},
        "applied": {"sms": 12, "phone": 4, "partner": 4},
        "loans": {"sms": 6, "phone": 2, "partner": 2},
        "amount": 5_000.0,
        "complaints": {"sms": 2},
    },
    "retiree": {
        "touches": {"sms": 3, "phone": 1},
        "applied": {"sms": 1},
        "loans": {"sms": 1},
        "amount": 200_000.0,
        "complaints": {},
    },
}
"""Each segment's January: touches per channel, applications and loans per channel they
came through (branch and partner: customers the campaign reached by sms), one loan size.
Within a segment every touch channel yields the same per touch, and every channel reaches
the segments in the same proportions, so a segment's targets per planned touch are exactly
its own history's per touch. The retiree segment has 4 touches: too little history. One
SME loan is 30+ days overdue (SME: 1 of 70 seasoned loans; the campaign: 1 of 81)."""
APR, FTP = 12.0, 0.03


def history_rows(segment: str, plan: dict) -> dict[str, list[dict]]:
    """One segment's customers, touches, applications, decisions, loans, repayments and
    complaints, as the feeds would have loaded them."""
    rows: dict[str, list[dict]] = {name: [] for name in ("customers", "touches", "applications")}
    rows.update(decisions=[], loans=[], repayments=[], complaints=[])
    reached = {}
    for channel, count in plan["touches"].items():
        reached[channel] = [f"{segment}-{channel}-{n:03d}" for n in range(count)]
        for cid in reached[channel]:
            rows["customers"].append(customer(cid, segment=segment))
            sent = local_utc(date(2026, 1, 6), 12)
            rows["touches"].append(
                touch(f"t-{cid}", cid, sent, campaign_id=OWN_RATES, channel=channel)
                | {"cost": COST[channel]}
            )
    taken = dict.fromkeys(reached, 0)
    for channel, count in plan["applied"].items():
        source = channel if channel in reached else "sms"
        applicants = reached[source][taken[source] : taken[source] + count]
        taken[source] += count
        for n, cid in enumerate(applicants):
            approved = n < plan["loans"].get(channel, 0)
            rows["applications"].append(
                {
                    "application_id": f"a-{cid}",
                    "customer_id": cid,
                    "campaign_id": OWN_RATES,
                    "channel": channel,
                    "applied_at": local_utc(date(2026, 1, 8), 12),
                    "product_code": "sme-revolving",
                    "amount_requested": plan["amount"],
                }
            )
            rows["decisions"].append(
                {
                    "application_id": f"a-{cid}",
                    "decided_at": local_utc(date(2026, 1, 9), 12),
                    "decision": "approved" if approved else "rejected",
                    "reject_reason": None if approved else "score",
                    "approved_amount": plan["amount"] if approved else None,
                    "apr": APR if approved else None,
                }
            )
            if approved:
                overdue = segment == "sme" and channel == "sms" and n == 0
                rows["loans"].append(
                    {
                        "loan_id": f"l-{cid}",
                        "application_id": f"a-{cid}",
                        "disbursed_at": local_utc(date(2026, 1, 12), 12),
                        "amount": plan["amount"],
                        "apr": APR,
                        "term_months": 12,
                    }
                )
                rows["repayments"].append(
                    {
                        "loan_id": f"l-{cid}",
                        "as_of": date(2026, 2, 20),
                        "dpd": 45 if overdue else 0,
                        "outstanding": plan["amount"],
                    }
                )
    for channel, count in plan["complaints"].items():
        for cid in reached[channel][-count:]:
            rows["complaints"].append(
                {
                    "complaint_id": f"k-{cid}",
                    "customer_id": cid,
                    "campaign_id": OWN_RATES,
                    "received_at": local_utc(date(2026, 1, 10), 12),
                    "category": "too_many_messages",
                }
            )
    return rows


@pytest.fixture(scope="module", params=BACKENDS)
def own_rates(request, tmp_path_factory) -> dict:
    """The January history of HISTORY loaded, and 2026-W10 planned."""
    url = new_database(request, tmp_path_factory.mktemp("own-rates"), request.param)
    engine = make_engine(url)
    models = {
        "customers": Customer,
        "touches": Touch,
        "applications": Application,
        "decisions": Decision,
        "loans": Loan,
        "repayments": Repayment,
        "complaints": Complaint,
    }
    with engine.begin() as conn:
        spec = spec_dict(
            OWN_RATES,
            start="2026-01-05",
            channels=["sms", "phone"],
            budget_total=20_000,
            growth=GROWTH,
        )
        apply(conn, spec)
        for segment, plan in HISTORY.items():
            for table, rows in history_rows(segment, plan).items():
                if rows:
                    conn.execute(insert(models[table]), rows)
    # complaints per channel from a few hundred delivered touches: a small world
    with pytest.MonkeyPatch.context() as patch, database(url):
        patch.setenv("PDCA_PLAN_MIN_HISTORY_DELIVERED", "200")
        result = plan_flow(OWN_RATES, OWN_PERIOD)
    engine.dispose()
    return result


def own(segment: str, what: str) -> float:
    """A segment's own history total of `what` (every channel, branch and partner too)."""
    plan = HISTORY[segment]
    if what == "touches":
        return sum(plan["touches"].values())
    if what == "applications":
        return sum(plan["applied"].values())
    loans = sum(plan["loans"].values())
    per_loan = {"disbursements": 1, "disbursed_amount": plan["amount"]}
    per_loan["net"] = plan["amount"] * (APR / 100 - FTP)
    return loans * per_loan[what]


class TestTargetsFromOwnHistory:
    def test_segments_follow_their_own_rates(self, own_rates):
        scopes = by_scope(own_rates["targets"])
        for segment in ("sme", "student"):
            targets = scopes[(None, segment)]
            touches = targets["touches"]["target"]
            assert touches > 0
            for metric in ("applications", "disbursements", "disbursed_amount"):
                expected = GROWTH * own(segment, metric) / own(segment, "touches")
                assert targets[metric]["target"] / touches == pytest.approx(expected), (
                    segment,
                    metric,
                )
                assert targets[metric]["evidence"]["basis"] == "own"
                assert "fallback" not in targets[metric]["evidence"]
        sme, student = scopes[(None, "sme")], scopes[(None, "student")]
        # a student's loans are a tenth of an SME's and seven times rarer per touch
        per_touch = {
            name: scope["disbursed_amount"]["target"] / scope["touches"]["target"]
            for name, scope in (("sme", sme), ("student", student))
        }
        assert per_touch["sme"] == pytest.approx(70 * per_touch["student"])
        assert student["cac"]["target"] == pytest.approx(7 * sme["cac"]["target"])

    def test_segment_cac_and_roi_are_their_own(self, own_rates):
        scopes = by_scope(own_rates["targets"])
        planned = {row["channel"]: row["touches"] for row in own_rates["budget"]}
        assert all(planned[c] > 0 for c in COST), planned
        cost_per_touch = sum(COST[c] * planned[c] for c in COST) / sum(planned.values())
        campaign = scopes[(None, None)]
        for segment in ("sme", "student"):
            targets = scopes[(None, segment)]
            loans = GROWTH * own(segment, "disbursements") / own(segment, "touches")
            net = GROWTH * own(segment, "net") / own(segment, "touches")
            assert targets["cac"]["target"] == pytest.approx(cost_per_touch / loans)
            roi = (net - cost_per_touch) / cost_per_touch
            assert targets["roi"]["target"] == pytest.approx(roi)
            assert targets["cac"]["target"] != pytest.approx(campaign["cac"]["target"])

    def test_a_segment_with_too_little_history_falls_back_and_says_so(self, own_rates):
        scopes = by_scope(own_rates["targets"])
        retiree, campaign = scopes[(None, "retiree")], scopes[(None, None)]
        share = retiree["touches"]["target"] / campaign["touches"]["target"]
        for metric in ("applications", "disbursed_amount"):
            assert retiree[metric]["target"] == pytest.approx(share * campaign[metric]["target"])
        for metric in ("touches", "disbursed_amount", "cac"):
            evidence = retiree[metric]["evidence"]
            assert evidence["basis"] == "campaign", metric
            assert "plan_min_history_touches (200)" in evidence["fallback"]
        complaints = retiree["complaint_rate"]["evidence"]
        assert complaints["basis"] == "campaign"
        assert "plan_min_history_delivered (200)" in complaints["fallback"]
        assert "4 touches" in retiree["disbursed_amount"]["evidence"]["fallback"]
        assert retiree["disbursed_amount"]["evidence"]["history"]["disbursed_amount"] == 200_000
        assert retiree["complaint_rate"]["target"] == pytest.approx(
            campaign["complaint_rate"]["target"]
        )
        notes = own_rates["inputs"]["notes"]
        assert any(n.startswith("segment retiree:") and "campaign" in n for n in notes), notes

    def test_overdue_from_own_seasoned_loans_else_the_campaigns(self, own_rates):
        scopes = by_scope(own_rates["targets"])
        sme, student = scopes[(None, "sme")], scopes[(None, "student")]
        assert sme["overdue_rate_30"]["target"] == pytest.approx(1 / 70)
        assert sme["overdue_rate_30"]["evidence"]["basis"] == "own"
        assert scopes[(None, None)]["overdue_rate_30"]["target"] == pytest.approx(1 / 81)
        overdue = student["overdue_rate_30"]
        assert overdue["target"] == pytest.approx(1 / 81), "10 seasoned loans: the campaign's"
        assert overdue["evidence"]["history_value"] == 0
        assert overdue["evidence"]["basis"] == "campaign"
        assert "plan_min_history_loans (30)" in overdue["evidence"]["fallback"]
        # the volumes of the same segment are still its own
        assert student["disbursements"]["evidence"]["basis"] == "own"

    def test_complaint_rate_per_channel_and_segment_from_their_own(self, own_rates):
        scopes = by_scope(own_rates["targets"])
        expected = {
            ("sms", None): 7 / 603,
            ("phone", None): 1 / 201,
            (None, "sme"): 6 / 400,
            (None, "student"): 2 / 400,
            (None, None): 8 / 804,
        }
        for scope, rate in expected.items():
            assert scopes[scope]["complaint_rate"]["target"] == pytest.approx(1000 * rate), scope

    def test_campaign_targets_count_branch_and_partner_applications(self, own_rates):
        scopes = by_scope(own_rates["targets"])
        campaign = scopes[(None, None)]
        planned = {row["channel"]: row["touches"] for row in own_rates["budget"]}
        # sms: 60 + 12 + 1 applications in 603 touches, phone 20 + 4 in 201; branch and
        # partner: 8 + 4 applications per the campaign's 804 touches
        channels = GROWTH * (planned["sms"] * 73 / 603 + planned["phone"] * 24 / 201)
        other = GROWTH * sum(planned.values()) * (8 + 4) / 804
        assert campaign["applications"]["target"] == pytest.approx(channels + other)
        assert sum(scopes[(c, None)]["applications"]["target"] for c in COST) == pytest.approx(
            channels
        )
        assert campaign["applications"]["evidence"]["other_channels"] == ["branch", "partner"]
