"""The check flow from the user's side, on a history with known faults injected.

The demo's synthetic campaign (20,000 customers, ten weeks from 2026-03-02; fewer make the
weekly rates of one channel too noisy for a three-sigma rule) is loaded through
the feed importers and its last week planned. Then, step by step, faults are injected and
the period checked again, so that every finding can be compared with what the injection
implies:

1. the SMS channel's applications vanish in the last week → an application_rate anomaly;
2. 400 customers assigned variant B in March get an application the day after assignment
   → B wins, with exactly 400 more converted members (judged with a minimum detectable
   effect of +100 %, `PDCA_EXPERIMENT_MDE=1`: the default 20 % needs more members than
   this world has);
3. 120 hold-out members of March are moved to variant A → a broken split (SRM);
4. a touches file with bad rows and a decisions file with rejections that lack a reason
   are imported → quarantine above 1 % → the period's data are untrusted.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, delete, func, insert, select, update

from flows.check import check_flow, judge_experiment
from flows.plan import plan_flow
from pdca.db import make_engine
from pdca.models import (
    Action,
    Application,
    CheckResult,
    Customer,
    Decision,
    Loan,
    Repayment,
    Touch,
    WeeklyRollup,
)
from pdca.settings import get_settings
from pdca.synthetic.demo_history import CAMPAIGN_ID, TIMEZONE
from tasks.check import result as check_result
from tasks.common import metrics
from tasks.common.campaigns import get_campaign_spec
from tasks.common.periods import Period
from tasks.common.value_metrics import NEW_KPIS
from tasks.data.importing import import_feed
from tests import scenario
from tests.scenario import (
    SLOW_BACKENDS,
    database,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
)
from tests.worlds import World

pytestmark = pytest.mark.usefixtures("prefect_env")

DEMO_START = date(2026, 3, 2)
WEEKS = 10
WORLD = World(customers=20_000, weeks=WEEKS, start=DEMO_START)
LAST_WEEK = Period.week_of(DEMO_START + timedelta(weeks=WEEKS - 1))
"""2026-W19: the week checked for anomalies and data quality."""
MARCH = Period.parse("2026-03")
"""The month most customers were assigned in: the experiment's period."""
LIFTED = 400
MOVED = 120


@dataclass
class Checked:
    url: str
    engine: Engine
    folder: Path
    results: dict[str, dict] = field(default_factory=dict)
    facts: dict[str, int] = field(default_factory=dict)
    funnel_then: pd.DataFrame | None = None
    """The week's funnel by the metrics module, read right after the first check."""
    sms_rates_then: list[float] = field(default_factory=list)
    """SMS application rates of the 8 weeks before the last, when it was checked."""


@pytest.fixture(scope="module", params=SLOW_BACKENDS)
def checked(request, tmp_path_factory, demo_worlds) -> Checked:
    """The demo history, its last week planned, and the checks before and after each fault."""
    folder = tmp_path_factory.mktemp("check-db")
    url = demo_worlds.database(request, folder, request.param, WORLD)
    engine = make_engine(url)
    world = Checked(url, engine, folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PDCA_EXPERIMENT_MDE", "1.0")
        patch.setenv("PDCA_OUTPUT_DIR", str(folder / "out"))
        yield from _inject_and_check(world, url, engine, folder)
    engine.dispose()


def _inject_and_check(world: Checked, url: str, engine: Engine, folder: Path):
    with database(url):
        plan_flow(CAMPAIGN_ID, str(LAST_WEEK))
        world.results["week"] = check_flow(CAMPAIGN_ID, str(LAST_WEEK))
        with engine.connect() as conn:
            world.funnel_then = metrics.rollup(metrics.funnel(conn, CAMPAIGN_ID, LAST_WEEK), [])
        world.results["week_again"] = check_flow(CAMPAIGN_ID, str(LAST_WEEK))
        world.results["march"] = check_flow(CAMPAIGN_ID, str(MARCH))

        world.facts["sms_removed"] = remove_sms_applications(engine, LAST_WEEK)
        world.results["collapsed"] = check_flow(CAMPAIGN_ID, str(LAST_WEEK))
        world.sms_rates_then = sms_application_rates(engine, LAST_WEEK)

        lift_variant_b(engine, MARCH, LIFTED)
        world.results["lifted"] = check_flow(CAMPAIGN_ID, str(MARCH))

        move_holdout_to_a(engine, MARCH, MOVED)
        world.results["broken_split"] = check_flow(CAMPAIGN_ID, str(MARCH))

        world.facts.update(import_bad_rows(engine, folder, LAST_WEEK))
        world.results["quarantined"] = check_flow(CAMPAIGN_ID, str(LAST_WEEK))
    yield world


# --- the faults -----------------------------------------------------------------------------


def week_bounds(period: Period):
    return period.utc_bounds(TIMEZONE)


def remove_sms_applications(engine: Engine, period: Period) -> int:
    """Every SMS application of the period disappears, with its decision, loan, repayments."""
    starts_at, ends_at = week_bounds(period)
    with engine.begin() as conn:
        ids = select(Application.application_id).where(
            Application.channel == "sms",
            Application.applied_at >= starts_at,
            Application.applied_at < ends_at,
        )
        loans = select(Loan.loan_id).where(Loan.application_id.in_(ids))
        conn.execute(delete(Repayment).where(Repayment.loan_id.in_(loans)))
        conn.execute(delete(Loan).where(Loan.application_id.in_(ids)))
        conn.execute(delete(Decision).where(Decision.application_id.in_(ids)))
        removed = conn.execute(delete(Application).where(Application.application_id.in_(ids)))
        return removed.rowcount


def sms_application_rates(engine: Engine, period: Period) -> list[float]:
    """The SMS channel's application rate in each of the 8 weeks before `period`, counted
    afresh by the metrics module (not read from the stored rollups)."""
    rates = []
    with engine.connect() as conn:
        for steps in range(8, 0, -1):
            week = period.shifted(-steps)
            frame = metrics.rollup(metrics.funnel(conn, CAMPAIGN_ID, week), ["channel"])
            rates.append(float(frame.set_index("channel").loc["sms", "application_rate"]))
    return rates


def assignments(engine: Engine, period: Period):
    """customer → (variant, assigned_at) of the members assigned in the period."""
    starts_at, ends_at = week_bounds(period)
    with engine.connect() as conn:
        first = (
            select(Touch.customer_id, func.min(Touch.sent_at).label("assigned_at"))
            .where(Touch.campaign_id == CAMPAIGN_ID)
            .group_by(Touch.customer_id)
            .subquery()
        )
        rows = conn.execute(
            select(first.c.customer_id, first.c.assigned_at, Touch.variant)
            .join(
                Touch,
                (Touch.customer_id == first.c.customer_id)
                & (Touch.sent_at == first.c.assigned_at)
                & (Touch.campaign_id == CAMPAIGN_ID),
            )
            .where(first.c.assigned_at >= starts_at, first.c.assigned_at < ends_at)
            .order_by(first.c.customer_id)
        ).all()
    return {customer: (variant, at) for customer, at, variant in rows}


def converted(engine: Engine, customers: list[str]) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(Application.customer_id).where(Application.customer_id.in_(customers))
            ).scalars()
        )


def lift_variant_b(engine: Engine, period: Period, count: int) -> None:
    """`count` B members with no application at all apply the day after their assignment
    (members whose attribution window closes within the period: the check counts their
    outcome)."""
    members = assignments(engine, period)
    _, ends_at = week_bounds(period)
    closed = ends_at - timedelta(days=get_settings().attribution_window_days)
    b_members = [c for c, (variant, at) in members.items() if variant == "B" and at <= closed]
    already = converted(engine, b_members)
    chosen = [c for c in b_members if c not in already][:count]
    assert len(chosen) == count, "the demo world has too few unconverted B members"
    with engine.begin() as conn:
        conn.execute(
            insert(Application),
            [
                {
                    "application_id": f"lift-{customer}",
                    "customer_id": customer,
                    "campaign_id": CAMPAIGN_ID,
                    "channel": "sms",
                    "applied_at": members[customer][1] + timedelta(days=1),
                    "product_code": "sme-revolving",
                    "amount_requested": 50_000.0,
                }
                for customer in chosen
            ],
        )


def move_holdout_to_a(engine: Engine, period: Period, count: int) -> None:
    """`count` hold-out members of the period are re-labelled A in every campaign touch."""
    members = assignments(engine, period)
    chosen = [c for c, (variant, _) in members.items() if variant == "holdout"][:count]
    assert len(chosen) == count, "the demo world has too few hold-out members"
    with engine.begin() as conn:
        conn.execute(
            update(Touch)
            .where(Touch.campaign_id == CAMPAIGN_ID, Touch.customer_id.in_(chosen))
            .values(variant="A")
        )


def import_bad_rows(engine: Engine, folder: Path, period: Period) -> dict[str, int]:
    """A touches file with bad costs and a decisions file with rejections lacking a reason,
    each with more bad rows than 1 % of the period's rows of that feed."""
    starts_at, ends_at = week_bounds(period)
    with engine.connect() as conn:
        touches = conn.execute(
            select(func.count())
            .select_from(Touch)
            .where(
                Touch.campaign_id == CAMPAIGN_ID,
                Touch.sent_at >= starts_at,
                Touch.sent_at < ends_at,
            )
        ).scalar_one()
        customers = conn.execute(
            select(Touch.customer_id).where(Touch.campaign_id == CAMPAIGN_ID).limit(1)
        ).scalar_one()
        applications = (
            conn.execute(
                select(Application.application_id)
                .where(Application.applied_at >= starts_at, Application.applied_at < ends_at)
                .order_by(Application.application_id)
            )
            .scalars()
            .all()
        )
    bad_touches = math.ceil(0.02 * touches)
    touch_file = folder / "bad-touches.csv"
    local_noon = f"{period.start + timedelta(days=2)}T12:30:00"
    with touch_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["touch_id", "campaign_id", "customer_id", "channel", "variant", "sent_at",
             "delivered", "responded", "cost"]
        )  # fmt: skip
        for number in range(bad_touches):
            writer.writerow(
                [f"bad-t{number}", CAMPAIGN_ID, customers, "sms", "A", local_noon,
                 "true", "false", "-1"]
            )  # fmt: skip
    bad_decisions = max(3, math.ceil(0.05 * len(applications)))
    decision_file = folder / "bad-decisions.csv"
    with decision_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["application_id", "decided_at", "decision", "reject_reason",
                         "approved_amount", "apr"])  # fmt: skip
        for application_id in applications[:bad_decisions]:
            writer.writerow([application_id, local_noon, "rejected", "", "", ""])
    with engine.connect() as conn:
        touch_result = import_feed(conn, "touches", touch_file, actor="test")
        decision_result = import_feed(conn, "decisions", decision_file, actor="test")
    assert touch_result.quarantined == bad_touches
    assert decision_result.quarantined == bad_decisions
    return {"bad_touches": bad_touches, "bad_decisions": bad_decisions}


# --- helpers ---------------------------------------------------------------------------------


def totals(result: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in result["funnel"]:
        for key in metrics.COUNTS:
            out[key] = out.get(key, 0) + row[key]
    return out


def rounded(value):
    """Every float of a document to 9 significant digits (summation order aside)."""
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return float(f"{value:.9g}") if isinstance(value, float) else value


def quarantine(result: dict, feed: str) -> dict:
    entries = {item["feed"]: item for item in result["data_quality"]["quarantine"]}
    assert feed in entries, f"no quarantine share for {feed!r} among {sorted(entries)}"
    return entries[feed]


def suite(result: dict, name: str) -> dict:
    suites = {item["name"]: item for item in result["data_quality"]["suites"]}
    assert name in suites, f"no suite {name!r} among {sorted(suites)}"
    return suites[name]


def comparison(result: dict, control: str, treatment: str) -> dict:
    for test in result["experiments"]:
        if (test["control"], test["treatment"]) == (control, treatment):
            return test
    raise AssertionError(f"no {treatment} vs {control} comparison in {result['experiments']}")


# --- the tests -------------------------------------------------------------------------------


class TestCleanWeek:
    def test_the_contract_sections_are_all_there(self, checked: Checked) -> None:
        result = checked.results["week"]
        for key in ("campaign", "period", "data_quality", "funnel", "kpis", "anomalies",
                    "experiments", "bottleneck", "reject_reasons"):  # fmt: skip
            assert key in result, f"`{key}` missing from the check result"
        assert (result["campaign"], result["period"]) == (CAMPAIGN_ID, str(LAST_WEEK))

    def test_funnel_equals_the_metrics_definition(self, checked: Checked) -> None:
        expected = checked.funnel_then
        got = totals(checked.results["week"])
        for key in metrics.COUNTS:
            assert got[key] == pytest.approx(float(expected[key].iloc[0])), key

    def test_every_planned_kpi_has_a_status_by_its_band(self, checked: Checked) -> None:
        kpis = checked.results["week"]["kpis"]
        campaign = {k["metric"]: k for k in kpis if not any(k["scope"].values())}
        assert {"touches", "applications", "overdue_rate_30", "complaint_rate"} <= set(campaign)
        for metric in NEW_KPIS:  # planned from the history's loans, surveys and payoffs
            assert campaign[metric]["target"] is not None, campaign[metric]
            assert campaign[metric]["actual"] is not None, campaign[metric]
        for kpi in kpis:
            assert kpi["status"] in ("on_track", "at_risk", "off_track", "no_data"), kpi
            if kpi["actual"] is not None and kpi["target"]:
                assert kpi["variance"] == pytest.approx(kpi["actual"] - kpi["target"])
                assert kpi["variance_pct"] == pytest.approx(kpi["variance"] / kpi["target"])

    def test_a_rerun_replaces_the_result(self, checked: Checked) -> None:
        first, again = checked.results["week"], checked.results["week_again"]
        assert rounded(first) == rounded(again), "PostgreSQL may sum money in another order"
        with checked.engine.connect() as conn:
            stored = conn.execute(
                select(func.count())
                .select_from(CheckResult)
                .where(CheckResult.campaign_id == CAMPAIGN_ID)
            ).scalar_one()
        assert stored == 2, "one stored result per checked period (W19, March), the latest"

    def test_whole_week_rollups_are_stored_for_the_baselines(self, checked: Checked) -> None:
        with checked.engine.connect() as conn:
            weeks = set(
                conn.execute(
                    select(WeeklyRollup.week).where(WeeklyRollup.campaign_id == CAMPAIGN_ID)
                ).scalars()
            )
        trailing = {LAST_WEEK.shifted(-steps).name for steps in range(1, 9)}
        assert trailing | {LAST_WEEK.name} <= weeks

    def test_bottleneck_names_a_stage_with_evidence(self, checked: Checked) -> None:
        bottleneck = checked.results["week"]["bottleneck"]
        assert bottleneck["reference_kind"] == "target"
        stages = {item["stage"] for item in bottleneck["evidence"]}
        assert {"delivery", "application", "approval"} <= stages
        if bottleneck["stage"] is not None:
            gaps = [
                item["gap_pct"] for item in bottleneck["evidence"] if item["gap_pct"] is not None
            ]
            assert bottleneck["gap_pct"] == pytest.approx(min(gaps))

    def test_reject_reasons_ranked_with_shares(self, checked: Checked) -> None:
        reasons = [r for r in checked.results["march"]["reject_reasons"] if r["channel"] is None]
        assert reasons, "March has rejections in the demo"
        counts = [r["count"] for r in reasons]
        assert counts == sorted(counts, reverse=True)
        assert all(0 < r["share"] <= 1 for r in reasons)


class TestCollapsedChannel:
    def test_the_sms_application_rate_is_flagged(self, checked: Checked) -> None:
        assert checked.facts["sms_removed"] > 0
        found = [
            a
            for a in checked.results["collapsed"]["anomalies"]
            if a["metric"] == "application_rate" and a["scope"] == {"channel": "sms"}
        ]
        assert len(found) == 1, checked.results["collapsed"]["anomalies"]
        anomaly = found[0]
        assert anomaly["week"] == LAST_WEEK.name
        assert anomaly["value"] == 0.0
        assert anomaly["z"] <= -3

    def test_the_baseline_is_the_trailing_weeks_own_rates(self, checked: Checked) -> None:
        anomaly = next(
            a
            for a in checked.results["collapsed"]["anomalies"]
            if a["metric"] == "application_rate" and a["scope"] == {"channel": "sms"}
        )
        rates = checked.sms_rates_then
        mean = sum(rates) / len(rates)
        std = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1))
        assert anomaly["baseline_mean"] == pytest.approx(mean)
        assert anomaly["baseline_std"] == pytest.approx(std)
        assert anomaly["z"] == pytest.approx((0.0 - mean) / std)

    def test_no_such_anomaly_before_the_fault(self, checked: Checked) -> None:
        assert not [
            a
            for a in checked.results["week"]["anomalies"]
            if a["metric"] == "application_rate" and a["scope"] == {"channel": "sms"}
        ]


class TestExperiment:
    def test_variant_b_wins_with_the_injected_conversions(self, checked: Checked) -> None:
        before = comparison(checked.results["march"], "holdout", "B")
        after = comparison(checked.results["lifted"], "holdout", "B")
        assert after["treatment_n"] == before["treatment_n"]
        converted_before = round(before["treatment_rate"] * before["treatment_n"])
        converted_after = round(after["treatment_rate"] * after["treatment_n"])
        assert converted_after - converted_before == LIFTED
        assert after["ci_low"] > 0 and after["ci_low"] <= after["lift"] <= after["ci_high"]
        # decided by the sequential test: 0 outside the confidence sequence is a win
        assert after["cs_low"] > 0, after
        assert after["decision"] == "treatment_wins", after

    def test_b_beats_a_head_to_head(self, checked: Checked) -> None:
        test = comparison(checked.results["lifted"], "A", "B")
        assert test["decision"] == "treatment_wins"
        assert test["p_value_adjusted"] >= test["p_value"]

    def test_the_split_is_fair_before_it_is_broken(self, checked: Checked) -> None:
        for test in checked.results["lifted"]["experiments"]:
            assert test["srm_p_value"] >= 0.001, test

    def test_a_broken_split_voids_every_comparison(self, checked: Checked) -> None:
        before = comparison(checked.results["lifted"], "holdout", "A")
        after = comparison(checked.results["broken_split"], "holdout", "A")
        # the sample-ratio test counts assignments (pending members included)
        assert after["control_assigned"] == before["control_assigned"] - MOVED
        assert after["treatment_assigned"] == before["treatment_assigned"] + MOVED
        for test in checked.results["broken_split"]["experiments"]:
            assert test["srm_p_value"] < 0.001
            assert test["decision"] == "srm_invalid"


class TestDataQuality:
    def test_quarantined_rows_above_the_limit_untrust_the_period(self, checked: Checked) -> None:
        before, after = checked.results["collapsed"], checked.results["quarantined"]
        assert not after["trusted"]
        touches_before = quarantine(before, "touches")["rows_quarantined"]
        touches_after = quarantine(after, "touches")["rows_quarantined"]
        assert touches_after - touches_before == checked.facts["bad_touches"]
        assert quarantine(before, "touches")["success"]
        assert not quarantine(after, "touches")["success"]
        assert suite(after, "touches")["rows_quarantined"] == touches_after

    def test_rejections_without_a_reason_are_counted(self, checked: Checked) -> None:
        before, after = checked.results["collapsed"], checked.results["quarantined"]
        decisions_before = quarantine(before, "decisions")["rows_quarantined"]
        decisions_after = quarantine(after, "decisions")["rows_quarantined"]
        assert decisions_after - decisions_before == checked.facts["bad_decisions"]

    def test_the_untrusted_result_is_stored_as_such(self, checked: Checked) -> None:
        with checked.engine.connect() as conn:
            trusted = conn.execute(
                select(CheckResult.trusted).where(
                    CheckResult.campaign_id == CAMPAIGN_ID, CheckResult.period == str(LAST_WEEK)
                )
            ).scalar_one()
        assert trusted is False


class TestTypedResult:
    """The typed result reads back every real check result and writes it out unchanged:
    `pdca check --json` prints `to_json()`, so its keys, order and values are today's."""

    @pytest.mark.parametrize("name", ["week", "march", "collapsed", "lifted", "quarantined"])
    def test_json_round_trip_is_byte_identical(self, checked: Checked, name: str) -> None:
        document = checked.results[name]
        typed = check_result.CheckResult.from_json(document)
        assert typed.to_json() == document
        assert json.dumps(typed.to_json(), indent=2) == json.dumps(document, indent=2)

    def test_the_cases_cover_every_shape(self, checked: Checked) -> None:
        """With and without targets, trusted and not, a found bottleneck."""
        results = checked.results
        assert {k["status"] for k in results["march"]["kpis"]} == {"no_target"}
        assert "note" in results["week"]["kpis"][0]
        assert results["quarantined"]["trusted"] is False
        assert results["week"]["bottleneck"]["stage"] is not None

    def test_the_stored_result_reads_back(self, checked: Checked) -> None:
        with checked.engine.connect() as conn:
            stored = conn.execute(
                select(CheckResult.result).where(
                    CheckResult.campaign_id == CAMPAIGN_ID, CheckResult.period == str(MARCH)
                )
            ).scalar_one()
        typed = check_result.CheckResult.from_json(stored)
        assert typed.to_json() == stored == checked.results["broken_split"]
        assert typed.experiments[0].decision == "srm_invalid"


# --- the experiment's split after a promotion ------------------------------------------------


class TestSplitInForce:
    """After an approved promote_variant, new members are drawn by the split in force (the
    winner with the loser's share): the SRM test must judge against that split."""

    @pytest.fixture
    def promoted_world(self, engine: Engine) -> Engine:
        """900 members first touched with B and 100 hold-outs in March (the split in
        force after A lost to B), no conversions."""
        with engine.begin() as conn:
            scenario.apply(conn, scenario.spec_dict())
            ids = [f"m{n:04d}" for n in range(1000)]
            conn.execute(insert(Customer), [scenario.customer(cid) for cid in ids])
            conn.execute(
                insert(Touch),
                [
                    scenario.touch(
                        f"t-{cid}",
                        cid,
                        scenario.local_utc(date(2026, 3, 4), 12, 10),
                        campaign_id=scenario.CAMPAIGN_ID,
                        variant="B" if n < 900 else "holdout",
                    )
                    for n, cid in enumerate(ids)
                ],
            )
        return engine

    def promote(self, engine: Engine, decided_at: datetime) -> None:
        with engine.begin() as conn:
            conn.execute(
                insert(Action).values(
                    campaign_id=scenario.CAMPAIGN_ID,
                    period="2026-02",
                    type="promote_variant",
                    params={"winner": "B", "loser": "A"},
                    rationale="B beat A",
                    status="approved",
                    decided_by="Mei Chen",
                    decided_at=decided_at,
                )
            )

    def judged(self, engine: Engine) -> list[dict]:
        with engine.connect() as conn:
            spec = get_campaign_spec(conn, scenario.CAMPAIGN_ID)
            return judge_experiment.fn(conn, spec, Period.parse("2026-03"))

    def test_before_the_period_the_split_in_force_is_judged(self, promoted_world):
        self.promote(promoted_world, datetime(2026, 2, 27, 9, 0))
        (only,) = self.judged(promoted_world)
        assert (only["control"], only["treatment"]) == ("holdout", "B")
        assert (only["control_n"], only["treatment_n"]) == (100, 900)
        assert only["srm_p_value"] == pytest.approx(1.0)
        assert only["decision"] != "srm_invalid"

    def test_during_the_period_the_written_split_still_holds(self, promoted_world):
        self.promote(promoted_world, datetime(2026, 3, 10, 9, 0))
        judged = self.judged(promoted_world)
        assert {(row["control"], row["treatment"]) for row in judged} == {
            ("holdout", "A"),
            ("holdout", "B"),
            ("A", "B"),
        }
        assert {row["decision"] for row in judged} == {"srm_invalid"}


def test_a_period_outside_the_campaign_is_refused(db_url, capfd):
    engine = make_engine(db_url)
    with engine.begin() as conn:
        scenario.apply(conn, scenario.spec_dict())
    engine.dispose()
    with database(db_url):
        code, _, err = scenario.run_main(
            ["check", "--campaign", scenario.CAMPAIGN_ID, "--period", "2026-W30"], capfd
        )
    assert code == 2, err
    assert err.strip().splitlines()[-1] == (
        "pdca: error: campaign 'spring-test' runs 2026-03-02 to 2026-05-31: period 2026-W30 "
        "(2026-07-20 to 2026-07-26) has none of its days"
    )
    assert "Traceback" not in err
