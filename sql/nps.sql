-- nps: the survey answers attributed to a campaign, by score band.
--
-- Grain: one row per channel × segment × variant of the surveys answered in
-- [:starts_at, :ends_at) and attributed to :campaign_id like applications,
-- by the same rule: ref("attributed_events", events="surveys"). Hold-out
-- members' answers count in no figure.
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

attributed as (
    select
        a.customer_id,
        a.answered_at,
        a.score,
        a.segment,
        a.variant
    from {{ ref("attributed_events", events="surveys") }} as a
),

labelled as (
    -- per answer: one backward probe of the customer's touches
    select
        a.score,
        a.segment,
        a.variant,
        coalesce(
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
            ),
            'unknown'
        ) as channel
    from attributed as a
),

final as (
    select
        channel,
        segment,
        variant,
        count(*) as answers,
        sum(case when score >= 9 then 1 else 0 end) as promoters,
        sum(case when score <= 6 then 1 else 0 end) as detractors
    from labelled
    group by channel, segment, variant
)

select * from final
