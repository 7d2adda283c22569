-- Usage features (grain: account_id x as_of, active accounts only).
-- Reads the activity features/usage.py materialises once per build: events and the last active
-- day per account and span of days ending at a probe day (usage_days.sql), distinct users,
-- user-days and event types per account and as_of (usage_users.sql) and, for accounts quiet
-- through the windows, their last active day before (usage_before.sql). churnlens_active.day is
-- the as_of's day number (usage.day_number).
-- Each account gets one timeline: its spans, plus one row per as_of at which it is active. Every
-- window is a sum over a range of days read at the as_of rows, so one sort serves every date and
-- the work grows with the spans, not with days x dates. Days number the end (midnight) of a day,
-- so "day in (as_of - n, as_of]", the n days ending at the as_of row, is exactly "event_time in
-- (as_of - n days, as_of]"; the windows start and end on probe days, so they hold whole spans.
with active as (
    select
        account_id,
        as_of,
        seats,
        day
    from churnlens_active
),

usage_days as (
    select
        account_id,
        day,
        last_active_day,
        n_events
    from churnlens_usage_days
),

usage_users as (
    select
        account_id,
        as_of,
        active_users_7d,
        active_users_28d,
        active_users_90d,
        active_users_prev_28d,
        user_days_28d,
        event_types_28d
    from churnlens_usage_users
),

before_window as (
    select account_id, day
    from churnlens_usage_before
),

timeline as (
    select
        account_id,
        day,
        cast(null as timestamp) as as_of,
        cast(null as double) as seats,
        last_active_day,
        n_events
    from usage_days
    union all
    select account_id, day, null, null, day, 0
    from before_window
    union all
    select account_id, day, as_of, seats, null, 0
    from active
),

-- event counts in the n days ending at each as_of row: sums over the spans whose day lies in
-- (day - n, day]; the previous 28 days are days (day - 56, day - 28]. The latest active day is a
-- running max over the whole timeline (spans and the last active day before them)
swept as (
    select
        account_id,
        as_of,
        seats,
        day,
        sum(n_events) over (by_day range between 6 preceding and current row) as events_7d,
        sum(n_events) over (by_day range between 27 preceding and current row) as events_28d,
        sum(n_events) over (by_day range between 89 preceding and current row) as events_90d,
        sum(n_events) over (by_day range between 55 preceding and 28 preceding)
            as events_prev_28d,
        max(last_active_day) over (by_day range between unbounded preceding and current row)
            as last_active_day
    from timeline
    window by_day as (partition by account_id order by day)
),

filled as (
    select
        s.account_id,
        s.as_of,
        s.seats,
        cast(coalesce(s.events_7d, 0) as double) as events_7d,
        cast(coalesce(s.events_28d, 0) as double) as events_28d,
        cast(coalesce(s.events_90d, 0) as double) as events_90d,
        cast(coalesce(s.events_prev_28d, 0) as double) as events_prev_28d,
        cast(coalesce(u.active_users_7d, 0) as double) as active_users_7d,
        cast(coalesce(u.active_users_28d, 0) as double) as active_users_28d,
        cast(coalesce(u.active_users_90d, 0) as double) as active_users_90d,
        cast(coalesce(u.active_users_prev_28d, 0) as double) as active_users_prev_28d,
        cast(coalesce(u.user_days_28d, 0) as double) as user_days_28d,
        cast(coalesce(u.event_types_28d, 0) as double) as event_types_28d,
        s.day - s.last_active_day as days_since_last_activity
    from swept as s
    left join usage_users as u on u.account_id = s.account_id and u.as_of = s.as_of
    where s.as_of is not null
),

final as (
    select
        account_id,
        as_of,
        events_7d,
        events_28d,
        events_90d,
        events_prev_28d,
        case when events_prev_28d > 0 then events_28d / events_prev_28d - 1 end
            as events_change_28d,
        active_users_7d,
        active_users_28d,
        active_users_90d,
        active_users_prev_28d,
        case when active_users_prev_28d > 0 then active_users_28d / active_users_prev_28d - 1 end
            as active_users_change_28d,
        case when active_users_28d > 0 then user_days_28d / 28.0 / active_users_28d end
            as stickiness_28d,
        event_types_28d,
        case when active_users_28d > 0 then events_28d / active_users_28d end
            as events_per_active_user_28d,
        case when seats > 0 then active_users_28d / seats end as seat_utilization,
        cast(days_since_last_activity as double) as days_since_last_activity
    from filled
)

select * from final
