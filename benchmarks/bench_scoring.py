"""Scoring benchmark: 100,000 synthetic accounts x ~60 features, a ~300-tree LightGBM booster.

Times each step of the weekly scoring path (prepare, predict, raw pred_contrib, SHAP + reasons,
the whole score_accounts, write-back to DuckDB, risk lists), prints accounts/second per step,
peak RSS, and the ratio of the SHAP+reasons step to LightGBM's raw pred_contrib on the same
matrix. Run: ``.venv/bin/python benchmarks/bench_scoring.py [--accounts N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.warehouse import DuckDBWarehouse
from models.bundle import ModelBundle, prepare_matrix
from models.config import ModelConfig
from serving.changes import week_over_week
from serving.config import ServingConfig
from serving.reasons import explain, resolve_specs
from serving.risk_list import write_risk_lists
from serving.score import score_accounts
from serving.writeback import write_scores

RUN_DATE = date(2026, 11, 23)
UNITS = ("count", "ratio", "days", "currency", "score", "flag")
GROUPS = ("usage", "support", "engagement", "commercial", "health")


@dataclass(frozen=True)
class Spec:
    name: str
    group: str
    description: str
    unit: str
    window_days: int | None
    source: str = "benchmark"


def make_frame(n: int, n_numeric: int, seed: int) -> tuple[pd.DataFrame, dict[str, Spec]]:
    """Accounts with numeric features of every unit (10% missing), 3 categoricals, a signal."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    specs: dict[str, Spec] = {}
    for i in range(n_numeric):
        unit = UNITS[i % len(UNITS)]
        window = (28, 90, None)[i % 3]
        name = f"{'days_since_event' if unit == 'days' else 'metric'}_{i}" + (
            f"_{window}d" if window else ""
        )
        if unit == "ratio" and i % 4 == 1:
            name = f"usage_{i}_change_{window or 28}d"
        values = {
            "count": rng.poisson(5, n).astype(float),
            "ratio": rng.normal(0, 0.3, n),
            "days": rng.exponential(40, n).round(),
            "currency": rng.lognormal(9, 1, n).round(2),
            "score": rng.uniform(0, 100, n),
            "flag": (rng.random(n) < 0.2).astype(float),
        }[unit]
        values[rng.random(n) < 0.1] = np.nan
        cols[name] = values
        specs[name] = Spec(name, GROUPS[i % len(GROUPS)], name, unit, window)
    frame = pd.DataFrame(cols)
    frame.insert(0, "account_id", [f"A{i:06d}" for i in range(n)])
    frame["segment"] = rng.choice(["enterprise", "mid_market", "smb"], n)
    frame["industry"] = rng.choice(["retail", "software", "finance", "health", "media"], n)
    frame["plan"] = rng.choice(["basic", "pro", "premium"], n)
    for name in ("segment", "industry", "plan"):
        specs[name] = Spec(name, "commercial", name, "category", None)
    frame["name"] = [f"Account {i}" for i in range(n)]
    frame["csm_owner"] = [f"csm_{i % 400:03d}" for i in range(n)]
    frame["arr"] = rng.lognormal(10, 1, n).round(2)
    frame["employees"] = rng.integers(10, 5000, n).astype(float)
    frame["health_score"] = rng.uniform(0, 100, n)
    frame["health_color"] = np.select(
        [frame["health_score"] >= 70, frame["health_score"] >= 40], ["green", "yellow"], "red"
    )
    return frame, specs


def train(
    frame: pd.DataFrame, features: list[str], levels: dict, *, trees: int, threads: int, leaves: int
):
    rng = np.random.default_rng(1)
    sample = frame.sample(n=min(len(frame), 30_000), random_state=0)
    X = prepare_matrix(sample, features, levels)
    numeric = X.select_dtypes("number").fillna(0).to_numpy()
    scaled = (numeric - numeric.mean(axis=0)) / (numeric.std(axis=0) + 1e-9)
    logit = scaled[:, :10] @ rng.normal(0, 0.5, 10) - 1.5
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": leaves,  # TreeSHAP cost grows with depth^2
        "min_data_in_leaf": 200,
        "learning_rate": 0.05,
        "num_threads": threads,
        "verbose": -1,
        "seed": 0,
    }
    booster = lgb.train(params, lgb.Dataset(X, y), trees)
    return ModelBundle(
        target="churn",
        booster=booster,
        feature_names=features,
        categorical_levels=levels,
        calibrator=None,
        train_window=(datetime(2025, 1, 1), datetime(2026, 6, 1)),
        params=params,
    )


def timed(label: str, results: list, n: int, fn):
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    results.append((label, seconds, n / seconds))
    print(f"{label:<38} {seconds:8.2f} s  {n / seconds:12,.0f} accounts/s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument(
        "--features", type=int, default=57, help="numeric features (+3 categorical)"
    )
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--leaves",
        type=int,
        default=ModelConfig().params["num_leaves"],
        help="num_leaves (default: the project's model default)",
    )
    args = parser.parse_args()
    n = args.accounts
    frame, specs = make_frame(n, args.features, seed=0)
    levels = {
        "segment": ["enterprise", "mid_market", "smb"],
        "industry": ["finance", "health", "media", "retail", "software"],
        "plan": ["basic", "pro", "premium"],
    }
    features = [*[s for s in specs if s not in levels], *levels]
    t0 = time.perf_counter()
    bundle = train(
        frame, features, levels, trees=args.trees, threads=args.threads, leaves=args.leaves
    )
    print(
        f"{n:,} accounts x {len(features)} features, {bundle.booster.num_trees()} trees "
        f"(trained in {time.perf_counter() - t0:.1f} s), {args.leaves} leaves, "
        f"{args.threads} threads\n"
    )
    config = ServingConfig()
    results: list = []
    X = timed("prepare (bundle.prepare)", results, n, lambda: bundle.prepare(frame))
    timed("predict (booster.predict)", results, n, lambda: bundle.booster.predict(X))
    timed(
        "pred_contrib raw (booster.predict)",
        results,
        n,
        lambda: bundle.booster.predict(X, pred_contrib=True),
    )
    resolved = resolve_specs(features, specs, frame)
    timed(
        "SHAP + reasons (contributions+explain)",
        results,
        n,
        lambda: explain(
            bundle.contributions(frame), frame, target="churn", top_k=3, specs=resolved
        ),
    )
    scored = timed(
        "score_accounts (whole step)",
        results,
        n,
        lambda: score_accounts(
            frame,
            churn=bundle,
            expansion=None,
            run_date=RUN_DATE,
            config=config,
            model_refs={"churn": "bench v1"},
            catalog=specs,
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(Path(tmp) / "bench.duckdb")
        timed(
            "write-back DuckDB (3 tables)",
            results,
            n,
            lambda: write_scores(wh, scored, schema="churnlens", run_meta={}),
        )
        wh.close()
        changes = week_over_week(scored.predictions, None, config=config)
        timed(
            "risk lists (400 CSMs CSV+HTML, summary)",
            results,
            n,
            lambda: write_risk_lists(
                scored, changes, out_dir=Path(tmp) / "lists", run_date=RUN_DATE
            ),
        )
    by = {label: seconds for label, seconds, _ in results}
    ratio = by["SHAP + reasons (contributions+explain)"] / by["pred_contrib raw (booster.predict)"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nreason rows: {len(scored.reasons):,}")
    print(f"SHAP+reasons / raw pred_contrib: {ratio:.2f}x")
    print(f"peak RSS: {peak:,.0f} MiB")
    print(f"machine: {platform.machine()}, {platform.python_version()}, {date.today()}")


if __name__ == "__main__":
    main()
