"""One way to write each kind of figure."""

from __future__ import annotations

import pytest

from tasks.common import formatting as fmt


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("touches", 11289.0, "11,289"),
        ("disbursements", 74.0, "74"),
        ("disbursed_amount", 1681234.4, "1,681,234 CNY"),
        ("cac", 57.874, "57.87 CNY"),
        ("application_rate", 0.0523, "5.2 %"),
        ("overdue_rate_30", 0.031, "3.1 %"),
        ("complaint_rate", 3.4217, "3.42 ‰"),
        ("roi", 31.48, "31.5×"),
        ("roi", None, "n/a"),
        ("roi", float("nan"), "n/a"),
    ],
)
def test_metric(metric: str, value: float | None, text: str) -> None:
    assert fmt.metric(metric, value, "CNY") == text


def test_p_values_and_changes() -> None:
    assert fmt.p_value(0.0969) == "0.097"
    assert fmt.p_value(0.00001) == "< 0.001"
    assert fmt.signed_percent(-0.376) == "−37.6 %"
    assert fmt.signed_percent(0.125) == "+12.5 %"
