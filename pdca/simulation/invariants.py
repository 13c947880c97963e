"""The invariants of a season, checked over the whole run from pdca's own tables and the
world's ledger: each says whether it held and how many things it checked.

- `one_send_per_intent`: no customer sent twice in one batch (campaign, day, window);
- `frequency_cap`: no customer sent more than `max_touches_per_7d` in any 7 days;
- `quiet_hours`: no send inside the quiet hours (campaign time);
- `holdout_never_contacted`: a hold-out member never sent anything, at no cost;
- `assignment_never_changes`: every customer keeps one experiment arm all season, but
  for the loser's members of an approved promotion, who move to the winner;
- `no_send_to_paused_scope`: no send to a channel or segment after its pause or
  retirement was approved;
- `check_equals_ledger`: every week's checked touches, deliveries, responses and
  attributed applications equal the world's own count of them (the applications credited
  by the contract's attribution rule, applied to the world's ledger).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from pdca.models import Customer, OutboxEntry, OutreachBatch, Touch
from pdca.settings import get_settings
from pdca.simulation.backoffice import season_week
from pdca.simulation.feeds import ZONE, season_midnight
from pdca.synthetic.world import DAY
from tasks.act.actions import find_actions
from tasks.common.periods import Period

if TYPE_CHECKING:
    from pdca.simulation.season import Season


def check_invariants(season: Season) -> list[dict[str, Any]]:
    """Every invariant of the season, in the order the module lists them."""
    with season.engine.connect() as conn:
        every = pd.read_sql(
            select(Touch, Customer.segment).join(
                Customer, Customer.customer_id == Touch.customer_id
            ),
            conn,
        )
        outbox = pd.read_sql(
            select(OutboxEntry.batch_id, OutboxEntry.customer_id, OutboxEntry.status)
            .join(OutreachBatch, OutreachBatch.batch_id == OutboxEntry.batch_id)
            .where(OutreachBatch.campaign_id == season.spec.id),
            conn,
        )
        actions = find_actions(conn, campaign_id=season.spec.id)
    touches = every[every["campaign_id"] == season.spec.id]
    sent = touches[touches["variant"] != "holdout"]
    return [
        one_send_per_intent(outbox),
        frequency_cap(every, season.spec.id, season.spec.contact_policy.max_touches_per_7d),
        quiet_hours(sent, season),
        holdout_never_contacted(touches, outbox),
        assignment_never_changes(touches, actions),
        no_send_to_paused_scope(sent, actions),
        check_equals_ledger(season, every),
    ]


def _result(name: str, violations: int, checked: int, **details: Any) -> dict[str, Any]:
    return {
        "name": name,
        "held": violations == 0,
        "checked": int(checked),
        "violations": int(violations),
        **details,
    }


def one_send_per_intent(outbox: pd.DataFrame) -> dict[str, Any]:
    sent = outbox[outbox["status"] == "sent"]
    repeated = sent.duplicated(["batch_id", "customer_id"]).sum()
    return _result("one_send_per_intent", int(repeated), len(sent))


def frequency_cap(touches: pd.DataFrame, campaign_id: str, cap: int) -> dict[str, Any]:
    """Per season send, the customer's sends (any campaign) on its local day and the six
    before — dispatch's own reading of `max_touches_per_7d` — itself included, ≤ cap."""
    sent = touches[touches["variant"] != "holdout"]
    if sent.empty:
        return _result("frequency_cap", 0, 0, cap=cap)
    local = sent["sent_at"].dt.tz_localize(UTC).dt.tz_convert(ZONE).dt.tz_localize(None)
    day = (local.dt.normalize() - pd.Timestamp("2000-01-01")).dt.days.to_numpy(dtype=np.int64)
    codes = pd.factorize(sent["customer_id"])[0].astype(np.int64)
    keys = codes * 1_000_000 + day
    ordered = np.sort(keys)
    within = np.searchsorted(ordered, keys, side="right") - np.searchsorted(
        ordered, keys - 6, side="left"
    )
    mine = (sent["campaign_id"] == campaign_id).to_numpy()
    over = int((within[mine] > cap).sum())
    return _result("frequency_cap", over, int(mine.sum()), cap=cap)


def quiet_hours(sent: pd.DataFrame, season: Season) -> dict[str, Any]:
    """No send's local time of day inside the quiet hours."""
    quiet = season.spec.contact_policy.quiet_hours
    local = sent["sent_at"].dt.tz_localize(UTC).dt.tz_convert(ZONE).dt.time
    count = int(local.map(quiet.contains).sum()) if len(local) else 0
    return _result("quiet_hours", count, len(sent))


def holdout_never_contacted(touches: pd.DataFrame, outbox: pd.DataFrame) -> dict[str, Any]:
    members = set(touches.loc[touches["variant"] == "holdout", "customer_id"])
    held = touches[touches["variant"] == "holdout"]
    bad = int((held["delivered"] | held["responded"] | (held["cost"] > 0)).sum())
    sent_to = set(outbox.loc[outbox["status"] == "sent", "customer_id"]) & members
    sent_touch = set(touches.loc[touches["variant"] != "holdout", "customer_id"]) & members
    violations = bad + len(sent_to | sent_touch)
    return _result("holdout_never_contacted", violations, len(members))


def assignment_never_changes(touches: pd.DataFrame, actions: list = ()) -> dict[str, Any]:
    """Every customer keeps their arm, except the loser's members of an approved
    `promote_variant`, who get the winner's message from the Monday it was decided on
    (dispatch assigns the loser's share to the winner); the hold-out never changes."""
    ordered = touches.sort_values("sent_at", kind="stable")
    first = ordered.groupby("customer_id")["variant"].transform("first")
    moved = ordered[ordered["variant"] != first]
    allowed = np.zeros(len(moved), dtype=bool)
    for action in actions:
        if action.type != "promote_variant" or action.status not in ("approved", "applied"):
            continue
        winner, loser = action.params.get("winner"), action.params.get("loser")
        allowed |= (
            (first[moved.index] == loser).to_numpy()
            & (moved["variant"] == winner).to_numpy()
            & (moved["sent_at"] > pd.Timestamp(decided_in_season(action))).to_numpy()
        )
    changed = moved.loc[~allowed, "customer_id"].nunique()
    return _result("assignment_never_changes", int(changed), touches["customer_id"].nunique())


def decided_in_season(action) -> datetime:
    """When the season decided an action: the Monday after the period it was proposed for,
    at 08:00 local, as naive UTC. (Its stored `decided_at` is the wall clock of the machine
    that ran the simulation, not the simulated one.)"""
    monday = Period.parse(action.period).end
    return season_midnight(monday) + timedelta(hours=8)


def no_send_to_paused_scope(sent: pd.DataFrame, actions: list) -> dict[str, Any]:
    """Sends after an approved pause or retirement, in its channel or segment."""
    stops = [
        a
        for a in actions
        if a.type in ("pause", "retire_channel") and a.status in ("approved", "applied")
    ]
    violations, checked = 0, 0
    for action in stops:
        after = sent[sent["sent_at"] > pd.Timestamp(decided_in_season(action))]
        scope = {k: v for k, v in action.scope.items() if k in ("channel", "segment") and v}
        if not scope:
            continue
        inside = np.ones(len(after), dtype=bool)
        for key, value in scope.items():
            inside &= (after[key] == value).to_numpy()
        violations += int(inside.sum())
        checked += len(after)
    return _result("no_send_to_paused_scope", violations, checked, stops=len(stops))


def check_equals_ledger(season: Season, every: pd.DataFrame) -> dict[str, Any]:
    """Each checked week's touches, delivered, responded and attributed applications
    against the world's own count of them (`every`: pdca's touches, for last season's)."""
    ledger = season.office.table("touches")
    week = season_week(ledger["t"].to_numpy()) if len(ledger) else np.zeros(0, dtype=np.int64)
    applied_week = attributed_application_weeks(season, every)
    mismatches, checked = [], 0
    for period, check in season.checks.items():
        number = (Period.parse(period).start - season.world.start).days // 7 + 1
        rows = ledger[week == number] if len(ledger) else ledger
        world = {
            "touches": len(rows),
            "delivered": int(rows["delivered"].sum()) if len(rows) else 0,
            "responded": int(rows["responded"].sum()) if len(rows) else 0,
            "applications": int((applied_week == number).sum()),
        }
        funnel = check.get("funnel", [])
        pdca = {name: int(sum(row.get(name) or 0 for row in funnel)) for name in world}
        checked += len(world)
        mismatches += [
            {"period": period, "number": name, "check": pdca[name], "world": world[name]}
            for name in world
            if pdca[name] != world[name]
        ]
    return _result("check_equals_ledger", len(mismatches), checked, mismatches=mismatches[:10])


def attributed_application_weeks(season: Season, every: pd.DataFrame) -> np.ndarray:
    """The season week of each application of the ledger the campaign is credited with,
    by the contract's attribution: its own campaign id, or, when empty, the customer's
    last delivered touch (any campaign; last season's from pdca's tables) within the
    window before it, inclusive; hold-out members' applications never count."""
    applications = season.office.table("applications")
    if applications.empty:
        return np.zeros(0, dtype=np.int64)
    window = float(get_settings().attribution_window_days * DAY)
    origin = pd.Timestamp(season_midnight(season.world.start))
    season_touches = season.office.table("touches")
    earlier = every[(every["campaign_id"] != season.spec.id) & every["delivered"]]
    delivered = pd.concat(
        [
            pd.DataFrame(
                {
                    "customer_id": earlier["customer_id"],
                    "t": (earlier["sent_at"] - origin).dt.total_seconds().to_numpy(),
                    "touch_id": earlier["touch_id"],
                    "campaign": earlier["campaign_id"],
                }
            ),
            pd.DataFrame(
                {
                    "customer_id": season_touches["customer_id"],
                    "t": (season_touches["sent_at"] - origin).dt.total_seconds().to_numpy(),
                    "touch_id": season_touches["touch_id"],
                    "campaign": season.spec.id,
                }
            )[season_touches["delivered"].to_numpy(dtype=bool)]
            if len(season_touches)
            else None,
        ]
    ).sort_values(["t", "touch_id"], kind="stable")
    asked = pd.DataFrame(
        {
            "customer_id": season.world.people["id"][applications["who"].to_numpy(dtype=int)],
            "t": applications["t"].to_numpy(dtype=float),
            "campaign_id": applications["campaign_id"].to_numpy(),
        }
    ).sort_values("t", kind="stable")
    last = pd.merge_asof(
        asked, delivered, on="t", by="customer_id", direction="backward", tolerance=window
    )
    mine = every["campaign_id"] == season.spec.id
    holdout = set(every.loc[mine & (every["variant"] == "holdout"), "customer_id"])
    credited = (last["campaign_id"] == season.spec.id) | (
        (last["campaign_id"] == "") & (last["campaign"] == season.spec.id)
    )
    credited &= ~last["customer_id"].isin(holdout)
    return season_week(last.loc[credited, "t"].to_numpy(dtype=np.int64))
