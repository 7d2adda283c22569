-- Distinct users, active days and event types over the usage windows (grain: account_id x as_of,
-- active accounts with at least one event in the batch; usage.sql and value.sql fill the rest with
-- 0). features/usage.py materialises it as churnlens_usage_users, once per batch of observation
-- dates whose days fit in the day masks (at most 8 words of 62 days: a batch spans at most 406
-- days).
--
-- No sort of the events: each user's (event type's, account's) active days become a bit mask, one
-- BIGINT word per 62 days (churnlens_day_bits: the bit of each day the batch reads, one column per
-- word), aggregated with bit_or in one pass over the events; every window of every as_of is a mask
-- of the same shape (churnlens_window_bits). A user is active in a window when the two masks share
-- a bit, and the user's (account's) active days in a window are the bits they share. Days are
-- numbered by their end (usage_events.sql), so "day in (as_of - n, as_of]" is "event_time in (as_of
-- - n days, as_of]".
--
-- Parameters: the events (batch floor, batch last as_of]. The names in braces are the per-word
-- column lists, written out by usage.usage_sql for the batch's number of words (a batch of one
-- date needs 2, a year of weekly dates 8): structure only, never a value.
with events as (
    select
        account_id,
        user_id,
        event_type,
        day
    from churnlens_usage_events_all
    where event_time > ? and event_time <= ?
),

-- one pass, three groupings: per user, per event type and per account
masks as (
    select
        case
            when grouping(e.user_id) = 0 then 'user'
            when grouping(e.event_type) = 0 then 'type'
            else 'account'
        end as kind,
        e.account_id,
        e.user_id,
        e.event_type,
        {mask_aggregates}
    from events as e
    inner join churnlens_day_bits as d on d.day = e.day
    group by grouping sets (
        (e.account_id, e.user_id), (e.account_id, e.event_type), (e.account_id)
    )
),

users as (
    select
        a.account_id,
        a.as_of,
        count(*) filter (where ({active_w7}) <> 0) as active_users_7d,
        count(*) filter (where ({active_w28}) <> 0) as active_users_28d,
        count(*) filter (where ({active_w90}) <> 0) as active_users_90d,
        count(*) filter (where ({active_wp28}) <> 0) as active_users_prev_28d,
        sum({user_days_w28}) as user_days_28d
    from churnlens_active as a
    inner join churnlens_window_bits as w on w.as_of = a.as_of
    inner join masks as m on m.account_id = a.account_id
    where m.kind = 'user' and m.user_id is not null
    group by a.account_id, a.as_of
),

types as (
    select
        a.account_id,
        a.as_of,
        count(*) filter (where ({active_w28}) <> 0) as event_types_28d
    from churnlens_active as a
    inner join churnlens_window_bits as w on w.as_of = a.as_of
    inner join masks as m on m.account_id = a.account_id
    where m.kind = 'type' and m.event_type is not null
    group by a.account_id, a.as_of
),

-- every account with an event in the batch has an account mask: the rows of this table
account_days as (
    select
        a.account_id,
        a.as_of,
        sum({active_days_w28}) as active_days_28d,
        sum({active_days_w90}) as active_days_90d
    from churnlens_active as a
    inner join churnlens_window_bits as w on w.as_of = a.as_of
    inner join masks as m on m.account_id = a.account_id
    where m.kind = 'account'
    group by a.account_id, a.as_of
),

final as (
    select
        d.account_id,
        d.as_of,
        coalesce(u.active_users_7d, 0) as active_users_7d,
        coalesce(u.active_users_28d, 0) as active_users_28d,
        coalesce(u.active_users_90d, 0) as active_users_90d,
        coalesce(u.active_users_prev_28d, 0) as active_users_prev_28d,
        coalesce(u.user_days_28d, 0) as user_days_28d,
        coalesce(t.event_types_28d, 0) as event_types_28d,
        d.active_days_28d,
        d.active_days_90d
    from account_days as d
    left join users as u on u.account_id = d.account_id and u.as_of = d.as_of
    left join types as t on t.account_id = d.account_id and t.as_of = d.as_of
)

select * from final
