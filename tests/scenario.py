"""Small, hand-built worlds for the plan, dispatch and export tests.

A campaign in Asia/Shanghai (noon window 12:00-13:30, evening 19:00-21:00, quiet hours
21:00-09:00), customers written straight into the tables, and a plan whose budget rows
give dispatch its quotas. Every excluded customer is built so that exactly one rule
excludes it, and is placed in the window the test dispatches, so its exclusion counts.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import pytest
from sqlalchemy import Connection, Engine, func, insert, select

from pdca.models import (
    Application,
    Budget,
    Complaint,
    Customer,
    Loan,
    OutboxEntry,
    Plan,
    Repayment,
    SimulatedSend,
    Touch,
)
from pdca.settings import get_settings
from pdca.synthetic.demo_history import DemoFiles
from tasks.common.campaigns import CampaignSpec, apply_spec, load_spec
from tasks.common.feeds import LOAD_ORDER
from tasks.data.importing import import_feed
from tests.oracles.dispatch_rules import window_share

CAMPAIGN_ID = "spring-test"
TIMEZONE = "Asia/Shanghai"
ZONE = ZoneInfo(TIMEZONE)
WINDOWS = ("noon", "evening")
DAY = date(2026, 3, 4)
"""A Wednesday inside the campaign."""
NEXT_DAY = date(2026, 3, 5)
PERIOD = "2026-03"


def local_utc(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A local wall-clock time in the campaign's zone, as naive UTC (how times are stored)."""
    moment = datetime.combine(day, time(hour, minute, second), tzinfo=ZONE)
    return moment.astimezone(UTC).replace(tzinfo=None)


def local_time(moment: datetime) -> time:
    """A stored naive-UTC time as the campaign's local wall-clock time."""
    return moment.replace(tzinfo=UTC).astimezone(ZONE).time()


def in_quiet_hours(moment: datetime) -> bool:
    """21:00-09:00 local, the spec's quiet hours."""
    clock = local_time(moment)
    return clock >= time(21) or clock < time(9)


def spec_dict(campaign_id: str = CAMPAIGN_ID, **overrides) -> dict:
    """The campaign spec as a user writes it; `overrides` replace top-level fields."""
    spec = {
        "id": campaign_id,
        "name": "SME spring test",
        "product": "sme-revolving",
        "start": "2026-03-02",
        "end": "2026-05-31",
        "timezone": TIMEZONE,
        "channels": ["phone", "sms", "im", "app_push"],
        "budget_total": 100_000,
        "risk": {
            "max_overdue_rate_30": 0.03,
            "min_credit_score": 600,
            "apr_cap": 24.0,
            "excluded_industries": ["p2p-lending", "crypto"],
            "max_debt_ratio": 0.7,
        },
        "contact_policy": {
            "max_touches_per_7d": 2,
            "quiet_hours": "21:00-09:00",
            "windows": {"noon": "12:00-13:30", "evening": "19:00-21:00"},
        },
        "experiment": {
            "metric": "application_rate",
            "variants": {"A": 0.45, "B": 0.45},
            "holdout": 0.10,
        },
        "recipients": ["ops-lead@example.com"],
    }
    spec.update(overrides)
    return spec


def apply(conn: Connection, spec: dict) -> CampaignSpec:
    """Validate and apply a spec dict (the caller commits)."""
    parsed = CampaignSpec.model_validate(spec)
    apply_spec(conn, parsed, actor="test")
    return parsed


def customer(
    customer_id: str,
    *,
    segment: str = "sme",
    credit_score: int | None = 700,
    debt_ratio: float = 0.3,
    industry: str = "retail",
    marketing_consent: bool = True,
    do_not_contact: bool = False,
) -> dict:
    number = sum(ord(c) for c in customer_id) * 7919 % 10_000
    return {
        "customer_id": customer_id,
        "segment": segment,
        "region": "north",
        "credit_score": credit_score,
        "monthly_income": 8000.0,
        "debt_ratio": debt_ratio,
        "industry": industry,
        "phone": f"+86 138{number:04d}{len(customer_id):04d}",
        "email": f"{customer_id}@example.com",
        "marketing_consent": marketing_consent,
        "do_not_contact": do_not_contact,
        "created_at": datetime(2025, 1, 1),
    }


def add_plan(
    conn: Connection,
    touches: dict[str, int],
    *,
    campaign_id: str = CAMPAIGN_ID,
    period: str = PERIOD,
    cost_per_touch: dict[str, float] | None = None,
    daily_capacity: dict[str, int] | None = None,
) -> int:
    """A current plan whose budget rows give dispatch its quotas (no plan flow needed)."""
    plan_id = conn.execute(
        insert(Plan)
        .values(campaign_id=campaign_id, period=period, version=1, is_current=True, inputs={})
        .returning(Plan.plan_id)
    ).scalar_one()
    costs = cost_per_touch or {"phone": 8.0, "sms": 0.05, "im": 0.03, "app_push": 0.01}
    conn.execute(
        insert(Budget),
        [
            {
                "plan_id": plan_id,
                "channel": channel,
                "amount": count * costs.get(channel, 0.1),
                "touches": count,
                "daily_capacity": (daily_capacity or {}).get(channel),
                "explanation": {},
            }
            for channel, count in touches.items()
        ],
    )
    return plan_id


def ids_in_window(
    prefix: str, count: int, window: str, campaign_id: str = CAMPAIGN_ID, start: int = 0
) -> list[str]:
    """`count` customer ids `<prefix><n>` that dispatch puts in `window` of the day."""
    found: list[str] = []
    number = start
    while len(found) < count:
        candidates = [f"{prefix}{n:05d}" for n in range(number, number + 4 * count + 8)]
        frame = pd.DataFrame({"customer_id": candidates})
        windows = window_share(campaign_id, frame, list(WINDOWS))
        found += [c for c, w in zip(candidates, windows, strict=True) if w == window]
        number += 4 * count + 8
    return found[:count]


def touch(
    touch_id: str,
    customer_id: str,
    sent_at: datetime,
    *,
    campaign_id: str = "other-campaign",
    channel: str = "sms",
    variant: str = "A",
    delivered: bool = True,
    cost: float = 0.05,
) -> dict:
    return {
        "touch_id": touch_id,
        "campaign_id": campaign_id,
        "customer_id": customer_id,
        "channel": channel,
        "variant": variant,
        "sent_at": sent_at,
        "delivered": delivered,
        "responded": False,
        "cost": cost,
    }


EXCLUSIONS = (
    "do_not_contact",
    "no_marketing_consent",
    "credit_score_below_floor",
    "excluded_industry",
    "debt_ratio_above_cap",
    "overdue_loan",
    "recent_complaint",
    "frequency_cap",
    "tier_c_frequency",
)
"""Every rule the audience query and the router apply, one customer each."""


@dataclass
class DispatchWorld:
    """Who is who in the dispatch scenario."""

    excluded: dict[str, str]
    """Exclusion reason → the customer it must exclude (in the noon window)."""
    eligible: list[str]
    sticky_b: str
    """A customer who already has variant B in the campaign (a touch 20 days ago)."""
    noon: set[str] = field(default_factory=set)
    """Everyone dispatch puts in the noon window."""


def build_dispatch_world(
    conn: Connection,
    *,
    eligible: int = 120,
    spec: dict | None = None,
    plan_touches: dict[str, int] | None = None,
) -> DispatchWorld:
    """The campaign, a plan with room for everyone, eligible customers across the tiers,
    and one customer per exclusion rule, all but the eligible ones in the noon window."""
    apply(conn, spec or spec_dict())
    add_plan(
        conn,
        plan_touches or {"phone": 1_000_000, "sms": 1_000_000, "im": 1_000_000, "app_push": 1_000},
    )
    scores = (750, 690, 640)  # tiers A, B, C with no history (every segment is average)
    eligible_ids = [f"e{n:05d}" for n in range(eligible)]
    rows = [
        customer(cid, credit_score=scores[n % 3], segment=("sme", "salaried")[n % 2])
        for n, cid in enumerate(eligible_ids)
    ]
    reasons = ids_in_window("x", len(EXCLUSIONS), "noon")
    excluded = dict(zip(EXCLUSIONS, reasons, strict=True))
    special = {
        "do_not_contact": {"do_not_contact": True},
        "no_marketing_consent": {"marketing_consent": False},
        "credit_score_below_floor": {"credit_score": 550},
        "excluded_industry": {"industry": "crypto"},
        "debt_ratio_above_cap": {"debt_ratio": 0.9},
        "tier_c_frequency": {"credit_score": 640},
    }
    rows += [customer(cid, **special.get(reason, {})) for reason, cid in excluded.items()]
    sticky = _sticky_candidate()
    rows.append(customer(sticky, credit_score=690))
    conn.execute(insert(Customer), rows)

    day_start = local_utc(DAY, 0)
    # an overdue loan: application → loan → latest repayment snapshot 5 days past due
    who = excluded["overdue_loan"]
    conn.execute(
        insert(Application).values(
            application_id="a-overdue",
            customer_id=who,
            campaign_id=None,
            channel="branch",
            applied_at=day_start - timedelta(days=120),
            product_code="sme-revolving",
            amount_requested=10_000.0,
        )
    )
    conn.execute(
        insert(Loan).values(
            loan_id="l-overdue",
            application_id="a-overdue",
            disbursed_at=day_start - timedelta(days=110),
            amount=10_000.0,
            apr=14.5,
            term_months=12,
        )
    )
    conn.execute(
        insert(Repayment),
        [
            {
                "loan_id": "l-overdue",
                "as_of": DAY - timedelta(days=40),
                "dpd": 0,
                "outstanding": 9e3,
            },
            {
                "loan_id": "l-overdue",
                "as_of": DAY - timedelta(days=10),
                "dpd": 5,
                "outstanding": 9e3,
            },
        ],
    )
    conn.execute(
        insert(Complaint).values(
            complaint_id="k-recent",
            customer_id=excluded["recent_complaint"],
            campaign_id="other-campaign",
            received_at=day_start - timedelta(days=30),
            category="too_many_messages",
        )
    )
    capped, tier_c = excluded["frequency_cap"], excluded["tier_c_frequency"]
    conn.execute(
        insert(Touch),
        [
            touch("t-cap-1", capped, day_start - timedelta(days=2)),
            touch("t-cap-2", capped, day_start - timedelta(days=5)),
            touch("t-tierc-1", tier_c, day_start - timedelta(days=3)),
            touch(
                "t-sticky",
                sticky,
                day_start - timedelta(days=20),
                campaign_id=CAMPAIGN_ID,
                variant="B",
            ),
        ],
    )
    world = DispatchWorld(excluded=excluded, eligible=eligible_ids, sticky_b=sticky)
    everyone = pd.DataFrame({"customer_id": [*eligible_ids, *reasons, sticky]})
    windows = window_share(CAMPAIGN_ID, everyone, list(WINDOWS))
    world.noon = set(everyone["customer_id"][windows == "noon"])
    return world


def _sticky_candidate() -> str:
    """A noon customer whose hash alone would put it in variant A (so B is only sticky)."""
    from tests.oracles.dispatch_rules import assign_variants

    spec = CampaignSpec.model_validate(spec_dict())
    for cid in ids_in_window("s", 40, "noon"):
        frame = pd.DataFrame({"customer_id": [cid], "assigned_variant": [None]})
        if assign_variants(CAMPAIGN_ID, spec, frame).iloc[0] == "A":
            return cid
    raise AssertionError("no candidate hashes to A")


# --- reading the outcome ------------------------------------------------------------------


def frame(conn: Connection, statement) -> pd.DataFrame:
    result = conn.execute(statement)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def outbox(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return frame(conn, select(OutboxEntry))


def touches(engine: Engine, campaign_id: str = CAMPAIGN_ID) -> pd.DataFrame:
    with engine.connect() as conn:
        return frame(conn, select(Touch).where(Touch.campaign_id == campaign_id))


def simulated_sends(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return frame(conn, select(SimulatedSend))


def count(engine: Engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def assert_none_contacted(engine: Engine, customers: Iterable[str], *, why: str = "") -> None:
    """No outbox entry, dispatched touch or simulated send for any of `customers`."""
    wanted = set(customers)
    sent = touches(engine)
    found = {
        "outbox": sorted(wanted & set(outbox(engine)["customer_id"])),
        "touches": sorted(wanted & set(sent.loc[sent["touch_id"] != "t-sticky", "customer_id"])),
        "simulated_sends": sorted(wanted & set(simulated_sends(engine)["customer_id"])),
    }
    assert not any(found.values()), f"excluded customers were contacted {why}: {found}"


# --- the flows' environment ---------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_env(prefect_home: Path) -> Iterator[Path]:
    """One PREFECT_HOME for the session, set before the first flow call (PLATFORM-NOTES)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_HOME", str(prefect_home))
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        patch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
        from prefect.server.api.server import SubprocessASGIServer

        from flows.operations import embedded_api_settings, server_configured

        with embedded_api_settings():  # as the CLI runs its flows on the embedded API
            if not server_configured():
                # started here, once: two threads of a flow run (its API client and an
                # events worker) that both found it down started it at the same time, and
                # the process of the first start was left running after the suite; this
                # one stops at exit (Prefect's handler), after the logs are sent
                SubprocessASGIServer().start()
            yield prefect_home
    # the embedded API stops at exit and says so through a handler bound to a stream
    # that pytest's capture has closed by then: keep it quiet
    logging.getLogger("prefect").setLevel(logging.WARNING)


def drain_prefect_events() -> None:
    """Stop Prefect's events worker in this process, if a flow started one (the next
    event starts another). Its websocket to the API pings on connecting, on checkpoints
    and every 20 s to keep alive, and websockets draws each ping's payload from the global
    `random` module: Hypothesis warns when a property test sees that state change while
    it draws its examples. The conftest's `prefect_events_drained` calls this after
    every module."""
    worker = sys.modules.get("prefect.events.worker")
    if worker is not None:
        worker.EventsWorker.drain_all(timeout=10)


def run_main(argv: list[str], capture) -> tuple[int, str, str]:
    """`pdca ARGV` in this process, as `main()` runs it: exit code, stdout, stderr.

    `capture` is pytest's capsys or capfd (flows log through handlers that capfd sees)."""
    import sys

    from pdca.cli import main

    saved = sys.argv
    sys.argv = ["pdca", *argv]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = saved
    out, err = capture.readouterr()
    return exited.value.code, out, err


@contextmanager
def database(url: str) -> Iterator[str]:
    """The flows read `PDCA_DATABASE_URL` through cached settings: point them at `url`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PDCA_DATABASE_URL", url)
        get_settings.cache_clear()
        try:
            yield url
        finally:
            get_settings.cache_clear()


def new_database(request: pytest.FixtureRequest, folder: Path, backend: str) -> str:
    """A fresh migrated database on `backend`, for fixtures broader than one test (the
    conftest's `db_url` is per test)."""
    if backend == "sqlite":
        path = folder / "pdca.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    server = request.getfixturevalue("postgres")
    name = f"pdca_{folder.name.replace('-', '_').lower()}_{os.getpid()}"
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'create database "{name}" template pdca_template')
    return server.url(name)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Parameters for fixtures that build their own database per back end."""

SLOW_BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.slow),
    pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow]),
]
"""`BACKENDS` for fixtures whose world is large (20,000 customers, the full UCI file): every
test that uses one is `slow` on both back ends, and keeps its ids (`[sqlite]`, `[postgres]`)."""


def load_demo(engine: Engine, files: DemoFiles) -> CampaignSpec:
    """The demo campaign applied and its feed files imported through the importers (with
    their quarantine), as `pdca demo` loads them; returns the spec."""
    spec = load_spec(files.spec)
    with engine.begin() as conn:
        apply_spec(conn, spec, actor="test")
    with engine.connect() as conn:
        for feed in LOAD_ORDER:
            import_feed(conn, feed, files.feed(feed), actor="test")
    return spec
