-- churn: the campaign's borrowers whose loans were paid off in a period,
-- and those of them who left.
--
-- Grain: one row per channel × segment × variant of the borrowers (customers)
-- with a loan of :campaign_id (disbursed before :ends_at, its application
-- attributed to the campaign: the loans of loan_overdue_status.sql, all
-- applications since :starts_at — callers pass 1900-01-01) that reached
-- outstanding 0 in the period: its first snapshot with outstanding 0 has
-- as_of in [:period_start_date, :as_of_end_date). Each borrower is counted
-- once, with the channel, segment and variant of the loan that closed last
-- in the period (ties: the highest loan_id).
--
-- Columns: channel, segment, variant,
--   closing_borrowers  those borrowers (churn_rate's denominator),
--   churned_borrowers  those whose every loan of the campaign stands at
--                      outstanding 0 by its latest snapshot before
--                      :as_of_end_date (a loan without a snapshot is still
--                      open) and who applied for nothing (any campaign) in
--                      the :attribution_days days from the day the last one
--                      closed: [closed_on, closed_on + :attribution_days).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :period_start_date and :as_of_end_date (dates).
-- ref("churn", book="name") reads the loans from the named CTE
-- of the referencing query instead (loan_book.sql: one reading of the
-- loan book for both the overdue counts and churn).

with

campaign_loans as (
    select
        s.loan_id,
        s.customer_id,
        s.channel,
        s.segment,
        s.variant,
        s.has_snapshot,
        s.outstanding
    from {{ book | default(ref("loan_overdue_status"), true) }} as s
),

snapshots as (
    select
        r.loan_id,
        r.as_of,
        r.outstanding
    from repayments as r
    inner join campaign_loans as l
        on r.loan_id = l.loan_id
    where r.as_of < :as_of_end_date
),

closings as (
    select
        s.loan_id,
        min(s.as_of) as closed_on
    from snapshots as s
    where s.outstanding = 0
    group by s.loan_id
),

closed_in_period as (
    select
        l.customer_id,
        l.channel,
        l.segment,
        l.variant,
        c.closed_on,
        row_number() over (
            partition by l.customer_id
            order by c.closed_on desc, l.loan_id desc
        ) as lateness
    from campaign_loans as l
    inner join closings as c
        on l.loan_id = c.loan_id
    where c.closed_on >= :period_start_date
),

open_loans as (
    -- a loan without a snapshot is still open
    select distinct l.customer_id
    from campaign_loans as l
    where l.has_snapshot = 0 or l.outstanding > 0
),

borrowers as (
    select
        c.customer_id,
        c.channel,
        c.segment,
        c.variant,
        case
            when
                o.customer_id is null
                and not exists (
                    select 1
                    from applications as a
                    where
                        a.customer_id = c.customer_id
                        and a.applied_at >= c.closed_on
                        and a.applied_at
                        < {{ add_days("c.closed_on", ":attribution_days") }}
                ) then 1
            else 0
        end as is_churned
    from closed_in_period as c
    left join open_loans as o
        on c.customer_id = o.customer_id
    where c.lateness = 1
),

final as (
    select
        channel,
        segment,
        variant,
        count(*) as closing_borrowers,
        sum(is_churned) as churned_borrowers
    from borrowers
    group by channel, segment, variant
)

select * from final
