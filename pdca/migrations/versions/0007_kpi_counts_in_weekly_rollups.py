"""The customer, value and loan-book counts in the weekly rollups, for their anomalies.

The anomaly rule compares a week with the same scope's trailing weeks, read from
`weekly_rollups`; the rows held the funnel's counts only, so nps, churn_rate, npl_rate,
ltv, ltv_cac and new_customers could not be judged. Each whole week now also stores what
those KPIs are computed from (`tasks.check.check.KPI_ROLLUP_COUNTS`): the loan book as of
the week's end (loans, seasoned_loans, overdue_loans, loan_balance, snapshot_loans,
npl_loans) and the week's customer and value counts (value_loans, new_customers,
lifetime_value, answers, promoters, detractors, closing_borrowers, churned_borrowers).

Nullable: rows written before this revision have none of them, which is "not counted",
not 0 (a zero would read as a week without answers or loans). The check recounts such a
week when it needs it as a baseline.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

WHOLE = (
    "loans",
    "seasoned_loans",
    "overdue_loans",
    "snapshot_loans",
    "npl_loans",
    "value_loans",
    "new_customers",
    "answers",
    "promoters",
    "detractors",
    "closing_borrowers",
    "churned_borrowers",
)
MONEY = ("loan_balance", "lifetime_value")


def upgrade() -> None:
    with op.batch_alter_table("weekly_rollups", schema=None) as batch_op:
        for name in WHOLE:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))
        for name in MONEY:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("weekly_rollups", schema=None) as batch_op:
        for name in (*WHOLE, *MONEY):
            batch_op.drop_column(name)
