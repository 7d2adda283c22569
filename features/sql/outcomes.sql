-- Verified business outcomes (grain: account_id x as_of, active accounts only).
with active as (
    select account_id, as_of
    from churnlens_active
),

outcomes as (
    select account_id, verified_at
    from stg_verified_outcomes
),

seen as (
    select
        a.account_id,
        a.as_of,
        max(o.verified_at) as last_verified_at
    from active as a
    inner join outcomes as o on o.account_id = a.account_id and o.verified_at <= a.as_of
    group by a.account_id, a.as_of
),

final as (
    select
        a.account_id,
        a.as_of,
        case when s.last_verified_at is not null then 1.0 else 0.0 end
            as verified_outcome_on_record,
        floor((epoch(a.as_of) - epoch(s.last_verified_at)) / 86400)
            as days_since_verified_outcome
    from active as a
    left join seen as s on s.account_id = a.account_id and s.as_of = a.as_of
)

select * from final
