-- Usage events over the whole history up to the last as_of (grain: account_id x event_type), in
-- one read of the events, for what looks further back than the 90-day windows: the ranking of
-- event types up to the first as_of (features.usage.choose_event_types), the first active day
-- of each account (usage_first.sql) and the last active day up to the window floor of accounts
-- quiet through the windows (usage_before.sql). features/usage.py materialises it as
-- churnlens_usage_history. Reads the events as staged (churnlens_usage_events_all): an exact
-- duplicate cannot change a first or last day and is too rare to change a ranking, and the
-- deduplicated view would run its DISTINCT over the whole history.
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
        e.account_id,
        e.event_type,
        count(*) filter (where e.event_time <= b.first_as_of) as n_events_to_first_as_of,
        min(e.day) as first_day,
        max(e.day) filter (where e.event_time <= b.floor) as last_day_to_floor
    from events as e
    cross join bounds as b
    group by e.account_id, e.event_type
)

select * from final
