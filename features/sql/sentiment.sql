-- NPS features from surveys (grain: account_id x as_of, active accounts only).
-- Each answer holds from responded_at until the account's next answer; answers at the same
-- instant are ordered by score so the result is deterministic.
with active as (
    select account_id, as_of
    from churnlens_active
),

nps as (
    select
        account_id,
        responded_at,
        score,
        lag(score) over (partition by account_id order by responded_at, score) as previous_score,
        coalesce(
            lead(responded_at) over (partition by account_id order by responded_at, score),
            timestamp '9999-12-31 00:00:00'
        ) as next_responded_at
    from stg_surveys
    where kind = 'nps'
),

latest as (
    select
        a.account_id,
        a.as_of,
        n.responded_at,
        n.score,
        n.previous_score
    from active as a
    inner join nps as n
        on n.account_id = a.account_id
        and n.responded_at <= a.as_of
        and n.next_responded_at > a.as_of
),

final as (
    select
        a.account_id,
        a.as_of,
        cast(l.score as double) as nps_latest,
        cast(l.score - l.previous_score as double) as nps_change,
        floor((epoch(a.as_of) - epoch(l.responded_at)) / 86400) as days_since_last_nps
    from active as a
    left join latest as l on l.account_id = a.account_id and l.as_of = a.as_of
)

select * from final
