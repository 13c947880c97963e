"""The experiment's members: kept in the database as the checks go, summed per arm.

`experiment_members` is what the check judges: everyone assigned from the experiment's
start up to the period's end (intention to treat, cumulative), each arm's outcome counted
over the members whose attribution window has closed by the period's end, the pending ones
reported, the period's own cohort beside them and CUPED's covariate sums.

Recounting all of that on every check (`recount_experiment_members`,
`sql/experiment_members.sql`, the definition) costs as much as the experiment is long, so
the members are kept per campaign and customer (`pdca.models.ExperimentMember`) and a
check folds in only (`refresh_members`, `sql/experiment_member_outcomes.sql`):

- its own period and everything after the campaign's last folded touch (the period is
  recounted on every check, so a rerun sees touches loaded since; an earlier period's
  late touches count once that period is checked again, as its weekly rollups do);
- the members whose applications changed since they were counted (triggers on
  `applications` mark them stale, whatever wrote the row: late applications within the
  window included).

Then it sums the stored rows (`sql/experiment_member_arms.sql`). A new store, or one
counted with other attribution or covariate days, is counted once from the start.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    String,
    column,
    delete,
    func,
    insert,
    literal,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult

from pdca.models import (
    Action,
    ExperimentMember,
    ExperimentMemberState,
    ExperimentMemberSum,
    Touch,
)
from tasks.common.sqlfiles import query

ARM_COLUMNS = ["variant", "members", "converted"]
"""What `judge` needs of an arms frame at the least (`experiment_members` has more)."""

MEMBER_COLUMNS = [
    "variant",
    "assigned",
    "members",
    "converted",
    "covariate_sum",
    "covariate_square_sum",
    "covariate_converted_sum",
    "cohort_assigned",
    "cohort_members",
    "cohort_converted",
]
"""What `experiment_members` returns; `judge` reads every column present."""

EARLIEST = datetime(1, 1, 1)
"""The experiment's start when nothing restarted it: no touch is earlier, so the
campaign's first touch starts it."""


def experiment_members(
    conn: Connection,
    campaign_id: str,
    starts_at: datetime,
    ends_at: datetime,
    *,
    attribution_days: int = 14,
    covariate_days: int = 90,
    experiment_starts_at: datetime | None = None,
) -> pd.DataFrame:
    """Cumulative members per arm up to `ends_at`, with the cohort of [starts_at, ends_at).

    Times are naive UTC (a period's `utc_bounds`). Columns `MEMBER_COLUMNS`, one row per
    variant with anyone assigned, in variant order, every count an int64: exactly
    `recount_experiment_members`'s. The stored members are brought up to date first, in
    the caller's transaction (which the caller commits).
    `experiment_starts_at` (None: the campaign's first touch) leaves out customers
    assigned before it (see `experiment_started_at`).
    """
    refresh_members(
        conn,
        campaign_id,
        starts_at,
        ends_at,
        attribution_days=attribution_days,
        covariate_days=covariate_days,
    )
    params = {
        "campaign_id": campaign_id,
        "experiment_starts_at": experiment_starts_at or EARLIEST,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "attribution_days": attribution_days,
    }
    return _arms(conn.execute(query("experiment_member_arms", conn.dialect.name), params))


def recount_experiment_members(
    conn: Connection,
    campaign_id: str,
    starts_at: datetime,
    ends_at: datetime,
    *,
    attribution_days: int = 14,
    covariate_days: int = 90,
    experiment_starts_at: datetime | None = None,
) -> pd.DataFrame:
    """`experiment_members` recounted from every touch and application, nothing stored
    (`sql/experiment_members.sql`): the definition the stored members must equal."""
    params = {
        "campaign_id": campaign_id,
        "experiment_starts_at": experiment_starts_at or EARLIEST,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "attribution_days": attribution_days,
        "covariate_days": covariate_days,
    }
    return _arms(conn.execute(query("experiment_members", conn.dialect.name), params))


def _arms(result: CursorResult) -> pd.DataFrame:
    """The arms frame of a query's rows: MEMBER_COLUMNS, counts int64, variant order."""
    rows = [[str(row[0]), *(int(value or 0) for value in row[1:])] for row in result.fetchall()]
    frame = pd.DataFrame(rows, columns=list(result.keys()))[MEMBER_COLUMNS]
    frame = frame.astype({column: "int64" for column in MEMBER_COLUMNS[1:]})
    return frame.sort_values("variant").reset_index(drop=True)


def refresh_members(
    conn: Connection,
    campaign_id: str,
    starts_at: datetime,
    ends_at: datetime,
    *,
    attribution_days: int,
    covariate_days: int,
) -> None:
    """Bring the stored members of the campaign, and their hourly sums, up to date for a
    check of [starts_at, ends_at), in the caller's transaction (see the module's
    docstring).

    Two checks of one campaign at once (a backfill on two workers) would fold the same
    touches: on PostgreSQL the campaign's state row is locked first (created if missing),
    so the second waits for the first's commit; SQLite has one writer at a time anyway.
    Not the campaign's row, which the funnel's measurement may hold until the check
    stores its result, after this measurement has finished.
    """
    settings = (attribution_days, covariate_days)
    folded = _folded_through(conn, campaign_id, settings)
    refold_from = min(starts_at, folded)
    stale = _stale_span(conn, campaign_id, refold_from)
    later = _members_from(conn, campaign_id, ends_at)
    conn.execute(
        delete(ExperimentMember).where(
            ExperimentMember.campaign_id == campaign_id,
            ExperimentMember.assigned_at >= refold_from,
            ExperimentMember.assigned_at < ends_at,
        )
    )
    params = {
        "campaign_id": campaign_id,
        "refold_from_at": refold_from,
        "ends_at": ends_at,
        "attribution_days": attribution_days,
        "covariate_days": covariate_days,
    }
    conn.execute(_store_counted(conn, campaign_id), params)
    spans = [(refold_from, ends_at)]
    if stale is not None:
        spans.append(stale)
    if _members_from(conn, campaign_id, ends_at) != later:  # assigned earlier now
        spans.append((ends_at, LATEST))
    for first, last in spans:
        _store_sums(conn, campaign_id, _hour(first), _hour(last, up=True))
    latest = conn.execute(
        select(func.max(Touch.sent_at)).where(
            Touch.campaign_id == campaign_id,
            Touch.sent_at >= refold_from,
            Touch.sent_at < ends_at,
        )
    ).scalar()
    _store_state(conn, campaign_id, settings, max(folded, latest or folded))


LATEST = datetime(9999, 1, 1)
"""Later than any assignment: the end of the span of hours summed again when members
assigned after the checked period were found assigned in it."""


def _folded_through(conn: Connection, campaign_id: str, settings: tuple[int, int]) -> datetime:
    """How far the campaign's touches are folded in with these windows (its state row
    locked); EARLIEST, with the store emptied, when nothing is stored or it was counted
    with other windows."""
    statement = _dialect_insert(conn)(ExperimentMemberState).values(
        campaign_id=campaign_id, attribution_days=-1, covariate_days=-1, folded_through=EARLIEST
    )
    conn.execute(statement.on_conflict_do_nothing(index_elements=["campaign_id"]))
    state = conn.execute(
        select(ExperimentMemberState)
        .where(ExperimentMemberState.campaign_id == campaign_id)
        .with_for_update()
    ).one()
    if (state.attribution_days, state.covariate_days) == settings:
        return state.folded_through
    for model in (ExperimentMember, ExperimentMemberSum):
        conn.execute(delete(model).where(model.campaign_id == campaign_id))
    return EARLIEST


def _stale_span(
    conn: Connection, campaign_id: str, before: datetime
) -> tuple[datetime, datetime] | None:
    """The first and last assignment among the stale members assigned before `before`
    (the ones recounted besides the fold; `sql/experiment_member_stale_span.sql`), None
    without any."""
    span = query("experiment_member_stale_span", conn.dialect.name).columns(
        column("first_assigned_at", DateTime), column("last_assigned_at", DateTime)
    )
    params = {"campaign_id": campaign_id, "refold_from_at": before}
    first, last = conn.execute(span, params).one()
    return None if first is None else (first, last + timedelta(microseconds=1))


def _members_from(conn: Connection, campaign_id: str, moment: datetime) -> int:
    """How many members are stored as assigned at `moment` or later."""
    return conn.execute(
        select(func.count()).where(
            ExperimentMember.campaign_id == campaign_id,
            ExperimentMember.assigned_at >= moment,
        )
    ).scalar_one()


def _hour(moment: datetime, *, up: bool = False) -> datetime:
    """The start of `moment`'s hour; with `up`, of the next one unless it is on the hour."""
    start = moment.replace(minute=0, second=0, microsecond=0)
    if up and start < moment and start < LATEST:
        return start + timedelta(hours=1)
    return start


SUM_COLUMNS = [
    "variant",
    "bucket_start",
    "bucket_end",
    "assigned",
    "converted",
    "covariate_sum",
    "covariate_square_sum",
    "covariate_converted_sum",
]
"""What `sql/experiment_member_sums.sql` returns per variant and hour."""


def _store_sums(conn: Connection, campaign_id: str, first: datetime, last: datetime) -> None:
    """Replace the campaign's hourly sums of [first, last) (on the hour) with the stored
    members' (`sql/experiment_member_sums.sql`)."""
    conn.execute(
        delete(ExperimentMemberSum).where(
            ExperimentMemberSum.campaign_id == campaign_id,
            ExperimentMemberSum.bucket_start >= first,
            ExperimentMemberSum.bucket_start < last,
        )
    )
    types = [String, DateTime, DateTime, Integer, Integer, Integer, Integer, Integer]
    summed = (
        query("experiment_member_sums", conn.dialect.name)
        .columns(*(column(name, kind) for name, kind in zip(SUM_COLUMNS, types, strict=True)))
        .subquery("summed")
    )
    rows = select(
        literal(campaign_id, String(64)).label("campaign_id"),
        *(summed.c[name] for name in SUM_COLUMNS),
    )
    statement = insert(ExperimentMemberSum).from_select(["campaign_id", *SUM_COLUMNS], rows)
    conn.execute(statement, {"campaign_id": campaign_id, "sums_from_at": first, "sums_to_at": last})


FOLDED_COLUMNS = ["customer_id", "assigned_at", "variant", "converted", "prior_applications"]
"""What `sql/experiment_member_outcomes.sql` returns for each member it counts."""


def _dialect_insert(conn: Connection):
    """The back end's INSERT, which knows ON CONFLICT (both back ends have it)."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def _store_counted(conn: Connection, campaign_id: str):
    """INSERT … SELECT of the members `experiment_member_outcomes` counts, replacing a
    stored row of the same customer (a stale one, or an assignment found earlier now)."""
    types = [String, DateTime, String, Integer, Integer]
    counted = (
        query("experiment_member_outcomes", conn.dialect.name)
        .columns(*(column(name, kind) for name, kind in zip(FOLDED_COLUMNS, types, strict=True)))
        .subquery("counted")
    )
    rows = select(
        literal(campaign_id, String(64)).label("campaign_id"),
        *(counted.c[name] for name in FOLDED_COLUMNS),
        literal(0, Integer).label("stale"),
    ).where(true())  # SQLite's upsert after a SELECT needs its WHERE
    statement = _dialect_insert(conn)(ExperimentMember).from_select(
        ["campaign_id", *FOLDED_COLUMNS, "stale"], rows
    )
    return statement.on_conflict_do_update(
        index_elements=["campaign_id", "customer_id"],
        set_={name: statement.excluded[name] for name in [*FOLDED_COLUMNS[1:], "stale"]},
    )


def _store_state(
    conn: Connection, campaign_id: str, settings: tuple[int, int], folded_through: datetime
) -> None:
    """Record how far the campaign's touches are folded in, and with which windows."""
    attribution_days, covariate_days = settings
    statement = _dialect_insert(conn)(ExperimentMemberState).values(
        campaign_id=campaign_id,
        attribution_days=attribution_days,
        covariate_days=covariate_days,
        folded_through=folded_through,
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["campaign_id"],
            set_={
                name: statement.excluded[name]
                for name in ("attribution_days", "covariate_days", "folded_through")
            },
        )
    )


def experiment_started_at(conn: Connection, campaign_id: str, before: datetime) -> datetime | None:
    """When the experiment judged at `before` started: the decision of the last
    promote_variant approved before it (a promotion changes the split, so the members
    drawn by the old split would void the sample-ratio test), None for the campaign's
    first touch."""
    return conn.execute(
        select(func.max(Action.decided_at)).where(
            Action.campaign_id == campaign_id,
            Action.type == "promote_variant",
            Action.status == "approved",
            Action.decided_at < before,
        )
    ).scalar_one_or_none()
