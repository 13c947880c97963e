"""`promote_variant`: a variant-against-variant comparison was decided: the winner becomes
the default, the loser retires.
"""

from __future__ import annotations

from tasks.act.proposals.context import ActContext, Thresholds
from tasks.act.proposals.text import p_text, pct, pp, proposal
from tasks.act.types import Proposal
from tasks.check.experiments import HOLDOUT
from tasks.check.findings import finite_number
from tasks.check.result import CheckResult


def promote_variant_proposals(
    check: CheckResult, context: ActContext, thresholds: Thresholds
) -> list[Proposal]:
    """The winner of each decided variant-against-variant comparison becomes the default.

    Comparisons against the hold-out say whether the campaign works at all, not which
    message to send, and srm_invalid, insufficient_sample and no_difference decide
    nothing. Params: {winner, loser}: dispatch assigns the loser's share to the winner.
    """
    proposals = []
    for test in check.experiments:
        control, treatment, decision = test.control, test.treatment, test.decision
        if HOLDOUT in (control, treatment) or decision not in ("treatment_wins", "control_wins"):
            continue
        winner, loser = (
            (treatment, control) if decision == "treatment_wins" else (control, treatment)
        )
        rates = {control: test.control_rate, treatment: test.treatment_rate}
        sizes = {control: test.control_n, treatment: test.treatment_n}
        lift = finite_number(test.lift)
        gain = abs(lift) if lift is not None else None
        metric = test.metric or "application_rate"
        adjusted = test.p_value if test.p_value_adjusted is None else test.p_value_adjusted
        interval = (
            f", {100 * (1 - thresholds.alpha):.0f} % CI of the lift [{pp(test.ci_low)}, "
            f"{pp(test.ci_high)}]"
            if test.ci_low is not None and test.ci_high is not None
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
                f"{p_text(adjusted)} ({decision}).",
                impact,
            )
        )
    return proposals
