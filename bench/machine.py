"""The machine's speed at the moment of a measurement, printed beside absolute figures.

The ratios the benchmarks end with compare two things timed in the same run, so the
machine's speed cancels out. An absolute target (data quality under 3 s) does not: on the
shared 2-core machines pdca is measured on, a fixed Python loop takes from 1.6 s to 4.2 s
depending on the minute. A figure printed with the loop's time from the same minutes can
be compared with another run's.
"""

from __future__ import annotations

import time

LOOP = 20_000_000


def loop_seconds() -> float:
    """The time of a fixed pure-Python loop (one core): the lower, the faster the moment."""
    started = time.perf_counter()
    total = 0
    for i in range(LOOP):
        total += i * i
    return time.perf_counter() - started
