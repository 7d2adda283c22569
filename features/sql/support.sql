-- Support features (grain: account_id x as_of, active accounts only).
-- Tickets count by opened_at; resolution time and CSAT by closed_at (both within the window);
-- the backlog is what was opened by as_of and not closed by then.
with active as (
    select account_id, as_of
    from churnlens_active
),

tickets as (
    select
        account_id,
        opened_at,
        closed_at,
        lower(trim(priority)) as priority,
        csat,
        coalesce(escalated, false) as escalated
    from stg_support_tickets
),

seen as (
    select
        a.account_id,
        a.as_of,
        t.opened_at,
        t.closed_at,
        t.priority,
        t.csat,
        t.escalated,
        t.opened_at > a.as_of - interval 30 day as opened_30d,
        t.opened_at > a.as_of - interval 90 day as opened_90d,
        t.closed_at > a.as_of - interval 90 day and t.closed_at <= a.as_of as closed_90d
    from active as a
    inner join tickets as t on t.account_id = a.account_id and t.opened_at <= a.as_of
),

counts as (
    select
        account_id,
        as_of,
        count(*) filter (where opened_30d) as tickets_30d,
        count(*) filter (where opened_90d) as tickets_90d,
        count(*) filter (where opened_90d and priority in ('p1', 'urgent')) as p1_tickets_90d,
        count(*) filter (where closed_at is null or closed_at > as_of) as open_tickets,
        median((epoch(closed_at) - epoch(opened_at)) / 3600.0) filter (where closed_90d)
            as median_hours_to_close_90d,
        count(*) filter (where opened_90d and escalated) as escalated_tickets_90d,
        avg(csat) filter (where closed_90d) as ticket_csat_90d
    from seen
    group by account_id, as_of
),

final as (
    select
        a.account_id,
        a.as_of,
        cast(coalesce(c.tickets_30d, 0) as double) as tickets_30d,
        cast(coalesce(c.tickets_90d, 0) as double) as tickets_90d,
        cast(coalesce(c.p1_tickets_90d, 0) as double) as p1_tickets_90d,
        cast(coalesce(c.open_tickets, 0) as double) as open_tickets,
        cast(c.median_hours_to_close_90d as double) as median_hours_to_close_90d,
        cast(coalesce(c.escalated_tickets_90d, 0) as double) as escalated_tickets_90d,
        cast(c.ticket_csat_90d as double) as ticket_csat_90d
    from active as a
    left join counts as c on c.account_id = a.account_id and c.as_of = a.as_of
)

select * from final
