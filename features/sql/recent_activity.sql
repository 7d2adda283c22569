-- Accounts with a usage event in the activity_days up to each observation date (grain: account_id x
-- as_of): who is active under the activity rule (features.active.rule activity or both). build.py
-- materialises it as churnlens_recent_activity before active_accounts.sql. Days are numbered by
-- their end (usage_events.sql; an as_of's day in churnlens_obs_dates), so "day in (as_of - n,
-- as_of]" is exactly "event_time in (as_of - n days, as_of]". Reads the events as staged: a
-- duplicate cannot change the days an account was active. Parameters: activity_days, then the
-- events read (first as_of - activity_days, last as_of].
with obs as (
    select
        cast(as_of as timestamp) as as_of,
        day
    from churnlens_obs_dates
),

params as (
    select cast(? as integer) as activity_days
),

active_days as (
    select distinct
        account_id,
        day
    from churnlens_usage_events_all
    where event_time > ? and event_time <= ?
),

final as (
    select distinct
        d.account_id,
        o.as_of
    from obs as o
    cross join params as p
    inner join active_days as d
        on d.day > o.day - p.activity_days and d.day <= o.day
)

select * from final
