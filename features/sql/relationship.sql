-- Champion and executive-sponsor departures (grain: account_id x as_of, active accounts only).
with active as (
    select account_id, as_of
    from churnlens_active
),

departures as (
    select account_id, changed_at, role
    from stg_contact_changes
    where change = 'left'
),

seen as (
    select
        a.account_id,
        a.as_of,
        max(d.changed_at) filter (where d.role = 'champion') as champion_left_at,
        max(d.changed_at) filter (where d.role = 'exec_sponsor') as sponsor_left_at
    from active as a
    inner join departures as d on d.account_id = a.account_id and d.changed_at <= a.as_of
    group by a.account_id, a.as_of
),

final as (
    select
        a.account_id,
        a.as_of,
        case when s.champion_left_at > a.as_of - interval 90 day then 1.0 else 0.0 end
            as champion_left_90d,
        case when s.champion_left_at > a.as_of - interval 180 day then 1.0 else 0.0 end
            as champion_left_180d,
        case when s.sponsor_left_at > a.as_of - interval 90 day then 1.0 else 0.0 end
            as exec_sponsor_left_90d,
        case when s.sponsor_left_at > a.as_of - interval 180 day then 1.0 else 0.0 end
            as exec_sponsor_left_180d,
        floor((epoch(a.as_of) - epoch(s.champion_left_at)) / 86400) as days_since_champion_left
    from active as a
    left join seen as s on s.account_id = a.account_id and s.as_of = a.as_of
)

select * from final
