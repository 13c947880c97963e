"""The experiment's members, read from the database (`sql/experiment_members.sql`).

`experiment_members` is what the check judges: everyone assigned from the experiment's
start up to the period's end (intention to treat, cumulative), each arm's outcome counted
over the members whose attribution window has closed by the period's end, the pending ones
reported, the period's own cohort beside them and CUPED's covariate sums.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, func, select

from pdca.models import Action
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
    variant with anyone assigned, in variant order, every count an int64.
    `experiment_starts_at` (None: the campaign's first touch) leaves out customers
    assigned before it (see `experiment_started_at`).
    """
    params = {
        "campaign_id": campaign_id,
        "experiment_starts_at": experiment_starts_at or EARLIEST,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "attribution_days": attribution_days,
        "covariate_days": covariate_days,
    }
    result = conn.execute(query("experiment_members", conn.dialect.name), params)
    rows = [[str(row[0]), *(int(value or 0) for value in row[1:])] for row in result.fetchall()]
    frame = pd.DataFrame(rows, columns=list(result.keys()))[MEMBER_COLUMNS]
    frame = frame.astype({column: "int64" for column in MEMBER_COLUMNS[1:]})
    return frame.sort_values("variant").reset_index(drop=True)


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
