-- Accounts active at each observation date (grain: account_id x as_of) with the contract state
-- in force then. A contract is in force at t when start_date <= t < end_date; end_date NULL is
-- an evergreen contract, in force from start_date on. ARR at t = sum(arr) of the contracts in
-- force. Who is active is features.active.rule: a contract in force (any ARR >= 0, so a
-- usage-priced contract at ARR 0 counts), a usage event in the activity_days up to as_of
-- (churnlens_recent_activity, empty under the contract rule), or either.
-- Reads the observation dates from the temp table churnlens_obs_dates (one pass for all dates)
-- and carries their day number (build.load_observation_dates) for the usage SQL.
-- Parameter: whether a contract in force makes an account active (the contract and both rules).
with obs as (
    select
        cast(as_of as timestamp) as as_of,
        day
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
        on c.starts_at <= o.as_of and (c.ends_at is null or c.ends_at > o.as_of)
),

-- min/max skip evergreen contracts: no renewal date, no term (NULL when all are evergreen)
contract_state as (
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
),

recent_activity as (
    select account_id, as_of
    from churnlens_recent_activity
),

candidates as (
    select account_id, as_of
    from contract_state
    where cast(? as boolean)
    union
    select account_id, as_of
    from recent_activity
),

final as (
    select
        c.account_id,
        c.as_of,
        o.day,
        coalesce(s.arr, 0.0) as arr,
        s.seats,
        coalesce(s.products_active, 0.0) as products_active,
        s.next_end_at,
        s.contract_term_days
    from candidates as c
    inner join obs as o on o.as_of = c.as_of
    left join contract_state as s on s.account_id = c.account_id and s.as_of = c.as_of
)

select * from final
