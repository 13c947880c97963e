-- experiment_member_stale_span: the first and last assignment among the
-- stored experiment members of :campaign_id marked stale (an application of
-- theirs changed since they were counted: migration 0008's triggers) and
-- assigned before :refold_from_at, the ones a check recounts besides its
-- fold (sql/experiment_member_outcomes.sql); the hours between are summed
-- again.
--
-- Grain: one row; both null without any such member.
--
-- Columns: first_assigned_at, last_assigned_at.
--
-- Parameters: :campaign_id, :refold_from_at (naive UTC).

with

stale_members as (
    -- the stale rows' partial index: the others are not read
    select m.assigned_at
    from experiment_members as m {{ index_hint("ix_experiment_members_stale") }}
    where
        m.campaign_id = :campaign_id
        and m.stale = 1
        and m.assigned_at < :refold_from_at
),

final as (
    select
        min(s.assigned_at) as first_assigned_at,
        max(s.assigned_at) as last_assigned_at
    from stale_members as s
)

select * from final
