"""How long contract validation takes on a large usage_events table (prints, never asserts).

    .venv/bin/python benchmarks/bench_validation.py --events 50_000_000 --accounts 20_000

Generates accounts, contracts and usage_events inside DuckDB with range() (no Python rows),
with 0.1 % exact duplicate events and 0.01 % events of unknown accounts, then times
validate_sources and staging, and compares with a plain scan of the same event columns.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from features.config import WarehouseConfig
from features.sources import locate_sources
from features.validation import prepare_sources, validate_sources
from features.warehouse import DuckDBWarehouse


def generate(wh: DuckDBWarehouse, *, events: int, accounts: int) -> None:
    wh.execute(
        "CREATE TABLE accounts AS SELECT 'a' || i AS account_id, 'acct ' || i AS name, "
        "'smb' AS segment, 'retail' AS industry, 50 AS employees, 'csm' || (i % 40) AS csm_owner, "
        "TIMESTAMP '2022-01-01' + to_days(CAST(i % 300 AS INTEGER)) AS created_at "
        "FROM range(?) t(i)",
        [accounts],
    )
    wh.execute(
        "CREATE TABLE contracts AS SELECT 'a' || i AS account_id, 'c' || i AS contract_id, "
        "'core' AS product, DATE '2023-01-01' AS start_date, DATE '2026-01-01' AS end_date, "
        "1000.0 + i AS arr, 10 AS seats FROM range(?) t(i)",
        [accounts],
    )
    # every 1000th event repeats its predecessor exactly; every 10000th has an unknown account
    wh.execute(
        "CREATE TABLE usage_events AS SELECT "
        "CASE WHEN i % 10000 = 7 THEN 'ghost' ELSE 'a' || (j % ?) END AS account_id, "
        "'u' || (j % 97) AS user_id, "
        "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(CAST(j % 40000000 AS BIGINT)) "
        "AS event_time, 'feature_' || (j % 23) AS event_type, 1.0 AS quantity "
        "FROM (SELECT i, CASE WHEN i % 1000 = 1 THEN i - 1 ELSE i END AS j FROM range(?) t(i))",
        [accounts, events],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    args = parser.parse_args()
    wh = DuckDBWarehouse()
    started = time.perf_counter()
    generate(wh, events=args.events, accounts=args.accounts)
    print(f"generated {args.events:,} events in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    wh.query(
        "SELECT count(*), sum(length(account_id) + length(user_id) + length(event_type)), "
        "max(event_time), sum(quantity) FROM usage_events"
    )
    scan = time.perf_counter() - started
    print(f"plain scan reading every value of the five event columns: {scan:.2f} s")
    started = time.perf_counter()
    wh.query(
        "SELECT count(*) FROM (SELECT DISTINCT account_id, user_id, event_time, event_type, "
        "quantity FROM usage_events) AS d"
    )
    print(
        f"bare SELECT DISTINCT of the events (floor for duplicate counting): "
        f"{time.perf_counter() - started:.2f} s"
    )

    reference = dt.datetime(2025, 12, 31, 23, 59, 59)
    started = time.perf_counter()
    report = validate_sources(wh, locate_sources(WarehouseConfig()), reference_time=reference)
    validate = time.perf_counter() - started
    print(f"validate_sources (all tables): {validate:.2f} s ({validate / scan:.1f}x the scan)")
    print(f"  {args.events / validate / 1e6:.1f} M events/s; exclusions {report.exclusions}")

    started = time.perf_counter()
    prepare_sources(wh, WarehouseConfig(), reference_time=reference)
    n = wh.scalar("SELECT count(*) FROM stg_usage_events")
    print(f"prepare_sources + count(stg_usage_events)={n:,}: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
