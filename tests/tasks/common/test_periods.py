"""Periods: parsing the three forms, local-to-UTC bounds, weeks, shifting."""

from datetime import date, datetime

import pytest

from pdca.errors import UserError
from tasks.common.periods import Period


class TestParse:
    @pytest.mark.parametrize(
        ("text", "start", "end", "kind"),
        [
            ("2026-W12", date(2026, 3, 16), date(2026, 3, 23), "week"),
            ("2026-W01", date(2025, 12, 29), date(2026, 1, 5), "week"),
            ("2026-03", date(2026, 3, 1), date(2026, 4, 1), "month"),
            ("2026-12", date(2026, 12, 1), date(2027, 1, 1), "month"),
            ("2026-Q1", date(2026, 1, 1), date(2026, 4, 1), "quarter"),
            ("2026-Q4", date(2026, 10, 1), date(2027, 1, 1), "quarter"),
        ],
    )
    def test_success(self, text, start, end, kind):
        period = Period.parse(text)
        assert (period.start, period.end, period.kind, str(period)) == (start, end, kind, text)

    @pytest.mark.parametrize("text", ["2026-W54", "2026-13", "2026-Q5", "March", "", "2026-3"])
    def test_failure(self, text):
        with pytest.raises(UserError, match="period"):
            Period.parse(text)


class TestImplausiblePeriods:
    @pytest.mark.parametrize("text", ["0000-01", "9999-Q4", "0001-W01", "1969-12", "2101-01"])
    def test_failure_one_line(self, text):
        with pytest.raises(UserError, match=r"the year must be within 1970\.\.2100") as caught:
            Period.parse(text)
        assert "\n" not in str(caught.value)

    @pytest.mark.parametrize("text", ["1970-01", "2100-Q4", "2100-12", "1970-W02"])
    def test_success_edges(self, text):
        period = Period.parse(text)
        assert period.utc_bounds("Asia/Shanghai")[0] < period.utc_bounds("America/Bogota")[1]

    def test_failure_shifted_out_of_range(self):
        with pytest.raises(UserError, match=r"outside 1970\.\.2100"):
            Period.parse("2026-03").shifted(-(10**7))


class TestBounds:
    def test_shanghai_midnight_is_the_previous_day_16_00_utc(self):
        start, end = Period.parse("2026-W12").utc_bounds("Asia/Shanghai")
        assert (start, end) == (datetime(2026, 3, 15, 16), datetime(2026, 3, 22, 16))

    def test_daylight_saving_changes_the_offset_inside_the_period(self):
        start, end = Period.parse("2026-03").utc_bounds("Europe/Lisbon")
        assert (start, end) == (datetime(2026, 3, 1, 0), datetime(2026, 3, 31, 23))


class TestWeeksAndShift:
    def test_weeks_of_a_month_overlap_its_edges(self):
        weeks = [str(w) for w in Period.parse("2026-03").weeks()]
        assert weeks == ["2026-W09", "2026-W10", "2026-W11", "2026-W12", "2026-W13", "2026-W14"]

    @pytest.mark.parametrize(
        ("text", "steps", "expected"),
        [
            ("2026-W01", -1, "2025-W52"),
            ("2026-01", -1, "2025-12"),
            ("2026-Q4", 1, "2027-Q1"),
            ("2026-W53", 0, "2026-W53"),
        ],
    )
    def test_shifted(self, text, steps, expected):
        assert str(Period.parse(text).shifted(steps)) == expected
