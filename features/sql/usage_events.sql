-- Staged usage events with the day each falls on (grain: event), the one place that numbers an
-- event's day (an as_of's is usage.day_number, in churnlens_obs_dates.day):
-- features/usage.py creates it as two temp views, which the usage queries read with their own time
-- bounds (pushed down to the scan): churnlens_usage_events from stg_usage_events (exact duplicates
-- removed, for the event counts of usage_days.sql) and churnlens_usage_events_all from
-- stg_usage_events_with_duplicates (for usage_users.sql: a duplicate cannot change the days a user
-- or an event type was active, so its masks skip the DISTINCT). Which of the two it reads
-- (the name in braces after from) is written in by features/usage.py.
--
-- quantity NULL is 1 (the contract's default: one unit per event).
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
        coalesce(cast(quantity as double), 1.0) as quantity,
        cast(epoch(date_trunc('day', event_time - interval 1 microsecond)) / 86400 as bigint) + 1
            as day
    from {source}
)

select * from final
