-- dq_touch_count: how many touches the data-quality check is about to read,
-- so that it can choose how to read them (tasks/check/arrow_reads.py).
--
-- Grain: one row, the number of touches of :campaign_id sent in
-- [:starts_at, :ends_at), as dq_touches.sql selects them (counted from the
-- touches' (campaign_id, sent_at, ...) index alone).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

with

period_touches as (
    select count(*) as touches
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at >= :starts_at
        and t.sent_at < :ends_at
)

select * from period_touches
