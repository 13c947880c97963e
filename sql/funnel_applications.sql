-- funnel_applications: the application end of a campaign's funnel.
--
-- Grain: one row per channel × segment × variant of the applications applied
-- in [:starts_at, :ends_at) and attributed to :campaign_id (see
-- attributed_events.sql: channel is the application's, segment the
-- customer's, variant the customer's assignment in the campaign).
-- approved, disbursements and disbursed_amount are the decisions and loans
-- of those applications, whenever they happened.
--
-- The loans are campaign_loans.sql's (the one join of loans to the
-- campaign's applications, which loan_value.sql reads too).
--
-- Columns: channel, segment, variant, applications, decided (those with a
-- decision, approved or rejected: without any, approval_rate and roi have no
-- data yet), approved, disbursements (loans), disbursed_amount, and what roi
-- needs:
--   net_interest  = Σ amount × (apr/100 − :ftp_rate) × min(term_months, 12)/12
--   expected_loss = Σ outstanding of the loans whose latest repayment
--                   snapshot before :as_of_end_date has dpd ≥ 90, × :lgd
-- ("latest" = the snapshot with the greatest as_of < :as_of_end_date, the
-- local day after the reporting period; a loan without one has no loss).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :attribution_days, :ftp_rate, :lgd, :as_of_end_date (a date).

with

attributed as (
    select
        a.application_id,
        a.channel,
        a.segment,
        a.variant
    from {{ ref("attributed_events") }} as a
),

loan_summary as (
    select
        l.application_id,
        count(*) as disbursements,
        sum(l.amount) as disbursed_amount,
        sum(
            l.amount
            * (l.apr / 100.0 - :ftp_rate)
            * (case when l.term_months < 12 then l.term_months else 12 end)
            / 12.0
        ) as net_interest,
        sum(
            case when l.dpd >= 90 then l.outstanding else 0 end
        ) * :lgd as expected_loss
    from {{ ref("campaign_loans") }} as l
    group by l.application_id
),

by_application as (
    select
        a.channel,
        a.segment,
        a.variant,
        case when d.decision is not null then 1 else 0 end as is_decided,
        case when d.decision = 'approved' then 1 else 0 end as is_approved,
        coalesce(ls.disbursements, 0) as disbursements,
        coalesce(ls.disbursed_amount, 0) as disbursed_amount,
        coalesce(ls.net_interest, 0) as net_interest,
        coalesce(ls.expected_loss, 0) as expected_loss
    from attributed as a
    left join decisions as d
        on a.application_id = d.application_id
    left join loan_summary as ls
        on a.application_id = ls.application_id
),

final as (
    select
        channel,
        segment,
        variant,
        count(*) as applications,
        sum(is_decided) as decided,
        sum(is_approved) as approved,
        sum(disbursements) as disbursements,
        sum(disbursed_amount) as disbursed_amount,
        sum(net_interest) as net_interest,
        sum(expected_loss) as expected_loss
    from by_application
    group by channel, segment, variant
)

select * from final
