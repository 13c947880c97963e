"""The database model: the feeds' tables, the campaign, and what each PDCA stage writes.

Timestamps are stored as naive UTC; feed timestamps are converted on import (a timestamp
without offset is read in its campaign's time zone). Keys are the feeds' own text keys,
so that a row can be traced back to the file it came from and an import can upsert it.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CHANNELS = ("phone", "sms", "im", "app_push", "email", "branch", "partner")
"""The contract's channels, in the order reports list them."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


Key = String(64)


# --- reference data ---------------------------------------------------------------------


class Channel(Base):
    """One outreach channel; the migration seeds the contract's seven."""

    __tablename__ = "channels"
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    description: Mapped[str] = mapped_column(String(200), default="")


class Product(Base):
    """A loan product a campaign sells; created by the campaigns that name it."""

    __tablename__ = "products"
    product_code: Mapped[str] = mapped_column(Key, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")


class Campaign(Base):
    """A campaign and the spec it was last applied from (the spec is the source of truth)."""

    __tablename__ = "campaigns"
    campaign_id: Mapped[str] = mapped_column(Key, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    product_code: Mapped[str] = mapped_column(ForeignKey("products.product_code"))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    budget_total: Mapped[float] = mapped_column(Float)
    spec: Mapped[dict] = mapped_column(JSON)
    spec_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


# --- feeds ------------------------------------------------------------------------------


class Customer(Base):
    """A customer. The index on (customer_id, segment) answers the segment lookups of the
    check (one per touch of the period) from the index alone, without reading the row."""

    __tablename__ = "customers"
    __table_args__ = (Index(None, "customer_id", "segment"),)
    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    segment: Mapped[str] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    credit_score: Mapped[int | None] = mapped_column(Integer)
    monthly_income: Mapped[float | None] = mapped_column(Float)
    debt_ratio: Mapped[float | None] = mapped_column(Float)
    industry: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(200))
    marketing_consent: Mapped[bool] = mapped_column(Boolean)
    do_not_contact: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime | None] = mapped_column(DateTime)


class Touch(Base):
    """One outreach attempt (or a hold-out assignment: variant `holdout`, never sent)."""

    __tablename__ = "touches"
    __table_args__ = (
        # the period's touches in time order, every column: the experiment's
        # assignments, dispatch's delivered touches by segment and the check's
        # data-quality read of the period's touches come from the index alone
        Index(
            None,
            "campaign_id",
            "sent_at",
            "customer_id",
            "variant",
            "touch_id",
            "delivered",
            "channel",
            "responded",
            "cost",
        ),
        # a customer's touches in the order attribution reads them (sent_at, then
        # touch_id: no sort per probe), with what attribution (the last delivered touch,
        # the variant of the first in the campaign) and the experiment's "touched in this
        # campaign before?" test need, so no probe reads a row (migration 0013)
        Index(None, "customer_id", "sent_at", "touch_id", "campaign_id", "delivered", "variant"),
        # each customer's variant in a campaign (dispatch's assignments, every run),
        # grouped by customer from the index alone, with no sort of the campaign's touches
        Index(None, "campaign_id", "customer_id", "variant"),
    )
    touch_id: Mapped[str] = mapped_column(Key, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(Key)
    customer_id: Mapped[str] = mapped_column(Key)
    channel: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column(DateTime)
    delivered: Mapped[bool] = mapped_column(Boolean)
    responded: Mapped[bool] = mapped_column(Boolean)
    cost: Mapped[float] = mapped_column(Float)


class Application(Base):
    __tablename__ = "applications"
    __table_args__ = (
        Index(None, "customer_id", "applied_at"),
        Index(None, "campaign_id", "applied_at"),
    )
    application_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key)
    campaign_id: Mapped[str | None] = mapped_column(Key)
    channel: Mapped[str] = mapped_column(String(16))
    applied_at: Mapped[datetime] = mapped_column(DateTime)
    product_code: Mapped[str] = mapped_column(Key)
    amount_requested: Mapped[float | None] = mapped_column(Float)
    source_feed: Mapped[str | None] = mapped_column(String(32))
    """The feed that last loaded the row (null: written before it was recorded); a field
    its source cannot carry (`tasks.common.feeds.NOT_CARRIED`) is no data-quality failure."""


class Decision(Base):
    __tablename__ = "decisions"
    application_id: Mapped[str] = mapped_column(Key, primary_key=True)
    decided_at: Mapped[datetime] = mapped_column(DateTime)
    decision: Mapped[str] = mapped_column(String(16))
    reject_reason: Mapped[str | None] = mapped_column(String(200))
    approved_amount: Mapped[float | None] = mapped_column(Float)
    apr: Mapped[float | None] = mapped_column(Float)


class Loan(Base):
    __tablename__ = "loans"
    __table_args__ = (Index(None, "application_id"),)
    loan_id: Mapped[str] = mapped_column(Key, primary_key=True)
    application_id: Mapped[str] = mapped_column(Key)
    disbursed_at: Mapped[datetime] = mapped_column(DateTime)
    amount: Mapped[float] = mapped_column(Float)
    apr: Mapped[float] = mapped_column(Float)
    term_months: Mapped[int] = mapped_column(Integer)


class Repayment(Base):
    """A loan's repayment snapshot on one day (the feed is keyed by loan and day)."""

    __tablename__ = "repayments"
    loan_id: Mapped[str] = mapped_column(Key, primary_key=True)
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    dpd: Mapped[int] = mapped_column(Integer)
    outstanding: Mapped[float] = mapped_column(Float)


class Complaint(Base):
    __tablename__ = "complaints"
    __table_args__ = (Index(None, "customer_id", "received_at"),)
    complaint_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key)
    campaign_id: Mapped[str | None] = mapped_column(Key)
    received_at: Mapped[datetime] = mapped_column(DateTime)
    category: Mapped[str] = mapped_column(String(64))


class Survey(Base):
    """A customer's answer to the satisfaction survey (score 0–10), for nps."""

    __tablename__ = "surveys"
    __table_args__ = (Index(None, "customer_id", "answered_at"),)
    survey_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key)
    campaign_id: Mapped[str | None] = mapped_column(Key)
    answered_at: Mapped[datetime] = mapped_column(DateTime)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(String(2000))


# --- bookkeeping ------------------------------------------------------------------------


class Import(Base):
    """One run of `pdca import`: what came in, what loaded, what went to quarantine."""

    __tablename__ = "imports"
    import_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feed: Mapped[str] = mapped_column(String(32))
    file: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16))
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    rows_loaded: Mapped[int] = mapped_column(Integer, default=0)
    rows_quarantined: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)


class QuarantinedRow(Base):
    """A feed row that failed validation, kept whole with where it came from and why.

    One row per (feed, file, line): re-importing the same file replaces, never duplicates.
    `occurred_at` is the row's own timestamp when it could be read, so the check stage can
    count a period's quarantined rows.
    """

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("feed", "file", "line"),)
    quarantine_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.import_id"))
    feed: Mapped[str] = mapped_column(String(32))
    file: Mapped[str] = mapped_column(String(500))
    line: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime)


class AuditEntry(Base):
    """Who did what, when: every run, approval and export."""

    __tablename__ = "audit_log"
    audit_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


# --- what the stages write (filled by the plan, dispatch, check and act flows) ----------


class Plan(Base):
    """One version of a campaign's plan for a period; the newest is current."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("campaign_id", "period", "version"),)
    plan_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.campaign_id"))
    period: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    inputs: Mapped[dict] = mapped_column(JSON, default=dict)
    """What the plan was built from: history window, growth, approved adjustments."""


class Target(Base):
    __tablename__ = "targets"
    target_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.plan_id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(16))
    segment: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[float] = mapped_column(Float)
    tolerance_warn: Mapped[float] = mapped_column(Float)
    tolerance_fail: Mapped[float] = mapped_column(Float)
    lower_is_better: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)


class Budget(Base):
    __tablename__ = "budgets"
    budget_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.plan_id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    amount: Mapped[float] = mapped_column(Float)
    touches: Mapped[int] = mapped_column(Integer)
    daily_capacity: Mapped[int | None] = mapped_column(Integer)
    explanation: Mapped[dict] = mapped_column(JSON, default=dict)


class OutreachBatch(Base):
    """One (campaign, day, window) dispatch; its sends are in the outbox."""

    __tablename__ = "outreach_batches"
    __table_args__ = (UniqueConstraint("campaign_id", "send_date", "window"),)
    batch_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.campaign_id"))
    send_date: Mapped[date] = mapped_column(Date)
    window: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    summary: Mapped[dict] = mapped_column(JSON, default=dict)


class OutboxEntry(Base):
    """An intended send, written before the gateway is called (exactly-once dispatch).

    Status: `pending` (written, not yet handed over), `sending` (handed to the gateway,
    outcome not yet recorded — a crash here is resolved by resending with the same
    idempotency key, which the gateway recognises), `sent`, `failed`, `held` (its window
    had passed: kept for the next window, never sent late), `holdout` (recorded, never sent),
    `cancelled` (its channel or segment was paused or retired before it went; `error` says
    which: `paused`, `retired`).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("batch_id", "customer_id", "channel"),
        Index(None, "customer_id", "scheduled_at"),
        # not `status`: updates of a send then add no index entries on PostgreSQL, whose
        # outbox pages are filled to 40 % to leave room for them (migration 0010)
        Index(None, "batch_id", "outbox_id"),
    )
    outbox_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # a foreign key on SQLite; on PostgreSQL triggers keep its rule with one check per
    # statement rather than per row (migration 0011)
    batch_id: Mapped[int] = mapped_column(ForeignKey("outreach_batches.batch_id"))
    customer_id: Mapped[str] = mapped_column(Key)
    channel: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(32))
    scheduled_at: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    gateway_ref: Mapped[str | None] = mapped_column(String(128))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    touch_id: Mapped[str | None] = mapped_column(Key)
    error: Mapped[str | None] = mapped_column(Text)


class DispatchLock(Base):
    """One row while a dispatch of the campaign runs: a second dispatch refuses to send."""

    __tablename__ = "dispatch_locks"
    campaign_id: Mapped[str] = mapped_column(Key, primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime)


class SimulatedSend(Base):
    """The simulated gateway's durable record of what it accepted, by idempotency key.

    A real provider remembers idempotency keys; the simulation must too, or a resend
    after a crash could not be recognised and counted once.
    """

    __tablename__ = "simulated_sends"
    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(Key)
    accepted_at: Mapped[datetime] = mapped_column(DateTime)
    delivered: Mapped[bool | None] = mapped_column(Boolean)
    responded: Mapped[bool | None] = mapped_column(Boolean)
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class CheckResult(Base):
    """The check stage's result for (campaign, period); a rerun replaces it."""

    __tablename__ = "check_results"
    __table_args__ = (UniqueConstraint("campaign_id", "period"),)
    check_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.campaign_id"))
    period: Mapped[str] = mapped_column(String(16))
    checked_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    trusted: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[dict] = mapped_column(JSON)


class WeeklyRollup(Base):
    """A campaign's funnel counts for one whole ISO week × channel × segment × variant.

    Written by the check stage for every week it computes, so that the trailing baselines
    of the anomaly rule and the bottleneck come from these small rows instead of a rescan
    of months of touches. A rerun of a check rewrites its weeks' rows (late decisions,
    loans and repayments change them); `computed_at` says how fresh each row is.
    """

    __tablename__ = "weekly_rollups"
    __table_args__ = (UniqueConstraint("campaign_id", "week", "channel", "segment", "variant"),)
    rollup_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.campaign_id"))
    week: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(16))
    segment: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(32))
    touches: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[int] = mapped_column(Integer)
    responded: Mapped[int] = mapped_column(Integer)
    applications: Mapped[int] = mapped_column(Integer)
    decided: Mapped[int] = mapped_column(Integer, server_default="0")
    approved: Mapped[int] = mapped_column(Integer)
    disbursements: Mapped[int] = mapped_column(Integer)
    disbursed_amount: Mapped[float] = mapped_column(Float)
    cost: Mapped[float] = mapped_column(Float)
    net_interest: Mapped[float] = mapped_column(Float)
    expected_loss: Mapped[float] = mapped_column(Float)
    # the loan book as of the week's end and the week's customer and value counts, for the
    # anomalies of npl_rate, nps, churn_rate, ltv, ltv_cac and new_customers (migration
    # 0007); null in rows stored before them: not counted, not 0
    loans: Mapped[int | None] = mapped_column(Integer)
    seasoned_loans: Mapped[int | None] = mapped_column(Integer)
    overdue_loans: Mapped[int | None] = mapped_column(Integer)
    loan_balance: Mapped[float | None] = mapped_column(Float)
    snapshot_loans: Mapped[int | None] = mapped_column(Integer)
    npl_loans: Mapped[int | None] = mapped_column(Integer)
    value_loans: Mapped[int | None] = mapped_column(Integer)
    new_customers: Mapped[int | None] = mapped_column(Integer)
    lifetime_value: Mapped[float | None] = mapped_column(Float)
    answers: Mapped[int | None] = mapped_column(Integer)
    promoters: Mapped[int | None] = mapped_column(Integer)
    detractors: Mapped[int | None] = mapped_column(Integer)
    closing_borrowers: Mapped[int | None] = mapped_column(Integer)
    churned_borrowers: Mapped[int | None] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(DateTime)


class Action(Base):
    """An adjustment proposed by the act stage, and the manager's decision on it."""

    __tablename__ = "actions"
    action_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.campaign_id"))
    period: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(32))
    scope: Mapped[dict] = mapped_column(JSON, default=dict)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    rationale: Mapped[str] = mapped_column(Text)
    expected_impact: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    comment: Mapped[str | None] = mapped_column(Text)
    applied_to_period: Mapped[str | None] = mapped_column(String(16))


class SopVersion(Base):
    __tablename__ = "sop_versions"
    __table_args__ = (UniqueConstraint("campaign_id", "version"),)
    sop_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.campaign_id"))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    body: Mapped[str] = mapped_column(Text)
    changelog: Mapped[list] = mapped_column(JSON, default=list)


class Report(Base):
    """A generated report (adjustment report, weekly review) and where it was written."""

    __tablename__ = "reports"
    report_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[str | None] = mapped_column(Key)
    period: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


class ExperimentMember(Base):
    """A campaign's experiment member as the check last counted them (migration 0008).

    The customer's assignment (their first touch in the campaign: its time and variant),
    whether they applied within the attribution window after it (`converted`, whatever the
    checked period: the judge counts it once the window has closed by the period's end)
    and their applications in the covariate window before it. `stale`: an application of
    the customer changed since (set by triggers on `applications`), so the next check
    recounts the row. `tasks.check.experiments.members` keeps the rows.
    """

    __tablename__ = "experiment_members"
    __table_args__ = (
        # the arms' sums read this index alone
        Index(
            "ix_experiment_members_arms",
            "campaign_id",
            "assigned_at",
            "variant",
            "converted",
            "prior_applications",
        ),
        # the triggers mark a customer's rows in every campaign
        Index(None, "customer_id"),
        Index(
            "ix_experiment_members_stale",
            "campaign_id",
            sqlite_where=text("stale = 1"),
            postgresql_where=text("stale = 1"),
        ),
        {"sqlite_with_rowid": False},  # a probe by key reads the row in the key's b-tree
    )
    campaign_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    assigned_at: Mapped[datetime] = mapped_column(DateTime)
    variant: Mapped[str] = mapped_column(String(32))
    converted: Mapped[int] = mapped_column(Integer)
    prior_applications: Mapped[int] = mapped_column(Integer)
    stale: Mapped[int] = mapped_column(Integer)


class ExperimentMemberSum(Base):
    """The stored experiment members of a campaign summed per variant and UTC hour of
    assignment [bucket_start, bucket_end) (migration 0008): the check sums whole hours
    and reads the members only in the hours its period's boundaries cut."""

    __tablename__ = "experiment_member_sums"
    campaign_id: Mapped[str] = mapped_column(Key, primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    variant: Mapped[str] = mapped_column(String(32), primary_key=True)
    bucket_end: Mapped[datetime] = mapped_column(DateTime)
    assigned: Mapped[int] = mapped_column(Integer)
    converted: Mapped[int] = mapped_column(Integer)
    covariate_sum: Mapped[int] = mapped_column(Integer)
    covariate_square_sum: Mapped[int] = mapped_column(Integer)
    covariate_converted_sum: Mapped[int] = mapped_column(Integer)


class ExperimentMemberState(Base):
    """Per campaign: the settings the stored members were counted with, and the time up
    to which the campaign's touches were folded into them (`folded_through`)."""

    __tablename__ = "experiment_member_state"
    campaign_id: Mapped[str] = mapped_column(Key, primary_key=True)
    attribution_days: Mapped[int] = mapped_column(Integer)
    covariate_days: Mapped[int] = mapped_column(Integer)
    folded_through: Mapped[datetime] = mapped_column(DateTime)
