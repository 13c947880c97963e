-- experiment_member_arms: the arms of a campaign's experiment summed from the
-- stored members (experiment_members and their hourly sums
-- experiment_member_sums, kept up to date by the check before it reads them:
-- tasks/check/experiments/members.py). The same columns and the same rules
-- as sql/experiment_members.sql, the full recount that defines them:
-- intention to treat and cumulative, everyone assigned in
-- [:experiment_starts_at, :ends_at); members are those whose attribution
-- window has closed (assigned_at + :attribution_days days <= :ends_at), the
-- others pending; the period's cohort is those assigned in [:starts_at,
-- :ends_at).
--
-- Grain: one row per variant of :campaign_id ('holdout' included) with anyone
-- assigned in the range. An hour's sums count whole where every member of it
-- is on the same side of each boundary (the experiment's start, the period's
-- start, the windows' close, the period's end); in an hour a boundary cuts,
-- the members themselves are read.
--
-- Columns: variant; assigned, members, converted (cumulative); covariate_sum,
-- covariate_square_sum, covariate_converted_sum (over members: Σx, Σx², Σxy);
-- cohort_assigned, cohort_members, cohort_converted.
--
-- Parameters: :campaign_id, :experiment_starts_at, :starts_at and :ends_at
-- (naive UTC), :attribution_days.

with

buckets as (
    -- each hour's side of each boundary: 1 all, 0 none, null cut
    select
        b.variant,
        b.bucket_start,
        b.bucket_end,
        b.assigned,
        b.converted,
        b.covariate_sum,
        b.covariate_square_sum,
        b.covariate_converted_sum,
        case
            when
                b.bucket_start >= :experiment_starts_at
                and b.bucket_end <= :ends_at
                then 1
        end as is_inside,
        case
            when
                b.bucket_end
                <= {{ add_days(":ends_at", "-:attribution_days") }}
                then 1
            when
                b.bucket_start
                > {{ add_days(":ends_at", "-:attribution_days") }}
                then 0
        end as is_window_closed,
        case
            when b.bucket_start >= :starts_at then 1
            when b.bucket_end <= :starts_at then 0
        end as is_period_cohort
    from experiment_member_sums as b
    where
        b.campaign_id = :campaign_id
        and b.bucket_end > :experiment_starts_at
        and b.bucket_start < :ends_at
),

whole_buckets as (
    select
        w.variant,
        w.assigned,
        w.is_window_closed * w.assigned as members,
        w.is_window_closed * w.converted as converted,
        w.is_window_closed * w.covariate_sum as covariate_sum,
        w.is_window_closed * w.covariate_square_sum as covariate_square_sum,
        w.is_window_closed * w.covariate_converted_sum
            as covariate_converted_sum,
        w.is_period_cohort * w.assigned as cohort_assigned,
        w.is_period_cohort * w.is_window_closed * w.assigned as cohort_members,
        w.is_period_cohort * w.is_window_closed * w.converted
            as cohort_converted
    from buckets as w
    where
        w.is_inside = 1
        and w.is_window_closed is not null
        and w.is_period_cohort is not null
),

cut_hours as (
    select distinct
        c.bucket_start,
        c.bucket_end
    from buckets as c
    where
        c.is_inside is null
        or c.is_window_closed is null
        or c.is_period_cohort is null
),

cut_members as (
    -- the members of the cut hours, each on its side of every boundary
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
    from cut_hours as h
    inner join experiment_members as m
        on
            m.campaign_id = :campaign_id
            and h.bucket_start <= m.assigned_at
            and h.bucket_end > m.assigned_at
    where
        m.assigned_at >= :experiment_starts_at
        and m.assigned_at < :ends_at
),

member_sums as (
    select
        p.variant,
        1 as assigned,
        p.is_window_closed as members,
        p.is_window_closed * p.converted as converted,
        p.is_window_closed * p.prior_applications as covariate_sum,
        p.is_window_closed * p.prior_applications * p.prior_applications
            as covariate_square_sum,
        p.is_window_closed * p.converted * p.prior_applications
            as covariate_converted_sum,
        p.is_period_cohort as cohort_assigned,
        p.is_period_cohort * p.is_window_closed as cohort_members,
        p.is_period_cohort * p.is_window_closed * p.converted
            as cohort_converted
    from cut_members as p
),

sums as (
    select * from whole_buckets
    union all
    select * from member_sums
),

final as (
    select
        s.variant,
        sum(s.assigned) as assigned,
        sum(s.members) as members,
        sum(s.converted) as converted,
        sum(s.covariate_sum) as covariate_sum,
        sum(s.covariate_square_sum) as covariate_square_sum,
        sum(s.covariate_converted_sum) as covariate_converted_sum,
        sum(s.cohort_assigned) as cohort_assigned,
        sum(s.cohort_members) as cohort_members,
        sum(s.cohort_converted) as cohort_converted
    from sums as s
    group by s.variant
)

select * from final
