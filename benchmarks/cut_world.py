"""Cut an outside world to its first months of history, plus the label horizon, as a young
product or a new warehouse would have it.

    .venv/bin/python benchmarks/cut_world.py /work/ow/crm5-seed1 --months 3 \
        [--out /work/ow/crm5-seed1-cut3m]

The cut keeps history before ``history_start + months + horizon_days``: accounts created before
it, contracts that started before it (a contract's scheduled end is known at signing, so it
stays as written) and usage events before it. The labels keep the rows whose outcome window
ends by then (``as_of + horizon_days <= cut``). Writes ``<out>/<file>.duckdb``, the cut label
file and a ``world.json`` (see ``outside_world.py``). Generated data: keep it out of git.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
from dateutil.relativedelta import relativedelta

sys.path.insert(0, str(Path(__file__).parent))
from outside_world import World, read_world, write_world


def cut_end(world: World, months: int) -> date:
    """The first day the cut no longer holds."""
    start = date.fromisoformat(world.history_start)
    return start + relativedelta(months=months) + timedelta(days=world.horizon_days)


def cut_warehouse(source: Path, target: Path, end: date) -> dict[str, int]:
    """Copy the contract tables of ``source`` into a new ``target`` file up to ``end``."""
    target.unlink(missing_ok=True)
    con = duckdb.connect(str(target))
    try:
        con.execute("ATTACH ? AS src (READ_ONLY)", [str(source)])
        cut = {
            "accounts": "created_at IS NULL OR created_at < ?",
            "contracts": "start_date < ?",
            "usage_events": "event_time < ?",
        }
        counts = {}
        for table, keep in cut.items():
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM src.{table} WHERE {keep}", [end])
            counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        con.execute("DETACH src")
    finally:
        con.close()
    return counts


def cut_labels(labels: pd.DataFrame, end: date, horizon_days: int) -> pd.DataFrame:
    """The label rows whose outcome window ends by ``end``."""
    as_of = pd.to_datetime(labels["as_of"])
    return labels[as_of + pd.Timedelta(days=horizon_days) <= pd.Timestamp(end)].reset_index(
        drop=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    world = read_world(args.world)
    out = args.out or args.world.with_name(f"{args.world.name}-cut{args.months}m")
    out.mkdir(parents=True, exist_ok=True)
    end = cut_end(world, args.months)
    counts = cut_warehouse(world.duckdb, out / world.duckdb.name, end)
    labels = cut_labels(pd.read_parquet(world.labels), end, world.horizon_days)
    labels.to_parquet(out / world.labels.name, index=False)
    cut = World(
        directory=out,
        name=f"{world.name}, first {args.months} months",
        kind=world.kind,
        duckdb=out / world.duckdb.name,
        labels=out / world.labels.name,
        label_column=world.label_column,
        horizon_days=world.horizon_days,
        history_start=world.history_start,
        data_end=end.isoformat(),
        churnlens=world.churnlens,
    )
    write_world(cut)
    positives = int(labels[world.label_column].sum())
    print(f"{out}: history {world.history_start} .. {end} (exclusive), {counts}")
    print(
        f"labels: {len(labels):,} rows at {labels['as_of'].nunique()} dates, {positives} positive"
    )


if __name__ == "__main__":
    main()
