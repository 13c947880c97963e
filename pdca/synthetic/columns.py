"""How the simulation's arrays become the feeds' text, and keys numbered across blocks.

Every value is written the way the contract's CSV formats say: ISO 8601 timestamps with
the campaign's offset, plain decimals, `true`/`false`, zero-padded ids.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from pdca.synthetic.campaign import UTC_OFFSET
from tasks.common.feeds import FEEDS

FEED_COLUMNS: dict[str, tuple[str, ...]] = {feed: FEEDS[feed].column_names for feed in FEEDS}
"""The contract's feed columns, key first, in the contract's order."""


class KeyCounter:
    """Running counters, so that keys stay unique across blocks."""

    def __init__(self) -> None:
        self.next = {"touches": 1, "applications": 1, "loans": 1, "complaints": 1, "surveys": 1}

    def take(self, feed: str, count: int) -> np.ndarray:
        """The next `count` key numbers of `feed`."""
        first = self.next[feed]
        self.next[feed] = first + count
        return np.arange(first, first + count)


def text_frame(feed: str, **columns) -> pd.DataFrame:
    """The feed's rows as text (pandas' compact string dtype), in the contract's order."""
    if tuple(columns) != FEED_COLUMNS[feed]:
        raise AssertionError(f"{feed}: columns {tuple(columns)} are not the contract's")
    return pd.DataFrame({name: pd.array(np.asarray(v), dtype="str") for name, v in columns.items()})


def join_text(*parts) -> np.ndarray:
    """Element-wise concatenation of text arrays (and plain strings)."""
    joined = parts[0]
    for part in parts[1:]:
        joined = np.strings.add(joined, part)
    return joined


def digits(numbers: np.ndarray, width: int) -> np.ndarray:
    """Whole numbers as text, zero-padded to `width` digits."""
    text = np.asarray(numbers, dtype=np.int64).astype(str)
    return np.strings.zfill(text, width) if text.size else text  # zfill fails on no rows


def id_text(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Keys such as `c0000042`: `prefix` and the zero-padded number."""
    return np.strings.add(prefix, digits(numbers, width))


def timestamps(seconds: np.ndarray, start: date) -> np.ndarray:
    """Local seconds since `start` 00:00 as ISO 8601 with the campaign's offset."""
    moments = np.datetime64(start.isoformat(), "s") + np.asarray(seconds, dtype="timedelta64[s]")
    return np.strings.add(np.datetime_as_string(moments, unit="s"), UTC_OFFSET)


def dates(days: np.ndarray, start: date) -> np.ndarray:
    """Days since `start` as ISO 8601 dates."""
    moments = np.datetime64(start.isoformat(), "D") + np.asarray(days, dtype="timedelta64[D]")
    return np.datetime_as_string(moments, unit="D")


def decimals(values: np.ndarray, places: int) -> np.ndarray:
    """Plain decimals with `places` digits: `8.00`, `0.05`, `-1500.00`."""
    return np.char.mod(f"%.{places}f", np.asarray(values, dtype=float))


def booleans(values: np.ndarray) -> np.ndarray:
    """Booleans as the contract writes them: `true` / `false`."""
    return np.where(values, "true", "false")
