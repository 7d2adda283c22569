-- The first active day of every account active at some as_of (grain: account_id), for
-- days_since_first_activity and the tenure-scaled rates of value.sql. features/usage.py
-- materialises it as churnlens_usage_first from churnlens_usage_history (events up to the last
-- as_of; day as in usage_events.sql); value.sql uses it only at an as_of on or after that day,
-- so an event after as_of never shows.
with accounts as (
    select distinct account_id
    from churnlens_active
),

final as (
    select
        h.account_id,
        min(h.first_day) as day
    from churnlens_usage_history as h
    where h.kind = 'account' and h.account_id in (select a.account_id from accounts as a)
    group by h.account_id
)

select * from final
