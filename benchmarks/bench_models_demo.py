"""Benchmark: the model stage on the demo warehouse (pipelines.demo_data), churn + expansion.

    .venv/bin/python benchmarks/bench_models_demo.py [--accounts 1500] [--threads 2]
        [--report-dir /tmp/churnlens-demo-report]

Until ``features/build.py`` and ``features/labels.py`` exist, this script derives a compact
point-in-time feature set (~25 columns: usage, support, engagement, surveys, contacts,
commercial, exported health) and contract-based labels with DuckDB from the demo tables. It
measures the model stage only and prints the backtest table of every model (LightGBM, health
score, logistic regression).
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from models.config import ModelConfig, TrackingConfig, TuningConfig
from models.dataset import label_gap_days, training_frame
from models.evaluation import metrics_table
from models.registry import log_and_register
from models.train import train_model
from pipelines.demo_data import generate_demo

HORIZON, GRACE, LEAD = 90, 30, 0

_SQL = """
with grid as (
    select unnest(?::timestamp[]) as as_of
),
arr as (
    select g.as_of, c.account_id, sum(c.arr) as arr, sum(c.seats) as seats,
           min(date_diff('day', g.as_of::date, c.end_date::date)) as days_to_renewal
    from grid g join contracts c
      on c.start_date <= g.as_of and g.as_of < c.end_date
    group by all
),
usage_weekly as (
    select account_id, date_trunc('week', event_time) as week,
           count(*) as events, count(distinct user_id) as users,
           count(distinct event_type) as kinds
    from usage_events group by all
),
usage as (
    select a.as_of, a.account_id,
        sum(u.events) filter (where u.week > a.as_of - interval 28 day) as events_28d,
        max(u.users) filter (where u.week > a.as_of - interval 28 day) as weekly_users_max_28d,
        avg(u.users) filter (where u.week > a.as_of - interval 28 day) as weekly_users_avg_28d,
        avg(u.users) filter (where u.week <= a.as_of - interval 28 day) as weekly_users_prev_56d,
        max(u.kinds) filter (where u.week > a.as_of - interval 28 day) as event_kinds_28d,
        date_diff('day', max(u.week), max(a.as_of)) as days_since_last_use_week
    from arr a join usage_weekly u
      on u.account_id = a.account_id and u.week < a.as_of and u.week > a.as_of - interval 84 day
    group by all
),
tickets as (
    select a.as_of, a.account_id, count(*) as tickets_90d,
        count(*) filter (where t.priority = 'p1') as p1_tickets_90d,
        count(*) filter (where t.escalated) as escalated_tickets_90d,
        avg(t.csat) as csat_avg_90d
    from arr a join support_tickets t
      on t.account_id = a.account_id and t.opened_at <= a.as_of
     and t.opened_at > a.as_of - interval 90 day
    group by all
),
touches as (
    select a.as_of, a.account_id, count(*) as csm_touches_90d,
        count(*) filter (where e.kind in ('qbr', 'ebr')) as business_reviews_90d
    from arr a join engagement e
      on e.account_id = a.account_id and e.occurred_at <= a.as_of
     and e.occurred_at > a.as_of - interval 90 day
    group by all
),
nps as (
    select a.as_of, a.account_id, avg(s.score) as nps_avg_365d, count(*) as surveys_365d
    from arr a join surveys s
      on s.account_id = a.account_id and s.kind = 'nps' and s.responded_at <= a.as_of
     and s.responded_at > a.as_of - interval 365 day
    group by all
),
contacts as (
    select a.as_of, a.account_id,
        count(*) filter (where c.role = 'champion' and c.change = 'left') as champion_left_180d,
        count(*) filter (where c.role = 'exec_sponsor' and c.change = 'left') as sponsor_left_180d
    from arr a join contact_changes c
      on c.account_id = a.account_id and c.changed_at <= a.as_of
     and c.changed_at > a.as_of - interval 180 day
    group by all
),
health as (
    select a.as_of, a.account_id, arg_max(h.score, h.scored_at) as health_score,
        arg_max(h.color, h.scored_at) as health_color
    from arr a join health_scores h
      on h.account_id = a.account_id and h.scored_at <= a.as_of
     and h.scored_at > a.as_of - interval 30 day
    group by all
),
final as (
    select a.account_id, a.as_of, ac.segment, ac.industry, ac.employees, ac.csm_owner,
        date_diff('day', ac.created_at::date, a.as_of::date) as tenure_days,
        a.arr, a.seats, a.days_to_renewal,
        u.events_28d, u.weekly_users_max_28d, u.weekly_users_avg_28d,
        u.weekly_users_avg_28d / nullif(u.weekly_users_prev_56d, 0) as users_ratio_28d_vs_prev,
        u.weekly_users_max_28d / nullif(a.seats, 0) as seat_utilization,
        u.event_kinds_28d, u.days_since_last_use_week,
        coalesce(t.tickets_90d, 0) as tickets_90d, coalesce(t.p1_tickets_90d, 0) as p1_tickets_90d,
        coalesce(t.escalated_tickets_90d, 0) as escalated_tickets_90d, t.csat_avg_90d,
        coalesce(e.csm_touches_90d, 0) as csm_touches_90d,
        coalesce(e.business_reviews_90d, 0) as business_reviews_90d,
        n.nps_avg_365d, coalesce(n.surveys_365d, 0) as surveys_365d,
        coalesce(c.champion_left_180d, 0) as champion_left_180d,
        coalesce(c.sponsor_left_180d, 0) as sponsor_left_180d,
        h.health_score, h.health_color
    from arr a
    join accounts ac using (account_id)
    left join usage u using (as_of, account_id)
    left join tickets t using (as_of, account_id)
    left join touches e using (as_of, account_id)
    left join nps n using (as_of, account_id)
    left join contacts c using (as_of, account_id)
    left join health h using (as_of, account_id)
)
select * from final
"""

_LABELS = """
with grid as (select unnest(?::timestamp[]) as as_of),
arr_at as (
    select g.as_of, c.account_id,
        sum(c.arr) filter (where c.start_date <= g.as_of and g.as_of < c.end_date) as arr_at_as_of,
        max(c.end_date) filter (where c.start_date <= g.as_of and g.as_of < c.end_date)
            as last_end,
        sum(c.arr) filter (where c.start_date <= g.as_of + to_days(?)
                           and g.as_of + to_days(?) < c.end_date) as arr_at_horizon,
        sum(c.arr) filter (where c.start_date <= g.as_of + to_days(?)
                           and g.as_of + to_days(?) < c.end_date) as arr_after_grace
    from grid g join contracts c on c.account_id is not null
    group by all
),
final as (
    select account_id, as_of, arr_at_as_of, coalesce(arr_at_horizon, 0) as arr_at_horizon,
        case when as_of + to_days(?) > ? then null
             when coalesce(arr_after_grace, 0) = 0
                  and last_end <= as_of + to_days(?) then 1 else 0 end as churned,
        case when as_of + to_days(?) > ? then null
             when coalesce(arr_at_horizon, 0) >= 1.1 * arr_at_as_of then 1 else 0 end as expanded,
        0 as contracted
    from arr_at where arr_at_as_of > 0
)
select * from final
"""


def demo_dataset(n_accounts: int, end: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    demo = generate_demo(n_accounts=n_accounts, seed=7, end=end)
    con = duckdb.connect()
    for name, frame in demo.tables.items():
        con.register(name, frame)
    grid = list(pd.date_range(end - pd.Timedelta(days=540), end, freq="W-MON"))
    features = con.execute(_SQL, [grid]).df()
    horizon, full = LEAD + HORIZON, LEAD + HORIZON + GRACE
    data_end = pd.Timestamp(end)
    labels = con.execute(
        _LABELS, [grid, horizon, horizon, full, full, full, data_end, horizon, horizon, data_end]
    ).df()
    for col in ("churned", "expanded", "contracted"):
        labels[col] = labels[col].astype("Int64")
    return features, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--report-dir", type=Path, default=None)
    parser.add_argument(
        "--mlflow-dir", type=Path, default=None, help="also log and register into this data dir"
    )
    args = parser.parse_args()
    clock = time.perf_counter()
    features, labels = demo_dataset(args.accounts, date(2026, 11, 23))
    print(
        f"demo features {features.shape}, labels {labels.shape} in "
        f"{time.perf_counter() - clock:.1f} s"
    )
    config = ModelConfig(
        num_threads=args.threads, tuning=TuningConfig(trials=args.trials, timeout_seconds=60)
    )
    gap = label_gap_days(lead_days=LEAD, horizon_days=HORIZON, grace_days=GRACE)
    total = time.perf_counter()
    for target in config.targets:
        start = time.perf_counter()
        dataset = training_frame(features, labels, target=target)
        result = train_model(
            dataset, target=target, config=config, gap_days=gap, output_dir=args.report_dir
        )
        print(
            f"\n== {target}: {len(dataset)} labelled rows, positive rate "
            f"{dataset[target_label(target)].mean():.3f}, {time.perf_counter() - start:.1f} s; "
            f"trees {result.bundle.params['num_boost_round']}, calibration "
            f"{result.bundle.calibrator.method if result.bundle.calibrator else 'none'}"
        )
        print("timings:", {k: round(v, 1) for k, v in result.timings.items()}, result.tuning)
        print(pd.DataFrame(result.dataset_info["folds"]).to_string(index=False))
        print(metrics_table(result).T.to_string())
        if args.mlflow_dir is not None:
            start = time.perf_counter()
            registered = log_and_register(
                result,
                tracking=TrackingConfig(),
                data_dir=args.mlflow_dir,
                run_name=f"bench-{target}",
                dataset_info={},
            )
            print(f"logged + registered in {time.perf_counter() - start:.1f} s: {registered}")
    print(f"\nboth targets: {time.perf_counter() - total:.1f} s on {args.threads} threads")


def target_label(target: str) -> str:
    return {"churn": "churned", "expansion": "expanded"}[target]


if __name__ == "__main__":
    main()
