-- The last active day before the usage windows (grain: account_id), only for the accounts that need
-- it: active at some as_of with no activity in churnlens_usage_days up to that as_of (quiet for the
-- whole longest window, or no usage at all; a span of churnlens_usage_days ends on a probe day, and
-- every as_of is one, so "a span ends by as_of" is "activity by as_of"). features/usage.py
-- materialises it after churnlens_usage_days as churnlens_usage_before, from the last day up to
-- the window floor (inclusive) of churnlens_usage_history (usage_history.sql; day as in
-- usage_events.sql).
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
        h.account_id,
        max(h.last_day_to_floor) as day
    from churnlens_usage_history as h
    where
        h.kind = 'account'
        and h.last_day_to_floor is not null
        and h.account_id in (select q.account_id from quiet as q)
    group by h.account_id
)

select * from final
