"""Dispatch applies the approved Act actions: the PDCA loop closes at the next dispatch.

Each test runs the dispatch flow on the scenario world (tests/scenario.py, with a few
customers added for the rules to bite on) after writing one decision into `actions`, and
holds the outcome to the same world dispatched with no action (the baseline, one per back
end): what the action says changes, and nothing else. "Outcome" is what the user sees:
the outbox (who is sent what, on which channel, or recorded as hold-out), the simulated
gateway's journal and the batch summary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, insert, select

from flows.dispatch import dispatch_flow
from pdca.db import make_engine
from pdca.models import Action, Customer
from tasks.common.sqlfiles import SQL_DIR
from tasks.do.audience import EXCLUSION_ORDER
from tests.oracles.dispatch_rules import window_share
from tests.scenario import (
    CAMPAIGN_ID,
    DAY,
    NEXT_DAY,
    customer,
    database,
    ids_in_window,
    local_time,
    local_utc,
    new_database,
    outbox,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
    simulated_sends,
    touches,
)
from tests.scenario import build_dispatch_world as scenario_world

pytestmark = pytest.mark.usefixtures("prefect_env")

NOON_AT = local_utc(DAY, 12, 5)
"""Inside the written noon window (12:00-13:30 local)."""

SHIFTED = {"12:30-14:00": "not_open_yet", "11:00-12:00": "held"}
"""Noon moved later (12:05 is before it opens) or earlier (12:05 is after it closed)."""


# --- the worlds -----------------------------------------------------------------------------


def rich_world(conn: Connection) -> dict[str, str]:
    """The scenario world plus noon customers the admission rules bite on, by role:
    `debt_60` (sme, 700), `debt_60_b` (sme, 750: a phone customer) and `salaried_debt_60`
    (salaried, 700), debt ratio 0.6 and else eligible; `debt_60_crypto` (also in an
    excluded industry); `salaried_dnc` (salaried, 640, do-not-contact) and
    `salaried_crypto` (salaried, 640, excluded industry); and the scenario's excluded
    customers as `x_<reason>`."""
    world = scenario_world(conn)
    roles = [
        "debt_60",
        "debt_60_b",
        "debt_60_crypto",
        "salaried_debt_60",
        "salaried_dnc",
        "salaried_crypto",
    ]
    ids = dict(zip(roles, ids_in_window("y", len(roles), "noon"), strict=True))
    conn.execute(
        insert(Customer),
        [
            customer(ids["debt_60"], debt_ratio=0.6),
            customer(ids["debt_60_b"], debt_ratio=0.6, credit_score=750),
            customer(ids["debt_60_crypto"], debt_ratio=0.6, industry="crypto"),
            customer(ids["salaried_debt_60"], segment="salaried", debt_ratio=0.6),
            customer(
                ids["salaried_dnc"], segment="salaried", credit_score=640, do_not_contact=True
            ),
            customer(
                ids["salaried_crypto"], segment="salaried", credit_score=640, industry="crypto"
            ),
        ],
    )
    return {**ids, **{f"x_{reason}": cid for reason, cid in world.excluded.items()}}


BINDING = {"phone": 1_000_000, "sms": 308, "im": 308, "app_push": 1_000_000}
"""22 send days × 2 windows × 7: SMS and IM take 7 customers a window, fewer than the
noon's tier B; phone and app push have room for everyone."""


def binding_world(conn: Connection) -> dict[str, str]:
    scenario_world(conn, plan_touches=BINDING)
    return {}


WORLDS: dict[str, Callable[[Connection], dict[str, str]]] = {
    "rich": rich_world,
    "binding": binding_world,
}


@dataclass
class Run:
    """One dispatch of a world: the summaries and who got what."""

    engine: Engine
    roles: dict[str, str]
    summaries: list[dict]
    box: pd.DataFrame
    customers: pd.DataFrame

    @property
    def noon(self) -> dict:
        return next(s for s in self.summaries if s["window"] == "noon")

    def outcome(self) -> dict[str, tuple[str, str, str]]:
        """customer → (channel, variant, status) of its outbox entry."""
        return {
            row.customer_id: (row.channel, row.variant, row.status) for row in self.box.itertuples()
        }

    def who(self, condition: Callable[[pd.DataFrame], pd.Series]) -> set[str]:
        """The customers (of the whole world) for whom `condition` holds."""
        return set(self.customers.loc[condition(self.customers), "customer_id"])


def dispatch(at: datetime = NOON_AT, day=DAY) -> list[dict]:
    return dispatch_flow(CAMPAIGN_ID, day, at=at, simulate_outcomes=True)


def run_world(
    url: str, world: str, actions: list[dict] | None = None, at: datetime = NOON_AT
) -> Run:
    """Build `world` in the empty database at `url`, record `actions`, dispatch at `at`."""
    engine = make_engine(url)
    _engines.append(engine)
    with engine.begin() as conn:
        roles = WORLDS[world](conn)
        if actions:
            conn.execute(insert(Action), actions)
    with database(url):
        summaries = dispatch(at)
    with engine.connect() as conn:
        result = conn.execute(select(Customer))
        customers = pd.DataFrame(result.all(), columns=list(result.keys()))
    return Run(engine, roles, summaries, outbox(engine), customers)


_baselines: dict[tuple[str, str], Run] = {}
_engines: list[Engine] = []
"""Every engine `run_world` made, disposed when the module is done."""


@pytest.fixture(scope="module", autouse=True)
def _dispose_engines():
    yield
    for engine in _engines:
        engine.dispose()
    _engines.clear()
    _baselines.clear()


@pytest.fixture
def baseline(request, db_url: str, tmp_path_factory) -> Callable[[str], Run]:
    """The world dispatched with no action, on the test's back end (built once each)."""
    backend = "postgres" if db_url.startswith("postgresql") else "sqlite"

    def get(world: str) -> Run:
        key = (backend, world)
        if key not in _baselines:
            folder = tmp_path_factory.mktemp(f"baseline-{world}")
            _baselines[key] = run_world(new_database(request, folder, backend), world)
        return _baselines[key]

    return get


def action(kind: str, params: dict, scope: dict | None = None, status: str = "approved") -> dict:
    """A row of `actions` as the Act stage and a manager's decision leave it."""
    return {
        "campaign_id": CAMPAIGN_ID,
        "period": "2026-W09",
        "type": kind,
        "scope": scope or {},
        "params": params,
        "rationale": "test",
        "expected_impact": "test",
        "status": status,
        "decided_by": None if status == "proposed" else "ops-lead@example.com",
        "decided_at": None if status == "proposed" else datetime(2026, 3, 1, 9),
    }


def tighten(scope: dict | None = None, **params: Any) -> dict:
    return action("tighten_admission", params, scope)


# --- what "nothing else changed" means --------------------------------------------------------


def assert_only_removed(run: Run, base: Run, removed: set[str], reason: str) -> None:
    """The run's outbox is the baseline's without `removed` (who the baseline sent or
    recorded as hold-out), and those are counted under `reason` instead."""
    assert removed <= set(base.outcome()), "a test world without the case it is about"
    assert removed, "nobody was meant to change: the test proves nothing"
    expected = {c: v for c, v in base.outcome().items() if c not in removed}
    got = run.outcome()
    assert got == expected, {
        "unexpectedly kept": sorted(set(got) - set(expected)),
        "unexpectedly dropped": sorted(set(expected) - set(got)),
        "changed": sorted(c for c in set(got) & set(expected) if got[c] != expected[c]),
    }
    assert run.noon["audience"] == base.noon["audience"]
    assert run.noon["eligible"] == base.noon["eligible"] - len(removed)
    assert_only_moved(run, base, {c: (None, reason) for c in removed})


def assert_only_moved(run: Run, base: Run, moves: dict[str, tuple[str | None, str]]) -> None:
    """The noon's exclusion counts are the baseline's with each customer of `moves` moved
    from its old reason (None: it was chosen) to its new one."""
    expected = dict(base.noon["excluded"])
    for old, new in moves.values():
        if old is not None:
            expected[old] -= 1
        expected[new] = expected.get(new, 0) + 1
    expected = {reason: n for reason, n in expected.items() if n}
    assert run.noon["excluded"] == expected


def noon_audience(run: Run) -> pd.DataFrame:
    """The world's customers dispatch puts in the noon window."""
    windows = window_share(CAMPAIGN_ID, run.customers, ["noon", "evening"])
    return run.customers[windows == "noon"]


# --- admission -----------------------------------------------------------------------------


class TestAdmission:
    def test_a_raised_campaign_floor_excludes_those_between_the_floors(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [tighten(min_credit_score=650)])
        between = run.who(lambda c: c["credit_score"].between(600, 649))
        roles = run.roles
        # a floor is judged before the industry and the tier-C frequency cap, after
        # do-not-contact (salaried_dnc keeps its reason)
        floor = "credit_score_below_floor"
        assert_only_removed_and_moved(
            run,
            base,
            between & set(base.outcome()),
            floor,
            {
                roles["x_tier_c_frequency"]: ("tier_c_frequency", floor),
                roles["salaried_crypto"]: ("excluded_industry", floor),
            },
        )
        assert run.noon["rules"] == [f"tighten_admission {first_action_id(run)}"]

    def test_a_segment_floor_excludes_only_that_segment(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [tighten({"segment": "salaried"}, min_credit_score=700)])
        low = run.who(lambda c: (c["segment"] == "salaried") & (c["credit_score"] < 700))
        removed = low & set(base.outcome())
        assert not run.who(lambda c: c["segment"] == "sme") & removed
        roles = run.roles
        # do-not-contact is judged before the floor, an excluded industry after it
        assert_only_removed_and_moved(
            run,
            base,
            removed,
            "credit_score_below_floor",
            {roles["salaried_crypto"]: ("excluded_industry", "credit_score_below_floor")},
        )
        assert run.noon["excluded"]["do_not_contact"] == base.noon["excluded"]["do_not_contact"]

    def test_a_channel_floor_excludes_who_would_be_routed_there(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [tighten({"channel": "phone"}, min_credit_score=760)])
        on_phone = {c for c, (channel, _, _) in base.outcome().items() if channel == "phone"}
        assert run.who(lambda c: c["credit_score"] >= 760) & on_phone == set()
        assert_only_removed(run, base, on_phone, "credit_score_below_floor")
        assert not (run.box["channel"] == "phone").any(), "nobody rerouted to phone"

    def test_a_channel_cap_keeps_the_channel_from_indebted_customers(self, db_url, baseline):
        """debt_60_b (750, debt 0.6) would be called; the phone's cap 0.5 excludes it."""
        base = baseline("rich")
        run = run_world(db_url, "rich", [tighten({"channel": "phone"}, max_debt_ratio=0.5)])
        who = run.roles["debt_60_b"]
        assert base.outcome()[who][0] == "phone"
        assert_only_removed(run, base, {who}, "debt_ratio_above_cap")

    def test_a_lowered_debt_cap_excludes_those_above_it(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [tighten(max_debt_ratio=0.5)])
        roles = run.roles
        eligible = {roles["debt_60"], roles["debt_60_b"], roles["salaried_debt_60"]}
        above = run.who(lambda c: c["debt_ratio"].between(0.5, 0.7, inclusive="right"))
        assert above == {*eligible, roles["debt_60_crypto"]}
        # the excluded industry is judged before the cap: that customer keeps its reason
        assert_only_removed(run, base, eligible, "debt_ratio_above_cap")

    def test_a_segment_cap_excludes_only_that_segment(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [tighten({"segment": "sme"}, max_debt_ratio=0.5)])
        roles = run.roles
        assert roles["salaried_debt_60"] in base.outcome(), "the other segment's case"
        assert_only_removed(
            run, base, {roles["debt_60"], roles["debt_60_b"]}, "debt_ratio_above_cap"
        )


def assert_only_removed_and_moved(
    run: Run,
    base: Run,
    removed: set[str],
    reason: str,
    moved: dict[str, tuple[str | None, str]],
) -> None:
    """`assert_only_removed`, and customers who were excluded already (`moved`) now for
    another reason."""
    expected = {c: v for c, v in base.outcome().items() if c not in removed}
    assert removed, "nobody was meant to change: the test proves nothing"
    assert run.outcome() == expected
    assert_only_moved(run, base, {**{c: (None, reason) for c in removed}, **moved})


def first_action_id(run: Run) -> int:
    with run.engine.connect() as conn:
        return conn.execute(select(Action.action_id).order_by(Action.action_id)).scalars().first()


# --- windows ---------------------------------------------------------------------------------


class TestShiftWindow:
    @pytest.mark.parametrize("moved_to", SHIFTED)
    def test_nothing_goes_at_a_time_only_the_old_range_allowed(self, db_url, moved_to):
        shift = action("shift_window", {"window": "noon", "from": "12:00-13:30", "to": moved_to})
        run = run_world(db_url, "rich", [shift])
        assert run.noon["status"] == SHIFTED[moved_to]
        assert run.noon["sends"] == {}
        assert simulated_sends(run.engine).empty, "something was sent at 12:05"
        sent = touches(run.engine)
        assert not sent["touch_id"].str.startswith("d").any()
        if SHIFTED[moved_to] == "held":  # written for the next window, never sent late
            assert set(run.box["status"]) <= {"held", "holdout"}
            held = run.box[run.box["status"] == "held"]
            assert (held["scheduled_at"] == local_utc(DAY, 19)).all()

    def test_sends_go_in_the_new_range_to_the_same_people(self, db_url, baseline):
        base = baseline("rich")
        shift = action(
            "shift_window", {"window": "noon", "from": "12:00-13:30", "to": "12:30-14:00"}
        )
        run = run_world(db_url, "rich", [shift], at=local_utc(DAY, 13, 45))
        assert run.noon["status"] == "sent"
        assert run.outcome() == base.outcome(), "the window moved, its audience did not"
        sent = touches(run.engine)
        sent = sent[sent["touch_id"].str.startswith("d")]
        assert len(sent) > 0
        assert sent["sent_at"].between(local_utc(DAY, 12, 30), local_utc(DAY, 14)).all()
        scheduled = run.box["scheduled_at"]
        assert (scheduled >= local_utc(DAY, 12, 30)).all() and (
            scheduled < local_utc(DAY, 14)
        ).all()
        assert local_time(sent["sent_at"].min()).hour == 13, "13:45 is past the old window"


# --- variants ------------------------------------------------------------------------------


class TestPromoteVariant:
    def test_the_losers_members_get_the_winner_and_the_holdout_stays(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [action("promote_variant", {"winner": "A", "loser": "B"})])
        before, after = base.outcome(), run.outcome()
        assert set(after) == set(before), "promotion changes no one's admission"
        assert "B" not in set(run.box["variant"]), "a new send of the retired variant"
        assert all("B" not in by_variant for by_variant in run.noon["sends"].values())
        for cid, (channel, variant, status) in before.items():
            promoted = "A" if variant == "B" else variant
            assert after[cid] == (channel, promoted, status), cid
        members = {c for c, (_, v, _) in before.items() if v == "holdout"}
        assert members and members == {c for c, (_, v, _) in after.items() if v == "holdout"}
        sticky_b = sticky_customer(run)
        assert before[sticky_b][1] == "B" and after[sticky_b][1] == "A"
        drawn_b = [c for c, (_, v, _) in before.items() if v == "B" and c != sticky_b]
        assert drawn_b, "the baseline drew no new member into B"


def sticky_customer(run: Run) -> str:
    """The scenario's customer who already had variant B (a touch 20 days before)."""
    sent = touches(run.engine)
    return sent.loc[sent["touch_id"] == "t-sticky", "customer_id"].item()


# --- channels and targeting ------------------------------------------------------------------


class TestRetireChannel:
    def test_nothing_is_sent_on_a_retired_channel(self, db_url, baseline):
        base = baseline("rich")
        run = run_world(db_url, "rich", [action("retire_channel", {"channel": "phone"})])
        assert not (run.box["channel"] == "phone").any()
        assert "phone" not in run.noon["sends"]
        assert not (simulated_sends(run.engine)["channel"] == "phone").any()
        before, after = base.outcome(), run.outcome()
        assert set(after) == set(before), "the same people, on another channel"
        for cid, (channel, variant, status) in before.items():
            assert after[cid][1:] == (variant, status), cid
            if channel == "phone":  # tier A's next channel the campaign uses
                assert after[cid][0] == "sms", cid
            else:
                assert after[cid][0] == channel, cid


class TestReviseTargeting:
    def test_a_deprioritised_segment_ranks_last_and_is_never_tier_a(self, db_url, baseline):
        base = baseline("binding")
        run = run_world(db_url, "binding", [action("revise_targeting", {"segments": ["salaried"]})])
        salaried = run.who(lambda c: c["segment"] == "salaried")
        chosen = set(run.outcome())
        audience = noon_audience(run)
        eligible_ids = set(audience.loc[audience["customer_id"].str.startswith("e"), "customer_id"])
        left_out = eligible_ids - chosen
        assert run.noon["excluded"].get("over_capacity", 0) > 0, "capacity did not bind"
        assert len(left_out) == run.noon["excluded"]["over_capacity"]
        assert left_out <= salaried, sorted(left_out - salaried)
        phone = {c for c, (channel, _, _) in run.outcome().items() if channel == "phone"}
        assert not phone & salaried, "a deprioritised customer is tier A (phone)"
        assert phone and phone == {
            c for c, (ch, _, _) in base.outcome().items() if ch == "phone" and c not in salaried
        }
        base_left_out = eligible_ids - set(base.outcome())
        assert base_left_out - salaried, "without the action, others were left out too"


# --- decisions that are not approvals ------------------------------------------------------


class TestUndecided:
    @pytest.mark.parametrize("status", ["proposed", "rejected"])
    def test_an_action_not_approved_changes_nothing(self, db_url, baseline, status):
        base = baseline("rich")
        undecided = [
            action("tighten_admission", {"min_credit_score": 800}, status=status),
            action("retire_channel", {"channel": "sms"}, status=status),
            action("promote_variant", {"winner": "A", "loser": "B"}, status=status),
        ]
        run = run_world(db_url, "rich", undecided)
        assert run.outcome() == base.outcome()
        assert run.summaries == base.summaries
        assert run.noon["rules"] == []


# --- the command line ------------------------------------------------------------------------


class TestDispatchCli:
    def test_json_names_the_rules_in_force_and_the_log_says_so(self, sqlite_url, capfd, caplog):
        engine = make_engine(sqlite_url)
        with engine.begin() as conn:
            rich_world(conn)
            conn.execute(
                insert(Action),
                [tighten(min_credit_score=650), action("hold", {}), tighten(max_debt_ratio=0.5)],
            )
            ids = conn.execute(select(Action.action_id).order_by(Action.action_id)).scalars().all()
        capfd.readouterr()
        argv = ["dispatch", "--campaign", CAMPAIGN_ID, "--date", DAY.isoformat()]
        with database(sqlite_url):
            code, out, err = run_main(
                [*argv, "--at", NOON_AT.isoformat() + "+00:00", "--json"], capfd
            )
        engine.dispose()
        assert code == 0, err[-2000:]
        document = json.loads(out)
        named = [f"tighten_admission {ids[0]}", f"tighten_admission {ids[2]}"]
        assert [b["rules"] for b in document["batches"]] == [named, named]
        assert document["totals"]["excluded"]["debt_ratio_above_cap"] >= 3
        logged = [record.getMessage() for record in caplog.records]
        assert f"approved actions in force: {', '.join(named)}" in logged


def test_the_next_day_keeps_applying_the_rules(db_url):
    """Rules are read at every dispatch, not once: the day after, the floor still holds."""
    run = run_world(db_url, "rich", [tighten(min_credit_score=650)])
    with database(db_url):
        (noon, _) = dispatch(at=local_utc(NEXT_DAY, 12, 5), day=NEXT_DAY)
    box = outbox(run.engine)
    low = run.who(lambda c: c["credit_score"] < 650)
    assert not set(box["customer_id"]) & low
    assert noon["rules"] == [f"tighten_admission {first_action_id(run)}"]
    assert noon["status"] == "sent" and noon["eligible"] > 0


def test_scoped_rules_judge_in_the_audience_querys_order():
    """`tasks.do.audience.EXCLUSION_ORDER` states the order of sql/dispatch_audience.sql's
    rules, which scoped admission relies on: a change to one must change the other."""
    source = (SQL_DIR / "dispatch_audience.sql").read_text(encoding="utf-8")
    assert tuple(re.findall(r"then '([a-z_]+)'", source)) == EXCLUSION_ORDER
