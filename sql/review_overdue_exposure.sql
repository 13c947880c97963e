-- review_overdue_exposure: the outstanding of a campaign's loans at risk, by
-- channel and segment, for the weekly review's ranking of exceptions.
--
-- Grain: one row per (channel, segment) of the loans disbursed before
-- :ends_at whose application is attributed to :campaign_id (applications
-- applied in [:starts_at, :ends_at); the review passes 1900-01-01 as
-- :starts_at: all), each judged by its latest repayment snapshot with
-- as_of < :as_of_end_date by the rule in loan_overdue_status.sql (the loans
-- overdue_rate_30 counts as overdue).
--
-- Columns: channel, segment, loans, outstanding (Σ latest outstanding of
-- every loan), overdue_outstanding (Σ latest outstanding of the loans
-- 30+ days past due: the overdue exposure).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :as_of_end_date (a date).

with

loan_status as (
    select
        s.loan_id,
        s.channel,
        s.segment,
        s.is_overdue
    from {{ ref("loan_overdue_status") }} as s
),

latest as (
    select
        r.loan_id,
        r.outstanding,
        row_number() over (
            partition by r.loan_id
            order by r.as_of desc
        ) as recency
    from repayments as r
    inner join loan_status as l
        on r.loan_id = l.loan_id
    where r.as_of < :as_of_end_date
),

final as (
    select
        l.channel,
        l.segment,
        count(*) as loans,
        sum(coalesce(s.outstanding, 0)) as outstanding,
        sum(
            case
                when l.is_overdue = 1 then coalesce(s.outstanding, 0) else 0
            end
        ) as overdue_outstanding
    from loan_status as l
    left join latest as s
        on
            l.loan_id = s.loan_id
            and s.recency = 1
    group by l.channel, l.segment
)

select * from final
