-- Value (monetary) and frequency features (grain: account_id x as_of, active accounts only):
-- summed, mean and largest quantity per event over the last 7, 28 and 90 days, days since the
-- first activity, active days in the last 28 and 90 days (purchase frequency) and rates per
-- day of activity tenure. Reads churnlens_usage_days (quantity, quantity_max, n_events per
-- span; usage_days.sql) with the timeline of usage.sql, churnlens_usage_users (active days from
-- the account day masks; usage_users.sql) and churnlens_usage_first (usage_first.sql).
-- Activity tenure at as_of is the number of days from the first active day to as_of, both
-- counted (1 when the first event is in the 24 h before as_of); a rate over an n-day window
-- divides by min(n, activity tenure), so a young account's rate is not diluted by days before
-- its first event. Days are numbered by their end, as in usage.sql.
with active as (
    select
        account_id,
        as_of,
        day
    from churnlens_active
),

usage_days as (
    select
        account_id,
        day,
        n_events,
        quantity,
        quantity_max
    from churnlens_usage_days
),

usage_users as (
    select
        account_id,
        as_of,
        active_days_28d,
        active_days_90d
    from churnlens_usage_users
),

first_activity as (
    select
        account_id,
        day as first_day
    from churnlens_usage_first
),

timeline as (
    select
        account_id,
        day,
        cast(null as timestamp) as as_of,
        n_events,
        quantity,
        quantity_max
    from usage_days
    union all
    select
        account_id,
        day,
        as_of,
        0,
        0.0,
        cast(null as double)
    from active
),

swept as (
    select
        account_id,
        as_of,
        day,
        sum(n_events) over (by_day range between 6 preceding and current row) as events_7d,
        sum(n_events) over (by_day range between 27 preceding and current row) as events_28d,
        sum(n_events) over (by_day range between 89 preceding and current row) as events_90d,
        sum(quantity) over (by_day range between 6 preceding and current row) as quantity_7d,
        sum(quantity) over (by_day range between 27 preceding and current row) as quantity_28d,
        sum(quantity) over (by_day range between 89 preceding and current row) as quantity_90d,
        max(quantity_max) over (by_day range between 6 preceding and current row)
            as quantity_max_7d,
        max(quantity_max) over (by_day range between 27 preceding and current row)
            as quantity_max_28d,
        max(quantity_max) over (by_day range between 89 preceding and current row)
            as quantity_max_90d
    from timeline
    window by_day as (partition by account_id order by day)
),

filled as (
    select
        s.account_id,
        s.as_of,
        cast(coalesce(s.events_7d, 0) as double) as events_7d,
        cast(coalesce(s.events_28d, 0) as double) as events_28d,
        cast(coalesce(s.events_90d, 0) as double) as events_90d,
        cast(coalesce(s.quantity_7d, 0) as double) as quantity_7d,
        cast(coalesce(s.quantity_28d, 0) as double) as quantity_28d,
        cast(coalesce(s.quantity_90d, 0) as double) as quantity_90d,
        cast(s.quantity_max_7d as double) as quantity_max_7d,
        cast(s.quantity_max_28d as double) as quantity_max_28d,
        cast(s.quantity_max_90d as double) as quantity_max_90d,
        cast(coalesce(u.active_days_28d, 0) as double) as active_days_28d,
        cast(coalesce(u.active_days_90d, 0) as double) as active_days_90d,
        case when f.first_day <= s.day then s.day - f.first_day end as days_since_first_activity
    from swept as s
    left join usage_users as u on u.account_id = s.account_id and u.as_of = s.as_of
    left join first_activity as f on f.account_id = s.account_id
    where s.as_of is not null
),

final as (
    select
        account_id,
        as_of,
        quantity_7d,
        quantity_28d,
        quantity_90d,
        case when events_7d > 0 then quantity_7d / events_7d end as quantity_mean_7d,
        case when events_28d > 0 then quantity_28d / events_28d end as quantity_mean_28d,
        case when events_90d > 0 then quantity_90d / events_90d end as quantity_mean_90d,
        quantity_max_7d,
        quantity_max_28d,
        quantity_max_90d,
        cast(days_since_first_activity as double) as days_since_first_activity,
        active_days_28d,
        active_days_90d,
        case
            when days_since_first_activity is not null
                then events_28d / least(28, days_since_first_activity + 1)
        end as events_per_day_28d,
        case
            when days_since_first_activity is not null
                then events_90d / least(90, days_since_first_activity + 1)
        end as events_per_day_90d,
        case
            when days_since_first_activity is not null
                then quantity_90d / least(90, days_since_first_activity + 1)
        end as quantity_per_day_90d
    from filled
)

select * from final
