-- act_response_by_quarter_hour: a campaign's response figures by send time.
--
-- Grain: one row per UTC quarter-hour (sent_hour × sent_quarter) in which
-- :campaign_id sent touches in [:starts_at, :ends_at) (touches count by
-- sent_at). Hold-out rows (variant 'holdout': an assignment, never sent)
-- count in no figure, as in funnel_touches.sql. The act stage turns each
-- quarter-hour into the campaign's local time of day in pandas (time zone,
-- daylight saving) and sums the quarters by send window, so that no time
-- zone arithmetic is needed here and the query stays portable.
--
-- Columns: sent_hour ('YYYY-MM-DD HH', UTC: the first 13 characters of the
-- timestamp's text, the same on SQLite and PostgreSQL), sent_quarter (0 to
-- 3: minutes 0-14, 15-29, 30-44, 45-59 of the hour), touches, delivered,
-- responded.
--
-- Parameters: :campaign_id, :starts_at and :ends_at (naive UTC).

with

campaign_touches as (
    select
        cast(t.sent_at as text) as sent_text,
        case when t.delivered then 1 else 0 end as is_delivered,
        case when t.responded then 1 else 0 end as is_responded
    from touches as t
    where
        t.campaign_id = :campaign_id
        and t.sent_at >= :starts_at
        and t.sent_at < :ends_at
        and t.variant <> 'holdout'
),

bucketed as (
    select
        is_delivered,
        is_responded,
        substr(sent_text, 1, 13) as sent_hour,
        cast(substr(sent_text, 15, 2) as integer) / 15 as sent_quarter
    from campaign_touches
),

final as (
    select
        sent_hour,
        sent_quarter,
        count(*) as touches,
        sum(is_delivered) as delivered,
        sum(is_responded) as responded
    from bucketed
    group by sent_hour, sent_quarter
)

select * from final
