-- attributed_events: the applications (or survey answers) a campaign is
-- credited with; the one place attribution is written.
--
-- Grain: one row per application applied in [:starts_at, :ends_at) and
-- attributed to :campaign_id (the contract's "Attribution"); with
-- events="surveys", one row per survey answer answered in that window,
-- attributed by the same rule (the contract: "surveys attributed like
-- applications"). Hold-out members' events (customers whose assignment in
-- the campaign is 'holdout') are left out: the hold-out is the experiment's
-- control group only and counts in no figure of the campaign
-- (experiment_members.sql reads their applications directly). An event is
-- attributed
--   * by its own campaign_id, or, when that is empty (null or ''),
--   * by the customer's last delivered touch (of any campaign) sent within
--     :attribution_days days before the event, when that touch is
--     :campaign_id's. The window is inclusive at both ends: a touch sent
--     exactly :attribution_days days before the event counts, and so does
--     one sent at the same instant. Touches sent at the same instant are
--     ordered by touch_id (the highest is the last).
-- Only empty-campaign events between the campaign's first touch and its
-- last touch + :attribution_days are looked up in touches, each with one
-- index probe (touches by customer_id, sent_at): no scan of touches.
--
-- Columns (applications): application_id, customer_id, channel (the
-- application's own), applied_at, attributed_by ('campaign_id' or 'touch'),
-- segment (the customer's; 'unknown' without a customer row), variant (the
-- customer's assignment in the campaign: the variant of their first touch
-- in it; 'unassigned' when they have none). With events="surveys":
-- survey_id, customer_id, score, answered_at, then the same three.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days.
-- Other queries inline it as a subquery: ref("attributed_events"), or
-- ref("attributed_events", events="surveys") (nps.sql).
-- ref("attributed_events", loans_only=true) keeps only applications with a
-- loan, before any touch is probed: overdue_rate_30 looks at every loan of
-- the campaign's history, and attributing every application of that
-- history (most never become loans) would cost it most of its time.

{% set surveys = events is defined and events == "surveys" %}
{% set source = "surveys" if surveys else "applications" %}
{% set event_id = "survey_id" if surveys else "application_id" %}
{% set event_at = "answered_at" if surveys else "applied_at" %}
{% set own = "score" if surveys else "channel" %}
{% set with_loans = loans_only is defined and loans_only and not surveys %}

{% set segment_index = "ix_customers_customer_id_segment" %}

with

first_touch as (
    select min(t.sent_at) as sent_at
    from touches as t
    where t.campaign_id = :campaign_id
),

last_touch as (
    select max(t.sent_at) as sent_at
    from touches as t
    where t.campaign_id = :campaign_id
),

by_campaign_id as (
    select
        a.{{ event_id }},
        a.customer_id,
        a.{{ own }},
        a.{{ event_at }},
        'campaign_id' as attributed_by
    from {{ source }} as a
    where
        a.campaign_id = :campaign_id
        and a.{{ event_at }} >= :starts_at
        and a.{{ event_at }} < :ends_at
        {% if with_loans %}
            and exists (
                select 1
                from loans as l
                where l.application_id = a.application_id
            )
        {% endif %}
),

unattributed as (
    select
        a.{{ event_id }},
        a.customer_id,
        a.{{ own }},
        a.{{ event_at }}
    from {{ source }} as a
    cross join first_touch as ft
    cross join last_touch as lt
    where
        (a.campaign_id is null or a.campaign_id = '')
        and a.{{ event_at }} >= :starts_at
        and a.{{ event_at }} < :ends_at
        {% if with_loans %}
            and exists (
                select 1
                from loans as l
                where l.application_id = a.application_id
            )
        {% endif %}
        and a.{{ event_at }} >= ft.sent_at
        and a.{{ event_at }}
        <= {{ add_days("lt.sent_at", ":attribution_days") }}
),

last_delivered as (
    -- per event: one backward probe of touches (customer_id, sent_at,
    -- touch_id, campaign_id, delivered), from the index alone, in its order
    select
        u.{{ event_id }},
        u.customer_id,
        u.{{ own }},
        u.{{ event_at }},
        (
            select t.campaign_id
            from touches as t
            where
                t.customer_id = u.customer_id
                and t.delivered
                and t.sent_at <= u.{{ event_at }}
                and t.sent_at
                >= {{ add_days("u." ~ event_at, "-:attribution_days") }}
            order by t.sent_at desc, t.touch_id desc
            limit 1
        ) as campaign_id
    from unattributed as u
),

by_touch as (
    select
        d.{{ event_id }},
        d.customer_id,
        d.{{ own }},
        d.{{ event_at }},
        'touch' as attributed_by
    from last_delivered as d
    where d.campaign_id = :campaign_id
),

attributed as (
    select * from by_campaign_id
    union all
    select * from by_touch
),

assigned as (
    -- per event: one forward probe of touches (customer_id, sent_at,
    -- touch_id, campaign_id, delivered, variant), from the index alone
    select
        a.{{ event_id }},
        a.customer_id,
        a.{{ own }},
        a.{{ event_at }},
        a.attributed_by,
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
    -- once per event: the next step reads the variant twice (the hold-out
    -- test, the output), and a flattened probe would run for each
    {{ fence() }}
),

final as (
    -- per event: one probe of customers (customer_id, segment)
    select
        a.{{ event_id }},
        a.customer_id,
        a.{{ own }},
        a.{{ event_at }},
        a.attributed_by,
        coalesce(
            (
                select c.segment
                from customers as c {{ index_hint(segment_index) }}
                where c.customer_id = a.customer_id
            ),
            'unknown'
        ) as segment,
        coalesce(a.variant, 'unassigned') as variant
    from assigned as a
    where a.variant is null or a.variant <> 'holdout'
)

select * from final
