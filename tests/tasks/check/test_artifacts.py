"""The check's artifacts read as a manager reads: units, no float noise, misses apart."""

from __future__ import annotations

import re

from tasks.check.artifacts import failed_expectations, kpi_table, summary_markdown
from tasks.check.result import CheckResult


def kpi(metric: str, target: float, actual: float, status: str, channel: str | None = None):
    return {
        "metric": metric,
        "scope": {"channel": channel, "segment": None},
        "target": target,
        "actual": actual,
        "variance": actual - target,
        "variance_pct": (actual - target) / target,
        "status": status,
        "lower_is_better": metric in {"cac", "overdue_rate_30", "complaint_rate"},
        "note": None,
    }


CHECK = CheckResult.from_json(
    {
        "campaign": "c1",
        "period": "2026-W17",
        "trusted": False,
        "data_quality": {
            "trusted": False,
            "status": "untrusted",
            "suites": [
                {
                    "name": "touches",
                    "success": False,
                    "failed": ["cost between"],
                    "rows_in": 11289,
                    "unexpected": {"cost between": 12},
                }
            ],
            "quarantine": [],
        },
        "kpis": [
            kpi("disbursed_amount", 2_000_000.0, 1_681_234.5, "off_track"),
            kpi("disbursements", 80.0, 74.0, "at_risk"),
            kpi("application_rate", 0.05, 0.0312, "off_track", "sms"),
            kpi("complaint_rate", 1.0, 3.42, "off_track", "im"),
            kpi("roi", 30.0, 31.5, "on_track"),
        ],
    }
)


class TestSummary:
    def test_misses_apart_from_risks_the_largest_first(self) -> None:
        text = summary_markdown(CHECK, "CNY")
        off = text.split("## Off track")[1].split("## At risk")[0]
        at_risk = text.split("## At risk")[1].split("## Anomalies")[0]
        assert [line.split()[1] for line in off.splitlines() if line.startswith("- ")] == [
            "complaint_rate",  # +242 %
            "application_rate",  # −37.6 %
            "disbursed_amount",  # −15.9 %
        ]
        assert "disbursements" in at_risk and "disbursements" not in off

    def test_numbers_in_their_units(self) -> None:
        text = summary_markdown(CHECK, "CNY")
        assert "1,681,234 CNY against a target of 2,000,000 CNY" in text
        assert "3.12 %" not in text and "3.1 % against a target of 5.0 %" in text
        assert "3.42 ‰" in text
        assert not re.search(r"\de[+-]\d", text), "a number in scientific notation"

    def test_the_kpi_table_has_no_float_noise(self) -> None:
        rows = {row["metric"]: row for row in kpi_table(CHECK, "CNY")}
        assert rows["disbursements"]["actual"] == "74"
        assert rows["disbursements"]["target"] == "80"
        assert rows["roi"]["actual"] == "31.5×"
        assert rows["application_rate"]["variance"] == "−37.6 %"

    def test_failed_expectations_table(self) -> None:
        assert failed_expectations(CHECK) == [
            {
                "suite": "touches",
                "expectation": "cost between",
                "failing_rows": 12,
                "rows_checked": 11289,
            }
        ]
