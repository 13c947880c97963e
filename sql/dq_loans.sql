-- dq_loans: the loans of a campaign's applications, as the data-quality
-- check validates them.
--
-- Grain: one row per loan of an application applied in [:starts_at,
-- :ends_at) that attribution may give :campaign_id (dq_candidates.sql; the
-- check keeps those of the attributed applications); the loan counts
-- whenever it was disbursed, as in funnel_applications.sql.
--
-- Columns: the loans feed's own (loan_id, application_id, disbursed_at,
-- amount, apr, term_months), as stored, and the application's decision:
-- decision, decided_at, approved_amount (all null when it has none).
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

with

candidates as (
    select a.application_id
    from {{ ref("dq_candidates") }} as a
),

campaign_loans as (
    select
        l.loan_id,
        l.application_id,
        l.disbursed_at,
        l.amount,
        l.apr,
        l.term_months,
        d.decision,
        d.decided_at,
        d.approved_amount
    from candidates as a
    inner join loans as l
        on a.application_id = l.application_id
    left join decisions as d
        on l.application_id = d.application_id
)

select * from campaign_loans
