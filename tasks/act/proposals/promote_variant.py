"""`promote_variant`: a variant-against-variant comparison was decided: the winner becomes
the default, the loser retires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.act.proposals.context import ActContext, Thresholds
from tasks.act.proposals.text import p_text, pct, pp, proposal
from tasks.act.types import Proposal
from tasks.check.experiments import HOLDOUT
from tasks.check.findings import finite_number


def promote_variant_proposals(
    check: Mapping[str, Any], context: ActContext, thresholds: Thresholds
) -> list[Proposal]:
    """The winner of each decided variant-against-variant comparison becomes the default.

    Comparisons against the hold-out say whether the campaign works at all, not which
    message to send, and srm_invalid, insufficient_sample and no_difference decide
    nothing. Params: {winner, loser}: dispatch assigns the loser's share to the winner.
    """
    proposals = []
    for test in check.get("experiments") or []:
        control, treatment = test.get("control"), test.get("treatment")
        decision = test.get("decision")
        if HOLDOUT in (control, treatment) or decision not in ("treatment_wins", "control_wins"):
            continue
        winner, loser = (
            (treatment, control) if decision == "treatment_wins" else (control, treatment)
        )
        rates = {control: test.get("control_rate"), treatment: test.get("treatment_rate")}
        sizes = {control: test.get("control_n"), treatment: test.get("treatment_n")}
        lift = finite_number(test.get("lift"))
        gain = abs(lift) if lift is not None else None
        metric = test.get("metric", "application_rate")
        interval = (
            f", {100 * (1 - thresholds.alpha):.0f} % CI of the lift [{pp(test.get('ci_low'))}, "
            f"{pp(test.get('ci_high'))}]"
            if test.get("ci_low") is not None and test.get("ci_high") is not None
            else ""
        )
        share = context.spec.experiment.variants.get(str(loser))
        share_text = f" ({pct(share)} of the audience)" if share is not None else ""
        impact = (
            f"The loser's members{share_text} get {winner}'s message: at the measured lift of "
            f"{pp(gain)}, about {gain * (sizes[loser] or 0):,.0f} more customers with the "
            f"outcome a period (on {loser}'s {sizes[loser] or 0:,} members)."
            if gain is not None
            else f"{loser} retires and {winner} becomes the default{share_text}."
        )
        proposals.append(
            proposal(
                "promote_variant",
                {},
                {"winner": winner, "loser": loser},
                f"{metric} of {winner} is {pct(rates[winner])} (n = {sizes[winner]}) against "
                f"{pct(rates[loser])} for {loser} (n = {sizes[loser]}): lift of {treatment} "
                f"over {control} {pp(lift)}{interval}, Holm-adjusted "
                f"{p_text(test.get('p_value_adjusted', test.get('p_value')))} ({decision}).",
                impact,
            )
        )
    return proposals
