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


def test_large_percentages_are_grouped_like_every_other_figure() -> None:
    """CLDR's `#,##0%`: a change of +1,250 % has its thousands separator (it had none)."""
    assert fmt.percent(12.5) == "1,250.0 %"
    assert fmt.signed_percent(-12.5) == "−1,250.0 %"
    assert fmt.per_mille(1234.5) == "1,234.50 ‰"


def test_rounding_is_babels_half_to_even_on_the_figure_as_written() -> None:
    """Babel rounds the decimal the float prints as, half to even (ICU's default), not the
    float's binary value: 2.675 (binary 2.67499…) is `2.68`, 2.665 is `2.66`."""
    assert fmt.number(2.675) == "2.68"
    assert fmt.number(2.665) == "2.66"
    assert fmt.count(2.5) == "2" and fmt.count(3.5) == "4"
    assert fmt.count(-0.3) == "0", "not -0"
