"""The rules in force: the campaign spec as the approved Act actions have changed it.

A spec is what the user wrote; approved actions adjust it without rewriting it, so that
every change keeps its author, reason and date (the `actions` table) and the spec stays
what was applied. This module is the one place that folds the approved actions into the
rules dispatch applies, the SOP states and the next proposals start from:

- `tighten_admission` at the campaign scope raises `risk.min_credit_score` or lowers
  `risk.max_debt_ratio`; at a channel or segment scope it becomes a `ScopedAdmission`
  (dispatch excludes the segment's customers below it, or keeps the channel from them);
- `shift_window` replaces the named send window's range, when it is the step from the
  range in force (its `from`): a step proposed from a range since changed, or approved
  twice, changes nothing;
- `promote_variant` gives the loser's share to the winner (earlier members of the loser
  are sent the winner from then on); the hold-out is untouched, so the effect of the
  campaign stays measurable;
- `retire_channel` takes the channel out of `channels` (the plan also gives it no budget);
- `revise_targeting` deprioritises its segments: dispatch contacts them last;
- `reallocate_budget` and `hold` change no rule here (the plan applies the first; the
  second changes nothing by definition);
- `pause` (applied at once by a guardrail, status `applied`, no approval) stops dispatch
  to its channel or segment until an approved `resume` of the same scope lifts it
  (`paused_scopes`; docs/act.md, Guardrails).

Actions fold in the order they were proposed; the strictest admission wins, the latest
window shift and promotion win.

What an approved action changes in the next plan's budget (`budget_change`) and whether it
makes a new SOP version (`changes_rules`, `budget_moves`) is decided here too: plan and the
SOP ask, they do not decide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Connection, select

from pdca.errors import UserError
from pdca.models import Action
from tasks.common.campaigns import CampaignSpec

IN_FORCE_STATUSES = ("approved", "applied")
"""The decided statuses that put an action in force: a manager's approval, or `applied`
(a guardrail's pause, which takes effect without one)."""


@dataclass(frozen=True)
class ScopedAdmission:
    """A tighter admission rule for one channel or one segment."""

    kind: str
    """'channel' or 'segment'."""
    name: str
    min_credit_score: int | None = None
    max_debt_ratio: float | None = None


@dataclass(frozen=True)
class PausedScope:
    """A channel or segment a guardrail paused: dispatch sends it nothing."""

    kind: str
    """'channel' or 'segment'."""
    name: str
    action_id: int
    """The `pause` action, which a `resume` names in its params (`pause_action_id`)."""


@dataclass(frozen=True)
class RulesInForce:
    """The spec with the approved actions applied, and what a spec cannot say."""

    spec: CampaignSpec
    """The effective spec: campaign-wide admission, windows, variants and channels."""
    scoped_admission: list[ScopedAdmission] = field(default_factory=list)
    deprioritised_segments: list[str] = field(default_factory=list)
    retired_channels: list[str] = field(default_factory=list)
    promoted: dict[str, str] = field(default_factory=dict)
    """Retired variant → the variant its members now get."""
    paused: list[PausedScope] = field(default_factory=list)
    """Channels and segments a guardrail paused and no approved resume has lifted."""
    applied: list[dict[str, Any]] = field(default_factory=list)
    """The approved actions folded in, oldest first (type, scope, params, action_id)."""

    def segment_rules(self) -> list[ScopedAdmission]:
        return [rule for rule in self.scoped_admission if rule.kind == "segment"]

    def channel_rules(self) -> list[ScopedAdmission]:
        return [rule for rule in self.scoped_admission if rule.kind == "channel"]

    def paused_names(self, kind: str) -> list[str]:
        """The paused channels (`kind` 'channel') or segments ('segment')."""
        return [pause.name for pause in self.paused if pause.kind == kind]


def approved_actions(
    conn: Connection,
    campaign_id: str,
    *,
    except_period: str | None = None,
    decided_before: datetime | None = None,
) -> list[dict[str, Any]]:
    """The campaign's approved actions (and applied guardrail pauses) in the order they
    were proposed: action_id, period, type, scope, params. `except_period` leaves out one
    period's own actions, so that re-running that period's act starts from the same rules
    and converges;
    `decided_before` (naive UTC) keeps those already in force at that moment."""
    statement = (
        select(Action.action_id, Action.period, Action.type, Action.scope, Action.params)
        .where(Action.campaign_id == campaign_id, Action.status.in_(IN_FORCE_STATUSES))
        .order_by(Action.action_id)
    )
    if except_period is not None:
        statement = statement.where(Action.period != except_period)
    if decided_before is not None:
        statement = statement.where(Action.decided_at < decided_before)
    return [
        {
            "action_id": action_id,
            "period": period,
            "type": kind,
            "scope": scope or {},
            "params": params or {},
        }
        for action_id, period, kind, scope, params in conn.execute(statement)
    ]


def rules_in_force(spec: CampaignSpec, approved: Sequence[Mapping[str, Any]]) -> RulesInForce:
    """Fold the approved actions (oldest first) into the spec's rules."""
    document = spec.model_dump(mode="json")
    windows = windows_in_force(spec, approved)
    document["contact_policy"]["windows"] = windows
    admission = admission_from_actions(approved)
    campaign_rules = admission.pop("campaign", {})
    if "min_credit_score" in campaign_rules:
        document["risk"]["min_credit_score"] = max(
            spec.risk.min_credit_score, int(campaign_rules["min_credit_score"])
        )
    if "max_debt_ratio" in campaign_rules:
        document["risk"]["max_debt_ratio"] = min(
            spec.risk.max_debt_ratio, float(campaign_rules["max_debt_ratio"])
        )
    promoted = promotions(approved, spec)
    document["experiment"]["variants"] = variants_in_force(spec, promoted)
    retired = [
        str(action["params"]["channel"])
        for action in approved
        if action.get("type") == "retire_channel"
        and action["params"].get("channel") in spec.channels
    ]
    remaining = [channel for channel in spec.channels if channel not in retired]
    if remaining:  # every channel retired: the plan has no budget to give; keep the list
        document["channels"] = remaining
    try:
        effective = CampaignSpec.model_validate(document)
    except ValidationError as error:  # only a hand-edited action can get here
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise UserError(
            f"campaign {spec.id!r}: the approved actions make rules that do not validate "
            f"({problems}); reject or correct the offending action in `actions`"
        ) from None
    return RulesInForce(
        spec=effective,
        scoped_admission=scoped_admission(admission),
        deprioritised_segments=deprioritised_segments(approved),
        retired_channels=list(dict.fromkeys(retired)),
        promoted=promoted,
        paused=paused_scopes(approved),
        applied=[dict(action) for action in approved if changes_rules(action.get("type"))],
    )


def windows_in_force(spec: CampaignSpec, approved: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The spec's send windows with each approved shift_window applied in turn, when it
    starts from the range then in force (one without `from` always applies)."""
    ranges = {name: str(window) for name, window in spec.contact_policy.windows.items()}
    for action in approved:
        params = action.get("params") or {}
        name = params.get("window")
        if action.get("type") != "shift_window" or name not in ranges:
            continue
        if not params.get("from") or params["from"] == ranges[name]:
            ranges[name] = str(params["to"])
    return ranges


def scope_key(scope: Mapping[str, Any]) -> str:
    """A scope as a dict key: 'campaign', 'channel:sms', 'segment:farmer'."""
    named = [f"{key}:{value}" for key, value in sorted(scope.items()) if value is not None]
    return ",".join(named) or "campaign"


def admission_from_actions(approved: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Scope key → the strictest approved min_credit_score and max_debt_ratio."""
    found: dict[str, dict[str, float]] = {}
    for action in approved:
        if action.get("type") != "tighten_admission":
            continue
        rules = found.setdefault(scope_key(action.get("scope") or {}), {})
        params = action.get("params") or {}
        if params.get("min_credit_score") is not None:
            rules["min_credit_score"] = max(
                rules.get("min_credit_score", -math.inf), params["min_credit_score"]
            )
        if params.get("max_debt_ratio") is not None:
            rules["max_debt_ratio"] = min(
                rules.get("max_debt_ratio", math.inf), params["max_debt_ratio"]
            )
    return found


def scoped_admission(admission: Mapping[str, Mapping[str, float]]) -> list[ScopedAdmission]:
    """The channel and segment rules of `admission_from_actions` (campaign key removed)."""
    rules = []
    for key, values in sorted(admission.items()):
        kind, _, name = key.partition(":")
        if kind not in ("channel", "segment") or "," in key:
            continue  # a combined scope is not something the rules propose
        score = values.get("min_credit_score")
        ratio = values.get("max_debt_ratio")
        rules.append(
            ScopedAdmission(
                kind=kind,
                name=name,
                min_credit_score=int(score) if score is not None else None,
                max_debt_ratio=float(ratio) if ratio is not None else None,
            )
        )
    return rules


def promotions(approved: Sequence[Mapping[str, Any]], spec: CampaignSpec) -> dict[str, str]:
    """Retired variant → its replacement, chains resolved (A lost to B, B later to C:
    A's and B's members get C)."""
    promoted: dict[str, str] = {}
    for action in approved:
        params = action.get("params") or {}
        winner, loser = params.get("winner"), params.get("loser")
        if action.get("type") != "promote_variant" or winner == loser:
            continue
        if winner not in spec.experiment.variants or loser not in spec.experiment.variants:
            continue
        if winner in promoted:  # the winner had itself been retired earlier: not a change
            continue
        promoted = {old: (winner if new == loser else new) for old, new in promoted.items()}
        promoted[str(loser)] = str(winner)
    return promoted


def variants_in_force(spec: CampaignSpec, promoted: Mapping[str, str]) -> dict[str, float]:
    """The split with each retired variant's share given to its replacement."""
    shares: dict[str, float] = {}
    for name, share in spec.experiment.variants.items():
        target = promoted.get(name, name)
        shares[target] = shares.get(target, 0.0) + float(share)
    return {name: shares[name] for name in spec.experiment.variants if name in shares}


def paused_scopes(approved: Sequence[Mapping[str, Any]]) -> list[PausedScope]:
    """The scopes a `pause` stopped and no later `resume` of the same scope lifted, in the
    order they were paused; a pause of a scope already paused changes nothing."""
    paused: dict[tuple[str, str], PausedScope] = {}
    for action in approved:
        scope = action.get("scope") or {}
        named = [(kind, str(scope[kind])) for kind in ("channel", "segment") if scope.get(kind)]
        if len(named) != 1:
            continue  # guardrails pause one channel or one segment, nothing else
        key = named[0]
        if action.get("type") == "pause" and key not in paused:
            paused[key] = PausedScope(*key, action_id=int(action["action_id"]))
        elif action.get("type") == "resume":
            paused.pop(key, None)
    return list(paused.values())


def deprioritised_segments(approved: Sequence[Mapping[str, Any]]) -> list[str]:
    """Segments an approved revise_targeting named, oldest first, each once."""
    segments: list[str] = []
    for action in approved:
        if action.get("type") == "revise_targeting":
            segments.extend(str(s) for s in (action.get("params") or {}).get("segments", []))
    return list(dict.fromkeys(segments))


# --- what an approved action changes for the plan and for the SOP --------------------------

PLAN_ACTION_TYPES = ("reallocate_budget", "retire_channel")
"""The types an approved action of which changes the next plan's budget split; every other
type steers dispatch (or, `hold`, nothing)."""


@dataclass(frozen=True)
class BudgetChange:
    """What one approved action changes in the next plan's split: `retire` takes `channel`
    out; `shift` moves `share` of its previous amount (or an absolute `amount`, when a
    manager edited it) to `to_channel`."""

    kind: Literal["shift", "retire"]
    channel: str
    to_channel: str | None = None
    share: float | None = None
    amount: float | None = None


def budget_change(kind: str, params: Mapping[str, Any]) -> BudgetChange | None:
    """The plan's change for an approved action of `kind` with `params`; None for the types
    that do not touch the budget (see `PLAN_ACTION_TYPES`)."""
    if kind == "retire_channel":
        return BudgetChange("retire", params["channel"])
    if kind == "reallocate_budget":
        return BudgetChange(
            "shift",
            params["from_channel"],
            to_channel=params["to_channel"],
            share=params.get("share"),
            amount=params.get("amount"),
        )
    return None


def standing_budget_changes(rules: RulesInForce) -> list[tuple[str, BudgetChange]]:
    """What the rules in force take out of every plan's split while they stand, each with
    where it comes from: a retired channel (after the plan that first applied its
    retirement) and a channel a guardrail paused (until its resume is approved) get
    nothing. A paused segment changes no budget: dispatch leaves its customers out."""
    retired = [("retired channel", BudgetChange("retire", c)) for c in rules.retired_channels]
    paused = [
        (f"pause action {pause.action_id}", BudgetChange("retire", pause.name))
        for pause in rules.paused
        if pause.kind == "channel" and pause.name not in rules.retired_channels
    ]
    return [*retired, *paused]


def changes_rules(kind: str) -> bool:
    """Whether an approved action of `kind` changes a rule, and so makes a new SOP version:
    every type but `hold`, which by definition changes nothing."""
    return kind != "hold"


def budget_moves(approved: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The budget moves the SOP lists: each approved reallocate_budget's params with its
    action_id and period, oldest first (the plan applies them; no spec rule changes)."""
    return [
        {**action["params"], "action_id": action["action_id"], "period": action.get("period")}
        for action in approved
        if action.get("type") == "reallocate_budget"
    ]


@dataclass(frozen=True)
class AdmissionCheck:
    """What approved scoped floors (or caps) of one kind mean for dispatch's audience.

    A customer whose scope (the segment, or the channel they would be routed to) is named
    in `limits` and whose `measure` is below that floor (`fails_below`) or above that cap
    is excluded for `reason`. It takes the place of no reason, or of a reason in
    `replaces` (those the audience query applies after it), never of an earlier one: a
    customer is excluded for the first rule that fails, whichever scope set it.
    """

    reason: str
    measure: str
    """The customer's column judged: 'credit_score' or 'debt_ratio'."""
    fails_below: bool
    replaces: tuple[str, ...]
    limits: tuple[tuple[str, float], ...]
    """(segment or channel, its floor or cap), in the rules' order."""


def scoped_admission_checks(
    admission: Sequence[ScopedAdmission], exclusion_order: Sequence[str]
) -> list[AdmissionCheck]:
    """The checks that scoped rules of one kind (`RulesInForce.segment_rules()` or
    `channel_rules()`) add to the audience, floors first; none without rules.
    `exclusion_order` is the audience query's reasons in the order it applies them."""
    checks = []
    for reason, measure, bound, fails_below in (
        ("credit_score_below_floor", "credit_score", "min_credit_score", True),
        ("debt_ratio_above_cap", "debt_ratio", "max_debt_ratio", False),
    ):
        limits = tuple(
            (rule.name, getattr(rule, bound))
            for rule in admission
            if getattr(rule, bound) is not None
        )
        if limits:
            later = tuple(exclusion_order[list(exclusion_order).index(reason) + 1 :])
            checks.append(AdmissionCheck(reason, measure, fails_below, later, limits))
    return checks
