-- Usage per event type (grain: account_id x as_of, active accounts only): events and summed
-- quantity of each chosen event type over the last 7, 28 and 90 days, from the per-type span
-- columns of churnlens_usage_days (n_type_i, q_type_i; usage_days.sql).
-- The same timeline as usage.sql: each account's spans plus one row per as_of at which it is
-- active, and every window a range sum over the days ending at the as_of row, so "day in
-- (as_of - n, as_of]" is exactly "event_time in (as_of - n days, as_of]".
-- The names in braces are written out by build.usage_types_sql for the chosen types (one
-- column per type and window, named events_<n>d__<type>, quantity_<n>d__<type>): structure
-- only, never a value.
with active as (
    select
        account_id,
        as_of,
        cast(epoch(as_of) / 86400 as bigint) as day
    from churnlens_active
),

usage_days as (
    select
        account_id,
        day,
        {type_spans}
    from churnlens_usage_days
),

timeline as (
    select
        account_id,
        day,
        cast(null as timestamp) as as_of,
        {type_spans}
    from usage_days
    union all
    select
        account_id,
        day,
        as_of,
        {type_zeros}
    from active
),

swept as (
    select
        account_id,
        as_of,
        {type_sums}
    from timeline
    window by_day as (partition by account_id order by day)
),

final as (
    select
        account_id,
        as_of,
        {type_columns}
    from swept
    where as_of is not null
)

select * from final
