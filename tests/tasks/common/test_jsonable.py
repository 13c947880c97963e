"""The one JSON cleaner: numpy, pandas, Decimal and dates in, plain JSON values out."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from tasks.common.jsonable import jsonable, jsonable_records


def test_numbers() -> None:
    assert jsonable(np.int64(3)) == 3 and type(jsonable(np.int64(3))) is int
    assert type(jsonable(np.float32(0.5))) is float
    assert jsonable(np.bool_(True)) is True
    assert jsonable(Decimal("1.25")) == 1.25
    assert jsonable(7) == 7 and jsonable("x") == "x" and jsonable(None) is None


def test_missing_and_infinite_are_none() -> None:
    for value in (math.nan, math.inf, -math.inf, np.float64("nan"), pd.NA, pd.NaT):
        assert jsonable(value) is None


def test_dates() -> None:
    assert jsonable(pd.Timestamp("2026-03-16 09:30")) == "2026-03-16 09:30:00"
    assert jsonable(np.datetime64("2026-03-16T09:30")) == "2026-03-16 09:30:00"
    assert jsonable(datetime(2026, 3, 16, 9, 30)) == "2026-03-16 09:30:00"
    assert jsonable(date(2026, 3, 16)) == "2026-03-16"


def test_containers() -> None:
    value = {"a": [np.int64(1), (math.nan, "b")], "c": {"d": np.float64(2.5)}}
    assert jsonable(value) == {"a": [1, [None, "b"]], "c": {"d": 2.5}}
    json.dumps(jsonable(value))


def test_records() -> None:
    frame = pd.DataFrame({"k": ["x", "y"], "n": [1, 2], "r": [0.5, math.nan]})
    assert jsonable_records(frame) == [{"k": "x", "n": 1, "r": 0.5}, {"k": "y", "n": 2, "r": None}]


class TestClean:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (float("nan"), None),
            (float("inf"), None),
            (pd.NA, None),
            ({"a": [1.5, float("-inf")]}, {"a": [1.5, None]}),
        ],
    )
    def test_json_safe(self, value, expected) -> None:
        assert jsonable(value) is expected or jsonable(value) == expected

    def test_numpy_scalars_become_python(self) -> None:
        import numpy as np

        assert type(jsonable(np.int64(3))) is int
        assert type(jsonable(np.float64(0.5))) is float
