-- reject_reasons: why a campaign's applications were rejected.
--
-- Grain: one row per channel × segment × variant × reject_reason of the
-- rejected applications among those applied in [:starts_at, :ends_at) and
-- attributed to :campaign_id (see attributed_events.sql; the decision
-- counts whenever it was taken, like approved in funnel_applications.sql).
--
-- Columns: channel, segment, variant, reject_reason ('unspecified' when
-- empty), rejections.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days.

with

attributed as (
    select
        a.application_id,
        a.channel,
        a.segment,
        a.variant
    from {{ ref("attributed_events") }} as a
),

rejected as (
    select
        a.channel,
        a.segment,
        a.variant,
        coalesce(nullif(d.reject_reason, ''), 'unspecified') as reject_reason
    from attributed as a
    inner join decisions as d
        on a.application_id = d.application_id
    where d.decision = 'rejected'
),

final as (
    select
        channel,
        segment,
        variant,
        reject_reason,
        count(*) as rejections
    from rejected
    group by channel, segment, variant, reject_reason
)

select * from final
