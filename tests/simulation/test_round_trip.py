"""One simulated week, the world answering only what pdca did: real dispatch through the
simulated gateways, the back office's files drawn from those sends, loaded by the importer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from flows.demo import opening
from flows.dispatch import dispatch_flow
from flows.plan import plan_flow
from pdca.db import make_engine
from pdca.models import Application, Decision, Loan, Touch
from pdca.settings import get_settings
from pdca.simulation.backoffice import BackOffice
from pdca.simulation.campaign import SEASON_CAMPAIGN_ID, season_spec, write_history
from pdca.simulation.feeds import DailyFiles, load_files, read_sends
from pdca.simulation.world import World
from pdca.synthetic.campaign import PRODUCT
from tasks.common.campaigns import CampaignSpec, apply_spec, load_spec
from tasks.common.feeds import LOAD_ORDER
from tests.scenario import database, prefect_env  # noqa: F401  (the session's PREFECT_HOME)

START = datetime(2026, 3, 1, 16)
"""The season's first day at 00:00 in Asia/Shanghai, as naive UTC: before it, last season."""

pytestmark = [pytest.mark.usefixtures("prefect_env"), pytest.mark.slow]


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict:
    """A 3,000-customer world's first week: dispatched each weekday, answered each day."""
    folder = tmp_path_factory.mktemp("round-trip")
    template = request.getfixturevalue("sqlite_template")
    (folder / "pdca.db").write_bytes(Path(template).read_bytes())
    url = f"sqlite:///{folder / 'pdca.db'}"
    with database(url):
        world = World.build(3_000, seed=5)
        spec = CampaignSpec.model_validate(season_spec(world, 2))
        engine = make_engine(url)
        with engine.begin() as conn:
            apply_spec(conn, spec, actor="test")
        history = write_history(world, folder / "history")
        with engine.begin() as conn:
            apply_spec(conn, load_spec(history.spec), actor="test")
        with engine.connect() as conn:
            files = {feed: history.feed(feed) for feed in LOAD_ORDER}
            history_results = load_files(conn, files, get_settings())
        office = BackOffice(world, spec.id, PRODUCT)
        office.continue_keys(history.rows)
        files = DailyFiles(office, folder / "feeds")
        results = []
        plan_flow(campaign_id=spec.id, period="2026-03")
        for day in range(7):
            date = world.start + timedelta(days=day)
            if date.weekday() < 5:
                for window in spec.contact_policy.windows:
                    at = opening(spec, date, window) + timedelta(minutes=5)
                    dispatch_flow(campaign_id=spec.id, day=date, window=window, at=at)
            with engine.connect() as conn:
                office.observe(read_sends(conn, spec.id, world.start, day), day)
                office.organic(day)
                results += load_files(conn, files.write_day(day), get_settings())
        yield {
            "engine": engine,
            "office": office,
            "files": files,
            "results": results,
            "history": (history, history_results),
        }


def _frame(engine, statement) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(statement).mappings().all())


def test_the_world_answers_every_send_dispatch_made_and_nothing_else(week: dict) -> None:
    office, engine = week["office"], week["engine"]
    touches = _frame(engine, select(Touch).where(Touch.campaign_id == SEASON_CAMPAIGN_ID))
    sent = touches[touches["variant"] != "holdout"].set_index("touch_id")
    ledger = office.table("touches").set_index("touch_id")
    assert len(sent) > 500
    assert set(ledger.index) == set(sent.index)  # every send answered, no send invented
    joined = sent.join(ledger, rsuffix="_world")
    assert (joined["delivered"] == joined["delivered_world"]).all()
    assert (joined["responded"] == joined["responded_world"]).all()
    assert 0.6 < joined["delivered"].mean() < 0.98
    assert not (joined["responded"] & ~joined["delivered"]).any()
    assert (touches[touches["variant"] == "holdout"]["delivered"] == False).all()  # noqa: E712


def test_applications_follow_delivered_sends_or_come_organically(week: dict) -> None:
    office, engine = week["office"], week["engine"]
    applications = _frame(engine, select(Application).where(Application.applied_at >= START))
    ledger = office.table("applications")
    known = ledger[ledger["due"] <= 7 * 86_400]
    assert len(applications) == len(known) > 0  # all due rows loaded (none spoiled here)
    touches = office.table("touches")
    delivered_to = set(touches[touches["delivered"]]["customer_id"])
    driven = applications[applications["channel"].isin(["phone", "sms", "im", "app_push", "email"])]
    assert set(driven["customer_id"]) <= delivered_to
    assert set(applications["channel"]) - set(driven["channel"]) <= {"branch", "partner"}
    assert "app_push" not in set(driven["channel"])  # the default world: app push never pays
    decisions = _frame(engine, select(Decision).where(Decision.decided_at >= START))
    assert set(decisions["application_id"]) <= set(applications["application_id"])
    loans = _frame(engine, select(Loan).where(Loan.disbursed_at >= START))
    approved = decisions[decisions["decision"] == "approved"]["application_id"]
    assert set(loans["application_id"]) <= set(approved)


def test_every_file_is_loaded_or_quarantined_and_only_the_bad_rows_are_quarantined(
    week: dict,
) -> None:
    results, files = week["results"], week["files"]
    quarantined: dict[str, int] = {}
    for result in results:
        assert result.loaded + result.quarantined == result.rows
        quarantined[result.feed] = quarantined.get(result.feed, 0) + result.quarantined
    history, history_results = week["history"]
    assert {r.feed: r.quarantined for r in history_results} == history.bad_rows
    assert {feed: n for feed, n in quarantined.items() if n} == {
        feed: n for feed, n in files.bad_rows.items() if n
    }


def test_loans_are_snapshotted_weekly_and_drifting_ones_fall_behind(week: dict) -> None:
    office = week["office"]
    loans = office.table("loans").set_index("loan_id")
    assert len(loans) > 0
    snapshots = office.snapshots(6, 30).join(loans, on="loan_id")
    disbursed_day = snapshots["t"] // 86_400
    assert ((snapshots["day"] - disbursed_day) % 7 == 0).all()
    assert set(snapshots["loan_id"]) == set(loans.index)  # every loan, weekly from day 7
    paying = snapshots[~snapshots["drifts"]]
    assert (paying["dpd"] == 0).all()
    assert (paying["outstanding"] < paying["amount"]).all()
    behind = snapshots[snapshots["drifts"]]
    age = behind["day"] - disbursed_day[snapshots["drifts"]]
    assert (behind["dpd"] == age - behind["stops"]).all()
