-- act_loan_risk: each of a campaign's loans with its borrower's risk
-- attributes and its 30-day overdue status.
--
-- Grain: one row per loan disbursed before :ends_at whose application is
-- attributed to :campaign_id (applications applied in [:starts_at,
-- :ends_at); the act stage passes 1900-01-01 as :starts_at: all), judged by
-- its latest repayment snapshot with as_of < :as_of_end_date exactly as
-- overdue_rate_30.sql judges it, so that these rows add up to that query's
-- counts. The act stage reads them to ask which admission rule (score floor
-- or debt-ratio cap) would have kept out the overdue loans.
--
-- Columns: loan_id, channel (the application's), segment (the customer's;
-- 'unknown' without a customer row), credit_score and debt_ratio (the
-- customer's as last imported; null when unknown), is_seasoned (1 when the
-- latest snapshot is at least 30 days after disbursement: the loan counts
-- in overdue_rate_30's denominator), is_overdue (1 when seasoned with
-- dpd ≥ 30: the numerator).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :as_of_end_date (a date).

with

attributed as (
    select
        a.application_id,
        a.customer_id,
        a.channel,
        a.segment
    from {{ ref("attributed_applications", loans_only=true) }} as a
),

campaign_loans as (
    select
        l.loan_id,
        a.customer_id,
        a.channel,
        a.segment,
        {{ to_date(add_days("l.disbursed_at", "30")) }} as seasoned_on
    from loans as l
    inner join attributed as a
        on l.application_id = a.application_id
    where l.disbursed_at < :ends_at
),

snapshots as (
    select
        r.loan_id,
        r.as_of,
        r.dpd,
        row_number() over (
            partition by r.loan_id
            order by r.as_of desc
        ) as recency
    from repayments as r
    inner join campaign_loans as l
        on r.loan_id = l.loan_id
    where r.as_of < :as_of_end_date
),

final as (
    select
        l.loan_id,
        l.channel,
        l.segment,
        c.credit_score,
        c.debt_ratio,
        case
            when s.as_of >= l.seasoned_on then 1 else 0
        end as is_seasoned,
        case
            when s.as_of >= l.seasoned_on and s.dpd >= 30 then 1 else 0
        end as is_overdue
    from campaign_loans as l
    left join snapshots as s
        on
            l.loan_id = s.loan_id
            and s.recency = 1
    left join customers as c
        on l.customer_id = c.customer_id
)

select * from final
