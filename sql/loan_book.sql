-- loan_book: a campaign's loan book as of one cut, read once for its two
-- measures: the overdue counts (overdue_rate_30.sql) and churn (churn.sql).
-- Both judge the same loans by the same latest snapshots
-- (loan_overdue_status.sql), which is most of either's time on a long
-- history; here that set is computed once (a materialised CTE) and each
-- query reads it.
--
-- Grain: one row per part × channel × segment × variant. Part 'book' rows
-- are overdue_rate_30.sql's rows (its counts; churn's columns null), part
-- 'churn' rows are churn.sql's (its two counts; the book's null).
--
-- Columns: part, channel, segment, variant, loans, seasoned_loans,
-- overdue_loans, loan_balance, snapshot_loans, npl_loans (overdue_rate_30.sql),
-- closing_borrowers, churned_borrowers (churn.sql).
--
-- Parameters: the two queries' own: :campaign_id, :starts_at and :ends_at
-- (naive UTC), :attribution_days, :period_start_date and :as_of_end_date
-- (dates). Callers pass the same cut to both, as they did one by one.

with

-- read by the two refs below, which lint sees as table names: hence its noqa
book_loans as materialized (  -- noqa: ST03
    -- every column of loan_overdue_status.sql: each query takes its own
    select s.*
    from {{ ref("loan_overdue_status") }} as s
),

overdue_counts as (
    select
        o.channel,
        o.segment,
        o.variant,
        o.loans,
        o.seasoned_loans,
        o.overdue_loans,
        o.loan_balance,
        o.snapshot_loans,
        o.npl_loans
    from {{ ref("overdue_rate_30", book="book_loans") }} as o
),

churn_counts as (
    select
        c.channel,
        c.segment,
        c.variant,
        c.closing_borrowers,
        c.churned_borrowers
    from {{ ref("churn", book="book_loans") }} as c
),

final as (
    select
        'book' as part,
        b.channel,
        b.segment,
        b.variant,
        b.loans,
        b.seasoned_loans,
        b.overdue_loans,
        b.loan_balance,
        b.snapshot_loans,
        b.npl_loans,
        null as closing_borrowers,
        null as churned_borrowers
    from overdue_counts as b
    union all
    select
        'churn' as part,
        c.channel,
        c.segment,
        c.variant,
        null as loans,
        null as seasoned_loans,
        null as overdue_loans,
        null as loan_balance,
        null as snapshot_loans,
        null as npl_loans,
        c.closing_borrowers,
        c.churned_borrowers
    from churn_counts as c
)

select * from final
