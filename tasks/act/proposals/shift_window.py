"""`shift_window`: a send window that responds significantly worse than the best one moves
toward it, never into the quiet hours or another window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time

from tasks.act.proposals.context import ActContext, Thresholds, improves
from tasks.act.proposals.text import p_text, pct, proposal
from tasks.act.types import Proposal
from tasks.check.experiments import holm, z_test_p_value
from tasks.check.findings import finite_number
from tasks.common.campaigns import TimeRange

MINUTES_PER_DAY = 24 * 60


def shift_window_proposals(context: ActContext, thresholds: Thresholds) -> list[Proposal]:
    """Move each window that responds significantly worse than the best one toward it.

    Windows with at least `window_min_touches` delivered touches are compared: the best
    response_rate against each lower one with the pooled two-proportion z-test
    (`tasks.check.experiments.z_test_p_value`), Holm-adjusted across the comparisons, at
    `alpha`. A significantly worse window moves toward the best window (earlier when the
    best opens earlier in the day, else later) by up to `window_shift_minutes` — a step,
    because the hours next to a window have no figures of their own — as far as it can
    without leaving the day or overlapping the quiet hours or another window; a window
    with no room to move gets no proposal. The figures are the period's, counted in the
    windows in force during it; the step starts from the ranges in force now
    (`ActContext.ranges`). The move is proposed only when the window's response rate, had
    the moved minutes responded like the best window's, improves by `min_improvement`.

    Params: {window, from, to}: the window's range in force and its new range.
    """
    figures = [
        w
        for w in context.windows
        if (finite_number(w.get("delivered")) or 0) >= thresholds.window_min_touches
        and w.get("range")
    ]
    if len(figures) < 2:
        return []
    best = max(figures, key=lambda w: (w["responded"] / w["delivered"], -figures.index(w)))
    best_rate = best["responded"] / best["delivered"]
    worse = [w for w in figures if w is not best and w["responded"] / w["delivered"] < best_rate]
    raw = [
        z_test_p_value(
            int(w["responded"]), int(w["delivered"]), int(best["responded"]), int(best["delivered"])
        )
        for w in worse
    ]
    adjusted = holm(raw)
    during = {str(w["window"]): str(w["range"]) for w in context.windows if w.get("range")}
    ranges = {name: TimeRange.parse(text) for name, text in (context.ranges or during).items()}
    best_range = TimeRange.parse(during[str(best["window"])])
    best_now = ranges.get(str(best["window"]), best_range)
    proposals = []
    for window, p_value in zip(worse, adjusted, strict=True):
        if p_value is None or p_value >= thresholds.alpha:
            continue
        name = str(window["window"])
        if name not in ranges:
            continue
        current = ranges[name]
        direction = -1 if minutes_of(best_now.start) < minutes_of(current.start) else 1
        blocked = [context.spec.contact_policy.quiet_hours]
        blocked += [r for other, r in ranges.items() if other != name]
        moved = shifted_range(current, direction * thresholds.window_shift_minutes, blocked)
        if moved is None:
            continue
        minutes = abs(minutes_of(moved.start) - minutes_of(current.start))
        length = minutes_of(current.end) - minutes_of(current.start)
        rate = window["responded"] / window["delivered"]
        gain = (best_rate - rate) * window["delivered"]
        after = rate + (best_rate - rate) * minutes / length
        if not improves(rate, after, lower_is_better=False, margin=thresholds.min_improvement):
            continue
        proposals.append(
            proposal(
                "shift_window",
                {"window": name},
                {"window": name, "from": str(current), "to": str(moved)},
                f"response_rate of the {name} window ({during[name]}) is {pct(rate)} "
                f"({int(window['responded'])} of {int(window['delivered'])} delivered) against "
                f"{pct(best_rate)} in {best['window']} ({best_range}; "
                f"{int(best['responded'])} of {int(best['delivered'])}): two-proportion "
                f"z-test, Holm-adjusted {p_text(p_value)}, below alpha {thresholds.alpha:g}.",
                f"Moves {name} {minutes} minutes {'earlier' if direction < 0 else 'later'}, "
                f"toward {best['window']}: if the {minutes} of its {length} minutes moved "
                f"responded like {best['window']}, about {gain * minutes / length:,.0f} more "
                f"responses a period (up to {gain:,.0f} were all of it to).",
            )
        )
    return proposals


def shifted_range(
    current: TimeRange, minutes: int, blocked: Sequence[TimeRange]
) -> TimeRange | None:
    """`current` moved by up to |minutes| (later when positive), as far as it can go
    within one day without overlapping any of `blocked`; None when it cannot move."""
    start, end = minutes_of(current.start), minutes_of(current.end)
    sign = 1 if minutes > 0 else -1
    for step in range(abs(minutes), 0, -1):
        new_start, new_end = start + sign * step, end + sign * step
        if new_start < 0 or new_end > MINUTES_PER_DAY - 1:
            continue
        candidate = TimeRange(clock_at(new_start), clock_at(new_end))
        if not any(candidate.overlaps(other) for other in blocked):
            return candidate
    return None


def minutes_of(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def clock_at(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)
