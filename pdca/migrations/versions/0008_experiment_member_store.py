"""The experiment's member store: each campaign's assignments with their outcomes, kept.

The check judged the experiment by recounting every assignment since it started and
probing each member's applications on every check, so its cost grew with the
experiment's length. `experiment_members` keeps, per campaign and customer, what the
judge needs (assignment time and variant, converted within the attribution window, the
CUPED covariate), `experiment_member_sums` their sums per variant and hour of
assignment (a check sums hours whole, and reads members only in the hours its period's
boundaries cut), and `experiment_member_state` per campaign the settings they were
counted with and how far the campaign's touches were folded in
(`tasks.check.experiments.members`). A check then folds in only its period and what
came after the last fold.

An application inserted, changed or deleted can change a stored outcome or covariate of
its customer, in any campaign: the triggers below mark that customer's rows `stale`,
whatever wrote the row (an import, the simulation, a test), and the next check recounts
those rows alone.

A database migrated from before has an empty store: its first check counts every
assignment once, and later checks fold in only what is new.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = {
    "insert": "new.customer_id",
    "update of customer_id, applied_at": "old.customer_id, new.customer_id",
    "delete": "old.customer_id",
}
"""SQLite: one row trigger per event, marking the customers whose applications changed."""

POSTGRES_FUNCTION = """
create or replace function pdca_experiment_members_stale() returns trigger
language plpgsql as $$
begin
    if tg_op in ('UPDATE', 'DELETE') then
        update experiment_members set stale = 1
        where customer_id = old.customer_id and stale = 0;
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        update experiment_members set stale = 1
        where customer_id = new.customer_id and stale = 0;
    end if;
    return null;
end
$$
"""


def upgrade() -> None:
    op.create_table(
        "experiment_members",
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("assigned_at", sa.DateTime(), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("converted", sa.Integer(), nullable=False),
        sa.Column("prior_applications", sa.Integer(), nullable=False),
        sa.Column("stale", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "customer_id", name=op.f("pk_experiment_members")),
        sqlite_with_rowid=False,  # a probe by key reads the row in the key's b-tree
    )
    op.create_index(
        "ix_experiment_members_arms",
        "experiment_members",
        ["campaign_id", "assigned_at", "variant", "converted", "prior_applications"],
    )
    op.create_index(
        op.f("ix_experiment_members_customer_id"), "experiment_members", ["customer_id"]
    )
    op.create_index(
        "ix_experiment_members_stale",
        "experiment_members",
        ["campaign_id"],
        sqlite_where=sa.text("stale = 1"),
        postgresql_where=sa.text("stale = 1"),
    )
    op.create_table(
        "experiment_member_sums",
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("bucket_start", sa.DateTime(), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("bucket_end", sa.DateTime(), nullable=False),
        sa.Column("assigned", sa.Integer(), nullable=False),
        sa.Column("converted", sa.Integer(), nullable=False),
        sa.Column("covariate_sum", sa.Integer(), nullable=False),
        sa.Column("covariate_square_sum", sa.Integer(), nullable=False),
        sa.Column("covariate_converted_sum", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "campaign_id", "bucket_start", "variant", name=op.f("pk_experiment_member_sums")
        ),
    )
    op.create_table(
        "experiment_member_state",
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("attribution_days", sa.Integer(), nullable=False),
        sa.Column("covariate_days", sa.Integer(), nullable=False),
        sa.Column("folded_through", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_experiment_member_state")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(
            "create trigger applications_experiment_members_stale "
            "after insert or update of customer_id, applied_at or delete on applications "
            "for each row execute function pdca_experiment_members_stale()"
        )
        return
    for number, (event, customers) in enumerate(SQLITE_TRIGGERS.items()):
        op.execute(
            f"create trigger applications_experiment_members_stale_{number} "
            f"after {event} on applications begin "
            f"update experiment_members set stale = 1 "
            f"where customer_id in ({customers}) and stale = 0; end"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("drop trigger if exists applications_experiment_members_stale on applications")
        op.execute("drop function if exists pdca_experiment_members_stale()")
    else:
        for number in range(len(SQLITE_TRIGGERS)):
            op.execute(f"drop trigger if exists applications_experiment_members_stale_{number}")
    op.drop_table("experiment_member_state")
    op.drop_table("experiment_member_sums")
    op.drop_index("ix_experiment_members_stale", table_name="experiment_members")
    op.drop_index(op.f("ix_experiment_members_customer_id"), table_name="experiment_members")
    op.drop_index(
        "ix_experiment_members_arms",
        table_name="experiment_members",
    )
    op.drop_table("experiment_members")
