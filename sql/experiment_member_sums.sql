-- experiment_member_sums: the stored experiment members of :campaign_id summed
-- per variant and UTC hour of assignment, the buckets a check sums whole
-- (sql/experiment_member_arms.sql reads the members themselves only in the
-- hours a boundary of its period cuts).
--
-- Grain: one row per variant and hour [bucket_start, bucket_end) with anyone
-- assigned among the members assigned in [:sums_from_at, :sums_to_at) (both
-- on the hour, so that every bucket is whole).
--
-- Columns: variant, bucket_start, bucket_end, assigned, converted (members
-- converted within their window, closed or not), covariate_sum,
-- covariate_square_sum, covariate_converted_sum (Σx, Σx², Σxy).
--
-- Parameters: :campaign_id, :sums_from_at, :sums_to_at (naive UTC).

with

members as (
    select
        m.variant,
        m.converted,
        m.prior_applications,
        {{ hour_start("m.assigned_at") }} as bucket_start,
        {{ next_hour("m.assigned_at") }} as bucket_end
    from experiment_members as m
    where
        m.campaign_id = :campaign_id
        and m.assigned_at >= :sums_from_at
        and m.assigned_at < :sums_to_at
),

final as (
    select
        s.variant,
        s.bucket_start,
        s.bucket_end,
        count(*) as assigned,
        sum(s.converted) as converted,
        sum(s.prior_applications) as covariate_sum,
        sum(
            s.prior_applications * s.prior_applications
        ) as covariate_square_sum,
        sum(s.converted * s.prior_applications) as covariate_converted_sum
    from members as s
    group by s.variant, s.bucket_start, s.bucket_end
)

select * from final
