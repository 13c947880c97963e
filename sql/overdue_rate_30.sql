-- overdue_rate_30: the 30-day overdue counts of a campaign's loans.
--
-- Grain: one row per channel × segment × variant of the loans disbursed
-- before :ends_at whose application is attributed to :campaign_id (see
-- attributed_events.sql; applications applied in [:starts_at,
-- :ends_at) — the metrics module passes 1900-01-01 as :starts_at: all).
-- Each loan is judged by its latest repayment snapshot with
-- as_of < :as_of_end_date (the local day after the period), by the rule in
-- loan_overdue_status.sql.
--
-- Columns: channel, segment, variant,
--   loans           the campaign's loans disbursed before :ends_at,
--   seasoned_loans  those whose latest snapshot is at least 30 days after
--                   disbursement (as_of ≥ the UTC disbursement date + 30),
--                   i.e. that have such a snapshot: the denominator,
--   overdue_loans   seasoned loans whose latest snapshot has dpd ≥ 30: the
--                   numerator (overdue_rate_30 = overdue / seasoned),
--   loan_balance    Σ outstanding of those loans by their latest snapshot,
--   snapshot_loans  the loans with a snapshot: npl_rate's denominator,
--   npl_loans       those whose latest snapshot has dpd ≥ 90: the numerator.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :as_of_end_date (a date).
-- ref("overdue_rate_30", book="name") reads the loans from the named CTE
-- of the referencing query instead (loan_book.sql: one reading of the
-- loan book for both the overdue counts and churn).

with

loan_status as (
    select
        s.channel,
        s.segment,
        s.variant,
        s.is_seasoned,
        s.is_overdue,
        s.outstanding,
        s.has_snapshot,
        s.is_npl
    from {{ book | default(ref("loan_overdue_status"), true) }} as s
),

final as (
    select
        channel,
        segment,
        variant,
        count(*) as loans,
        sum(is_seasoned) as seasoned_loans,
        sum(is_overdue) as overdue_loans,
        sum(outstanding) as loan_balance,
        sum(has_snapshot) as snapshot_loans,
        sum(is_npl) as npl_loans
    from loan_status
    group by channel, segment, variant
)

select * from final
