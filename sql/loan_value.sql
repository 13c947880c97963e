-- loan_value: what a campaign's new loans are worth and whom they bring.
--
-- Grain: one row per channel × segment × variant of the loans of the
-- applications applied in [:starts_at, :ends_at) and attributed to
-- :campaign_id (attributed_applications.sql: the scope's disbursements, as
-- the funnel counts them, whenever the loan was paid out).
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

attributed as (
    select
        a.application_id,
        a.customer_id,
        a.channel,
        a.segment,
        a.variant
    from {{ ref("attributed_applications", loans_only=true) }} as a
),

scope_loans as (
    select
        l.loan_id,
        l.disbursed_at,
        a.customer_id,
        a.channel,
        a.segment,
        a.variant,
        l.amount
        * (l.apr / 100.0 - :ftp_rate)
        * l.term_months
        / 12.0 as term_interest
    from loans as l
    inner join attributed as a
        on l.application_id = a.application_id
),

snapshots as (
    select
        r.loan_id,
        r.dpd,
        r.outstanding,
        row_number() over (
            partition by r.loan_id
            order by r.as_of desc
        ) as recency
    from repayments as r
    inner join scope_loans as l
        on r.loan_id = l.loan_id
    where r.as_of < :as_of_end_date
),

valued as (
    select
        l.channel,
        l.segment,
        l.variant,
        l.term_interest
        - case
            when s.dpd >= 90 then s.outstanding * :lgd else 0
        end as lifetime_value,
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
    left join snapshots as s
        on
            l.loan_id = s.loan_id
            and s.recency = 1
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
