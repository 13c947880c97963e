"""One JSON cleaner for every stage: what pandas, numpy and the drivers hand back, as the
plain Python values `json.dumps` and a JSON column accept.

- numpy scalars become Python's (`np.int64(3)` → 3, `np.bool_(True)` → True);
- a missing or unknowable number becomes None: NaN, ±inf, `pd.NA`, `pd.NaT`;
- `Decimal` (PostgreSQL's numeric) becomes a float;
- a timestamp (datetime, `pd.Timestamp`, `np.datetime64`) becomes its text as
  `str(pd.Timestamp(...))` (`2026-03-16 09:30:00`), a day its ISO text (`2026-03-16`);
- dicts, lists and tuples are cleaned item by item (a tuple becomes a list); a frame
  becomes its records (`jsonable_records`).

Anything else (str, int, float, bool, None) is returned as it is.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd


def jsonable(value: Any) -> Any:
    """`value` as JSON-ready Python (see the module's rules)."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, datetime | np.datetime64):
        return None if pd.isna(value) else str(pd.Timestamp(value))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def jsonable_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as a list of JSON-ready row dicts, columns in the frame's order."""
    return [jsonable(row) for row in frame.astype(object).to_dict("records")]
