-- dq_applications: a campaign's applications as the data-quality check
-- validates them.
--
-- Grain: one row per application applied in [:starts_at, :ends_at) and
-- attributed to :campaign_id (see attributed_events.sql).
--
-- Columns: the applications feed's own (application_id, customer_id,
-- campaign_id — empty when attributed by touch —, channel, applied_at,
-- product_code, amount_requested), as stored, attributed_by, and
-- source_feed (the feed that loaded the row; null: one that carries every
-- field, see tasks/common/feeds.py NOT_CARRIED).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days.

with

attributed as (
    select
        a.application_id,
        a.attributed_by
    from {{ ref("attributed_events") }} as a
),

campaign_applications as (
    select
        ap.application_id,
        ap.customer_id,
        ap.campaign_id,
        ap.channel,
        ap.applied_at,
        ap.product_code,
        ap.amount_requested,
        a.attributed_by,
        ap.source_feed
    from attributed as a
    inner join applications as ap
        on a.application_id = ap.application_id
)

select * from campaign_applications
