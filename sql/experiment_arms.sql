-- experiment_arms: the members of each arm of a campaign's experiment and
-- how many of them converted, intention to treat (the contract's
-- "Experiment").
--
-- Grain: one row per variant of :campaign_id ('holdout' included) among the
-- customers assigned in [:starts_at, :ends_at):
--   * a customer's assignment is the variant of their first touch in the
--     campaign (hold-out rows included; touches sent at the same instant are
--     ordered by touch_id, the lowest first), and assigned_at is that
--     touch's sent_at;
--   * a customer whose first touch in the campaign was sent before
--     :starts_at was assigned in an earlier period: not a member of this one;
--   * a member converted when they have at least one application, attributed
--     or not (any campaign_id, or none), with applied_at in [assigned_at,
--     assigned_at + :attribution_days days], inclusive at both ends. Whether
--     anything was sent to them does not matter (intention to treat).
--
-- Cost, all from indexes, never a row of touches: one range scan of the
-- period's touches (campaign_id, sent_at, customer_id, variant, touch_id)
-- grouped by customer; per customer one probe of touches (customer_id,
-- sent_at, campaign_id) from the campaign's first touch to :starts_at; per
-- member (a customer not touched before) one probe of the period's index for
-- the variant, and one of applications (customer_id, applied_at). The
-- campaign's earlier touches are never read in bulk, so a late week of a long
-- campaign costs what its first week costs.
--
-- Columns: variant, members (distinct customers), converted (members with
-- the outcome).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days.

with

campaign_start as (
    -- one probe of touches (campaign_id, sent_at)
    select min(t.sent_at) as sent_at
    from touches as t
    where t.campaign_id = :campaign_id
),

period_customers as (
    -- each customer touched in the period, and when first
    select
        t.customer_id,
        min(t.sent_at) as first_sent_at
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at >= :starts_at
        and t.sent_at < :ends_at
    group by t.customer_id
),

newcomers as (
    -- not touched in the campaign before the period: one probe each
    select
        p.customer_id,
        p.first_sent_at
    from period_customers as p
    cross join campaign_start as cs
    where
        not exists (
            select 1
            from touches as e
            where
                e.customer_id = p.customer_id
                and e.sent_at >= cs.sent_at
                and e.sent_at < :starts_at
                and e.campaign_id = :campaign_id
        )
),

assignments as (
    -- the variant of the first touch (the lowest touch_id at that instant)
    select
        n.customer_id,
        n.first_sent_at as assigned_at,
        (
            select t.variant
            from touches as t
            where
                t.campaign_id = :campaign_id
                and t.sent_at = n.first_sent_at
                and t.customer_id = n.customer_id
            order by t.touch_id asc
            limit 1
        ) as variant
    from newcomers as n
),

outcomes as (
    -- per member: one probe of applications (customer_id, applied_at). The
    -- window's end is tested as applied_at - days <= assigned_at (the same
    -- instant, whole days being exact in UTC), so that the date arithmetic
    -- runs only on the applications found, not on every member.
    select
        a.customer_id,
        a.variant,
        case
            when exists (
                select 1
                from applications as ap
                where
                    ap.customer_id = a.customer_id
                    and ap.applied_at >= a.assigned_at
                    and {{ add_days("ap.applied_at", "-:attribution_days") }}
                    <= a.assigned_at
            ) then 1
            else 0
        end as is_converted
    from assignments as a
),

final as (
    select
        o.variant,
        count(*) as members,
        sum(o.is_converted) as converted
    from outcomes as o
    group by o.variant
)

select * from final
