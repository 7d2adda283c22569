-- Accounts active at each observation date (grain: account_id x as_of) with the contract state
-- in force then. ARR at t = sum(arr) of contracts with start_date <= t < end_date; active = ARR > 0.
-- Reads the observation dates from the temp table churnlens_obs_dates (one pass for all dates).
with obs as (
    select cast(as_of as timestamp) as as_of
    from churnlens_obs_dates
),

contracts as (
    select
        account_id,
        product,
        cast(start_date as timestamp) as starts_at,
        cast(end_date as timestamp) as ends_at,
        arr,
        seats
    from stg_contracts
),

in_force as (
    select
        c.account_id,
        o.as_of,
        c.product,
        c.starts_at,
        c.ends_at,
        c.arr,
        c.seats
    from obs as o
    inner join contracts as c
        on c.starts_at <= o.as_of and c.ends_at > o.as_of
),

final as (
    select
        account_id,
        as_of,
        cast(sum(arr) as double) as arr,
        cast(sum(seats) as double) as seats,
        cast(count(distinct product) as double) as products_active,
        min(ends_at) as next_end_at,
        cast(max((epoch(ends_at) - epoch(starts_at)) / 86400) as double) as contract_term_days
    from in_force
    group by account_id, as_of
    having sum(arr) > 0
)

select * from final
