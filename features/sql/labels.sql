-- Outcome labels per account and observation date (grain: account_id x as_of, active accounts).
-- Label window (s, e]: s = as_of + lead_days, e = s + horizon_days. Only contracts decide churn,
-- expansion and contraction (end_date NULL: an evergreen contract, which never lapses; any ARR
-- >= 0 keeps an account in force). Inactivity looks at usage in the last inactivity_days of the
-- window, (max(s, e - inactivity_days), e]: never at or before as_of. The next renewal is the
-- earliest end of the dated contracts in force at as_of, when it falls in (as_of, e].
-- Parameters, in order of the ? placeholders: lead_days, horizon_days, grace_days,
-- inactivity_days. Expansion/contraction thresholds are applied in features/labels.py.
with active as (
    select account_id, as_of, arr as arr_at_as_of, next_end_at
    from churnlens_active
),

params as (
    select
        cast(? as integer) as lead_days,
        cast(? as integer) as horizon_days,
        cast(? as integer) as grace_days,
        cast(? as integer) as inactivity_days
),

windows as (
    select
        a.account_id,
        a.as_of,
        a.arr_at_as_of,
        a.as_of + p.lead_days * interval 1 day as window_start,
        a.as_of + (p.lead_days + p.horizon_days) * interval 1 day as window_end,
        case
            when a.next_end_at <= a.as_of + (p.lead_days + p.horizon_days) * interval 1 day
                then a.next_end_at
        end as renewal_at,
        p.grace_days,
        p.inactivity_days
    from active as a
    cross join params as p
),

contracts as (
    select
        account_id,
        cast(start_date as timestamp) as starts_at,
        cast(end_date as timestamp) as ends_at,
        arr
    from stg_contracts
),

-- a lapse starts where a contract ends and nothing else is in force; it lasts until the next
-- contract starts (NULL: never, in the data). Evergreen contracts never end.
contract_ends as (
    select distinct account_id, ends_at as lapse_start
    from contracts
    where ends_at is not null
),

lapses as (
    select
        e.account_id,
        e.lapse_start,
        min(c.starts_at) filter (where c.starts_at > e.lapse_start) as next_start,
        count(*) filter (
            where c.starts_at <= e.lapse_start
            and (c.ends_at is null or c.ends_at > e.lapse_start)
        ) as in_force
    from contract_ends as e
    inner join contracts as c on c.account_id = e.account_id
    group by e.account_id, e.lapse_start
),

-- churn: a lapse not covered again within grace_days that overlaps the label window
churn_lapses as (
    select distinct w.account_id, w.as_of
    from windows as w
    inner join lapses as l
        on l.account_id = w.account_id
        and l.in_force = 0
        and l.lapse_start > w.as_of
        and l.lapse_start <= w.window_end
        and (l.next_start is null or l.next_start > w.window_start)
        and (
            l.next_start is null
            or l.next_start > l.lapse_start + w.grace_days * interval 1 day
        )
),

arr_at_end as (
    select
        w.account_id,
        w.as_of,
        sum(c.arr) filter (
            where c.starts_at <= w.window_end
            and (c.ends_at is null or c.ends_at > w.window_end)
        ) as arr_at_window_end,
        min(c.starts_at) filter (
            where c.starts_at > w.window_end
            and c.starts_at <= w.window_end + w.grace_days * interval 1 day
        ) as late_renewal_at
    from windows as w
    inner join contracts as c on c.account_id = w.account_id
    group by w.account_id, w.as_of
),

-- a renewal signed late (within grace) after a lapse at the window end counts at its ARR
late_arr as (
    select
        e.account_id,
        e.as_of,
        sum(c.arr) as arr_at_late_renewal
    from arr_at_end as e
    inner join contracts as c
        on c.account_id = e.account_id
        and c.starts_at <= e.late_renewal_at
        and (c.ends_at is null or c.ends_at > e.late_renewal_at)
    group by e.account_id, e.as_of
),

-- next renewal: ARR in force right at the renewal, or, when nothing is (a lapse), at the first
-- contract start within grace_days after it (a late renewal)
at_renewal as (
    select
        w.account_id,
        w.as_of,
        sum(c.arr) filter (
            where c.starts_at <= w.renewal_at
            and (c.ends_at is null or c.ends_at > w.renewal_at)
        ) as arr_at_renewal,
        min(c.starts_at) filter (
            where c.starts_at > w.renewal_at
            and c.starts_at <= w.renewal_at + w.grace_days * interval 1 day
        ) as late_renewal_at
    from windows as w
    inner join contracts as c on c.account_id = w.account_id
    where w.renewal_at is not null
    group by w.account_id, w.as_of
),

late_renewal_arr as (
    select
        r.account_id,
        r.as_of,
        sum(c.arr) as arr_at_late_renewal
    from at_renewal as r
    inner join contracts as c
        on c.account_id = r.account_id
        and c.starts_at <= r.late_renewal_at
        and (c.ends_at is null or c.ends_at > r.late_renewal_at)
    group by r.account_id, r.as_of
),

usage as (
    select
        w.account_id,
        w.as_of,
        count(*) as events_before_window_end
    from windows as w
    inner join stg_usage_events as u
        on u.account_id = w.account_id
        and u.event_time > greatest(
            w.window_end - w.inactivity_days * interval 1 day, w.window_start
        )
        and u.event_time <= w.window_end
    group by w.account_id, w.as_of
),

final as (
    select
        w.account_id,
        w.as_of,
        w.window_end as label_window_end,
        w.grace_days,
        w.arr_at_as_of,
        k.account_id is not null as churned,
        cast(
            case
                when coalesce(e.arr_at_window_end, 0) > 0 then e.arr_at_window_end
                else coalesce(l.arr_at_late_renewal, 0)
            end as double
        ) as arr_at_horizon,
        w.renewal_at,
        cast(
            case
                when w.renewal_at is null then null
                when coalesce(r.arr_at_renewal, 0) > 0 then r.arr_at_renewal
                else coalesce(rl.arr_at_late_renewal, 0)
            end as double
        ) as arr_at_renewal,
        coalesce(u.events_before_window_end, 0) = 0 as inactive
    from windows as w
    left join churn_lapses as k on k.account_id = w.account_id and k.as_of = w.as_of
    left join arr_at_end as e on e.account_id = w.account_id and e.as_of = w.as_of
    left join late_arr as l on l.account_id = w.account_id and l.as_of = w.as_of
    left join at_renewal as r on r.account_id = w.account_id and r.as_of = w.as_of
    left join late_renewal_arr as rl on rl.account_id = w.account_id and rl.as_of = w.as_of
    left join usage as u on u.account_id = w.account_id and u.as_of = w.as_of
)

select * from final
