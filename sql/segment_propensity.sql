-- segment_propensity: each segment's delivered touches and attributed
-- applications in a campaign over a span, for dispatch's ranking
-- (tasks/do/audience.py: segment_propensity divides them).
--
-- Grain: one row per segment with a delivered touch in [:starts_at,
-- :ends_at). The counts are those of the funnel (funnel_touches.sql and
-- funnel_applications.sql, the hold-out in neither) summed over channels
-- and variants; each touch and each application falls in one week, so one
-- span counts what its weeks count, without the funnel's costs, decisions
-- and loans, which the rate does not use. The delivered touches are counted
-- by customer first, so each customer's segment is looked up once, not once
-- per touch.
--
-- Columns: segment, delivered, applications.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days.

{% set segment_index = "ix_customers_customer_id_segment" %}

with

delivered_by_customer as (
    -- the span's touches from the index (campaign_id, sent_at, customer_id,
    -- variant, touch_id, delivered) alone
    select
        t.customer_id,
        count(*) as delivered
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at >= :starts_at
        and t.sent_at < :ends_at
        and t.variant <> 'holdout'
        and t.delivered
    group by t.customer_id
),

touched as (
    -- one probe per customer, answered by (customer_id, segment) alone
    select
        coalesce(c.segment, 'unknown') as segment,
        sum(d.delivered) as delivered
    from delivered_by_customer as d
    left join customers as c {{ index_hint(segment_index) }}
        on d.customer_id = c.customer_id
    group by coalesce(c.segment, 'unknown')
),

applied as (
    select
        a.segment,
        count(*) as applications
    from {{ ref("attributed_events") }} as a
    group by a.segment
),

final as (
    select
        touched.segment,
        touched.delivered,
        coalesce(applied.applications, 0) as applications
    from touched
    left join applied
        on touched.segment = applied.segment
    where touched.delivered > 0
)

select * from final
