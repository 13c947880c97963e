-- dq_funnel_applications: the application end of a campaign's funnel, for
-- the invariants between its stages (each at most the one before it).
--
-- Grain: one row per channel (the application's own) of the applications
-- applied in [:starts_at, :ends_at) and attributed to :campaign_id (see
-- attributed_events.sql), with the decisions and loans of those
-- applications whenever they happened (the metrics' counting rules).
--
-- Columns: channel, applications, applications_after_delivery (those whose
-- customer had a delivered touch of the campaign within :attribution_days
-- before applying: one index probe of touches (customer_id, sent_at) per
-- application), approved, disbursements (loans).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days.

with

attributed as (
    select
        a.application_id,
        a.customer_id,
        a.channel,
        a.applied_at
    from {{ ref("attributed_events") }} as a
),

loan_counts as (
    select
        l.application_id,
        count(*) as disbursements
    from loans as l
    inner join attributed as a
        on l.application_id = a.application_id
    group by l.application_id
),

by_application as (
    select
        a.channel,
        case when d.decision = 'approved' then 1 else 0 end as is_approved,
        coalesce(lc.disbursements, 0) as disbursements,
        case
            when exists (
                select 1
                from touches as t
                where
                    t.customer_id = a.customer_id
                    and t.campaign_id = :campaign_id
                    and t.delivered
                    and t.sent_at <= a.applied_at
                    and t.sent_at
                    >= {{ add_days("a.applied_at", "-:attribution_days") }}
            ) then 1
            else 0
        end as is_after_delivery
    from attributed as a
    left join decisions as d
        on a.application_id = d.application_id
    left join loan_counts as lc
        on a.application_id = lc.application_id
),

final as (
    select
        channel,
        count(*) as applications,
        sum(is_after_delivery) as applications_after_delivery,
        sum(is_approved) as approved,
        sum(disbursements) as disbursements
    from by_application
    group by channel
)

select * from final
