-- Exported health score at as_of and 30 days earlier (grain: account_id x as_of, active only).
-- "At t" is the latest export with scored_at <= t: each export holds from its scored_at until
-- the next one ((account_id, scored_at) is unique), so one interval join finds it.
with active as (
    select account_id, as_of
    from churnlens_active
),

scores as (
    select
        account_id,
        scored_at,
        coalesce(
            lead(scored_at) over (partition by account_id order by scored_at),
            timestamp '9999-12-31 00:00:00'
        ) as next_scored_at,
        score,
        color
    from stg_health_scores
),

at_as_of as (
    select a.account_id, a.as_of, s.score, s.color
    from active as a
    inner join scores as s
        on s.account_id = a.account_id
        and s.scored_at <= a.as_of
        and s.next_scored_at > a.as_of
),

at_30d_ago as (
    select a.account_id, a.as_of, s.score, s.color
    from active as a
    inner join scores as s
        on s.account_id = a.account_id
        and s.scored_at <= a.as_of - interval 30 day
        and s.next_scored_at > a.as_of - interval 30 day
),

final as (
    select
        a.account_id,
        a.as_of,
        cast(n.score as double) as health_score,
        n.color as health_color,
        cast(n.score - b.score as double) as health_score_change_30d,
        b.color as health_color_prev_30d
    from active as a
    left join at_as_of as n on n.account_id = a.account_id and n.as_of = a.as_of
    left join at_30d_ago as b on b.account_id = a.account_id and b.as_of = a.as_of
)

select * from final
