"""A non-contractual world from an outside one: a transaction log with no real contracts.

    .venv/bin/python benchmarks/make_transaction_world.py /work/ow/crm5-seed1 \
        [--inactivity-days 60] [--out /work/ow/crm5-seed1-tx]

Every account gets one evergreen contract (``end_date`` NULL, ARR 0, no seats) from the day of
its first event: nothing about contracts tells who left. The usage events are the transactions,
as they are (``quantity`` is the event's value: a deal's dollars, else 1). The label file, kept
apart, is computed from those ground-truth events: on the 1st of every month, every account
with an event in the 28 days before it is a current customer, and ``inactive_within_horizon``
says it makes no transaction in the ``inactivity_days`` from ``as_of`` on. Rows stop where that
window would pass the end of the data. Writes ``<out>/<name>.duckdb``, ``<name>_labels_inactive
.parquet`` and ``world.json`` (see ``outside_world.py``). Generated data: keep it out of git.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from outside_world import World, read_world, write_world

CUSTOMER_DAYS = 28  # an event this recent before as_of makes an account a current customer


def transaction_warehouse(source: Path, target: Path) -> dict[str, int]:
    """``target``: the accounts and events of ``source``, one evergreen zero-ARR contract each."""
    target.unlink(missing_ok=True)
    con = duckdb.connect(str(target))
    try:
        con.execute("ATTACH ? AS src (READ_ONLY)", [str(source)])
        con.execute("CREATE TABLE usage_events AS SELECT * FROM src.usage_events")
        con.execute("CREATE TABLE accounts AS SELECT * FROM src.accounts")
        con.execute(
            """
            CREATE TABLE contracts AS
            SELECT account_id, account_id || '-evergreen' AS contract_id, 'usage' AS product,
                   min(event_time)::DATE AS start_date, NULL::DATE AS end_date,
                   0.0::DOUBLE AS arr, NULL::INTEGER AS seats
            FROM usage_events GROUP BY account_id ORDER BY account_id
            """
        )
        con.execute("DETACH src")
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("accounts", "contracts", "usage_events")
        }
    finally:
        con.close()


def inactivity_labels(warehouse: Path, *, inactivity_days: int) -> tuple[pd.DataFrame, date, date]:
    """Monthly label rows (account_id, as_of, inactive_within_horizon, last_event_before,
    next_event_after) of the current customers, and the first and last-exclusive data days."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        first, last = con.execute(
            "SELECT min(event_time)::DATE, max(event_time)::DATE + 1 FROM usage_events"
        ).fetchone()
        labels = con.execute(
            """
            WITH dates AS (
                SELECT unnest(generate_series(
                    date_trunc('month', ?::DATE) + INTERVAL 1 MONTH, ?::DATE, INTERVAL 1 MONTH
                ))::TIMESTAMP AS as_of
            ),
            customers AS (
                SELECT d.as_of, e.account_id, max(e.event_time) AS last_event_before
                FROM dates AS d JOIN usage_events AS e
                  ON e.event_time >= d.as_of - ? * INTERVAL 1 DAY AND e.event_time < d.as_of
                GROUP BY ALL
            ),
            next_event AS (
                SELECT c.as_of, c.account_id, min(e.event_time) AS next_event_after
                FROM customers AS c JOIN usage_events AS e
                  ON e.account_id = c.account_id AND e.event_time >= c.as_of
                 AND e.event_time < c.as_of + ? * INTERVAL 1 DAY
                GROUP BY ALL
            )
            SELECT c.account_id, c.as_of::DATE AS as_of,
                   n.next_event_after IS NULL AS inactive_within_horizon,
                   c.last_event_before, n.next_event_after
            FROM customers AS c LEFT JOIN next_event AS n USING (as_of, account_id)
            WHERE c.as_of + ? * INTERVAL 1 DAY <= ?::TIMESTAMP
            ORDER BY as_of, account_id
            """,
            [first, last, CUSTOMER_DAYS, inactivity_days, inactivity_days, last],
        ).df()
    finally:
        con.close()
    labels["as_of"] = pd.to_datetime(labels["as_of"]).dt.date
    return labels, first, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("--inactivity-days", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    source = read_world(args.world)
    out = args.out or args.world.with_name(f"{args.world.name}-tx")
    out.mkdir(parents=True, exist_ok=True)
    stem = source.duckdb.stem
    duck = out / f"{stem}.duckdb"
    counts = transaction_warehouse(source.duckdb, duck)
    days = args.inactivity_days
    labels, first, last = inactivity_labels(duck, inactivity_days=days)
    labels_path = out / f"{stem}_labels_inactive.parquet"
    labels.to_parquet(labels_path, index=False)
    world = World(
        directory=out,
        name=f"{source.name}, transactions",
        kind="transaction",
        duckdb=duck,
        labels=labels_path,
        label_column="inactive_within_horizon",
        horizon_days=days,
        history_start=first.isoformat(),
        data_end=last.isoformat(),
        # churnlens's inactivity label: no event in the inactivity_days ending at as_of + horizon
        churnlens={
            "features": {
                # a customer is who bought recently, as the label file says: no contract decides
                "active": {"rule": "activity", "activity_days": CUSTOMER_DAYS},
                "labels": {
                    "horizon_days": days,
                    "lead_days": 0,
                    "grace_days": 0,
                    "inactivity_days": days,
                },
            },
            "model": {"targets": ["churn_inactive"]},
        },
    )
    write_world(world)
    rate = labels["inactive_within_horizon"].mean()
    print(f"{duck}: {counts}, history {first} .. {last} (exclusive)")
    print(
        f"{labels_path}: {len(labels):,} rows at {labels['as_of'].nunique()} dates, "
        f"inactive within {days} days: {rate:.1%}"
    )


if __name__ == "__main__":
    main()
