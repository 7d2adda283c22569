-- Contracts with the account attributes retention is grouped by (one row per contract).
-- Reads the staging views, so mapped column names and types are already the contract's.
-- end_date NULL (an evergreen contract, in force until ended) stays NULL: retention.py reads it
-- as never ending.
with contracts as (
    select account_id, contract_id, start_date, end_date, arr
    from stg_contracts
),

accounts as (
    select account_id, segment, csm_owner, industry
    from stg_accounts
),

final as (
    select
        c.account_id,
        c.contract_id,
        c.start_date,
        c.end_date,
        c.arr,
        a.segment,
        a.csm_owner,
        a.industry
    from contracts as c
    left join accounts as a on a.account_id = c.account_id
)

select * from final
order by account_id, start_date, contract_id
