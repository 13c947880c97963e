-- dispatch_stage: a send window's audience as its batch is prepared: why each
-- customer is excluded, or the channel and variant of the chosen.
-- Grain: one row per customer of the window who is not yet in the batch and
-- has no held send in the campaign. `exclusion_reason` is null for the
-- chosen (then `channel` and `variant` are set): the reasons of
-- dispatch_audience.sql, the approved scoped floors and caps, then
-- holdout_member, tier_c_frequency and no_channel. tasks/do/audience.py
-- stages it (stage_audience) and says why each step is what it is.
--
-- Rendered lists (template variables, from the rules in force; without
-- them the file renders every step, for lint and tests):
--   split_windows      several windows a day: keep this window's customers
--   skip_batch         the batch has entries: leave their customers out
--   skip_held          the campaign has held sends: leave their customers out
--   segment_count      segments with a known (or deprioritised) propensity
--   segment_checks     approved segment floors and caps (see admission)
--   channel_checks     approved channel floors and caps (see admission)
--   no_channel_tiers   tiers without a channel the campaign uses
--   tier_b_alternates  tier B alternates between its first two channels
--   variant_count      variants of the written split
--   promoted_count     retired variants
-- Parameters: those of dispatch_audience.sql, and
--   :window_index         this window's place among the day's windows
--   :<role>_salt, :<role>_cuts  the hashes (window, channel, variant), see
--                         the bucket macro
--   :segment_<i>, :segment_propensity_<i>  each segment's propensity
--   :average_propensity   the measured average (unknown segments get it)
--   :tier_a_score, :tier_b_score, :low_frequency_cap  the routing rules
--   :tier_a_channel, :tier_b_channel, :tier_b_alternate, :tier_c_channel
--   :<scope>_<measure>_<j>_scope, :<scope>_<measure>_<j>  a scoped rule's
--                         segment or channel, and its floor or cap
--   :drawn_variant_<i>    the variant drawn below the i-th cut (promoted)
--   :retired_variant_<i>, :promoted_variant_<i>  earlier members' variants
{%- if not (lint is defined and lint) -%}
{#- sqlfluff loads every file of sql/macros itself -#}
{%- from "macros/dispatch.sql" import admission -%}
{%- endif -%}
{%- if (lint is defined and lint) or split_windows is not defined -%}
    {%- set split_windows, skip_batch, skip_held = true, true, true -%}
    {%- set segment_count, variant_count, promoted_count = 1, 2, 1 -%}
    {%- set later = ["frequency_cap"] -%}
    {%- set floor = ("credit_score_below_floor", "credit_score", "<") -%}
    {%- set cap = ("debt_ratio_above_cap", "debt_ratio", ">") -%}
    {%- set segment_checks = [floor + (later, 1), cap + (later, 1)] -%}
    {%- set channel_checks = segment_checks -%}
    {%- set no_channel_tiers, tier_b_alternates = ["C"], true -%}
{%- endif %}

with

audience as (
    select
        dispatch_audience.customer_id,
        dispatch_audience.segment,
        dispatch_audience.credit_score,
        dispatch_audience.debt_ratio,
        dispatch_audience.assigned_variant,
        dispatch_audience.contacts_7d,
        dispatch_audience.exclusion_reason
    from {{ ref("dispatch_audience") }} as dispatch_audience
),

campaign_batches as (
    select batch_id
    from outreach_batches
    where campaign_id = :campaign_id
),

in_window as (
    -- one window a day per customer; a rerun tops the batch up; a held send
    -- goes in a later window
    select
        customer_id,
        segment,
        credit_score,
        debt_ratio,
        assigned_variant,
        contacts_7d,
        exclusion_reason
    from audience
    where
        true
        {%- if split_windows %}
            and {{ bucket("window", "customer_id") }} = :window_index
        {%- endif %}
        {%- if skip_batch %}
            and customer_id not in (
                select outbox.customer_id
                from outbox
                where outbox.batch_id = :batch_id
            )
        {%- endif %}
        {%- if skip_held %}
            and customer_id not in (
                select outbox.customer_id
                from outbox
                where
                    outbox.batch_id in (
                        select campaign_batches.batch_id
                        from campaign_batches
                    )
                    and outbox.status = 'held'
            )
        {%- endif %}
),

admitted as (
    -- the segment's floors and caps; the segment's propensity
    select
        customer_id,
        segment,
        credit_score,
        debt_ratio,
        assigned_variant,
        contacts_7d,
        {{ admission(
            "exclusion_reason", "segment", "segment", segment_checks
        ) }} as exclusion_reason,
        {%- if segment_count %}
            case segment
                {%- for i in range(segment_count) %}
                    when :segment_{{ i }} then :segment_propensity_{{ i }}
                {%- endfor %}
                else :average_propensity
            end as propensity
        {%- else %}
        :average_propensity as propensity
        {%- endif %}
    from in_window
    {{ fence() }}
),

tiered as (
    select
        customer_id,
        segment,
        credit_score,
        debt_ratio,
        propensity,
        assigned_variant,
        contacts_7d,
        exclusion_reason,
        case
            when
                credit_score >= :tier_a_score
                and propensity >= :average_propensity
                then 'A'
            when credit_score >= :tier_b_score then 'B'
            else 'C'
        end as tier
    from admitted
),

judged as (
    -- hold-out members are counted, never routed
    select
        customer_id,
        segment,
        credit_score,
        debt_ratio,
        propensity,
        assigned_variant,
        tier,
        case
            when
                assigned_variant = 'holdout'
                then coalesce(exclusion_reason, 'holdout_member')
            when exclusion_reason is not null then exclusion_reason
            when
                tier = 'C' and contacts_7d >= :low_frequency_cap
                then 'tier_c_frequency'
            {%- if no_channel_tiers %}
                when tier in (
                    {%- for tier in no_channel_tiers -%}
                        '{{ tier }}'{{ ", " if not loop.last }}
                    {%- endfor -%}
                ) then 'no_channel'
            {%- endif %}
        end as exclusion_reason
    from tiered
    {{ fence() }}
),

routed as (
    select
        customer_id,
        segment,
        credit_score,
        debt_ratio,
        propensity,
        assigned_variant,
        exclusion_reason,
        case
            when exclusion_reason is null
                then
                    case
                        when tier = 'A' then :tier_a_channel
                        {%- if tier_b_alternates %}
                            when
                                tier = 'B'
                                and {{ bucket("channel", "customer_id") }} = 0
                                then :tier_b_alternate
                        {%- endif %}
                        when tier = 'B' then :tier_b_channel
                        else :tier_c_channel
                    end
        end as channel
    from judged
    {%- if channel_checks %}
        {{ fence() }}
    {%- endif %}
),

assigned as (
    -- an earlier member keeps their variant (or its winner); a new one is
    -- drawn below the written split's cuts, the hold-out above the last
    select
        customer_id,
        segment,
        credit_score,
        propensity,
        channel,
        {{ admission(
            "exclusion_reason", "channel", "channel", channel_checks
        ) }} as exclusion_reason,
        case
            when assigned_variant is not null
                {%- if promoted_count %}
                    then
                        case assigned_variant
                            {%- for i in range(promoted_count) %}
                                when :retired_variant_{{ i }}
                                    then :promoted_variant_{{ i }}
                            {%- endfor %}
                            else assigned_variant
                        end
                {%- else %}
                then assigned_variant
                {%- endif %}
            else
                case {{ bucket("variant", "customer_id") }}
                    {%- for i in range(variant_count) %}
                        when {{ i }} then :drawn_variant_{{ i }}
                    {%- endfor %}
                    else 'holdout'
                end
        end as variant
    from routed
),

chosen as (
    -- only the chosen have a channel and a variant
    select
        customer_id,
        segment,
        credit_score,
        propensity,
        exclusion_reason,
        case when exclusion_reason is null then channel end as channel,
        case when exclusion_reason is null then variant end as variant
    from assigned
),

final as (
    select
        customer_id,
        segment,
        credit_score,
        propensity,
        channel,
        variant,
        exclusion_reason
    from chosen
)

select * from final
