-- The event types seen up to a moment (grain: event_type): features/usage.py finds among them the
-- types behind a model's per-type columns (event_types_for_features). Events as staged (an exact
-- duplicate cannot add a type; deduplicating would read the whole history twice). Parameter: the
-- moment (inclusive).
with final as (
    select distinct event_type
    from stg_usage_events_with_duplicates
    where event_time <= ? and event_type is not null
)

select * from final
