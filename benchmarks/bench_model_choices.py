"""Benchmark: the model-stage choices (data-size defaults, calibration, baselines) on the demo
and on outside worlds, in the backtest and out of time against labels churnlens never read.

    .venv/bin/python benchmarks/bench_model_choices.py --world /work/ow/crm5-seed1 \
        --run-date 2023-07-01 [--score-world DIR] [--variants adaptive,leaf200] \
        [--cache-dir /tmp/churnlens-bench-choices]
    .venv/bin/python benchmarks/bench_model_choices.py --demo 600 --run-date 2026-11-16

For a world (a folder from ``../shared/outside-worlds/make_world.sh``: ``crm5.duckdb`` and
``world.json`` with the label settings), the warehouse is copied to the cache folder, staged and
validated, and features and labels are built on the weekly grid of ``history_days`` up to the run
date exactly as ``churnlens train`` builds them (labels only as settled at the run date). Each
variant (a ``model`` config) is trained with ``models.train.train_model``; the script prints the
latest backtest fold and the spread over folds for every model (booster, logistic, RFM, health
score), the promotion verdict, the reductions, and the share of probabilities at their minimum.

Out of time: the world's own labels (``crm5_labels_rundate.parquet``, read here only, never by the
product) at as_of dates on or after the run date are scored through the same feature path
(``--score-world`` takes them and the features from a longer world, e.g. to score a 3-month cut),
with the booster and the baselines fitted on the same training rows: ROC-AUC with a bootstrap
interval over accounts, PR-AUC, ECE, observed/expected.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.build import build_features
from features.grid import observation_dates
from features.labels import build_labels
from features.validation import prepare_sources
from features.warehouse import DuckDBWarehouse
from models.baselines import fit_logistic, fit_rfm, predict_logistic
from models.config import ModelConfig
from models.dataset import categorical_columns, training_frame
from models.metrics import score_metrics
from models.train import MODEL, train_model
from pipelines.config import load_settings
from pipelines.dates import data_horizon

VARIANTS = {
    "adaptive": {},
    "leaf50": {"params": {"min_data_in_leaf": 50}},
    "leaf100": {"params": {"min_data_in_leaf": 100}},
    "leaf200": {"params": {"min_data_in_leaf": 200}},
    "lgbcat": {"params": {"min_data_per_group": 100, "cat_smooth": 10.0, "max_cat_to_onehot": 4}},
    "sigmoid": {"calibration": "sigmoid"},
    "isotonic": {"calibration": "isotonic"},
    "notune": {"tuning": {"trials": 0}},
}
SHOWN = ("roc_auc", "pr_auc", "ece", "observed_expected", "top_decile_lift")


def end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time()) - timedelta(
        microseconds=1
    )


def world_settings(world: Path, cache: Path, config: Path) -> tuple:
    meta = json.loads((world / "world.json").read_text()) if (world / "world.json").exists() else {}
    cache.mkdir(parents=True, exist_ok=True)
    copy = cache / "warehouse.duckdb"
    if not copy.exists():
        shutil.copy(world / "crm5.duckdb", copy)
    overrides = {"data_dir": str(cache), "warehouse": {"duckdb_path": str(copy)}}
    overrides |= meta.get("churnlens", {})
    if "features" not in overrides:
        overrides["features"] = {"labels": {"horizon_days": 30, "lead_days": 0, "grace_days": 7}}
    return load_settings([config], overrides=overrides), copy


def panel(settings, path: Path, run_date: date, cache: Path, tag: str):
    """(training frame for churn, warehouse path) built as ``churnlens train`` builds it."""
    out = cache / f"train-{tag}-{run_date}.parquet"
    if out.exists():
        return pd.read_parquet(out)
    obs = settings.features.observation
    grid = observation_dates(
        run_date - timedelta(days=obs.history_days),
        run_date,
        frequency=obs.frequency,
        weekday=obs.weekday,
    )
    with DuckDBWarehouse(path) as wh:
        report = prepare_sources(wh, settings.warehouse, reference_time=data_horizon(run_date))
        features = build_features(wh, grid, available_tables=report.available)
        labels = build_labels(wh, grid, config=settings.features.labels, data_end=end_of(run_date))
    frame = training_frame(features, labels, target="churn")
    frame.to_parquet(out, index=False)
    return frame


def outside_rows(world: Path, settings, path: Path, run_date: date, cache: Path) -> pd.DataFrame:
    """Features at the world's own label dates on/after the run date, with its label (as y)."""
    out = cache / f"oot-{run_date}.parquet"
    if out.exists():
        return pd.read_parquet(out)
    labels = pd.read_parquet(world / "crm5_labels_rundate.parquet")
    labels["as_of"] = pd.to_datetime(labels["as_of"])
    labels = labels[labels["as_of"] >= pd.Timestamp(run_date)]
    dates = [d.to_pydatetime() for d in sorted(labels["as_of"].unique())]
    with DuckDBWarehouse(path) as wh:
        last = max(dates).date() + timedelta(days=1)
        report = prepare_sources(wh, settings.warehouse, reference_time=data_horizon(last))
        features = build_features(wh, dates, available_tables=report.available)
    features["as_of"] = pd.to_datetime(features["as_of"])
    keep = labels[["account_id", "as_of", "churned_within_horizon", "arr_now"]]
    rows = features.merge(keep, on=["account_id", "as_of"], how="inner")
    rows["y"] = rows.pop("churned_within_horizon").astype(int)
    print(
        f"out of time: {len(rows)} of {len(labels)} labelled rows matched, "
        f"{rows['y'].sum()} churned"
    )
    rows.to_parquet(out, index=False)
    return rows


def bootstrap_auc(rows: pd.DataFrame, p: np.ndarray, *, n: int = 300, seed: int = 0):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    accounts = rows["account_id"].to_numpy()
    unique, inverse = np.unique(accounts, return_inverse=True)
    groups = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    y, values = rows["y"].to_numpy(), []
    for _ in range(n):
        idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        if len(np.unique(y[idx])) == 2:
            values.append(roc_auc_score(y[idx], p[idx]))
    return np.percentile(values, [2.5, 97.5])


def out_of_time(result, dataset: pd.DataFrame, rows: pd.DataFrame, config: ModelConfig) -> None:
    features = result.bundle.feature_names
    y = dataset["churned"].to_numpy()
    categorical = categorical_columns(dataset, features)
    numeric = [c for c in features if c not in categorical]
    scores = {MODEL: result.bundle.predict_proba(rows)}
    logistic = fit_logistic(
        dataset, y, numeric=numeric, categorical=categorical, c=config.logistic_c, seed=config.seed
    )
    scores["logistic"] = predict_logistic(logistic, rows)
    rfm = fit_rfm(dataset, y, c=config.logistic_c, seed=config.seed)
    if rfm is not None:
        scores["rfm"] = predict_logistic(rfm, rows)
    print(f"  out of time ({len(rows)} rows, {int(rows['y'].sum())} churned):")
    for name, p in scores.items():
        m = score_metrics(rows["y"], p, value=rows["arr_now"].fillna(0), as_of=rows["as_of"])
        low, high = bootstrap_auc(rows, p)
        print(
            f"    {name:9s} ROC {m['roc_auc']:.3f} [{low:.3f}, {high:.3f}]  PR {m['pr_auc']:.3f}  "
            f"ECE {m['ece']:.4f}  O/E {m['observed_expected']:.2f}  lift {m['top_decile_lift']:.2f}"
        )


def report(name: str, result) -> None:
    latest = result.latest_fold()
    print(
        f"\n== {name}: verdict {'PASS' if result.verdict.passed else 'REFUSED'}: "
        f"{result.verdict.reason}"
    )
    for line in result.reductions:
        print(f"  reduced: {line}")
    print(
        f"  calibration {result.bundle.calibrator.method if result.bundle.calibrator else 'none'}; "
        f"trees {result.bundle.params['num_boost_round']}; tuning {result.tuning}"
    )
    table = latest[list(SHOWN)].round(4)
    print("  latest fold:\n" + table.to_string().replace("\n", "\n    "))
    spread = result.backtest.groupby("model")[list(SHOWN)].agg(["mean", "std"]).round(3)
    print("  over folds (mean, sd):\n" + spread.to_string().replace("\n", "\n    "))
    ours = result.predictions[result.predictions["model"] == MODEL]["p"]
    print(f"  backtest probabilities at their minimum: {np.mean(ours == ours.min()):.3%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path)
    parser.add_argument("--score-world", type=Path)
    parser.add_argument("--demo", type=int)
    parser.add_argument("--run-date", type=date.fromisoformat, required=True)
    parser.add_argument("--variants", default="adaptive,leaf200")
    parser.add_argument("--config", type=Path, default=Path("configs/default.yaml"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/churnlens-bench-choices"))
    args = parser.parse_args()
    if args.demo:
        cache = args.cache_dir / f"demo-{args.demo}"
        world = cache
        settings, path = _demo_settings(args, cache)
    else:
        cache = args.cache_dir / args.world.name
        world = args.world
        settings, path = world_settings(args.world, cache, args.config)
    dataset = panel(settings, path, args.run_date, cache, "train")
    rows = None
    if not args.demo:
        score_world = args.score_world or args.world
        score_cache = args.cache_dir / score_world.name
        score_settings, score_path = world_settings(score_world, score_cache, args.config)
        rows = outside_rows(score_world, score_settings, score_path, args.run_date, score_cache)
    gap = settings.features.labels.maturity_days
    print(
        f"{world}: {len(dataset)} labelled rows, {dataset['as_of'].nunique()} as_of dates, "
        f"{int(dataset['churned'].sum())} positives, gap {gap} days"
    )
    base = settings.model.model_dump()
    base["params"] = {k: v for k, v in base["params"].items() if k != "min_data_in_leaf"}
    for name in args.variants.split(","):
        merged = base | {k: v for k, v in VARIANTS[name].items() if k != "params"}
        merged["params"] = base["params"] | VARIANTS[name].get("params", {})
        config = ModelConfig(**merged)
        result = train_model(dataset, target="churn", config=config, gap_days=gap)
        report(name, result)
        if rows is not None:
            out_of_time(result, dataset, rows, config)


def _demo_settings(args, cache: Path):
    from pipelines.demo.data import generate_demo, write_demo

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "warehouse.duckdb"
    settings = load_settings(
        [args.config], overrides={"data_dir": str(cache), "warehouse": {"duckdb_path": str(path)}}
    )
    if not path.exists():
        with DuckDBWarehouse(path) as wh:
            write_demo(
                wh, generate_demo(n_accounts=args.demo, seed=7, end=args.run_date, years=3.0)
            )
    return settings, path


if __name__ == "__main__":
    main()
