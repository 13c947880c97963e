"""The typed check result: JSON in and out key for key, and the one summary of a check."""

from __future__ import annotations

import json

import numpy as np

from tasks.check.findings import bottleneck
from tasks.check.result import (
    Bottleneck,
    CheckResult,
    Kpi,
    assemble,
    summarise,
)
from tasks.common.scopes import format_scope

EVIDENCE = {"reach_rate": 0.9, "response_rate": 0.1, "application_rate": 0.02}


def quality(trusted: bool = True) -> dict:
    return {"trusted": trusted, "suites": [], "quarantine": [], "docs_path": None}


def test_a_found_bottleneck_keeps_its_key_order() -> None:
    found = bottleneck(EVIDENCE, {**EVIDENCE, "application_rate": 0.04}, "target")
    assert found["stage"] == "application"
    assert json.dumps(Bottleneck.from_json(found).to_json()) == json.dumps(found)


def test_no_stage_below_keeps_its_key_order() -> None:
    none_below = bottleneck(EVIDENCE, EVIDENCE, "baseline")
    assert none_below["stage"] is None
    assert json.dumps(Bottleneck.from_json(none_below).to_json()) == json.dumps(none_below)


def test_a_kpi_without_target_has_no_judgement_keys() -> None:
    document = {
        "metric": "touches",
        "scope": {"channel": None, "segment": None},
        "target": None,
        "actual": 10.0,
        "variance": None,
        "variance_pct": None,
        "status": "no_target",
    }
    assert Kpi.from_json(document).to_json() == document


def test_assemble_cleans_numpy_and_nan() -> None:
    kpi = {"metric": "cac", "scope": {}, "actual": np.float64("nan"), "status": "no_target"}
    funnel = [{"channel": "sms", "touches": np.int64(3), "cac": np.float64("inf")}]
    check = assemble(
        "c1",
        "2026-W10",
        quality(),
        funnel=funnel,
        kpis=[kpi],
        anomalies=[],
        experiments=[],
        bottleneck=None,
        reject_reasons=[],
    )
    assert check.kpis[0].actual is None
    assert type(check.funnel[0].touches) is int and check.funnel[0].cac is None


def test_a_partial_stored_result_reads_with_defaults() -> None:
    check = CheckResult.from_json({"campaign": "c1", "period": "2026-W10", "trusted": True})
    assert check.kpis == [] and check.bottleneck is None
    assert check.data_quality.suites == []


def test_summary() -> None:
    check = CheckResult.from_json(
        {
            "campaign": "c1",
            "period": "2026-W10",
            "trusted": False,
            "data_quality": {
                "trusted": False,
                "suites": [{"name": "touches", "success": False, "failed": ["x"]}],
                "quarantine": [{"feed": "loans", "success": True}],
            },
            "funnel": [{"touches": 5, "applications": 1}, {"touches": 7, "approved": 1}],
            "kpis": [
                {"metric": "cac", "scope": {"channel": None}, "status": "off_track"},
                {"metric": "roi", "scope": {"channel": "sms"}, "status": "at_risk"},
                {"metric": "touches", "scope": {}, "status": "on_track"},
            ],
            "experiments": [{"control": "A", "treatment": "B", "decision": "no_difference"}],
        }
    )
    summary = summarise(check)
    assert summary.totals == {"touches": 12, "delivered": 0, "applications": 1, "approved": 1}
    assert [suite.name for suite in summary.failed_suites] == ["touches"]
    assert summary.failed_quarantine == []
    assert [kpi.metric for kpi in summary.off_track] == ["cac", "roi"]
    assert summary.status_counts == {"on_track": 1, "at_risk": 0, "off_track": 1}
    assert summary.decisions == ["B vs A no_difference"]
    assert summary.bottleneck_stage == "none" and summary.trust_word == "untrusted"


def test_format_scope() -> None:
    assert format_scope({"channel": "sms", "segment": None}) == "channel=sms"
    assert format_scope({"channel": "sms", "segment": "sme"}) == "channel=sms, segment=sme"
    assert format_scope({}) == format_scope(None) == "campaign"
    sentence = format_scope({"segment": "sme"}, separator=" ", whole="the campaign")
    assert sentence == "segment sme"
    assert format_scope({"channel": None}, separator=" ", whole="the campaign") == "the campaign"
