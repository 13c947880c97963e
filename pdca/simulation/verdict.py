"""The verdict of a season: what the loop found of the world's truths and when, what it
cost against an oracle, the KPIs week by week, and the invariants over the whole run.

- `truths`: a truth is found by the first approved (or applied) action of one of its
  `found_by` types whose scope and parameters name the truth's scope on the right side (a
  worse scope as what a budget move or a promotion moves *from*, a better one as what it
  moves *to*); `week_found` is the season week whose check led to it.
- `regret`: expected applications and net return lost against an oracle that knew the
  truths from day one and sent the same sends where they pay best — a truth that makes a
  scope worse (multiplier below 1) is avoided, one that makes it better is used for every
  send — and, where a truth sets the arrears, lent only where a loan is still worth making.
  Taken from the world's true chances, not from the draws, so luck does not count.
- `invariants`: each with `held` and how many things were checked (`invariants.py`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pdca.settings import get_settings
from pdca.simulation.backoffice import season_week
from pdca.simulation.invariants import check_invariants
from pdca.simulation.truths import Truth
from pdca.simulation.world import Sends, World, channel_index
from pdca.synthetic.world import REQUEST_MEDIAN, TERM_SHARE, TERMS
from tasks.act.actions import find_actions
from tasks.act.types import StoredAction
from tasks.common.periods import Period

if TYPE_CHECKING:
    from pdca.simulation.season import Season

TAKEN = ("approved", "applied")
"""Action statuses that changed what pdca does."""

HEADLINE_KPIS = (
    "touches",
    "application_rate",
    "applications",
    "approval_rate",
    "cost",
    "cac",
    "roi",
    "overdue_rate_30",
    "complaint_rate",
)


def season_week_of(season: Season, period: str | None) -> int | None:
    """The season week (1-based) of an ISO week period; None for another kind of period."""
    if not period or "-W" not in period:
        return None
    monday = Period.parse(period).start
    return (monday - season.world.start).days // 7 + 1


def verdict(season: Season, report: str | None = None) -> dict[str, Any]:
    """The season's verdict as `pdca simulate --json` prints it."""
    with season.engine.connect() as conn:
        actions = find_actions(conn, campaign_id=season.spec.id)
    return {
        "weeks": season.options.weeks,
        "customers": season.options.customers,
        "seed": season.options.seed,
        "world": season.truths.name,
        "approve": season.options.approve,
        "truths": [truth_found(season, truth, actions) for truth in season.truths.truths],
        "actions": [action_line(season, action) for action in actions],
        "kpis_by_week": kpis_by_week(season),
        "regret": regret(season),
        "invariants": check_invariants(season),
        "report": report,
    }


def action_line(season: Season, action: StoredAction) -> dict[str, Any]:
    """One action with the week it was proposed (the week checked) and its decision."""
    return {
        "action_id": action.action_id,
        "type": action.type,
        "scope": action.scope,
        "params": action.params,
        "status": action.status,
        "decided_by": action.decided_by,
        "period": action.period,
        "week_proposed": season_week_of(season, action.period),
    }


WORSE_SIDE = ("to", "winner")
"""Parameters that name where an action moves *towards* (`to_channel`, `to`, `winner`)."""

BETTER_SIDE = ("from", "loser")
"""Parameters that name what an action moves *away from* (`from_channel`, `from`, `loser`)."""


def makes_better(truth: Truth) -> bool:
    """Whether the truth makes its scope better (a multiplier above 1 on the funnel and
    none below): then it is found by moving towards the scope, else away from it."""
    factors = [getattr(truth, name) for name in ("delivery", "response", "application")]
    factors = [factor for factor in factors if factor is not None]
    return bool(factors) and all(f >= 1 for f in factors) and any(f > 1 for f in factors)


def names_scope(truth: Truth, action: StoredAction) -> bool:
    """Whether the action is about the truth's scope: every value the truth's scope sets
    appears in the action's scope or parameters, on the side the truth calls for — a
    worse scope named as a source (`from_channel`, `loser`), a better one as a
    destination (`to_channel`, `winner`): promoting A over B does not find B's lift."""
    ignored = BETTER_SIDE if makes_better(truth) else WORSE_SIDE
    values = {str(v) for v in action.scope.values() if v is not None}
    values |= {
        str(v)
        for key, v in action.params.items()
        if not key.startswith(ignored) and isinstance(v, str | int | float)
    }
    wanted = [v for v in truth.scope.model_dump().values() if v is not None]
    return all(value in values for value in wanted)


def truth_found(season: Season, truth: Truth, actions: list[StoredAction]) -> dict[str, Any]:
    """Whether, when and by which action the loop found the truth."""
    found = next(
        (
            action
            for action in actions
            if action.status in TAKEN
            and action.type in truth.found_by
            and names_scope(truth, action)
        ),
        None,
    )
    return {
        "name": truth.name,
        "scope": truth.scope.label(),
        "from_week": truth.from_week,
        "found_by": list(truth.found_by),
        "found": found is not None,
        "week_found": season_week_of(season, found.period) if found else None,
        "action_id": found.action_id if found else None,
    }


def kpis_by_week(season: Season) -> list[dict[str, Any]]:
    """Per checked week, the campaign-wide headline KPIs against target."""
    weeks = []
    for period, check in sorted(season.checks.items()):
        kpis = {
            kpi["metric"]: {
                "actual": kpi.get("actual"),
                "target": kpi.get("target"),
                "status": kpi.get("status"),
            }
            for kpi in check.get("kpis", [])
            if not any((kpi.get("scope") or {}).values()) and kpi["metric"] in HEADLINE_KPIS
        }
        weeks.append({"week": season_week_of(season, period), "period": period, "kpis": kpis})
    return weeks


def expected_applications(world: World, sends: Sends) -> np.ndarray:
    """Per send, the true expected number of applications it leads to."""
    delivered = world.delivery_chance(sends)
    responds = world.response_chance(sends)
    yes = world.application_chance(sends, np.ones(len(sends), dtype=bool))
    no = world.application_chance(sends, np.zeros(len(sends), dtype=bool))
    return delivered * (responds * yes + (1 - responds) * no)


def oracle_world(world: World) -> World:
    """The world as an oracle would use it: worse scopes avoided, better ones everywhere."""
    truths = []
    for truth in world.truths.truths:
        changes: dict[str, Any] = {}
        for name in ("delivery", "response", "application"):
            factor = getattr(truth, name)
            if factor is not None and factor < 1:
                changes[name] = 1.0
        better = any((getattr(truth, n) or 1) > 1 for n in ("delivery", "response", "application"))
        if better:
            changes["scope"] = type(truth.scope)()
        truths.append(truth.model_copy(update=changes))
    return replace(world, truths=world.truths.model_copy(update={"truths": tuple(truths)}))


DISBURSED_SHARE = 0.88
"""Share of approvals the back office disburses (`BackOffice._decisions`)."""

TERM_YEARS = float((np.minimum(TERMS, 12) / 12 * TERM_SHARE).sum())
"""The expected min(term, 12 months) in years, as net_interest counts it."""


def expected_net_return(
    world: World, sends: Sends, cost: np.ndarray, ftp_rate: float, lgd: float, *, prudent: bool
) -> np.ndarray:
    """Per send, its true expected net return: the loans it leads to (net interest less
    the expected loss of those that drift into arrears) less its cost. `prudent`: in the
    scope of a truth about arrears, a loan of negative expected value is not made (the
    oracle knows the truth; it has no better credit model than the bank's)."""
    who = sends.who
    score = world.people["score"][who]
    asked = np.exp(np.log(REQUEST_MEDIAN[world.people["segment"][who]]) + 0.125)
    cap = np.maximum(np.floor(world.people["income"][who] * 10 / 100) * 100, 1_000.0)
    amount = np.minimum(asked, cap)
    apr = np.clip(8.0 + (780 - score) * 0.075, 8.0, 23.9)
    per_loan = amount * ((apr / 100 - ftp_rate) * TERM_YEARS - world.overdue_chance(sends) * lgd)
    if prudent:  # where a truth sets the arrears, the oracle lends only if it still pays
        known = np.zeros(len(sends), dtype=bool)
        for truth in world.truths.truths:
            if truth.overdue_rate_30 is not None:
                known |= world.in_scope(truth, sends)
        per_loan = np.where(known, np.maximum(per_loan, 0.0), per_loan)
    loans = expected_applications(world, sends) * world.approval_chance(sends) * DISBURSED_SHARE
    return loans * per_loan - cost


def regret(season: Season) -> dict[str, Any]:
    """Expected applications and net return lost against the oracle, over the season's
    sends (from the world's true chances: luck does not count)."""
    touches = season.office.table("touches")
    if touches.empty:
        return {"applications_lost": 0.0, "applications_expected": 0.0, "oracle_applications": 0.0}
    world, settings = season.world, get_settings()
    sends = Sends.of(
        world.index(touches["customer_id"]),
        channel_index(touches["channel"].to_numpy()),
        touches["variant"].to_numpy(),
        touches["window"].fillna("").to_numpy(),
        season_week(touches["t"].to_numpy()),
    )
    oracle_truths = oracle_world(world)
    actual = float(expected_applications(world, sends).sum())
    oracle = float(expected_applications(oracle_truths, sends).sum())
    cost = touches["cost"].to_numpy(dtype=float)
    money = {
        name: float(
            expected_net_return(
                truths, sends, cost, settings.ftp_rate, settings.lgd, prudent=prudent
            ).sum()
        )
        for name, truths, prudent in (("actual", world, False), ("oracle", oracle_truths, True))
    }
    return {
        "applications_expected": round(actual, 1),
        "oracle_applications": round(oracle, 1),
        "applications_lost": round(max(oracle - actual, 0.0), 1),
        "share_lost": round(max(oracle - actual, 0.0) / oracle, 4) if oracle else None,
        "net_return_expected": round(money["actual"], 2),
        "oracle_net_return": round(money["oracle"], 2),
        "net_return_lost": round(max(money["oracle"] - money["actual"], 0.0), 2),
        "method": "true expected applications and net return of the season's sends, against "
        "the same sends placed where the truths say they pay best, lending in a truth's "
        "arrears scope only where a loan still pays",
    }
