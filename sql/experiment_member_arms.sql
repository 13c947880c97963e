-- experiment_member_arms: the arms of a campaign's experiment summed from the
-- stored members (experiment_members, kept up to date by the check before it
-- reads them: tasks/check/experiments/members.py). The same columns and the
-- same rules as sql/experiment_members.sql, the full recount that defines
-- them: intention to treat and cumulative, everyone assigned in
-- [:experiment_starts_at, :ends_at); members are those whose attribution
-- window has closed (assigned_at + :attribution_days days <= :ends_at), the
-- others pending; the period's cohort is those assigned in [:starts_at,
-- :ends_at).
--
-- Grain: one row per variant of :campaign_id ('holdout' included) with anyone
-- assigned in the range.
--
-- Columns: variant; assigned, members, converted (cumulative); covariate_sum,
-- covariate_square_sum, covariate_converted_sum (over members: Σx, Σx², Σxy);
-- cohort_assigned, cohort_members, cohort_converted.
--
-- Parameters: :campaign_id, :experiment_starts_at, :starts_at and :ends_at
-- (naive UTC), :attribution_days.

with

members as (
    -- one range scan of the store's index (campaign_id, assigned_at, ...)
    select
        m.variant,
        m.converted,
        m.prior_applications,
        case
            when m.assigned_at >= :starts_at then 1 else 0
        end as is_period_cohort,
        case
            when
                m.assigned_at
                <= {{ add_days(":ends_at", "-:attribution_days") }}
                then 1
            else 0
        end as is_window_closed
    from experiment_members as m
    where
        m.campaign_id = :campaign_id
        and m.assigned_at >= :experiment_starts_at
        and m.assigned_at < :ends_at
),

outcomes as (
    select
        s.variant,
        s.is_period_cohort,
        s.is_window_closed,
        s.prior_applications,
        s.is_window_closed * s.converted as is_converted
    from members as s
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
