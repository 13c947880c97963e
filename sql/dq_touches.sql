-- dq_touches: a campaign's touches as the data-quality check validates them.
--
-- Grain: one row per touch of :campaign_id sent in [:starts_at, :ends_at)
-- (touches count by sent_at), hold-out rows included: the touches suite
-- checks that they were never delivered and cost nothing.
--
-- Columns: the touches feed's own (touch_id, campaign_id, customer_id,
-- channel, variant, sent_at, delivered, responded, cost), as stored.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

with

campaign_touches as (
    select
        t.touch_id,
        t.campaign_id,
        t.customer_id,
        t.channel,
        t.variant,
        t.sent_at,
        t.delivered,
        t.responded,
        t.cost
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at >= :starts_at
        and t.sent_at < :ends_at
)

select * from campaign_touches
