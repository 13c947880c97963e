-- dq_complaints: the complaints about a campaign, as the data-quality check
-- validates them.
--
-- Grain: one row per complaint naming :campaign_id received in [:starts_at,
-- :ends_at) (complaints count by received_at, as in complaints.sql).
--
-- Columns: the complaints feed's own (complaint_id, customer_id,
-- campaign_id, received_at, category), as stored.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

with

campaign_complaints as (
    select
        c.complaint_id,
        c.customer_id,
        c.campaign_id,
        c.received_at,
        c.category
    from complaints as c
    where
        c.campaign_id = :campaign_id
        and c.received_at >= :starts_at
        and c.received_at < :ends_at
)

select * from campaign_complaints
