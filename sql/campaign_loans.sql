-- campaign_loans: a campaign's loans, each with its latest repayment
-- snapshot; the one place loans are joined to the campaign's applications.
--
-- Grain: one row per loan whose application was applied in
-- [:starts_at, :ends_at) and is attributed to :campaign_id
-- (attributed_events.sql), whenever the loan was paid out. The funnel's
-- disbursements of a period are these rows; the loan book's queries
-- (loan_overdue_status.sql) pass 1900-01-01 as :starts_at (all the
-- campaign's history) and keep the loans disbursed before :ends_at.
--
-- Columns: loan_id, application_id, customer_id, channel (the
-- application's), segment, variant, disbursed_at, amount, apr, term_months,
-- and of the loan's latest snapshot with as_of < :as_of_end_date (the local
-- day after the period; all three null when the loan has none yet): as_of,
-- dpd, outstanding.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :as_of_end_date (a date).
-- Other queries inline it: ref("campaign_loans") (funnel_applications.sql,
-- loan_value.sql, loan_overdue_status.sql).

with

attributed as (
    select
        a.application_id,
        a.customer_id,
        a.channel,
        a.segment,
        a.variant
    from {{ ref("attributed_events", loans_only=true) }} as a
),

loans_of_campaign as (
    select
        l.loan_id,
        l.application_id,
        a.customer_id,
        a.channel,
        a.segment,
        a.variant,
        l.disbursed_at,
        l.amount,
        l.apr,
        l.term_months
    from loans as l
    inner join attributed as a
        on l.application_id = a.application_id
),

snapshots as (
    select
        r.loan_id,
        r.as_of,
        r.dpd,
        r.outstanding,
        row_number() over (
            partition by r.loan_id
            order by r.as_of desc
        ) as recency
    from repayments as r
    inner join loans_of_campaign as l
        on r.loan_id = l.loan_id
    where r.as_of < :as_of_end_date
),

final as (
    select
        l.loan_id,
        l.application_id,
        l.customer_id,
        l.channel,
        l.segment,
        l.variant,
        l.disbursed_at,
        l.amount,
        l.apr,
        l.term_months,
        s.as_of,
        s.dpd,
        s.outstanding
    from loans_of_campaign as l
    left join snapshots as s
        on
            l.loan_id = s.loan_id
            and s.recency = 1
)

select * from final
