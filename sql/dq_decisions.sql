-- dq_decisions: the decisions on a campaign's applications, as the
-- data-quality check validates them.
--
-- Grain: one row per decision on an application applied in [:starts_at,
-- :ends_at) that attribution may give :campaign_id (dq_candidates.sql; the
-- check keeps those of the attributed applications); the decision counts
-- whenever it was taken, as in funnel_applications.sql.
--
-- Columns: the decisions feed's own (application_id, decided_at, decision,
-- reject_reason, approved_amount, apr), as stored, and the application's
-- applied_at.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

with

candidates as (
    select
        a.application_id,
        a.applied_at
    from {{ ref("dq_candidates") }} as a
),

campaign_decisions as (
    select
        d.application_id,
        d.decided_at,
        d.decision,
        d.reject_reason,
        d.approved_amount,
        d.apr,
        a.applied_at
    from candidates as a
    inner join decisions as d
        on a.application_id = d.application_id
)

select * from campaign_decisions
