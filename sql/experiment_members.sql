-- experiment_members: the members of each arm of a campaign's experiment,
-- intention to treat and cumulative (the contract's "Experiment"): everyone
-- assigned from the experiment's start up to the checked period's end, with
-- the period's own cohort beside them and the pre-assignment covariate of
-- the variance reduction (CUPED).
--
-- Grain: one row per variant of :campaign_id ('holdout' included) among the
-- customers assigned in [:experiment_starts_at, :ends_at):
--   * a customer's assignment is the variant of their first touch in the
--     campaign (hold-out rows included; touches sent at the same instant are
--     ordered by touch_id, the lowest first), and assigned_at is that
--     touch's sent_at; :experiment_starts_at is the campaign's first touch,
--     or the moment a promotion restarted the experiment with a new split;
--   * the outcome of a member is known once their attribution window has
--     closed (assigned_at + :attribution_days days <= :ends_at): only those
--     are `members`; the others are `assigned` but pending, and count in the
--     sample-ratio test only (assignment does not wait for outcomes);
--   * a member converted when they have at least one application, attributed
--     or not, with applied_at in [assigned_at, assigned_at +
--     :attribution_days days], inclusive at both ends (all of it by
--     :ends_at, so a later rerun sees the same outcome);
--   * the covariate is the member's applications (any campaign or none) in
--     the :covariate_days days before assignment: known before assignment,
--     so the variant cannot have moved it;
--   * the period's cohort is the customers assigned in [:starts_at, :ends_at).
--
-- Columns: variant; assigned, members, converted (cumulative); covariate_sum,
-- covariate_square_sum, covariate_converted_sum (over members: Σx, Σx², Σxy);
-- cohort_assigned, cohort_members, cohort_converted.
--
-- Parameters: :campaign_id, :experiment_starts_at, :starts_at and :ends_at
-- (naive UTC), :attribution_days, :covariate_days.

with

first_touches as (
    -- one range scan of touches (campaign_id, sent_at, customer_id)
    select
        t.customer_id,
        min(t.sent_at) as assigned_at
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at < :ends_at
    group by t.customer_id
),

assignments as (
    -- the variant of the first touch (the lowest touch_id at that instant)
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
        ) as variant,
        case
            when f.assigned_at >= :starts_at then 1 else 0
        end as is_period_cohort,
        case
            when
                f.assigned_at
                <= {{ add_days(":ends_at", "-:attribution_days") }}
                then 1
            else 0
        end as is_window_closed
    from first_touches as f
    where f.assigned_at >= :experiment_starts_at
    {{ fence() }}
),

outcomes as (
    -- per member: probes of applications (customer_id, applied_at); window
    -- ends are tested on the applications found (applied_at - days), so the
    -- date arithmetic never runs per member. Fenced, like assignments, so
    -- that each probe runs once per member, not once per sum that reads it
    select
        a.variant,
        a.is_period_cohort,
        a.is_window_closed,
        case
            when
                a.is_window_closed = 1
                and exists (
                    select 1
                    from applications as ap
                    where
                        ap.customer_id = a.customer_id
                        and ap.applied_at >= a.assigned_at
                        and {{ add_days(
                            "ap.applied_at", "-:attribution_days"
                        ) }}
                        <= a.assigned_at
                ) then 1
            else 0
        end as is_converted,
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
    {{ fence() }}
),

final as (
    select
        o.variant,
        count(*) as assigned,
        sum(o.is_window_closed) as members,
        sum(o.is_converted) as converted,
        sum(o.is_window_closed * o.prior_applications) as covariate_sum,
        sum(
            o.is_window_closed * o.prior_applications * o.prior_applications
        ) as covariate_square_sum,
        sum(o.is_converted * o.prior_applications) as covariate_converted_sum,
        sum(o.is_period_cohort) as cohort_assigned,
        sum(o.is_period_cohort * o.is_window_closed) as cohort_members,
        sum(o.is_period_cohort * o.is_converted) as cohort_converted
    from outcomes as o
    group by o.variant
)

select * from final
