-- Commercial features and account attributes (grain: account_id x as_of, active accounts only).
-- Contracts are point-in-time by their dates: a contract starting after as_of changes nothing.
-- end_date NULL is an evergreen contract (in force until ended): it never renews, so it gives no
-- days_to_next_renewal or contract_term_days (churnlens_active leaves them NULL). An account
-- active by usage alone (features.active.rule activity) has ARR 0 and no contract state.
with active as (
    select account_id, as_of, arr, seats, products_active, next_end_at, contract_term_days
    from churnlens_active
),

accounts as (
    select account_id, name, segment, industry, employees, csm_owner
    from stg_accounts
),

contracts as (
    select
        account_id,
        cast(start_date as timestamp) as starts_at,
        cast(end_date as timestamp) as ends_at,
        arr
    from stg_contracts
),

history as (
    select
        a.account_id,
        a.as_of,
        sum(c.arr) filter (
            where c.starts_at <= a.as_of - interval 365 day
            and (c.ends_at is null or c.ends_at > a.as_of - interval 365 day)
        ) as arr_prev_365d,
        min(c.starts_at) filter (where c.starts_at <= a.as_of) as first_start_at
    from active as a
    inner join contracts as c on c.account_id = a.account_id
    group by a.account_id, a.as_of
),

-- ARR changes only where a contract starts or ends: a contraction is such a boundary where
-- ARR falls from the day before but stays above zero
boundaries as (
    select account_id, starts_at as changed_at from contracts
    union
    select account_id, ends_at as changed_at from contracts where ends_at is not null
),

arr_at_boundaries as (
    select
        b.account_id,
        b.changed_at,
        coalesce(sum(c.arr) filter (
            where c.starts_at <= b.changed_at
            and (c.ends_at is null or c.ends_at > b.changed_at)
        ), 0) as arr_after,
        coalesce(sum(c.arr) filter (
            where c.starts_at <= b.changed_at - interval 1 day
            and (c.ends_at is null or c.ends_at > b.changed_at - interval 1 day)
        ), 0) as arr_before
    from boundaries as b
    inner join contracts as c on c.account_id = b.account_id
    group by b.account_id, b.changed_at
),

contractions as (
    select account_id, changed_at
    from arr_at_boundaries
    where arr_after < arr_before and arr_after > 0
),

past_contractions as (
    select
        a.account_id,
        a.as_of,
        count(k.changed_at) as past_contractions
    from active as a
    inner join contractions as k
        on k.account_id = a.account_id and k.changed_at <= a.as_of
    group by a.account_id, a.as_of
),

final as (
    select
        a.account_id,
        a.as_of,
        acc.name,
        a.arr,
        acc.csm_owner,
        acc.segment,
        acc.industry,
        cast(acc.employees as double) as employees,
        cast(coalesce(h.arr_prev_365d, 0) as double) as arr_prev_365d,
        case
            when h.arr_prev_365d > 0 then a.arr / cast(h.arr_prev_365d as double) - 1
        end as arr_change_365d,
        floor((epoch(a.as_of) - epoch(h.first_start_at)) / 86400) as tenure_days,
        floor((epoch(a.next_end_at) - epoch(a.as_of)) / 86400) as days_to_next_renewal,
        a.contract_term_days,
        a.seats,
        case when a.seats > 0 then a.arr / a.seats end as arr_per_seat,
        case when acc.employees > 0 then a.arr / cast(acc.employees as double) end
            as arr_per_employee,
        a.products_active,
        cast(coalesce(p.past_contractions, 0) as double) as past_contractions
    from active as a
    left join accounts as acc on acc.account_id = a.account_id
    left join history as h on h.account_id = a.account_id and h.as_of = a.as_of
    left join past_contractions as p on p.account_id = a.account_id and p.as_of = a.as_of
)

select * from final
