"""`retire_channel`: a channel's ROI stayed below the floor several trusted periods running.

One bad period is noise; a run of them is the channel.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.act.proposals.context import ActContext, Thresholds, channel_figures
from tasks.act.proposals.text import num, proposal
from tasks.act.types import Proposal
from tasks.check.result import CheckResult


def retire_channel_proposals(
    check: CheckResult,
    history: Sequence[CheckResult],
    context: ActContext,
    thresholds: Thresholds,
) -> list[Proposal]:
    """Channels whose ROI stayed below the floor `retire_after_periods` periods running.

    A period counts only when its check was trusted and the channel had at least
    `min_channel_touches` touches (a missing, untrusted or thin period breaks the run:
    retiring is the most drastic step, so it needs an unbroken record). The campaign keeps
    at least one channel: when every channel qualifies, the one with the best ROI now stays.
    """
    runs = thresholds.retire_after_periods
    earlier = list(history[: runs - 1])
    if len(earlier) < runs - 1:
        return []
    now = channel_figures(check)
    found: dict[str, list[tuple[str, float]]] = {}
    for channel in context.spec.channels:
        record = []
        for result in [check, *earlier]:
            roi = judged_roi(result, channel, thresholds)
            if roi is None or roi >= thresholds.roi_floor:
                break
            record.append((str(result.period or "?"), roi))
        if len(record) == runs:
            found[channel] = record
    active = [
        c for c in context.spec.channels if not context.budget or context.budget.get(c, 0) > 0
    ]
    if found and set(active) <= set(found):
        keep = max(found, key=lambda c: found[c][0][1])
        del found[keep]
    proposals = []
    for channel, record in found.items():
        roi = record[0][1]
        history_text = ", ".join(f"{num(value)} in {period}" for period, value in record)
        budget = context.budget.get(channel)
        if budget:
            loss = budget * -roi if roi < 0 else None
            impact = (
                f"Frees {num(budget)} of {channel}'s budget a plan period, which returned "
                f"{num(roi)} per unit spent"
                + (f": about {num(loss)} of losses avoided." if loss else ".")
            )
        else:
            impact = (
                f"Stops {channel}'s spend of {num(now[channel]['cost'])} a period that "
                f"returned {num(roi)} per unit spent."
            )
        proposals.append(
            proposal(
                "retire_channel",
                {"channel": channel},
                {"channel": channel},
                f"roi of {channel} was {history_text}: below the floor of "
                f"{num(thresholds.roi_floor)} {runs} period{'s' if runs > 1 else ''} running.",
                impact,
            )
        )
    return proposals


def judged_roi(check: CheckResult, channel: str, thresholds: Thresholds) -> float | None:
    """A channel's ROI in a trusted check with enough touches to judge it; else None."""
    if check.trusted is not True:
        return None
    numbers = channel_figures(check).get(channel)
    if numbers is None or numbers["touches"] < thresholds.min_channel_touches:
        return None
    return numbers["roi"]
