"""Anomalies on the new KPIs, from the user's side: `pdca check --json` on small worlds.

A hand-built campaign whose two channels (sms, im) each reach 30 customers a week for
seven weeks (2026-W10 to W16); every one of them answers the survey two days later. The
trailing weeks' nps moves a little from week to week. In the *jumped* world the sms
customers of the checked week (W16) turn detractors: `pdca check --period 2026-W16` must
list an nps anomaly for the sms channel, computed from the stored weekly rollups with the
same rule, thresholds and scopes as the funnel's rates. In the *steady* world the checked
week looks like its history and nothing is listed; the campaign has no loans, so churn,
npl, ltv and new customers are null ("no data") and never raise one either.

The world is small, so the minimum volume is lowered to 20 answers (a setting); the z
threshold and the window stay the defaults.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from pdca.db import make_engine
from pdca.models import Customer, Survey, Touch
from tests import scenario
from tests.scenario import (
    BACKENDS,
    CAMPAIGN_ID,
    database,
    local_utc,
    new_database,
    prefect_env,  # noqa: F401  (the session's PREFECT_HOME)
    run_main,
)

pytestmark = pytest.mark.usefixtures("prefect_env")

FIRST_MONDAY = date(2026, 3, 2)  # 2026-W10
WEEKS = 7
CHECKED = "2026-W16"
PER_WEEK = 30
PROMOTERS = {"sms": [15, 17, 14, 16, 15, 16], "im": [12, 13, 11, 12, 14, 12]}
"""Promoters among each channel's 30 answers in the six trailing weeks (5 detractors each):
an nps that moves a few points from week to week."""
STEADY = {"sms": (15, 5), "im": (12, 5)}
JUMPED = {"sms": (3, 20), "im": (12, 5)}
"""(promoters, detractors) of the checked week."""
CAMPAIGN = {"channel": None, "segment": None}


def build(url: str, checked_week: dict[str, tuple[int, int]]) -> None:
    """The campaign, its customers, touches and survey answers."""
    engine = make_engine(url)
    customers, touches, surveys = [], [], []
    for week in range(WEEKS):
        monday = FIRST_MONDAY + timedelta(weeks=week)
        for channel in ("sms", "im"):
            if week < WEEKS - 1:
                promoters, detractors = PROMOTERS[channel][week], 5
            else:
                promoters, detractors = checked_week[channel]
            for n in range(PER_WEEK):
                customer_id = f"{channel}-{week}-{n:02d}"
                customers.append(scenario.customer(customer_id))
                touches.append(
                    scenario.touch(
                        f"t-{customer_id}",
                        customer_id,
                        local_utc(monday, 10),
                        campaign_id=CAMPAIGN_ID,
                        channel=channel,
                    )
                )
                score = 10 if n < promoters else 3 if n < promoters + detractors else 8
                surveys.append(
                    {
                        "survey_id": f"s-{customer_id}",
                        "customer_id": customer_id,
                        "campaign_id": CAMPAIGN_ID,
                        "answered_at": local_utc(monday + timedelta(days=2), 11),
                        "score": score,
                        "comment": None,
                    }
                )
    with engine.begin() as conn:
        scenario.apply(conn, scenario.spec_dict())
        conn.execute(insert(Customer), customers)
        conn.execute(insert(Touch), touches)
        conn.execute(insert(Survey), surveys)
    engine.dispose()


class Capture:
    """What `run_main` reads back, for module-scoped fixtures (capsys is per test)."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()

    def readouterr(self) -> tuple[str, str]:
        return self.out.getvalue(), self.err.getvalue()


def check_json(url: str, folder: Path) -> dict:
    """`pdca check --campaign … --period 2026-W16 --json`, as a user runs it."""
    capture = Capture()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PDCA_ANOMALY_MIN_VOLUME", "20")
        patch.setenv("PDCA_OUTPUT_DIR", str(folder / "out"))
        with database(url), redirect_stdout(capture.out), redirect_stderr(capture.err):
            code, out, err = run_main(
                ["check", "--campaign", CAMPAIGN_ID, "--period", CHECKED, "--json"], capture
            )
    assert code in (None, 0, 1), err
    return json.loads(out)


def checked_world(request, tmp_path_factory, checked_week) -> dict:
    folder = tmp_path_factory.mktemp("kpi-anomalies")
    url = new_database(request, folder, request.param)
    build(url, checked_week)
    return check_json(url, folder)


@pytest.fixture(scope="module", params=BACKENDS)
def jumped(request, tmp_path_factory) -> dict:
    """`pdca check --json` of the world whose sms customers turn detractors in W16."""
    return checked_world(request, tmp_path_factory, JUMPED)


@pytest.fixture(scope="module", params=BACKENDS)
def steady(request, tmp_path_factory) -> dict:
    """`pdca check --json` of the world whose W16 looks like its history."""
    return checked_world(request, tmp_path_factory, STEADY)


def test_a_channels_nps_collapse_is_listed(jumped: dict) -> None:
    found = [a for a in jumped["anomalies"] if a["metric"] == "nps"]
    sms = [a for a in found if a["scope"] == {"channel": "sms"}]
    assert len(sms) == 1, jumped["anomalies"]
    anomaly = sms[0]
    trailing = [100 * (p - 5) / PER_WEEK for p in PROMOTERS["sms"]]
    mean = sum(trailing) / len(trailing)
    std = (sum((v - mean) ** 2 for v in trailing) / (len(trailing) - 1)) ** 0.5
    assert anomaly["week"] == CHECKED
    assert anomaly["value"] == pytest.approx(100 * (3 - 20) / PER_WEEK)
    assert anomaly["baseline_mean"] == pytest.approx(mean)
    assert anomaly["baseline_std"] == pytest.approx(std)
    assert anomaly["z"] == pytest.approx((anomaly["value"] - mean) / std)
    assert anomaly["volume"] == PER_WEEK
    assert not [a for a in found if a["scope"] == {"channel": "im"}], "im did not move"


def test_the_nps_collapse_is_the_diagnosis_beyond_the_funnel(jumped: dict) -> None:
    """The funnel is as it always was; what went wrong is what customers think: the
    bottleneck names nps beside the stage, against the trailing weeks' pooled nps."""
    beyond = jumped["bottleneck"]["beyond_funnel"]
    answers = 6 * 2 * PER_WEEK
    pooled = 100 * (sum(PROMOTERS["sms"]) + sum(PROMOTERS["im"]) - 5 * 12) / answers
    actual = 100 * (3 + 12 - 20 - 5) / (2 * PER_WEEK)
    assert beyond["metric"] == "nps" and beyond["family"] == "customer"
    assert beyond["reference_kind"] == "baseline"
    assert beyond["actual"] == pytest.approx(actual)
    assert beyond["reference"] == pytest.approx(pooled)
    assert beyond["gap_pct"] == pytest.approx((actual - pooled) / abs(pooled))
    assert "contact pressure" in beyond["diagnosis"]
    compared = {row["metric"] for row in beyond["evidence"] if row["gap_pct"] is not None}
    assert compared == {"nps"}, "no loans: the other KPIs are null, never compared"


def test_a_steady_world_lists_no_anomaly(steady: dict) -> None:
    assert steady["anomalies"] == []
    kpis = {k["metric"]: k["actual"] for k in steady["kpis"] if k["scope"] == CAMPAIGN}
    assert kpis["nps"] == pytest.approx(100 * (15 + 12 - 10) / 60)
    for metric in ("churn_rate", "npl_rate", "ltv", "ltv_cac"):
        assert kpis[metric] is None, f"{metric}: no loans, no data"
