-- funnel_touches: the touch end of a campaign's funnel.
--
-- Grain: one row per channel × segment × variant of :campaign_id's touches
-- sent in [:starts_at, :ends_at) (touches count by sent_at). Hold-out rows
-- (variant 'holdout': an assignment, never sent) count in no figure here.
--
-- Columns: channel, segment (the customer's; 'unknown' without a customer
-- row), variant, touches, delivered, responded, cost (a non-reserved keyword
-- in PostgreSQL, but the contract's name: hence its noqa).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

{% set segment_index = "ix_customers_customer_id_segment" %}

with

campaign_touches as (
    select
        t.customer_id,
        t.channel,
        t.variant,
        t.cost,
        case when t.delivered then 1 else 0 end as is_delivered,
        case when t.responded then 1 else 0 end as is_responded
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at >= :starts_at
        and t.sent_at < :ends_at
        and t.variant <> 'holdout'
),

segmented as (
    select
        t.channel,
        t.variant,
        t.cost,
        t.is_delivered,
        t.is_responded,
        coalesce(c.segment, 'unknown') as segment
    from campaign_touches as t
    -- one probe per touch, answered by (customer_id, segment) alone
    left join customers as c {{ index_hint(segment_index) }}
        on t.customer_id = c.customer_id
),

final as (
    select
        channel,
        segment,
        variant,
        count(*) as touches,
        sum(is_delivered) as delivered,
        sum(is_responded) as responded,
        sum(cost) as cost  -- noqa: RF04
    from segmented
    group by channel, segment, variant
)

select * from final
