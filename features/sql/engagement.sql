-- CSM engagement features (grain: account_id x as_of, active accounts only).
with active as (
    select account_id, as_of
    from churnlens_active
),

touches as (
    select account_id, occurred_at, lower(trim(kind)) as kind
    from stg_engagement
),

seen as (
    select
        a.account_id,
        a.as_of,
        max(t.occurred_at) as last_touch_at,
        count(*) filter (where t.occurred_at > a.as_of - interval 90 day) as csm_touches_90d,
        max(t.occurred_at) filter (where t.kind in ('ebr', 'qbr')) as last_review_at
    from active as a
    inner join touches as t on t.account_id = a.account_id and t.occurred_at <= a.as_of
    group by a.account_id, a.as_of
),

final as (
    select
        a.account_id,
        a.as_of,
        floor((epoch(a.as_of) - epoch(s.last_touch_at)) / 86400) as days_since_last_csm_touch,
        cast(coalesce(s.csm_touches_90d, 0) as double) as csm_touches_90d,
        floor((epoch(a.as_of) - epoch(s.last_review_at)) / 86400) as days_since_last_ebr_qbr
    from active as a
    left join seen as s on s.account_id = a.account_id and s.as_of = a.as_of
)

select * from final
