"""The whole PDCA cycle of one campaign at a period's end, as one run with four subflows.

Check the period that just ended (is its data sound, how did it do against plan), act on
what it found (proposals, decisions, SOP, adjustment report), plan the next period — the
plan takes the adjustments just approved, which is where the loop closes — and write the
weekly review for the managers. Dispatch is not part of it: it runs in the send windows
of each day (its own schedule), with the rules the approved actions put in force.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import Failed, State

from flows.act import act_flow
from flows.check import check_flow
from flows.plan import plan_flow
from flows.weekly_review import review_outcome, weekly_review_flow
from tasks.common.periods import Period


@flow(name="cycle", flow_run_name="cycle {campaign_id} {period}")
def cycle_flow(
    campaign_id: str,
    period: str,
    auto_approve: bool = False,
    send_review: bool = False,
) -> dict[str, Any] | State:
    """Check and act on `period`, plan the period after it, review `period`."""
    following = str(Period.parse(period).shifted(1))
    checked = check_flow(campaign_id=campaign_id, period=period)
    acted = act_flow(campaign_id=campaign_id, period=period, auto_approve=auto_approve)
    planned = plan_flow(campaign_id=campaign_id, period=following)
    reviewed = weekly_review_flow(period=period, send=send_review, return_state=True)
    result = {"check": checked, "act": acted, "plan": planned, "review": review_outcome(reviewed)}
    if reviewed.is_failed():  # the cycle's work is not done when its review failed
        return Failed(message=f"weekly review: {reviewed.message}", data=result)
    return result


if __name__ == "__main__":
    import sys

    print(cycle_flow(campaign_id=sys.argv[1], period=sys.argv[2], auto_approve=True))
