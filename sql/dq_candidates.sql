-- dq_candidates: the applications of a period that attribution may give a
-- campaign, for the data-quality reads of their decisions, loans and
-- repayment snapshots.
--
-- Grain: one row per application applied in [:starts_at, :ends_at) that
-- names :campaign_id or no campaign: every application
-- attributed_events.sql attributes to the campaign, and those without a
-- campaign that it gives to another or to none. tasks/check/
-- data_quality.py keeps the rows of the applications dq_applications.sql
-- returned (attributed, hold-out members' left out), so attribution runs
-- once per check rather than once per dataset.
--
-- Columns: application_id, applied_at, as stored.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

with

candidates as (
    select
        a.application_id,
        a.applied_at
    from applications as a
    where
        (
            a.campaign_id = :campaign_id
            or a.campaign_id is null
            or a.campaign_id = ''
        )
        and a.applied_at >= :starts_at
        and a.applied_at < :ends_at
)

select * from candidates
