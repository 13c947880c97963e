-- dq_quarantine: per feed, the period's rows loaded and quarantined.
--
-- Grain: one row per contract feed (customers, touches, applications,
-- decisions, loans, repayments, complaints), over every campaign: a
-- quarantined row keeps only its raw text, so it cannot be told apart by
-- campaign, and the share compares like with like. A row belongs to the
-- period by its own timestamp (the feed's occurred_at: customers.created_at,
-- touches.sent_at, applications.applied_at, decisions.decided_at,
-- loans.disbursed_at, complaints.received_at) in [:starts_at, :ends_at), or
-- for repayments by its as_of day in [:start_date, :end_date) (a local day:
-- the quarantine stores it as that day's midnight). Quarantined rows whose
-- timestamp could not be read (occurred_at null) belong to no period.
--
-- Columns: feed, rows_loaded (in the feed's table), rows_quarantined.
--
-- Parameters: :starts_at and :ends_at (naive UTC), :start_date and
-- :end_date (the period's first day and the day after its last).

with

loaded as (
    select
        'customers' as feed,
        count(*) as rows_loaded
    from customers as c
    where c.created_at >= :starts_at and c.created_at < :ends_at
    union all
    -- by campaign: a range scan of the (campaign_id, sent_at) index each;
    -- every touch names a campaign (the import and dispatch make sure)
    select
        'touches' as feed,
        count(*) as rows_loaded
    from touches as t
    where
        t.campaign_id in (select ca.campaign_id from campaigns as ca)
        and t.sent_at >= :starts_at
        and t.sent_at < :ends_at
    union all
    select
        'applications' as feed,
        count(*) as rows_loaded
    from applications as a
    where a.applied_at >= :starts_at and a.applied_at < :ends_at
    union all
    select
        'decisions' as feed,
        count(*) as rows_loaded
    from decisions as d
    where d.decided_at >= :starts_at and d.decided_at < :ends_at
    union all
    select
        'loans' as feed,
        count(*) as rows_loaded
    from loans as l
    where l.disbursed_at >= :starts_at and l.disbursed_at < :ends_at
    union all
    select
        'repayments' as feed,
        count(*) as rows_loaded
    from repayments as r
    where r.as_of >= :start_date and r.as_of < :end_date
    union all
    select
        'complaints' as feed,
        count(*) as rows_loaded
    from complaints as co
    where co.received_at >= :starts_at and co.received_at < :ends_at
),

quarantined as (
    select
        q.feed,
        count(*) as rows_quarantined
    from quarantine as q
    where
        (
            q.feed <> 'repayments'
            and q.occurred_at >= :starts_at
            and q.occurred_at < :ends_at
        )
        or (
            q.feed = 'repayments'
            and q.occurred_at >= :start_date
            and q.occurred_at < :end_date
        )
    group by q.feed
),

final as (
    select
        l.feed,
        l.rows_loaded,
        coalesce(q.rows_quarantined, 0) as rows_quarantined
    from loaded as l
    left join quarantined as q
        on l.feed = q.feed
)

select * from final
