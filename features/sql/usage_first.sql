-- The first active day of every account active at some as_of (grain: account_id), for
-- days_since_first_activity and the tenure-scaled rates of value.sql. features/usage.py
-- materialises it as churnlens_usage_first. day numbers the end of the day of the first event, as
-- in usage_events.sql; value.sql uses it only at an as_of on or after that day, so an event after
-- as_of never shows. Reads the events as staged: an exact duplicate cannot change an earliest time.
-- Parameter: the last as_of (inclusive).
with accounts as (
    select distinct account_id
    from churnlens_active
),

events as (
    select
        e.account_id,
        e.day
    from churnlens_usage_events_all as e
    where e.event_time <= ? and e.account_id in (select a.account_id from accounts as a)
),

final as (
    select
        account_id,
        min(day) as day
    from events
    group by account_id
)

select * from final
