"""`pdca simulate` from the user's side: a short season on a small world, its verdict as
JSON and as a report; a database holding a user's campaign and a bad world file refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from pdca.db import make_engine
from pdca.models import AuditEntry, Campaign
from pdca.models import CheckResult as StoredCheck
from pdca.settings import get_settings
from pdca.simulation.campaign import SEASON_CAMPAIGN_ID
from pdca.simulation.season import SEASON_START
from pdca.simulation.truths import load_world
from tasks.act.proposals.context import Thresholds, channel_figures, response_by_window
from tasks.check.experiments.fixed import min_sample
from tasks.check.result import CheckResult
from tasks.common.campaigns import CampaignSpec, get_campaign_spec
from tasks.common.periods import Period
from tests.scenario import apply, database, prefect_env, run_main, spec_dict  # noqa: F401

pytestmark = pytest.mark.usefixtures("prefect_env")


@pytest.fixture
def output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PDCA_OUTPUT_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


CLEAR_TRUTHS = Path(__file__).with_name("clear_truths.yaml")

CI_SEASON = ["--weeks", "3", "--customers", "8000", "--seed", "7"]
"""The CI season: three weeks, enough for the first week's members to have their outcome
(the attribution window is two weeks) and for a channel to be judged three periods
running, on a population whose weekly windows and channels have the touches their rules
need. The experiment's planned sample (some 15,000 members per arm for the default mde of
20 %) is far beyond such a season: B is asserted found only by the week its arms reach it,
which here is never, and never promoted the wrong way round."""


@pytest.mark.slow
def test_a_short_season_finds_the_clear_truths_within_what_its_evidence_allows(
    sqlite_url: str, output_dir: Path, capfd: pytest.CaptureFixture
) -> None:
    argv = ["simulate", *CI_SEASON, "--world", str(CLEAR_TRUTHS), "--json"]
    with database(sqlite_url):
        code, out, err = run_main(argv, capfd)
        with make_engine(sqlite_url).connect() as conn:
            campaigns = set(conn.execute(select(Campaign.campaign_id)).scalars())
            evidence = season_evidence(conn)
    assert code == 0, err[-2000:]
    verdict = json.loads(out)
    assert verdict["weeks"] == 3
    invariants = {invariant["name"]: invariant for invariant in verdict["invariants"]}
    assert len(invariants) == 7
    assert all(invariant["held"] for invariant in invariants.values()), invariants
    assert invariants["frequency_cap"]["checked"] > 5_000
    assert invariants["check_equals_ledger"]["checked"] == 12  # 4 numbers × 3 weeks

    truths = {truth["name"]: truth for truth in verdict["truths"]}
    assert set(truths) == {truth.name for truth in load_world(CLEAR_TRUTHS).truths}
    actions = {action["action_id"]: action for action in verdict["actions"]}
    bounds = {
        "B lifts applications by 60 %": evidence.experiment_reaches_its_plan("A", "B"),
        "the evening window responds half as well as noon": evidence.windows_tell_apart(
            "noon", "evening", true_ratio=0.5
        ),
        "app push never pays": evidence.channel_judged_long_enough("app_push"),
    }
    # the season is long and large enough for these two: the test cannot pass vacuously
    assert bounds["the evening window responds half as well as noon"] in (1, 2, 3), bounds
    assert bounds["app push never pays"] in (1, 2, 3), bounds
    for name, bound in bounds.items():
        truth = truths[name]
        if bound is None or bound > 3:  # the season held too little evidence to tell
            continue
        assert truth["found"], (name, bound, verdict["actions"])
        assert 1 <= truth["week_found"] <= bound, (name, truth["week_found"], bound)
        action = actions[truth["action_id"]]
        assert action["type"] in truth["found_by"] and action["status"] == "approved"
    promotions = [a for a in verdict["actions"] if a["type"] == "promote_variant"]
    assert all(a["params"]["winner"] == "B" for a in promotions)  # never the wrong way
    assert all(a["week_proposed"] >= 3 for a in promotions)  # not before outcomes are known

    assert [week["period"] for week in verdict["kpis_by_week"]] == [
        "2026-W10",
        "2026-W11",
        "2026-W12",
    ]
    assert verdict["kpis_by_week"][0]["kpis"]["touches"]["actual"] > 0
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


@dataclass
class SeasonEvidence:
    """What pdca's own records of a season say about when a truth *could* be found: the
    bounds are computed from the evidence each rule needs, not from a lucky week."""

    spec: CampaignSpec
    checks: dict[int, CheckResult]
    """Season week → the stored check of that week."""
    windows: dict[int, dict[str, dict]]
    """Season week → window → its delivered and responded touches, as act counts them."""

    def experiment_reaches_its_plan(self, control: str, treatment: str) -> int | None:
        """The first week whose two arms (members with a known outcome) reach the
        comparison's planned sample: there the sequential test finds a true lift of the
        planned mde with 80 % power, and a larger one with more."""
        for week, check in sorted(self.checks.items()):
            for test in check.experiments:
                planned = test.planned_sample
                if (
                    {test.control, test.treatment} == {control, treatment}
                    and planned
                    and min(test.control_n or 0, test.treatment_n or 0) >= planned
                ):
                    return week
        return None

    def windows_tell_apart(self, best: str, worse: str, *, true_ratio: float) -> int | None:
        """The first week in which both windows have the delivered touches the shift rule
        needs and the sample a two-sided z-test needs to see `worse` respond `true_ratio`
        times as often as `best` with 80 % power."""
        thresholds = Thresholds.from_settings(get_settings())
        for week, figures in sorted(self.windows.items()):
            if best not in figures or worse not in figures:
                continue
            best_rate = figures[best]["responded"] / max(figures[best]["delivered"], 1)
            needed = min_sample(best_rate * true_ratio, mde=1 / true_ratio - 1)
            delivered = min(figures[best]["delivered"], figures[worse]["delivered"])
            if needed and delivered >= max(needed, thresholds.window_min_touches):
                return week
        return None

    def channel_judged_long_enough(self, channel: str) -> int | None:
        """The first week ending a run of `retire_after_periods` trusted checks in which
        the channel had the touches to be judged (`retire_channel`'s evidence)."""
        thresholds = Thresholds.from_settings(get_settings())
        run = 0
        for week, check in sorted(self.checks.items()):
            judged = check.trusted is True and (
                channel_figures(check).get(channel, {}).get("touches", 0)
                >= thresholds.min_channel_touches
            )
            run = run + 1 if judged else 0
            if run >= thresholds.retire_after_periods:
                return week
        return None


def season_evidence(conn) -> SeasonEvidence:
    """The season's checks and window figures from pdca's database."""
    spec = get_campaign_spec(conn, SEASON_CAMPAIGN_ID)
    rows = conn.execute(
        select(StoredCheck.period, StoredCheck.result).where(
            StoredCheck.campaign_id == SEASON_CAMPAIGN_ID
        )
    ).all()
    checks, windows = {}, {}
    for period, result in rows:
        week = (Period.parse(period).start - SEASON_START).days // 7 + 1
        checks[week] = CheckResult.from_json(result)
        windows[week] = {
            str(w["window"]): w for w in response_by_window(conn, spec, Period.parse(period))
        }
    return SeasonEvidence(spec, checks, windows)


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
