-- Events per event type up to a moment (grain: event_type): features/usage.py ranks them to choose
-- the event types that get their own usage columns (the most frequent up to the earliest as_of of a
-- build) and to find the types behind a model's per-type columns. Events as staged (an exact
-- duplicate is rare enough not to matter for a ranking; deduplicating would read the whole history
-- twice). Parameter: the moment (inclusive).
with events as (
    select event_type
    from stg_usage_events_with_duplicates
    where event_time <= ? and event_type is not null
),

final as (
    select
        event_type,
        count(*) as n_events
    from events
    group by event_type
)

select * from final
