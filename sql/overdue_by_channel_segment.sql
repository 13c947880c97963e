-- overdue_by_channel_segment: the 30-day overdue counts of a campaign's
-- loans by channel and segment, for the KPI scopes (campaign, channel,
-- segment) of the check.
--
-- Grain: one row per channel × segment of the loans disbursed before
-- :ends_at whose application is attributed to :campaign_id: the counts of
-- overdue_rate_30.sql summed over the variants (each loan's variant is
-- still looked up: a hold-out member's loan is none of the campaign's, see
-- attributed_events.sql).
--
-- Columns: channel, segment, loans, seasoned_loans, overdue_loans,
-- loan_balance, snapshot_loans, npl_loans (as in overdue_rate_30.sql).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :as_of_end_date (a date).

with

loan_status as (
    select
        s.channel,
        s.segment,
        s.is_seasoned,
        s.is_overdue,
        s.outstanding,
        s.has_snapshot,
        s.is_npl
    from {{ ref("loan_overdue_status") }} as s
),

final as (
    select
        channel,
        segment,
        count(*) as loans,
        sum(is_seasoned) as seasoned_loans,
        sum(is_overdue) as overdue_loans,
        sum(outstanding) as loan_balance,
        sum(has_snapshot) as snapshot_loans,
        sum(is_npl) as npl_loans
    from loan_status
    group by channel, segment
)

select * from final
