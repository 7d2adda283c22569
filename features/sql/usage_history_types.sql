-- Events per event type up to the first as_of of a build (grain: event_type), from the 'type'
-- rows of churnlens_usage_history (usage_history.sql; events as staged): features/usage.py ranks them to
-- choose the event types that get their own usage columns.
with final as (
    select
        event_type,
        sum(n_events_to_first_as_of) as n_events
    from churnlens_usage_history
    where kind = 'type' and event_type is not null
    group by event_type
    having sum(n_events_to_first_as_of) > 0
)

select * from final
