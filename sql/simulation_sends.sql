-- simulation_sends: what dispatch sent, as the simulated world reads it.
--
-- Grain: one row per touch that dispatch recorded for :campaign_id with
-- sent_at in [:starts_at, :ends_at), hold-out assignments included (the world
-- needs them for organic applications of the control group, never as sends).
--
-- Columns: touch_id, customer_id, channel, variant, sent_at (naive UTC), cost,
-- send_window (the window of the outreach batch that sent it; null for a touch
-- dispatch did not send, e.g. one loaded from a feed). Unordered: the caller
-- sorts.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC); :start_date
-- and :end_date, the local send dates the range may fall on (only their
-- batches are read: reading the season's whole outbox every day grew
-- quadratic).

with

campaign_touches as (
    select
        t.touch_id,
        t.customer_id,
        t.channel,
        t.variant,
        t.sent_at,
        t.cost
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at >= :starts_at
        and t.sent_at < :ends_at
),

sent_by as (
    select
        o.touch_id,
        b.window as send_window
    from outbox as o
    inner join outreach_batches as b on o.batch_id = b.batch_id
    where
        b.campaign_id = :campaign_id
        and b.send_date between :start_date and :end_date
        and o.touch_id is not null
),


sends as (
    select
        ct.touch_id,
        ct.customer_id,
        ct.channel,
        ct.variant,
        ct.sent_at,
        ct.cost,
        sb.send_window
    from campaign_touches as ct
    left join sent_by as sb on ct.touch_id = sb.touch_id
)

select * from sends
