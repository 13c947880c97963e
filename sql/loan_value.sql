-- loan_value: what a campaign's new loans are worth and whom they bring.
--
-- Grain: one row per channel × segment × variant of the loans of the
-- applications applied in [:starts_at, :ends_at) and attributed to
-- :campaign_id (campaign_loans.sql, as funnel_applications.sql reads them:
-- the scope's disbursements, whenever the loan was paid out).
--
-- Columns: channel, segment, variant,
--   value_loans     those loans (the funnel's disbursements),
--   new_customers   the loans that are their customer's first loan ever, in
--                   any campaign (no loan of the customer was disbursed
--                   before it; at the same instant the lower loan_id is the
--                   first): the customers the scope brought to the bank,
--   lifetime_value  Σ amount × (apr/100 − :ftp_rate) × term_months/12 (the
--                   whole term's net interest) − the loan's expected loss
--                   (its latest snapshot before :as_of_end_date has dpd ≥ 90:
--                   outstanding × :lgd); ltv = lifetime_value / value_loans.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :ftp_rate, :lgd, :as_of_end_date (a date).

with

scope_loans as (
    select
        l.loan_id,
        l.disbursed_at,
        l.customer_id,
        l.channel,
        l.segment,
        l.variant,
        l.amount
        * (l.apr / 100.0 - :ftp_rate)
        * l.term_months
        / 12.0 as term_interest,
        case
            when l.dpd >= 90 then l.outstanding * :lgd else 0
        end as expected_loss
    from {{ ref("campaign_loans") }} as l
),

valued as (
    select
        l.channel,
        l.segment,
        l.variant,
        l.term_interest - l.expected_loss as lifetime_value,
        case
            when exists (
                select 1
                from applications as pa
                inner join loans as pl
                    on pa.application_id = pl.application_id
                where
                    pa.customer_id = l.customer_id
                    and (
                        pl.disbursed_at < l.disbursed_at
                        or (
                            pl.disbursed_at = l.disbursed_at
                            and pl.loan_id < l.loan_id
                        )
                    )
            ) then 0 else 1
        end as is_new_customer
    from scope_loans as l
),

final as (
    select
        channel,
        segment,
        variant,
        count(*) as value_loans,
        sum(is_new_customer) as new_customers,
        sum(lifetime_value) as lifetime_value
    from valued
    group by channel, segment, variant
)

select * from final
