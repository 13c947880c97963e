-- complaints: the complaints about a campaign.
--
-- Grain: one row per channel × segment × variant of the complaints naming
-- :campaign_id received in [:starts_at, :ends_at) (complaints count by
-- received_at; a complaint without campaign_id is not attributed).
--
-- Columns: channel (of the customer's last delivered touch in the campaign
-- sent at or before received_at; 'unknown' when none), segment (the
-- customer's; 'unknown' without a customer row), variant (the customer's
-- assignment: the variant of their first touch in the campaign;
-- 'unassigned' when none), complaints.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

with

campaign_complaints as (
    select
        c.complaint_id,
        c.customer_id,
        c.received_at
    from complaints as c
    where
        c.campaign_id = :campaign_id
        and c.received_at >= :starts_at
        and c.received_at < :ends_at
),

attributed as (
    -- per complaint: probes of touches (customer_id, sent_at) and customers
    select
        c.complaint_id,
        (
            select t.channel
            from touches as t
            where
                t.customer_id = c.customer_id
                and t.campaign_id = :campaign_id
                and t.delivered
                and t.sent_at <= c.received_at
            order by t.sent_at desc, t.touch_id desc
            limit 1
        ) as channel,
        (
            select cu.segment
            from customers as cu
            where cu.customer_id = c.customer_id
        ) as segment,
        (
            select t.variant
            from touches as t
            where
                t.customer_id = c.customer_id
                and t.campaign_id = :campaign_id
            order by t.sent_at asc, t.touch_id asc
            limit 1
        ) as variant
    from campaign_complaints as c
),

labelled as (
    select
        complaint_id,
        coalesce(channel, 'unknown') as channel,
        coalesce(segment, 'unknown') as segment,
        coalesce(variant, 'unassigned') as variant
    from attributed
),

final as (
    select
        channel,
        segment,
        variant,
        count(*) as complaints
    from labelled
    group by channel, segment, variant
)

select * from final
