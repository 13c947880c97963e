"""`pdca simulate` from the user's side: a short season on a small world, its verdict as
JSON and as a report; a database holding a user's campaign and a bad world file refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from pdca.db import make_engine
from pdca.models import AuditEntry, Campaign
from pdca.settings import get_settings
from pdca.simulation.truths import default_world
from tests.scenario import apply, database, prefect_env, run_main, spec_dict  # noqa: F401

pytestmark = pytest.mark.usefixtures("prefect_env")


@pytest.fixture
def output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PDCA_OUTPUT_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


@pytest.mark.slow
def test_a_short_season_prints_its_verdict_and_writes_its_report(
    sqlite_url: str, output_dir: Path, capfd: pytest.CaptureFixture
) -> None:
    with database(sqlite_url):
        code, out, err = run_main(
            ["simulate", "--weeks", "2", "--customers", "3000", "--seed", "7", "--json"], capfd
        )
        with make_engine(sqlite_url).connect() as conn:
            campaigns = set(conn.execute(select(Campaign.campaign_id)).scalars())
    assert code == 0, err[-2000:]
    verdict = json.loads(out)
    assert verdict["weeks"] == 2
    truths = {truth["name"]: truth for truth in verdict["truths"]}
    assert set(truths) == {truth.name for truth in default_world().truths}
    evening = truths["the evening window responds half as well as noon"]
    assert evening["found"] and evening["week_found"] == 1
    action = next(a for a in verdict["actions"] if a["action_id"] == evening["action_id"])
    assert action["type"] == "shift_window" and action["status"] == "approved"
    assert [week["period"] for week in verdict["kpis_by_week"]] == ["2026-W10", "2026-W11"]
    assert verdict["kpis_by_week"][0]["kpis"]["touches"]["actual"] > 0
    invariants = {invariant["name"]: invariant for invariant in verdict["invariants"]}
    assert len(invariants) == 7
    assert all(invariant["held"] for invariant in invariants.values()), invariants
    assert invariants["frequency_cap"]["checked"] > 1_000
    assert invariants["check_equals_ledger"]["checked"] == 8  # 4 numbers × 2 weeks
    regret = verdict["regret"]
    assert 0 < regret["applications_lost"] < regret["oracle_applications"]
    assert regret["net_return_lost"] > 0
    assert regret["oracle_net_return"] == pytest.approx(
        regret["net_return_expected"] + regret["net_return_lost"], abs=0.02
    )
    report = Path(verdict["report"])
    assert report.is_file() and report.is_relative_to(output_dir.resolve())
    page = report.read_text(encoding="utf-8")
    assert "the evening window responds half as well as noon" in page and "<svg" in page
    assert campaigns == {"demo-sme-2026", "season-sme-2026"}


@pytest.mark.slow
def test_the_world_files_manager_decides_and_is_recorded_like_a_manager(
    sqlite_url: str, output_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    world = tmp_path / "world.yaml"
    world.write_text(
        "name: no-shifts\n"
        "truths:\n"
        "  - name: evening responds half as well\n"
        "    scope: {window: evening}\n"
        "    response: 0.5\n"
        "    found_by: [shift_window]\n"
        "approval:\n"
        "  decided_by: cautious-manager\n"
        "  reject: [{type: shift_window}]\n",
        encoding="utf-8",
    )
    argv = ["simulate", "--weeks", "1", "--customers", "3000", "--world", str(world)]
    with database(sqlite_url):
        code, out, err = run_main([*argv, "--approve", "policy", "--json"], capfd)
        with make_engine(sqlite_url).connect() as conn:
            audit = conn.execute(
                select(AuditEntry.action, AuditEntry.subject).where(
                    AuditEntry.actor == "cautious-manager"
                )
            ).all()
    assert code == 0, err[-2000:]
    verdict = json.loads(out)
    shifts = [a for a in verdict["actions"] if a["type"] == "shift_window"]
    assert shifts and all(a["status"] == "rejected" for a in shifts)
    assert {a["decided_by"] for a in shifts} == {"cautious-manager"}
    assert len(audit) >= len(shifts)
    [truth] = verdict["truths"]
    assert truth["found"] is False and truth["action_id"] is None


def test_a_database_with_a_users_campaign_is_refused(
    sqlite_url: str, output_dir: Path, capfd: pytest.CaptureFixture
) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        apply(conn, spec_dict())
    with database(sqlite_url):
        code, _out, err = run_main(["simulate", "--weeks", "1", "--customers", "500"], capfd)
    assert code == 2
    assert "not only an earlier demo or simulation" in err and "--force" in err
    with engine.connect() as conn:
        assert conn.execute(select(Campaign.campaign_id)).scalars().all() == ["spring-test"]


def test_a_bad_world_file_is_refused_naming_the_field(
    sqlite_url: str, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    world = tmp_path / "world.yaml"
    world.write_text("truths:\n  - {name: fax, scope: {channel: fax}, response: 2}\n")
    with database(sqlite_url):
        code, _out, err = run_main(["simulate", "--world", str(world)], capfd)
    assert code == 2
    assert f"{world}: invalid world file" in err and "truths.0.scope.channel" in err
    assert "Traceback" not in err
