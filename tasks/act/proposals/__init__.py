"""Act: the adjustment proposals that follow from a check result, one module per action type.

`propose` asks every rule in the order of `ACTION_TYPES` (`hold` alone when the data are
untrusted). The rules are plain functions over the check result (a `CheckResult`, read by
attribute), the campaign's earlier check results and an `ActContext` (`context.py`); their
wording lives in `text.py`. What triggers each type and what its params mean for plan and
dispatch is written down in docs/act.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.act.proposals.context import (
    LOAN_COLUMNS,
    ActContext,
    Thresholds,
    gather_context,
    rule_key,
    windows_from_quarter_hours,
)
from tasks.act.proposals.hold import hold_proposal
from tasks.act.proposals.promote_variant import promote_variant_proposals
from tasks.act.proposals.reallocate_budget import reallocate_budget_proposals, reallocation_share
from tasks.act.proposals.retire_channel import retire_channel_proposals
from tasks.act.proposals.revise_targeting import revise_targeting_proposals
from tasks.act.proposals.shift_window import shift_window_proposals, shifted_range
from tasks.act.proposals.tighten_admission import tighten_admission_proposals
from tasks.act.types import Proposal
from tasks.check.result import CheckResult

__all__ = [
    "ACTION_TYPES",
    "LOAN_COLUMNS",
    "ActContext",
    "Thresholds",
    "gather_context",
    "propose",
    "reallocate_budget_proposals",
    "reallocation_share",
    "rule_key",
    "shifted_range",
    "windows_from_quarter_hours",
]

ACTION_TYPES = (
    "hold",
    "retire_channel",
    "reallocate_budget",
    "tighten_admission",
    "shift_window",
    "promote_variant",
    "revise_targeting",
)
"""Every type `propose` emits, in the order it lists them."""


def propose(
    check: CheckResult,
    history: Sequence[CheckResult],
    context: ActContext,
    thresholds: Thresholds,
) -> list[Proposal]:
    """Every proposal the check result supports, `hold` alone when its data are untrusted.

    `history`: the campaign's earlier check results, newest first (the run rules read the
    first `retire_after_periods − 1`). Order of the result: `ACTION_TYPES`. A rule an
    approval changed since the period began (`ActContext.changed`) is not proposed again:
    that evidence was acted on already, and says nothing about the rule now in force.
    """
    if check.trusted is not True:  # a missing or odd verdict is no trust
        return [hold_proposal(check)]
    retiring = retire_channel_proposals(check, history, context, thresholds)
    retired = {item.params["channel"] for item in retiring}
    found = [
        *retiring,
        *reallocate_budget_proposals(check, context, thresholds, exclude=retired),
        *tighten_admission_proposals(check, context, thresholds),
        *shift_window_proposals(context, thresholds),
        *promote_variant_proposals(check, context, thresholds),
        *revise_targeting_proposals(check, thresholds),
    ]
    return [item for item in found if rule_key(item.type, item.scope) not in context.changed]
