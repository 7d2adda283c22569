-- Usage features (grain: account_id x as_of, active accounts only).
-- Events are bucketed once by the END of their day: day_end is the first midnight at or after
-- event_time (an event at 00:00:00 belongs to the day that ends then). With midnight as_of
-- dates, "day_end in (as_of - n days, as_of]" is exactly "event_time in (as_of - n days,
-- as_of]", so one scan of the events serves every observation date: the buckets are joined to
-- (as_of, day_end, age) rows by equality, age = whole days between day_end and as_of.
with obs as (
    select cast(as_of as timestamp) as as_of
    from churnlens_obs_dates
),

active as (
    select account_id, as_of, seats
    from churnlens_active
),

bounds as (
    select
        min(as_of) - interval 90 day as window_floor,
        min(as_of) - interval 28 day as breadth_floor,
        max(as_of) as ceiling
    from obs
),

-- each CTE below reads the staging view itself (three light scans) rather than sharing one
-- events CTE, which DuckDB would materialise in full
user_days as (
    select
        e.account_id,
        e.user_id,
        date_trunc('day', e.event_time - interval 1 microsecond) + interval 1 day as day_end,
        count(*) as n_events
    from stg_usage_events as e
    cross join bounds as b
    where e.event_time > b.window_floor and e.event_time <= b.ceiling
    group by 1, 2, 3
),

type_days as (
    select distinct
        e.account_id,
        e.event_type,
        date_trunc('day', e.event_time - interval 1 microsecond) + interval 1 day as day_end
    from stg_usage_events as e
    cross join bounds as b
    where e.event_time > b.breadth_floor and e.event_time <= b.ceiling
),

-- the last active day before the windows, for accounts quiet for 90 days or more
earlier_days as (
    select
        e.account_id,
        date_trunc('day', max(e.event_time) - interval 1 microsecond) + interval 1 day as day_end
    from stg_usage_events as e
    cross join bounds as b
    where e.event_time <= b.window_floor
    group by e.account_id
),

obs_days as (
    select
        o.as_of,
        g.age,
        o.as_of - g.age * interval 1 day as day_end
    from obs as o
    cross join generate_series(0, 89) as g (age)
),

windowed as (
    select
        u.account_id,
        d.as_of,
        d.age,
        u.user_id,
        u.n_events
    from user_days as u
    inner join obs_days as d on d.day_end = u.day_end
),

counts as (
    select
        account_id,
        as_of,
        sum(n_events) filter (where age < 7) as events_7d,
        sum(n_events) filter (where age < 28) as events_28d,
        sum(n_events) as events_90d,
        sum(n_events) filter (where age >= 28 and age < 56) as events_prev_28d,
        count(distinct user_id) filter (where age < 7) as active_users_7d,
        count(distinct user_id) filter (where age < 28) as active_users_28d,
        count(distinct user_id) as active_users_90d,
        count(distinct user_id) filter (where age >= 28 and age < 56) as active_users_prev_28d,
        count(user_id) filter (where age < 28) as user_days_28d
    from windowed
    group by account_id, as_of
),

breadth as (
    select
        t.account_id,
        d.as_of,
        count(distinct t.event_type) as event_types_28d
    from type_days as t
    inner join obs_days as d on d.day_end = t.day_end and d.age < 28
    group by t.account_id, d.as_of
),

-- last active day at or before as_of: each active day holds until the next one
active_days as (
    select
        account_id,
        day_end,
        lead(day_end) over (partition by account_id order by day_end) as next_day_end
    from (
        select account_id, day_end from user_days
        union
        select account_id, day_end from earlier_days
    ) as days
),

last_activity as (
    select
        d.account_id,
        o.as_of,
        d.day_end as last_day_end
    from active_days as d
    inner join obs as o
        on d.day_end <= o.as_of
        and coalesce(d.next_day_end, timestamp '9999-12-31 00:00:00') > o.as_of
),

filled as (
    select
        a.account_id,
        a.as_of,
        a.seats,
        cast(coalesce(c.events_7d, 0) as double) as events_7d,
        cast(coalesce(c.events_28d, 0) as double) as events_28d,
        cast(coalesce(c.events_90d, 0) as double) as events_90d,
        cast(coalesce(c.events_prev_28d, 0) as double) as events_prev_28d,
        cast(coalesce(c.active_users_7d, 0) as double) as active_users_7d,
        cast(coalesce(c.active_users_28d, 0) as double) as active_users_28d,
        cast(coalesce(c.active_users_90d, 0) as double) as active_users_90d,
        cast(coalesce(c.active_users_prev_28d, 0) as double) as active_users_prev_28d,
        cast(coalesce(c.user_days_28d, 0) as double) as user_days_28d,
        cast(coalesce(b.event_types_28d, 0) as double) as event_types_28d,
        l.last_day_end
    from active as a
    left join counts as c on c.account_id = a.account_id and c.as_of = a.as_of
    left join breadth as b on b.account_id = a.account_id and b.as_of = a.as_of
    left join last_activity as l on l.account_id = a.account_id and l.as_of = a.as_of
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
        floor((epoch(as_of) - epoch(last_day_end)) / 86400) as days_since_last_activity
    from filled
)

select * from final
