-- experiment_member_outcomes: the experiment members of :campaign_id that a
-- check must (re)count before it sums the stored ones (the store:
-- experiment_members, tasks/check/experiments/members.py), each with its
-- assignment, outcome and covariate exactly as sql/experiment_members.sql
-- (the full recount, the definition) counts them.
--
-- Grain: one row per customer, of two kinds:
--   * the customers first touched in [:refold_from_at, :ends_at) who have no
--     stored assignment before :refold_from_at (the store holds every earlier
--     one): their assignment is the variant of their first touch in that
--     range (touches at the same instant ordered by touch_id, the lowest
--     first), assigned_at its sent_at;
--   * the stored members assigned before :refold_from_at marked stale (an
--     application of theirs changed since they were counted), with their
--     stored assignment.
-- For each: converted when they have an application, attributed or not, with
-- applied_at in [assigned_at, assigned_at + :attribution_days days], both
-- ends inclusive (the window: the judge counts it once it has closed); and
-- prior_applications, their applications in the :covariate_days days before
-- assignment (CUPED's covariate).
--
-- Columns: customer_id, assigned_at, variant, converted (0/1),
-- prior_applications.
--
-- Parameters: :campaign_id, :refold_from_at and :ends_at (naive UTC),
-- :attribution_days, :covariate_days.

with

range_firsts as (
    -- one range scan of touches (campaign_id, sent_at, customer_id)
    select
        t.customer_id,
        min(t.sent_at) as assigned_at
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at >= :refold_from_at
        and t.sent_at < :ends_at
    group by t.customer_id
),

new_members as (
    -- a probe of the store's key per customer of the range
    select
        f.customer_id,
        f.assigned_at,
        (
            select t.variant
            from touches as t
            where
                t.campaign_id = :campaign_id
                and t.sent_at = f.assigned_at
                and t.customer_id = f.customer_id
            order by t.touch_id asc
            limit 1
        ) as variant
    from range_firsts as f
    where not exists (
        select 1
        from experiment_members as m
        where
            m.campaign_id = :campaign_id
            and m.customer_id = f.customer_id
            and m.assigned_at < :refold_from_at
    )
),

stale_members as (
    select
        m.customer_id,
        m.assigned_at,
        m.variant
    -- the stale rows' partial index: the others are not read
    from experiment_members as m {{ index_hint("ix_experiment_members_stale") }}
    where
        m.campaign_id = :campaign_id
        and m.stale = 1
        and m.assigned_at < :refold_from_at
),

assignments as (
    select
        n.customer_id,
        n.assigned_at,
        n.variant
    from new_members as n
    union all
    select
        s.customer_id,
        s.assigned_at,
        s.variant
    from stale_members as s
),

final as (
    -- per member: probes of applications (customer_id, applied_at), as in
    -- sql/experiment_members.sql
    select
        a.customer_id,
        a.assigned_at,
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
        end as converted,
        (
            select count(*)
            from applications as ap
            where
                ap.customer_id = a.customer_id
                and ap.applied_at < a.assigned_at
                and {{ add_days("ap.applied_at", ":covariate_days") }}
                >= a.assigned_at
        ) as prior_applications
    from assignments as a
)

select * from final
