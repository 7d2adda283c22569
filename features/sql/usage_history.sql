-- Usage events over the whole history up to the last as_of, in one read of the events, for what
-- looks further back than the 90-day windows (grain: kind x key): per event type ('type' rows,
-- event_type) the events up to the first as_of, which rank the event types
-- (features.usage.choose_event_types), and per account ('account' rows, account_id) the first
-- active day (usage_first.sql) and the last active day up to the window floor (for the accounts
-- quiet through the windows, usage_before.sql). Two small groupings in one pass, not one per
-- account and type. features/usage.py materialises it as churnlens_usage_history. Reads the
-- events as staged (churnlens_usage_events_all): an exact duplicate cannot change a first or last
-- day and is too rare to change a ranking, and the deduplicated view would run its DISTINCT over
-- the whole history.
-- Parameters: the last as_of, the first as_of (event counts up to it), the window floor (last
-- day up to it), all inclusive.
with events as (
    select
        account_id,
        event_type,
        event_time,
        day
    from churnlens_usage_events_all
    where event_time <= ?
),

bounds as (
    select
        cast(? as timestamp) as first_as_of,
        cast(? as timestamp) as floor
),

final as (
    select
        case when grouping(e.account_id) = 0 then 'account' else 'type' end as kind,
        e.account_id,
        e.event_type,
        count(*) filter (where e.event_time <= b.first_as_of) as n_events_to_first_as_of,
        min(e.day) as first_day,
        max(e.day) filter (where e.event_time <= b.floor) as last_day_to_floor
    from events as e
    cross join bounds as b
    group by grouping sets ((e.account_id), (e.event_type))
)

select * from final
