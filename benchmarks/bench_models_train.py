"""Benchmark: the whole model stage (churn + expansion: tuning, 3-fold purged backtest with
baselines, final fit, report) on a generated panel of ~100k rows x ~60 features.

    .venv/bin/python benchmarks/bench_models_train.py [--accounts 1000] [--weeks 104]
        [--threads 2] [--trials 6] [--report-dir /tmp/churnlens-bench]

Prints wall time per target and stage and the backtest metrics of every model. The panel is
synthetic (a latent account state drifting week by week drives usage, support and the outcome;
the health score sees only part of it), not the demo warehouse.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.config import LabelConfig
from models.config import ModelConfig, TuningConfig
from models.dataset import training_frame
from models.evaluation import metrics_table, write_report
from models.train import train_model

HORIZON, GRACE = 90, 30


def generate(n_accounts: int, n_weeks: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, labels) with ~60 features; labels censored in the last horizon + grace."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=n_weeks, freq="7D")
    walk = np.cumsum(rng.normal(scale=0.15, size=(n_accounts, n_weeks)), axis=1)
    state = (rng.normal(size=(n_accounts, 1)) + walk).ravel()
    champion_left = (rng.random((n_accounts, n_weeks)) < 0.01).cumsum(axis=1).clip(0, 1).ravel()
    n = n_accounts * n_weeks
    acc = np.repeat(np.arange(n_accounts), n_weeks)
    segment = np.array(["enterprise", "mid_market", "smb"])[
        rng.choice(3, n_accounts, p=[0.15, 0.35, 0.5])
    ]
    industry = np.array([f"industry_{i}" for i in range(12)])[rng.integers(0, 12, n_accounts)]
    frame = {
        "account_id": np.array([f"ACC{i:06d}" for i in range(n_accounts)])[acc],
        "as_of": np.tile(dates.to_numpy(), n_accounts),
        "segment": segment[acc],
        "industry": industry[acc],
        "region": np.array(["na", "emea", "apac", "latam", "anz", "dach"])[acc % 6],
        "plan": np.array(["starter", "pro", "business", "enterprise"])[acc % 4],
        "arr": np.round(rng.lognormal(10, 1, n_accounts)[acc], 2),
        "csm_owner": np.array([f"csm_{i}" for i in range(25)])[acc % 25],
    }
    for i in range(20):  # noisy, differently scaled views of the latent state
        frame[f"signal_{i:02d}_28d"] = (i + 1) * state + rng.normal(scale=1 + i / 4, size=n)
    frame["champion_departed_90d"] = champion_left.astype(float)
    for i in range(33):
        frame[f"noise_{i:02d}_90d"] = rng.normal(size=n)
    health = np.clip(60 + 12 * state + rng.normal(scale=18, size=n), 0, 100)
    frame["health_score"] = health
    frame["health_color"] = np.where(health < 40, "red", np.where(health < 70, "yellow", "green"))
    features = pd.DataFrame(frame)
    for col in ("signal_03_28d", "signal_07_28d", "noise_01_90d"):
        features.loc[rng.random(n) < 0.15, col] = np.nan
    smb = (features["segment"] == "smb").to_numpy()
    shallow = state < -1.0  # non-linear: risk jumps once usage falls below a threshold
    churn_logit = -3.4 - 0.6 * state + 1.2 * shallow + 1.8 * champion_left * ~smb + 0.5 * smb
    churned = rng.random(n) < 1 / (1 + np.exp(-churn_logit))
    expanded = ~churned & (rng.random(n) < 1 / (1 + np.exp(-(-2.6 + 0.9 * state))))
    censored = features["as_of"] > dates[-1] - pd.Timedelta(days=HORIZON + GRACE)
    labels = features[["account_id", "as_of"]].copy()
    for name, values in (("churned", churned), ("expanded", expanded), ("contracted", 0 * churned)):
        labels[name] = pd.array(values.astype(int), dtype="Int64")
        labels.loc[censored, name] = pd.NA
    labels["arr_at_as_of"] = features["arr"]
    labels["arr_at_horizon"] = np.where(churned, 0.0, features["arr"] * np.where(expanded, 1.25, 1))
    return features, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--report-dir", type=Path, default=None)
    args = parser.parse_args()
    clock = time.perf_counter()
    features, labels = generate(args.accounts, args.weeks)
    n_features = features.shape[1] - 3  # keys and csm_owner are not features
    print(
        f"generated {len(features)} rows x {n_features} features in "
        f"{time.perf_counter() - clock:.1f} s"
    )
    config = ModelConfig(
        num_threads=args.threads, tuning=TuningConfig(trials=args.trials, timeout_seconds=60)
    )
    gap = LabelConfig(lead_days=0, horizon_days=HORIZON, grace_days=GRACE).maturity_days
    total = time.perf_counter()
    for target in config.targets:
        start = time.perf_counter()
        dataset = training_frame(features, labels, target=target)
        result = train_model(
            dataset,
            target=target,
            config=config,
            gap_days=gap,
        )
        if args.report_dir is not None:
            write_report(result, args.report_dir)
        timings = ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items())
        print(
            f"\n== {target}: {len(dataset)} labelled rows, {time.perf_counter() - start:.1f} s "
            f"({timings}); trees {result.bundle.params['num_boost_round']}, calibration "
            f"{result.bundle.calibrator.method if result.bundle.calibrator else 'none'}, "
            f"tuning {result.tuning}"
        )
        print(metrics_table(result).T.to_string())
    print(f"\nboth targets: {time.perf_counter() - total:.1f} s on {args.threads} threads")


if __name__ == "__main__":
    main()
