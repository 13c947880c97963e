-- loan_overdue_status: each of a campaign's loans and its 30-day overdue
-- status, the one place that rule is written (overdue_rate_30.sql counts
-- these rows; act_loan_risk.sql adds the borrower's risk attributes).
--
-- Grain: one row per loan disbursed before :ends_at whose application is
-- attributed to :campaign_id (campaign_loans.sql; applications applied in
-- [:starts_at, :ends_at) — callers pass 1900-01-01 as :starts_at: all).
-- Each loan is judged by its latest repayment snapshot with
-- as_of < :as_of_end_date (the local day after the period).
--
-- Columns: loan_id, customer_id, channel (the application's), segment,
-- variant, is_seasoned (1 when the latest snapshot is at least 30 days
-- after disbursement: as_of ≥ the UTC disbursement date + 30; the
-- denominator of overdue_rate_30), is_overdue (1 when seasoned and that
-- snapshot has dpd ≥ 30: the numerator), and for the loan book:
-- outstanding (of that snapshot; 0 without one: nothing reported yet),
-- has_snapshot (1 when the loan has one: npl_rate's denominator), is_npl
-- (1 when that snapshot has dpd ≥ 90: npl_rate's numerator).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :as_of_end_date (a date).
-- Other queries inline it: ref("loan_overdue_status") (churn.sql reads its
-- loans and their open/closed state from it).

with

book as (
    select
        l.loan_id,
        l.customer_id,
        l.channel,
        l.segment,
        l.variant,
        l.as_of,
        l.dpd,
        l.outstanding,
        {{ to_date(add_days("l.disbursed_at", "30")) }} as seasoned_on
    from {{ ref("campaign_loans") }} as l
    where l.disbursed_at < :ends_at
),

final as (
    select
        loan_id,
        customer_id,
        channel,
        segment,
        variant,
        case
            when as_of >= seasoned_on then 1 else 0
        end as is_seasoned,
        case
            when as_of >= seasoned_on and dpd >= 30 then 1 else 0
        end as is_overdue,
        coalesce(outstanding, 0) as outstanding,
        case when as_of is not null then 1 else 0 end as has_snapshot,
        case when dpd >= 90 then 1 else 0 end as is_npl
    from book
)

select * from final
