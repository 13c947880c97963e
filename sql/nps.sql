-- nps: the survey answers attributed to a campaign, by score band.
--
-- Grain: one row per channel × segment × variant of the surveys answered in
-- [:starts_at, :ends_at) and attributed to :campaign_id like applications
-- (attributed_applications.sql): by their own campaign_id, or, when that is
-- empty, by the customer's last delivered touch (of any campaign) sent
-- within :attribution_days days before answered_at, when that touch is
-- :campaign_id's. Hold-out members' answers count in no figure.
--
-- Columns: channel (of the customer's last delivered touch in the campaign
-- sent at or before answered_at; 'unknown' when none), segment (the
-- customer's; 'unknown' without a customer row), variant (the customer's
-- assignment: the variant of their first touch in the campaign;
-- 'unassigned' when none), answers, promoters (score 9–10), detractors
-- (score 0–6); nps = 100 × (promoters − detractors) / answers.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days.

with

period_surveys as (
    select
        s.survey_id,
        s.customer_id,
        s.campaign_id,
        s.answered_at,
        s.score
    from surveys as s
    where
        s.answered_at >= :starts_at
        and s.answered_at < :ends_at
),

by_touch as (
    -- per unattributed answer: one backward probe of touches
    select
        s.survey_id,
        (
            select t.campaign_id
            from touches as t
            where
                t.customer_id = s.customer_id
                and t.delivered
                and t.sent_at <= s.answered_at
                and t.sent_at
                >= {{ add_days("s.answered_at", "-:attribution_days") }}
            order by t.sent_at desc, t.touch_id desc
            limit 1
        ) as campaign_id
    from period_surveys as s
    where s.campaign_id is null or s.campaign_id = ''
),

attributed as (
    select
        s.survey_id,
        s.customer_id,
        s.answered_at,
        s.score
    from period_surveys as s
    left join by_touch as b
        on s.survey_id = b.survey_id
    where coalesce(nullif(s.campaign_id, ''), b.campaign_id) = :campaign_id
),

labelled as (
    select
        a.survey_id,
        a.score,
        (
            select t.channel
            from touches as t
            where
                t.customer_id = a.customer_id
                and t.campaign_id = :campaign_id
                and t.delivered
                and t.sent_at <= a.answered_at
            order by t.sent_at desc, t.touch_id desc
            limit 1
        ) as channel,
        (
            select cu.segment
            from customers as cu
            where cu.customer_id = a.customer_id
        ) as segment,
        (
            select t.variant
            from touches as t
            where
                t.customer_id = a.customer_id
                and t.campaign_id = :campaign_id
            order by t.sent_at asc, t.touch_id asc
            limit 1
        ) as variant
    from attributed as a
),

final as (
    select
        coalesce(channel, 'unknown') as channel,
        coalesce(segment, 'unknown') as segment,
        coalesce(variant, 'unassigned') as variant,
        count(*) as answers,
        sum(case when score >= 9 then 1 else 0 end) as promoters,
        sum(case when score <= 6 then 1 else 0 end) as detractors
    from labelled
    where variant is null or variant <> 'holdout'
    group by
        coalesce(channel, 'unknown'),
        coalesce(segment, 'unknown'),
        coalesce(variant, 'unassigned')
)

select * from final
