-- dq_repayments: the repayment snapshots of a campaign's loans, as the
-- data-quality check validates them.
--
-- Grain: one row per (loan, as_of) snapshot with as_of < :as_of_end_date
-- (the local day after the period: what the metrics read) of a loan whose
-- application was applied in [:starts_at, :ends_at) and that attribution
-- may give :campaign_id (dq_candidates.sql; the check keeps those of the
-- attributed applications, then leaves application_id out).
--
-- Columns: the repayments feed's own (loan_id, as_of, dpd, outstanding), as
-- stored, and the loan's application_id.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC),
-- :as_of_end_date (a date).

with

candidates as (
    select a.application_id
    from {{ ref("dq_candidates") }} as a
),

campaign_loans as (
    select
        l.loan_id,
        l.application_id
    from candidates as a
    inner join loans as l
        on a.application_id = l.application_id
),

campaign_repayments as (
    select
        r.loan_id,
        r.as_of,
        r.dpd,
        r.outstanding,
        l.application_id
    from campaign_loans as l
    inner join repayments as r
        on l.loan_id = r.loan_id
    where r.as_of < :as_of_end_date
)

select * from campaign_repayments
