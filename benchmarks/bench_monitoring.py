"""What the weekly run's label-free checks cost: the CBPE estimate and the drift reference.

    .venv/bin/python benchmarks/bench_monitoring.py [--accounts 20000 200000] [--samples 400]
        [--rows 200000] [--features 60]

Prints seconds for ``estimate_performance`` on one week of ``--accounts`` scores, for binning a
training window of ``--rows`` x ``--features`` into a ``DriftReference`` (the sample size
``reference_for_bundle`` caps it at), and for one week's ``feature_drift`` against it.
Synthetic numbers (beta-distributed scores, normal and count features), fixed seeds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from models.monitoring import MonitoringConfig, drift_reference, feature_drift
from models.performance_estimate import estimate_performance


def _frame(rows: int, features: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.normal(size=rows) for i in range(features // 2)}
    columns |= {f"n{i}": rng.poisson(3, size=rows).astype(float) for i in range(features // 2)}
    return pd.DataFrame(columns).assign(as_of=pd.Timestamp("2026-01-05"))


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n in args.accounts:
        p = rng.beta(0.8, 9, n)
        s = _seconds(lambda p=p: estimate_performance(p, samples=args.samples, seed=0))
        print(f"estimate_performance: {n:>9,} accounts, {args.samples} draws: {s:6.2f} s")
    train = _frame(args.rows, args.features, 1)
    names = [c for c in train.columns if c != "as_of"]
    holder: dict[str, object] = {}
    s = _seconds(lambda: holder.setdefault("ref", drift_reference(train, feature_names=names)))
    print(f"drift_reference: {args.rows:,} rows x {len(names)} features: {s:6.2f} s")
    week = _frame(args.accounts[0], args.features, 2)
    cfg = MonitoringConfig()
    s = _seconds(lambda: feature_drift(holder["ref"], week, feature_names=names, thresholds=cfg))
    print(f"feature_drift vs stored reference: {len(week):,} rows x {len(names)}: {s:6.2f} s")


if __name__ == "__main__":
    main()
