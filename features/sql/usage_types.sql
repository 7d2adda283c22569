-- Usage per event type (grain: account_id x as_of, active accounts only): events and summed
-- quantity of each chosen event type over the last 7, 28 and 90 days, from the per-type span
-- columns of churnlens_usage_days (n_type_i, q_type_i; usage_days.sql).
-- Spans end on probe days, and as_of minus 0, 7, 28 and 90 days are probe days, so a window is
-- the spans whose day lies in (as_of_day - n, as_of_day]: one join of each active row to the
-- spans of its 90 days, summed with a filter per window. Days number the end of a day, so that
-- is exactly "event_time in (as_of - n days, as_of]".
-- The names in braces are written out by usage.usage_types_sql for the chosen types (one
-- column per type and window, named events_<n>d__<type>, quantity_<n>d__<type>): structure
-- only, never a value.
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
        {type_spans}
    from churnlens_usage_days
),

windowed as (
    select
        a.account_id,
        a.as_of,
        a.day - u.day as days_before,
        {type_spans_u}
    from active as a
    inner join usage_days as u
        on u.account_id = a.account_id and u.day > a.day - 90 and u.day <= a.day
),

summed as (
    select
        account_id,
        as_of,
        {type_sums}
    from windowed
    group by account_id, as_of
),

final as (
    select
        a.account_id,
        a.as_of,
        {type_columns}
    from active as a
    left join summed as s on s.account_id = a.account_id and s.as_of = a.as_of
)

select * from final
