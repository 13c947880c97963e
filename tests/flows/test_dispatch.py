"""The dispatch flow from the user's side: who gets what, when, and exactly once.

Each scenario is built by hand (tests/scenario.py) so that we KNOW who must be left out:
one customer per exclusion rule, all in the window being dispatched. Sends go through the
simulated gateways, whose journal (`simulated_sends`) is what "the customer received it"
means here. The crash and concurrency tests run `pdca dispatch` in subprocesses on SQLite;
the others run the flow in-process on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, delete, func, insert, select

from flows.dispatch import dispatch_flow
from pdca.db import make_engine
from pdca.models import Customer, DispatchLock, OutboxEntry, OutreachBatch, SimulatedSend
from tasks.do import templates
from tasks.do.sending import idempotency_key
from tasks.do.wording import ComplianceError
from tests.oracles.dispatch_rules import assign_variants
from tests.scenario import (
    BACKENDS,
    CAMPAIGN_ID,
    DAY,
    EXCLUSIONS,
    NEXT_DAY,
    DispatchWorld,
    add_plan,
    apply,
    assert_none_contacted,
    build_dispatch_world,
    customer,
    database,
    ids_in_window,
    in_quiet_hours,
    local_utc,
    new_database,
    outbox,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
    simulated_sends,
    spec_dict,
    touches,
)
from tests.servers import http_server, json_response

pytestmark = pytest.mark.usefixtures("prefect_env")

PDCA = Path(sys.executable).parent / "pdca"
NOON_AT = local_utc(DAY, 12, 5)
"""Inside the noon window (12:00-13:30 local) of DAY; the evening one has not opened."""


def dispatch(day=DAY, at=NOON_AT, window=None) -> list[dict]:
    return dispatch_flow(CAMPAIGN_ID, day, window=window, at=at, simulate_outcomes=True)


def sent_total(summaries: list[dict]) -> int:
    return sum(sum(v.values()) for s in summaries for v in s["sends"].values())


def state(engine: Engine) -> dict[str, int]:
    """Row counts that a rerun must not change."""
    box = outbox(engine)
    return {
        "outbox": len(box),
        "sent": int((box["status"] == "sent").sum()),
        "touches": len(touches(engine)),
        "simulated_sends": len(simulated_sends(engine)),
    }


def assert_exactly_once(engine: Engine) -> None:
    """Every sent outbox entry has one touch and one gateway record; nothing else was sent."""
    box = outbox(engine)
    sent = box[box["status"] == "sent"]
    dispatched = touches(engine)
    dispatched = dispatched[dispatched["touch_id"].str.startswith("d")]
    sims = simulated_sends(engine)
    assert sent["touch_id"].notna().all(), "a sent entry without its touch"
    assert sorted(sent["touch_id"]) == sorted(dispatched["touch_id"]), "touches ≠ sent entries"
    batches = pd.DataFrame(
        _rows(engine, select(OutreachBatch.batch_id, OutreachBatch.send_date, OutreachBatch.window))
    )
    keyed = sent.merge(batches, on="batch_id")
    keys = {
        idempotency_key(CAMPAIGN_ID, row.send_date, row.window, row.customer_id, row.channel)
        for row in keyed.itertuples()
    }
    assert set(sims["idempotency_key"]) == keys, "gateway records ≠ sent entries"
    per_customer_day = keyed.groupby(["customer_id", "send_date"]).size()
    assert per_customer_day.max() == 1, per_customer_day[per_customer_day > 1]


def _rows(engine: Engine, statement) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(statement)]


# --- the main scenario: one day's noon, its rerun, the next day -----------------------------


@dataclass
class NoonRun:
    engine: Engine
    world: DispatchWorld
    first: list[dict]
    after_first: dict[str, int]
    rerun: list[dict]
    after_rerun: dict[str, int]
    next_day: list[dict]
    outbox_after_first: pd.DataFrame


@pytest.fixture(scope="module", params=BACKENDS)
def noon_run(request, tmp_path_factory) -> NoonRun:
    url = new_database(request, tmp_path_factory.mktemp("noon-run"), request.param)
    engine = make_engine(url)
    with engine.begin() as conn:
        world = build_dispatch_world(conn)
    with database(url):
        first = dispatch()
        after_first, outbox_after_first = state(engine), outbox(engine)
        rerun = dispatch(at=NOON_AT + timedelta(minutes=15))
        after_rerun = state(engine)
        next_day = dispatch(day=NEXT_DAY, at=local_utc(NEXT_DAY, 12, 5))
    yield NoonRun(
        engine, world, first, after_first, rerun, after_rerun, next_day, outbox_after_first
    )
    engine.dispose()


class TestDispatchAudience:
    def test_excluded_customers_get_nothing(self, noon_run):
        assert_none_contacted(noon_run.engine, noon_run.world.excluded.values())

    def test_exclusions_counted_by_reason(self, noon_run):
        noon, evening = noon_run.first
        assert noon["window"] == "noon"
        assert noon["excluded"] == dict.fromkeys(EXCLUSIONS, 1), noon["excluded"]
        assert evening == {**evening, "window": "evening", "status": "not_open_yet"}

    def test_every_eligible_noon_customer_is_chosen(self, noon_run):
        world = noon_run.world
        wanted = world.noon - set(world.excluded.values())
        chosen = set(noon_run.outbox_after_first["customer_id"])
        assert chosen == wanted, {"missing": wanted - chosen, "extra": chosen - wanted}
        evening_ids = set(world.eligible) - world.noon
        assert not chosen & evening_ids, "an evening customer was sent at noon"

    def test_no_touch_in_quiet_hours_and_all_in_the_window(self, noon_run):
        sent = touches(noon_run.engine)
        sent = sent[sent["touch_id"].str.startswith("d")]
        assert len(sent) > 0
        quiet = sent[sent["sent_at"].map(in_quiet_hours)]
        assert quiet.empty, quiet
        for day in (DAY, NEXT_DAY):
            on_day = sent[sent["sent_at"].between(local_utc(day, 0), local_utc(day, 23, 59))]
            assert on_day["sent_at"].between(local_utc(day, 12), local_utc(day, 13, 30)).all()

    def test_summary_adds_up(self, noon_run):
        noon = noon_run.first[0]
        assert noon["status"] == "sent"
        assert noon["audience"] == len(noon_run.world.noon)
        assert noon["audience"] == noon["eligible"] + sum(noon["excluded"].values())
        assert sent_total(noon_run.first) + noon["holdout"] == noon["eligible"]
        assert noon["failures"] == {} and noon["errors"] == []

    def test_summary_adds_up_the_next_day(self, noon_run):
        """The day after, last day's hold-out members are in the audience again."""
        noon = noon_run.next_day[0]
        assert noon["audience"] == noon["eligible"] + sum(noon["excluded"].values()), noon


class TestHoldout:
    def test_members_have_exactly_one_holdout_touch_and_no_send(self, noon_run):
        box = noon_run.outbox_after_first
        members = set(box.loc[box["status"] == "holdout", "customer_id"])
        assert members, "the scenario has no hold-out member"
        rows = touches(noon_run.engine)  # after the rerun and the next day too
        theirs = rows[rows["customer_id"].isin(members)]
        assert (theirs.groupby("customer_id").size() == 1).all(), theirs
        assert set(theirs["customer_id"]) == members
        assert (theirs["variant"] == "holdout").all()
        assert not theirs["delivered"].astype(bool).any()
        assert (theirs["cost"] == 0).all()
        sims = simulated_sends(noon_run.engine)
        assert not members & set(sims["customer_id"]), "a hold-out member was sent something"

    def test_holdout_share_is_plausible(self, noon_run):
        noon = noon_run.first[0]
        assert 0 < noon["holdout"] < 0.3 * noon["eligible"], noon


class TestRerun:
    def test_rerun_of_the_same_window_sends_nothing_new(self, noon_run):
        noon = noon_run.rerun[0]
        assert noon["sends"] == {} and noon["holdout"] == 0, noon
        assert noon_run.after_rerun == noon_run.after_first

    def test_exactly_once_after_rerun_and_next_day(self, noon_run):
        assert sent_total(noon_run.next_day) > 0
        assert_exactly_once(noon_run.engine)

    def test_one_batch_per_campaign_day_and_window(self, noon_run):
        rows = _rows(noon_run.engine, select(OutreachBatch.send_date, OutreachBatch.window))
        assert sorted((r["send_date"], r["window"]) for r in rows) == [
            (DAY, "noon"),
            (NEXT_DAY, "noon"),
        ]


class TestAssignment:
    def test_existing_variant_is_sticky(self, noon_run):
        box = outbox(noon_run.engine)
        mine = box[box["customer_id"] == noon_run.world.sticky_b]
        assert len(mine) == 2, mine  # both days
        assert set(mine["variant"]) == {"B"}

    def test_variant_stays_the_same_across_days(self, noon_run):
        box = outbox(noon_run.engine)
        variants = box.groupby("customer_id")["variant"].nunique()
        assert (variants == 1).all(), variants[variants > 1]


# --- a closed window: held, then the next window ----------------------------------------------


@dataclass
class HeldRun:
    engine: Engine
    closed: list[dict]
    outbox_closed: pd.DataFrame
    sims_closed: int
    evening: list[dict]


@pytest.fixture(scope="class", params=BACKENDS)
def held_run(request, tmp_path_factory) -> HeldRun:
    url = new_database(request, tmp_path_factory.mktemp("held-run"), request.param)
    engine = make_engine(url)
    with engine.begin() as conn:
        build_dispatch_world(conn, eligible=60)
    with database(url):
        closed = dispatch(window="noon", at=local_utc(DAY, 14, 0))
        outbox_closed, sims_closed = outbox(engine), len(simulated_sends(engine))
        evening = dispatch(window="evening", at=local_utc(DAY, 19, 5))
    yield HeldRun(engine, closed, outbox_closed, sims_closed, evening)
    engine.dispose()


class TestClosedWindow:
    def test_closed_window_writes_held_entries_and_sends_nothing(self, held_run):
        (noon,) = held_run.closed
        assert noon["status"] == "held" and noon["sends"] == {}
        box = held_run.outbox_closed
        held = box[box["status"] == "held"]
        assert len(held) == noon["held"] > 0
        assert set(box["status"]) <= {"held", "holdout"}
        assert (held["scheduled_at"] == local_utc(DAY, 19)).all(), "not set for the evening"
        assert held_run.sims_closed == 0

    def test_next_window_sends_the_held_entries(self, held_run):
        held = held_run.outbox_closed
        held_ids = set(held.loc[held["status"] == "held", "outbox_id"])
        box = outbox(held_run.engine).set_index("outbox_id")
        statuses = box.loc[sorted(held_ids), "status"]
        assert (statuses == "sent").all(), statuses.value_counts().to_dict()


class TestHeldIntoAWrittenBatch:
    @pytest.mark.parametrize("backend", BACKENDS)
    def test_a_held_send_for_a_customer_already_in_the_batch_is_superseded(
        self, backend, request, tmp_path
    ):
        """Known from the code: a late run of an earlier window holds sends for a batch
        that is written already; releasing them collided with its entry for the same
        customer and channel (and would contact the customer twice on another)."""
        url = new_database(request, tmp_path, backend)
        engine = make_engine(url)
        policy = {**spec_dict()["contact_policy"], "windows": {"noon": "12:00-13:30"}}
        with engine.begin() as conn:
            build_dispatch_world(conn, eligible=60, spec=spec_dict(contact_policy=policy))
        with database(url):
            (first,) = dispatch(day=NEXT_DAY, at=local_utc(NEXT_DAY, 12, 5))
            (late,) = dispatch(day=DAY, at=local_utc(DAY, 14, 0))  # held for the next noon
            (rerun,) = dispatch(day=NEXT_DAY, at=local_utc(NEXT_DAY, 12, 20))
        assert sent_total([first]) > 0 and late["status"] == "held" and late["held"] > 0
        assert rerun["status"] == "sent" and rerun["failures"] == {}
        box = outbox(engine)
        superseded = box[box["status"] == "superseded"]
        assert len(superseded) > 0, "the scenario should hold sends for customers in the batch"
        assert superseded["error"].str.contains("already has a send").all()
        assert superseded["touch_id"].isna().all()
        assert "held" not in set(box["status"]), "every held send was released or superseded"
        assert_exactly_once(engine)  # one send per customer and day, each journaled once
        engine.dispose()


# --- wording: a bad template stops the batch ------------------------------------------------


BAD_SMS = (
    "[{{ campaign_name }}] Approval guaranteed for your business! "
    "{{ apr }}% APR (annual). Borrow rationally; repay on time. {{ opt_out }}\n"
)


class TestCompliance:
    def test_bad_template_blocks_the_batch(self, sqlite_url, tmp_path, monkeypatch):
        folder = tmp_path / "templates"  # templates are read from the templates folder only
        shutil.copytree(templates.TEMPLATES_DIR, folder)
        monkeypatch.setattr(templates, "TEMPLATES_DIR", folder)
        template = folder / "bad_sms.j2"
        template.write_text(BAD_SMS, encoding="utf-8")
        engine = make_engine(sqlite_url)
        with engine.begin() as conn:
            build_dispatch_world(conn, spec=spec_dict(templates={"sms": str(template)}))
        with database(sqlite_url), pytest.raises(ComplianceError) as caught:
            dispatch(window="noon")
        message = str(caught.value)
        assert str(template) in message
        assert "forbidden/guaranteed-approval" in message
        assert "Approval guaranteed" in message
        assert outbox(engine).empty, "the outbox was written for a non-compliant batch"
        assert simulated_sends(engine).empty
        assert touches(engine)["touch_id"].tolist() == ["t-sticky"]
        # the lock was released: with the template fixed, the same window goes
        with engine.begin() as conn:
            apply(conn, spec_dict())
        with database(sqlite_url):
            (noon,) = dispatch(window="noon", at=NOON_AT + timedelta(minutes=5))
        assert sent_total([noon]) > 0
        engine.dispose()


# --- a real provider beside the simulated ones ------------------------------------------------


class TestWebhookProvider:
    def test_sms_goes_message_by_message_the_rest_in_bulk(self, sqlite_url, monkeypatch):
        """SMS through a provider's webhook (one refusal), the other channels simulated:
        each entry is sent once, by its own path, and recorded with its receipt."""
        engine = make_engine(sqlite_url)
        with engine.begin() as conn:
            build_dispatch_world(conn)
        refused: list[str] = []

        def provider(request):
            items = request.json()["messages"]
            if not refused:  # the provider refuses the first number it is given
                refused.append(items[0]["idempotency_key"])
            return json_response(
                {
                    "receipts": [
                        {
                            "idempotency_key": item["idempotency_key"],
                            "accepted": item["idempotency_key"] not in refused,
                            "gateway_ref": f"p-{item['idempotency_key']}",
                            "error": "number unknown",
                        }
                        for item in items
                    ]
                }
            )

        with http_server(provider) as server:
            monkeypatch.setenv("PDCA_WEBHOOK_URL_SMS", server.url + "/sms")
            with database(sqlite_url):
                (noon,) = dispatch(window="noon")
        box = outbox(engine)
        sms = box[box["channel"] == "sms"]
        posted = [m for r in server.requests for m in r.json()["messages"]]
        keys = {
            idempotency_key(CAMPAIGN_ID, DAY, "noon", row.customer_id, "sms"): row
            for row in sms.itertuples()
        }
        assert sorted(m["idempotency_key"] for m in posted) == sorted(keys), "each SMS once"
        assert all("Borrow rationally" in m["body"] for m in posted), "the checked wording"
        assert noon["failures"] == {"sms": 1} and len(refused) == 1
        failed = keys[refused[0]]
        assert failed.status == "failed" and pd.isna(failed.touch_id)
        assert "number unknown" in failed.error
        delivered = sms[sms["status"] == "sent"]
        assert len(delivered) == len(sms) - 1 > 0
        assert set(delivered["gateway_ref"]) == {
            f"p-{key}" for key, row in keys.items() if row.status == "sent"
        }
        assert noon["sends"]["sms"] == {
            variant: int(count) for variant, count in delivered["variant"].value_counts().items()
        }
        journal = simulated_sends(engine)
        assert not (journal["channel"] == "sms").any(), "no SMS went to the simulation"
        assert set(journal["channel"]) == set(box.loc[box["status"] == "sent", "channel"]) - {"sms"}
        engine.dispose()


# --- capacity ---------------------------------------------------------------------------------


class TestCapacity:
    def test_rerun_with_a_binding_quota_sends_nothing_new(self, sqlite_url):
        engine = make_engine(sqlite_url)
        spec = spec_dict()
        with engine.begin() as conn:
            parsed = apply(conn, spec)
            # 22 send days in March, two windows: 132 phone touches → 3 per window
            add_plan(conn, {"phone": 132, "sms": 10_000, "im": 10_000, "app_push": 10_000})
            candidates = ids_in_window("p", 80, "noon")
            variants = assign_variants(
                CAMPAIGN_ID,
                parsed,
                pd.DataFrame({"customer_id": candidates, "assigned_variant": None}),
            )
            holdout = candidates[list(variants).index("holdout")]
            others = [c for c, v in zip(candidates, variants, strict=True) if v != "holdout"]
            # the hold-out member is the best phone customer, so it takes a quota place
            rows = [customer(holdout, credit_score=800)]
            rows += [customer(c, credit_score=750) for c in others[:11]]
            conn.execute(insert(Customer), rows)
        with database(sqlite_url):
            first = dispatch(window="noon")
            before = state(engine)
            rerun = dispatch(window="noon", at=NOON_AT + timedelta(minutes=10))
        assert first[0]["sends"]["phone"], first
        assert rerun[0]["sends"] == {}, rerun[0]["sends"]
        assert state(engine) == before
        engine.dispose()


# --- the command line -------------------------------------------------------------------------


def dispatch_argv(at=NOON_AT, *extra: str) -> list[str]:
    return [
        "dispatch",
        "--campaign",
        CAMPAIGN_ID,
        "--date",
        DAY.isoformat(),
        "--at",
        at.isoformat() + "+00:00",
        *extra,
    ]


class TestDispatchCli:
    def test_json_is_one_document_with_exclusions_by_reason(self, sqlite_url, capfd):
        engine = make_engine(sqlite_url)
        with engine.begin() as conn:
            world = build_dispatch_world(conn)
        capfd.readouterr()
        with database(sqlite_url):
            code, out, err = run_main(dispatch_argv(NOON_AT, "--json"), capfd)
        assert code == 0, err[-2000:]
        document = json.loads(out)  # the whole of stdout is one JSON document
        assert document["campaign"] == CAMPAIGN_ID and document["date"] == DAY.isoformat()
        totals = document["totals"]
        assert totals["excluded"] == dict.fromkeys(EXCLUSIONS, 1), totals["excluded"]
        sends = sum(sum(v.values()) for v in totals["sends"].values())
        assert sends == (outbox(engine)["status"] == "sent").sum() > 0
        assert set(totals["sends"]) <= {"phone", "sms", "im", "app_push"}
        assert [b["window"] for b in document["batches"]] == ["noon", "evening"]
        assert_none_contacted(engine, world.excluded.values())
        engine.dispose()


# --- crashes and concurrency: `pdca dispatch` in subprocesses ----------------------------------

DRIVER = """
import os, sys, time
from pathlib import Path

import flows.dispatch
import tasks.do.gateways

flows.dispatch.CHUNK = flows.dispatch.BULK_CHUNK = int(os.environ["TEST_CHUNK"])
gate = os.environ.get("TEST_GATE")
stop_after = int(os.environ.get("TEST_STOP_AFTER_CALL", "0"))
calls = 0


def held(accept):  # a journaled gateway's way in, held as the test asks
    def send(self, *args):
        global calls
        if gate:  # hold the first send until the test opens the gate
            deadline = time.monotonic() + 120
            while not Path(gate).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        receipts = accept(self, *args)
        calls += 1
        if calls == stop_after:
            # the gateway has accepted this part and its journal has committed, but the
            # outbox does not know yet: say so, and wait here for the test's SIGKILL
            Path(os.environ["TEST_STOPPED"]).touch()
            time.sleep(120)
        return receipts

    return send


journaled = tasks.do.gateways.JournaledGateway
journaled.send_batch = held(journaled.send_batch)  # one message at a time
journaled.send_selected = held(journaled.send_selected)  # the bulk path
from pdca.cli import main

sys.argv = ["pdca", *sys.argv[1:]]
main()
"""
"""`pdca dispatch` with a gateway the test can hold: before its first call until a gate
file exists, or right after its Nth call (accepted and journaled, the outbox not yet told)
until the test kills it."""


def error_lines(stderr: str) -> list[str]:
    """The CLI's own error lines (Prefect's log lines share stderr)."""
    return [line for line in stderr.splitlines() if line.startswith("pdca: error: ")]


def cli_env(url: str, prefect_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PDCA_", "TEST_"))}
    return {**env, "PDCA_DATABASE_URL": url, "PREFECT_HOME": str(prefect_home), **extra}


def start_driver(folder: Path, env: dict[str, str], argv: list[str]) -> subprocess.Popen:
    script = folder / "slow_dispatch.py"
    script.write_text(DRIVER, encoding="utf-8")
    with (folder / "driver.out").open("w") as out, (folder / "driver.err").open("w") as err:
        return subprocess.Popen(  # its own group: the kill takes its embedded Prefect API too
            [sys.executable, str(script), *argv],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the dispatch ended (code {process.returncode}) too early")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("timed out waiting for the dispatch")
        time.sleep(0.02)


def outbox_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)
        ).all()
    return dict(rows)


@dataclass
class KilledRun:
    engine: Engine
    at_kill: dict[str, int]
    journaled_at_kill: set[int]
    """Outbox ids `sending` at the kill whose send the gateway had already accepted."""
    first_rerun: subprocess.CompletedProcess
    final_rerun: subprocess.CompletedProcess | None


@pytest.fixture(scope="class")
def killed_run(tmp_path_factory, sqlite_template, prefect_home) -> KilledRun:
    folder = tmp_path_factory.mktemp("killed-run")
    shutil.copy(sqlite_template, folder / "pdca.db")
    url = f"sqlite:///{folder / 'pdca.db'}"
    engine = make_engine(url)
    plenty = dict.fromkeys(("phone", "sms", "im", "app_push"), 10_000_000)
    with engine.begin() as conn:
        build_dispatch_world(conn, eligible=3000, plan_touches=plenty)
    argv = dispatch_argv(NOON_AT, "--json")
    env = cli_env(url, prefect_home)
    stopped = folder / "stopped"
    # chunks of 200 customers, one gateway call per channel: call 7 is in the second chunk
    hold = {"TEST_CHUNK": "200", "TEST_STOP_AFTER_CALL": "7", "TEST_STOPPED": str(stopped)}
    driver = start_driver(folder, {**env, **hold}, argv)
    wait_for(stopped.exists, driver)
    os.killpg(driver.pid, signal.SIGKILL)  # the crash: the process and what it started
    driver.wait(timeout=30)
    at_kill = outbox_counts(engine)
    box = outbox(engine)
    sending = box[box["status"] == "sending"]
    keys = {
        idempotency_key(CAMPAIGN_ID, DAY, "noon", row.customer_id, row.channel): row.outbox_id
        for row in sending.itertuples()
    }
    journaled = set(simulated_sends(engine)["idempotency_key"]) & set(keys)
    rerun = [str(PDCA), *argv]
    first = subprocess.run(rerun, cwd=folder, env=env, capture_output=True, text=True, timeout=180)
    final = None
    if first.returncode != 0:
        # what an operator does today: remove the dead run's lock by hand, then rerun
        with engine.begin() as conn:
            conn.execute(delete(DispatchLock).where(DispatchLock.campaign_id == CAMPAIGN_ID))
        final = subprocess.run(
            rerun, cwd=folder, env=env, capture_output=True, text=True, timeout=180
        )
    yield KilledRun(engine, at_kill, {keys[k] for k in journaled}, first, final)
    engine.dispose()


class TestKillAndRerun:
    def test_the_kill_interrupted_the_batch(self, killed_run):
        counts = killed_run.at_kill
        assert counts.get("sent", 0) > 0
        assert counts.get("pending", 0) + counts.get("sending", 0) > 0, counts

    def test_rerun_after_a_kill_is_not_refused(self, killed_run):
        result = killed_run.first_rerun
        assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]

    def test_every_chosen_customer_is_sent_exactly_once(self, killed_run):
        final = killed_run.final_rerun or killed_run.first_rerun
        assert final.returncode == 0, final.stderr[-2000:]
        document = json.loads(final.stdout)
        assert document["totals"]["failures"] == {}
        engine = killed_run.engine
        box = outbox(engine)
        assert set(box["status"]) == {"sent", "holdout"}, box["status"].value_counts()
        assert_exactly_once(engine)
        sims = simulated_sends(engine)
        assert sims["customer_id"].is_unique
        assert sims["attempts"].max() <= 2
        assert box["attempts"].max() <= 2

    def test_interrupted_sends_were_resent_with_the_same_key(self, killed_run):
        """The chunk the gateway had accepted when the run died: resent once more (attempt
        2), recognised by its idempotency key, recorded once."""
        resent = killed_run.journaled_at_kill
        assert resent, "the kill did not land between the gateway and the outbox"
        box = outbox(killed_run.engine).set_index("outbox_id")
        assert (box.loc[sorted(resent), "attempts"] == 2).all()
        sims = simulated_sends(killed_run.engine)
        assert (sims["attempts"] == 2).sum() == len(resent)


class TestConcurrentDispatch:
    def test_second_dispatch_is_refused_and_nothing_is_sent_twice(
        self, tmp_path, sqlite_url, prefect_home, capfd
    ):
        engine = make_engine(sqlite_url)
        with engine.begin() as conn:
            build_dispatch_world(conn, eligible=300)
        gate = tmp_path / "gate"
        argv = dispatch_argv(NOON_AT, "--json")
        env = cli_env(sqlite_url, prefect_home, TEST_CHUNK="100", TEST_GATE=str(gate))
        first = start_driver(tmp_path, env, argv)

        def holds_lock() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(DispatchLock)).scalar() > 0

        try:
            wait_for(lambda: holds_lock() and "sending" in outbox_counts(engine), first)
            capfd.readouterr()
            with database(sqlite_url):
                code, out, err = run_main(argv, capfd)
        finally:
            gate.touch()
        assert first.wait(timeout=120) == 0, (tmp_path / "driver.err").read_text()[-2000:]
        assert code == 2, err[-2000:]
        assert out == ""
        (message,) = error_lines(err)
        assert message.startswith(
            "pdca: error: campaign 'spring-test': another dispatch is running"
        )
        assert "Traceback" not in err, "a refused dispatch is a user error: one line"
        document = json.loads((tmp_path / "driver.out").read_text())
        sends = sum(sum(v.values()) for v in document["totals"]["sends"].values())
        assert sends == (outbox(engine)["status"] == "sent").sum() > 0
        assert_exactly_once(engine)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(OutreachBatch)).scalar() == 1
            assert conn.execute(select(func.max(SimulatedSend.attempts))).scalar() == 1
            assert conn.execute(select(func.count()).select_from(DispatchLock)).scalar() == 0
        engine.dispose()
