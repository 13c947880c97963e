-- dispatch_audience: who may be contacted for a campaign's batch, and why not.
-- Grain: one row per customer. `exclusion_reason` is null for the eligible
-- ones, else the first rule (in the order below) that excludes the customer.
-- `debt_ratio` is returned for the admission rules approved actions scope to
-- a segment or a channel (tasks/do/audience.py judges them in this same order).
-- Parameters:
--   :campaign_id          the campaign
--   :batch_id             the batch being built (its own entries never count
--                         against the frequency cap)
--   :min_credit_score     risk.min_credit_score
--   :max_debt_ratio       risk.max_debt_ratio
--   :excluded_industries  risk.excluded_industries (expanding list)
--   :cap_starts_at        UTC start of the 7-day frequency window
--   :complaints_since_at  UTC start of the 90-day complaint look-back
--   :max_touches_per_7d   contact_policy.max_touches_per_7d

with

recent_touches as (
    -- touches actually sent, in any campaign (hold-out rows were never sent)
    select
        customer_id,
        count(*) as touch_count
    from touches
    where
        sent_at >= :cap_starts_at
        and variant <> 'holdout'
    group by customer_id
),

scheduled_sends as (
    -- sends written to an outbox but not yet turned into touches (deferred ones
    -- wait for a provider: they are still to be sent)
    select
        customer_id,
        count(*) as send_count
    from outbox
    where
        scheduled_at >= :cap_starts_at
        and status in ('pending', 'sending', 'held', 'deferred')
        and batch_id <> :batch_id
    group by customer_id
),

latest_snapshots as (
    select
        loan_id,
        max(as_of) as as_of
    from repayments
    group by loan_id
),

overdue_customers as (
    select distinct applications.customer_id
    from latest_snapshots
    inner join repayments
        on
            latest_snapshots.loan_id = repayments.loan_id
            and latest_snapshots.as_of = repayments.as_of
    inner join loans on repayments.loan_id = loans.loan_id
    inner join applications
        on loans.application_id = applications.application_id
    where repayments.dpd > 0
),

recent_complaints as (
    select distinct customer_id
    from complaints
    where received_at >= :complaints_since_at
),

assignments as (
    -- the customer's variant in this campaign, imported history included
    select
        customer_id,
        max(variant) as variant
    from touches
    where campaign_id = :campaign_id
    group by customer_id
),

judged as (
    select
        customers.customer_id,
        customers.segment,
        customers.credit_score,
        customers.debt_ratio,
        customers.phone,
        customers.email,
        assignments.variant as assigned_variant,
        coalesce(recent_touches.touch_count, 0)
        + coalesce(scheduled_sends.send_count, 0) as contacts_7d,
        case
            when customers.do_not_contact then 'do_not_contact'
            when not customers.marketing_consent then 'no_marketing_consent'
            when customers.credit_score is null then 'no_credit_score'
            when
                customers.credit_score < :min_credit_score
                then 'credit_score_below_floor'
            when
                customers.industry {{ in_list(":excluded_industries") }}
                then 'excluded_industry'
            when
                customers.debt_ratio > :max_debt_ratio
                then 'debt_ratio_above_cap'
            when
                overdue_customers.customer_id is not null
                then 'overdue_loan'
            when
                recent_complaints.customer_id is not null
                then 'recent_complaint'
            when
                coalesce(recent_touches.touch_count, 0)
                + coalesce(scheduled_sends.send_count, 0)
                >= :max_touches_per_7d
                then 'frequency_cap'
        end as exclusion_reason
    from customers
    left join recent_touches
        on customers.customer_id = recent_touches.customer_id
    left join scheduled_sends
        on customers.customer_id = scheduled_sends.customer_id
    left join overdue_customers
        on customers.customer_id = overdue_customers.customer_id
    left join recent_complaints
        on customers.customer_id = recent_complaints.customer_id
    left join assignments
        on customers.customer_id = assignments.customer_id
)

select * from judged
