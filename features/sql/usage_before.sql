-- The last active day before the usage windows (grain: account_id), only for the accounts that need
-- it: active at some as_of with no activity in churnlens_usage_days up to that as_of (quiet for the
-- whole longest window, or no usage at all; a span of churnlens_usage_days ends on a probe day, and
-- every as_of is one, so "a span ends by as_of" is "activity by as_of"). features/usage.py
-- materialises it after churnlens_usage_days as churnlens_usage_before. Parameter: the window floor
-- (inclusive here). day is the day of the last event (usage_events.sql). Reads the events as staged
-- (churnlens_usage_events_all): an exact duplicate cannot change a latest day, and the deduplicated
-- view would run its DISTINCT over the whole history before the window.
with first_spans as (
    select
        account_id,
        min(day) as first_day
    from churnlens_usage_days
    group by account_id
),

quiet as (
    select distinct a.account_id
    from churnlens_active as a
    left join first_spans as f on f.account_id = a.account_id
    where f.first_day is null or f.first_day > a.day
),

final as (
    select
        e.account_id,
        max(e.day) as day
    from churnlens_usage_events_all as e
    where
        e.event_time <= ?
        and e.account_id in (select q.account_id from quiet as q)
    group by e.account_id
)

select * from final
