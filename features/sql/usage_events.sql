-- Staged usage events with the day each falls on (grain: event), the one place that numbers
-- days: build.py creates it as the temp view churnlens_usage_events, which usage_days.sql and
-- usage_users.sql read with their own time bounds (pushed down to the scan).
--
-- Days are numbered by their END: the first midnight at or after event_time, in whole days since
-- 1970-01-01 (an event at 00:00:00 belongs to the day that ends then). With midnight as_of dates,
-- "day in (as_of - n, as_of]" is exactly "event_time in (as_of - n days, as_of]".
with final as (
    select
        account_id,
        user_id,
        event_type,
        event_time,
        cast(epoch(date_trunc('day', event_time - interval 1 microsecond)) / 86400 as bigint) + 1
            as day
    from stg_usage_events
)

select * from final
