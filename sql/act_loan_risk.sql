-- act_loan_risk: each of a campaign's loans with its borrower's risk
-- attributes and its 30-day overdue status.
--
-- Grain: one row per loan disbursed before :ends_at whose application is
-- attributed to :campaign_id (applications applied in [:starts_at,
-- :ends_at); the act stage passes 1900-01-01 as :starts_at: all), judged by
-- its latest repayment snapshot with as_of < :as_of_end_date by the rule in
-- loan_overdue_status.sql, which overdue_rate_30.sql counts: these rows add
-- up to that query's counts. The act stage reads them to ask which
-- admission rule (score floor or debt-ratio cap) would have kept out the
-- overdue loans.
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

loan_status as (
    select
        s.loan_id,
        s.customer_id,
        s.channel,
        s.segment,
        s.is_seasoned,
        s.is_overdue
    from {{ ref("loan_overdue_status") }} as s
),

final as (
    select
        l.loan_id,
        l.channel,
        l.segment,
        c.credit_score,
        c.debt_ratio,
        l.is_seasoned,
        l.is_overdue
    from loan_status as l
    left join customers as c
        on l.customer_id = c.customer_id
)

select * from final
