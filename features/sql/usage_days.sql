-- Usage activity per account and span of days (grain: account_id x day), which every usage
-- feature reads: build.py materialises it once per build as the temp table churnlens_usage_days.
-- Parameters: the events (window floor, last as_of], whose counts and users it holds, and the
-- events (breadth floor, last as_of], whose event types it holds. Only events some window can see
-- are read, and only the first read is deduplicated (stg_usage_events): a duplicate cannot change
-- which types were used (stg_usage_events_with_duplicates).
--
-- Days are numbered by their END: the first midnight at or after event_time, in whole days since
-- 1970-01-01 (an event at 00:00:00 belongs to the day that ends then). With midnight as_of dates,
-- "day in (as_of - n, as_of]" is exactly "event_time in (as_of - n days, as_of]".
--
-- Spans: usage.sql reads sums only at each as_of minus 0, 7, 28, 56 and 90 days (the probe days),
-- so activity is summed per span, the days after one probe day up to the next: every window is a
-- union of whole spans, and there are at most five spans per date, whatever the data.
--
-- Distinct users over sliding windows, for any number of dates, without joining days to dates:
-- a user active on day d is seen by the n-day window ending at as_of iff d <= as_of < d + n.
-- Active days at most n apart chain their [d, d + n) into one coverage island. A day starts an
-- island when the gap to the user's previous active day exceeds n, and ends one when the gap to
-- the next exceeds n; usage.sql counts at each as_of the islands started up to as_of minus those
-- whose last day is n or more days before it. Event types get the same for 28 days. Gaps come
-- from the events in order (the events of one day have gap 0), so no (user, day) grouping.
with probes as (
    select distinct cast(epoch(o.as_of) / 86400 as bigint) - w.days as day
    from churnlens_obs_dates as o
    cross join (values (0), (7), (28), (56), (90)) as w (days)
),

bounds as (
    select
        min(day) as first_day,
        max(day) as last_day
    from probes
),

-- every day an event can fall on, with the end of its span: the first probe day at or after it
-- (a span holds the days after one probe day up to the next)
span_days as (
    select
        g.day,
        min(p.day) as span_end
    from bounds as b
    cross join generate_series(b.first_day + 1, b.last_day) as g (day)
    inner join probes as p on p.day >= g.day
    group by g.day
),

user_events as (
    select
        account_id,
        user_id,
        cast(epoch(date_trunc('day', event_time - interval 1 microsecond)) / 86400 as bigint) + 1
            as day
    from stg_usage_events
    where event_time > ? and event_time <= ?
),

type_events as (
    select
        account_id,
        event_type,
        cast(epoch(date_trunc('day', event_time - interval 1 microsecond)) / 86400 as bigint) + 1
            as day
    from stg_usage_events_with_duplicates
    where event_time > ? and event_time <= ? and event_type is not null
),

user_gaps as (
    select
        account_id,
        user_id,
        day,
        day - lag(day) over by_user as gap_before,
        lead(day) over by_user - day as gap_after
    from user_events
    window by_user as (partition by account_id, user_id order by day)
),

type_gaps as (
    select
        account_id,
        day,
        day - lag(day) over by_type as gap_before,
        lead(day) over by_type - day as gap_after
    from type_events
    window by_type as (partition by account_id, event_type order by day)
),

-- per span: events (with or without a user), user-days (the first event of a user on a day),
-- islands started and ended; count(user_id) skips events without a user, which are events only
user_spans as (
    select
        g.account_id,
        s.span_end as day,
        max(g.day) as last_active_day,
        count(*) as n_events,
        count(g.user_id) filter (where coalesce(g.gap_before, 1) > 0) as user_days,
        count(g.user_id) filter (where coalesce(g.gap_before, 8) > 7) as user_starts_7d,
        count(g.user_id) filter (where coalesce(g.gap_after, 8) > 7) as user_ends_7d,
        count(g.user_id) filter (where coalesce(g.gap_before, 29) > 28) as user_starts_28d,
        count(g.user_id) filter (where coalesce(g.gap_after, 29) > 28) as user_ends_28d,
        count(g.user_id) filter (where coalesce(g.gap_before, 91) > 90) as user_starts_90d,
        count(g.user_id) filter (where coalesce(g.gap_after, 91) > 90) as user_ends_90d
    from user_gaps as g
    inner join span_days as s on s.day = g.day
    group by g.account_id, s.span_end
),

type_spans as (
    select
        g.account_id,
        s.span_end as day,
        count(*) filter (where coalesce(g.gap_before, 29) > 28) as type_starts_28d,
        count(*) filter (where coalesce(g.gap_after, 29) > 28) as type_ends_28d
    from type_gaps as g
    inner join span_days as s on s.day = g.day
    group by g.account_id, s.span_end
),

-- every typed event in the breadth range is also an event, so each type span has a user span
final as (
    select
        u.account_id,
        u.day,
        u.last_active_day,
        u.n_events,
        u.user_days,
        u.user_starts_7d,
        u.user_ends_7d,
        u.user_starts_28d,
        u.user_ends_28d,
        u.user_starts_90d,
        u.user_ends_90d,
        coalesce(t.type_starts_28d, 0) as type_starts_28d,
        coalesce(t.type_ends_28d, 0) as type_ends_28d
    from user_spans as u
    left join type_spans as t on t.account_id = u.account_id and t.day = u.day
)

select * from final
