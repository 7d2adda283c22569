"""Write a large demo warehouse to Parquet, streaming block by block (bounded memory).

    python benchmarks/generate_data.py --accounts 20000 --out benchmarks/data --seed 1

usage_events goes to ``<out>/usage_events/part-NNNNN.parquet`` (one file per block of
accounts, written as soon as the block is generated); every other contract table to
``<out>/<table>.parquet``; ground truth to ``<out>/truth/<name>.parquet``. The blocks come from
``pipelines.demo.data.iter_demo_blocks``, the same code path (and, for the same seed, the same
accounts block by block) as ``generate_demo``; only the usage density differs
(``--events-scale``, default 1.4: ~50 million events for 20,000 accounts over 2.5 years).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.demo.data import iter_demo_blocks, tz_columns_to_utc
from pipelines.demo.world import BLOCK_SIZE, Calendar


def _last_monday(today: date) -> date:
    return today - timedelta(days=today.weekday())


def generate(
    *, accounts: int, out: Path, seed: int, end: date, years: float, events_scale: float
) -> dict[str, tuple[int, int]]:
    """Stream the demo into ``out``; returns table -> (rows, bytes on disk)."""
    cal = Calendar.for_years(end, years)
    events_dir = out / "usage_events"
    if events_dir.exists():
        shutil.rmtree(events_dir)
    events_dir.mkdir(parents=True)
    (out / "truth").mkdir(exist_ok=True)
    small: dict[str, list[pd.DataFrame]] = {}
    n_events, started = 0, time.perf_counter()
    n_blocks = -(-accounts // BLOCK_SIZE)
    blocks = iter_demo_blocks(n_accounts=accounts, seed=seed, cal=cal, latent_panel=False,
                              events_scale=events_scale)  # fmt: skip
    for i, block in enumerate(blocks):
        events = block.tables["usage_events"]
        events.to_parquet(events_dir / f"part-{i:05d}.parquet", index=False)
        n_events += len(events)
        for name, frame in block.tables.items():
            if name != "usage_events":
                small.setdefault(name, []).append(tz_columns_to_utc(frame))
        for name, frame in block.truth.items():
            small.setdefault(f"truth/{name}", []).append(frame)
        print(f"block {i + 1}/{n_blocks}: {n_events:,} events so far, "
              f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    sizes = {"usage_events": (n_events, _bytes(events_dir))}
    for name, frames in small.items():
        path = out / f"{name}.parquet"
        frame = pd.concat(frames, ignore_index=True)
        frame.to_parquet(path, index=False)
        sizes[name] = (len(frame), path.stat().st_size)
    return sizes


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/data"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--end", type=date.fromisoformat, default=None,
                        help="run date (YYYY-MM-DD); default: the last Monday")  # fmt: skip
    parser.add_argument("--years", type=float, default=2.5)
    parser.add_argument("--events-scale", type=float, default=1.4)
    args = parser.parse_args(argv)
    end = args.end or _last_monday(date.today())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ".done").unlink(missing_ok=True)
    started = time.perf_counter()
    sizes = generate(accounts=args.accounts, out=args.out, seed=args.seed, end=end,
                     years=args.years, events_scale=args.events_scale)  # fmt: skip
    elapsed = time.perf_counter() - started
    print(f"\n{args.accounts:,} accounts, {args.years} years to {end}, seed {args.seed}: "
          f"{elapsed:.1f} s")  # fmt: skip
    for name, (rows, size) in sizes.items():
        print(f"  {name:<24} {rows:>12,} rows {size / 1e6:>10.1f} MB")
    total = sum(size for _, size in sizes.values())
    print(f"  {'total':<24} {'':>12}      {total / 1e6:>10.1f} MB  -> {args.out}")
    # The benchmarks refuse a world without it: a half-written one would time the wrong thing.
    (args.out / ".done").write_text(f"{args.accounts} accounts, seed {args.seed}, end {end}\n")


if __name__ == "__main__":
    main()
