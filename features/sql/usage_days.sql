-- Usage events per account and span of days (grain: account_id x day), which the event counts,
-- quantities, per-type counts and days since last activity read: features/usage.py materialises it
-- once per build as the temp table churnlens_usage_days. Distinct users, active days and event
-- types come from usage_users.sql. Parameters: the events (window floor, last as_of]; only events
-- some window can see are read. The name in braces after quantity_max is written out by
-- usage.usage_days_sql: one count (n_type_i) and one summed quantity (q_type_i) per chosen event
-- type, numbered by churnlens_event_types (structure only: the type names are rows of that table,
-- never SQL).
--
-- Days are numbered by their end (usage_events.sql; an as_of's day in churnlens_obs_dates), so
-- with midnight as_of dates "day in (as_of - n, as_of]" is exactly "event_time in
-- (as_of - n days, as_of]".
--
-- Spans: usage.sql reads sums only at each as_of minus 0, 7, 28, 56 and 90 days (the probe days),
-- so activity is summed per span, the days after one probe day up to the next: every window is a
-- union of whole spans, and there are at most five spans per date, whatever the data.
with probes as (
    select distinct o.day - w.days as day
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

events as (
    select
        account_id,
        event_type,
        quantity,
        day
    from churnlens_usage_events
    where event_time > ? and event_time <= ?
),

-- per span and event type first (one small key more than per span), then one row per span with
-- the chosen types as columns: the type filters run over these rows, not over every event
by_type as (
    select
        e.account_id,
        s.span_end as day,
        e.event_type,
        max(e.day) as last_active_day,
        count(*) as n_events,
        sum(e.quantity) as quantity,
        max(e.quantity) as quantity_max
    from events as e
    inner join span_days as s on s.day = e.day
    group by e.account_id, s.span_end, e.event_type
),

event_types as (
    select event_type, type_index
    from churnlens_event_types
),

final as (
    select
        b.account_id,
        b.day,
        max(b.last_active_day) as last_active_day,
        cast(sum(b.n_events) as bigint) as n_events,
        sum(b.quantity) as quantity,
        max(b.quantity_max) as quantity_max{type_aggregates}
    from by_type as b
    left join event_types as t on t.event_type = b.event_type
    group by b.account_id, b.day
)

select * from final
