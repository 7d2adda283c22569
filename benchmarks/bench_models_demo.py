"""Benchmark: the model stage on the demo warehouse, through the real pipeline path.

    .venv/bin/python benchmarks/bench_models_demo.py [--accounts 1500] [--demo-seeds 7]
        [--years 3.0] [--end 2026-11-16] [--config configs/default.yaml] [--targets churn,expansion]
        [--cache-dir /tmp/churnlens-bench-demo] [--rebuild] [--report-dir DIR]

Generates the demo warehouse (``pipelines.demo.data``) into an in-memory DuckDB, stages and
validates the sources (``features.validation.prepare_sources``), builds the features and labels
over the weekly observation grid of the config (``features.build.build_features``,
``features.labels.build_labels``), joins them (``models.dataset.training_frame``) and trains each
target with the config's ``model`` section (``models.train.train_model``; no MLflow). The
features and labels are cached as Parquet under ``--cache-dir``, keyed by the demo arguments, the
observation and label settings and a hash of the feature code, so reruns measure the model stage.

Prints, per target, the rolling-origin backtest of LightGBM, the exported health score and the
logistic regression on every fold and their mean over folds (PR-AUC, share of the target's ARR
captured in the top 10 % of accounts by risk, ECE, ROC-AUC, Brier, top-decile lift), then
whether LightGBM beats both baselines on mean PR-AUC and ARR share with a mean ECE below 0.05.
With several ``--demo-seeds`` it ends with the same table pooled over every seed's folds: on one
seed the ARR share of a 4-week fold can hinge on one large account sitting at the 10 % cut.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.grid import observation_dates
from features.labels import build_labels
from features.validation import prepare_sources
from features.warehouse import DuckDBWarehouse
from models.dataset import target_spec, training_frame
from models.evaluation import write_report
from models.train import HEALTH, LOGISTIC, MODEL, TrainResult, train_model
from pipelines.config import Settings, load_settings
from pipelines.demo.data import generate_demo, write_demo

COLUMNS = {
    "pr_auc": "PR-AUC",
    "arr_captured_top10": "ARR top10%",
    "ece": "ECE",
    "roc_auc": "ROC-AUC",
    "brier": "Brier",
    "top_decile_lift": "lift@10%",
}
MODELS = (MODEL, LOGISTIC, HEALTH)
MAX_ECE = 0.05
_FEATURE_CODE = ("features/sql/*.sql", "features/*.py", "pipelines/demo*.py")


def end_of(day: date) -> datetime:
    """The last instant of ``day`` (the pipeline's data horizon for a run on that date)."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time()) - timedelta(
        microseconds=1
    )


def demo_panel(
    settings: Settings, *, accounts: int, seed: int, years: float, end: date
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """(features, labels, timings) of the demo warehouse over the config's observation grid,
    built exactly as ``pipelines.flows.train`` builds them."""
    clock = time.perf_counter()
    data = generate_demo(n_accounts=accounts, seed=seed, end=end, years=years)
    timings = {"generate_s": time.perf_counter() - clock}
    obs = settings.features.observation
    grid = observation_dates(
        end - timedelta(days=obs.history_days), end, frequency=obs.frequency, weekday=obs.weekday
    )
    with DuckDBWarehouse(":memory:") as wh:
        write_demo(wh, data)
        report = prepare_sources(wh, settings.warehouse, reference_time=end_of(end))
        timings["stage_s"] = time.perf_counter() - clock - sum(timings.values())
        features = build_features(wh, grid, available_tables=report.available)
        timings["features_s"] = time.perf_counter() - clock - sum(timings.values())
        labels = build_labels(wh, grid, config=settings.features.labels, data_end=end_of(end))
        timings["labels_s"] = time.perf_counter() - clock - sum(timings.values())
    return features, labels, timings


def cache_key(settings: Settings, *, accounts: int, seed: int, years: float, end: date) -> str:
    """Changes with the demo arguments, the observation/label settings or the feature code."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    digest.update(json.dumps([accounts, seed, years, end.isoformat()]).encode())
    digest.update(settings.features.model_dump_json().encode())
    for pattern in _FEATURE_CODE:
        for path in sorted(root.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_panel(
    settings: Settings,
    *,
    accounts: int,
    seed: int,
    years: float,
    end: date,
    cache_dir: Path,
    rebuild: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    key = cache_key(settings, accounts=accounts, seed=seed, years=years, end=end)
    paths = [cache_dir / f"demo-{accounts}-s{seed}-{key}-{part}.parquet" for part in ("f", "l")]
    clock = time.perf_counter()
    if not rebuild and all(p.exists() for p in paths):
        features, labels = (pd.read_parquet(p) for p in paths)
        print(f"cached panel {paths[0].name} read in {time.perf_counter() - clock:.1f} s")
        return features, labels
    features, labels, timings = demo_panel(
        settings, accounts=accounts, seed=seed, years=years, end=end
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    features.to_parquet(paths[0], index=False)
    labels.to_parquet(paths[1], index=False)
    steps = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
    print(f"built panel in {time.perf_counter() - clock:.1f} s ({steps}) -> {cache_dir}")
    return features, labels


def fold_table(result: TrainResult) -> pd.DataFrame:
    """Metrics per fold and model, then the mean over folds (fold = 'mean')."""
    backtest = result.backtest[result.backtest["model"].isin(MODELS)]
    per_fold = backtest[["fold", "model", *COLUMNS]].astype({"fold": str})
    mean = backtest.groupby("model", as_index=False)[list(COLUMNS)].mean().assign(fold="mean")
    table = pd.concat([per_fold, mean[per_fold.columns]], ignore_index=True)
    order = {m: i for i, m in enumerate(MODELS)}
    table = table.sort_values(
        ["fold", "model"], key=lambda s: s.map(order) if s.name == "model" else s
    )
    return table.rename(columns=COLUMNS).set_index(["fold", "model"]).round(4)


def verdict(backtest: pd.DataFrame) -> str:
    """Whether the booster beats every baseline on PR-AUC and ARR share averaged over the folds
    of ``backtest``, with an ECE below 0.05."""
    mean = backtest.groupby("model")[list(COLUMNS)].mean()
    ours = mean.loc[MODEL]
    lines = []
    for baseline in (b for b in (LOGISTIC, HEALTH) if b in mean.index):
        for metric in ("pr_auc", "arr_captured_top10"):
            won = ours[metric] > mean.loc[baseline, metric]
            lines.append(
                f"{'beats ' if won else 'LOSES to'} {baseline} on {COLUMNS[metric]}: "
                f"{ours[metric]:.4f} vs {mean.loc[baseline, metric]:.4f}"
            )
    ok = ours["ece"] < MAX_ECE
    lines.append(f"ECE {ours['ece']:.4f} {'<' if ok else '>='} {MAX_ECE}")
    return "\n".join(lines)


def run_target(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    target: str,
    settings: Settings,
    report_dir: Path | None,
) -> pd.DataFrame:
    """Train ``target``, print its backtest, return the backtest rows."""
    clock = time.perf_counter()
    spec = target_spec(target)
    dataset = training_frame(features, labels, target=target)
    result = train_model(
        dataset,
        target=target,
        config=settings.model,
        gap_days=settings.features.labels.maturity_days,
    )
    if report_dir:
        write_report(result, report_dir / target)
    calibrator = result.bundle.calibrator
    print(
        f"\n== {target}: {len(dataset):,} labelled rows, {dataset['account_id'].nunique()} "
        f"accounts, positive rate {dataset[spec.label].mean():.3f}; trained in "
        f"{time.perf_counter() - clock:.1f} s "
        f"({', '.join(f'{k} {v:.1f}' for k, v in result.timings.items())})"
    )
    print(
        f"final booster: {result.bundle.params['num_boost_round']} trees, calibration "
        f"{calibrator.method if calibrator else 'none'}; tuning {result.tuning}"
    )
    print(pd.DataFrame(result.dataset_info["folds"]).to_string(index=False))
    print(fold_table(result).to_string())
    print(verdict(result.backtest))
    return result.backtest.assign(target=target)


def pooled_summary(backtests: pd.DataFrame) -> None:
    """Mean over every (seed, fold) per target and model, with the verdict on the pooled means."""
    for target, rows in backtests.groupby("target", sort=False):
        rows = rows[rows["model"].isin(MODELS)]
        n = rows[["seed", "fold"]].drop_duplicates().shape[0]
        table = rows.groupby("model")[list(COLUMNS)].mean().rename(columns=COLUMNS)
        seeds = sorted(int(s) for s in rows["seed"].unique())
        print(f"\n== {target}: mean over {n} folds of demo seeds {seeds}")
        print(table.reindex([m for m in MODELS if m in table.index]).round(4).to_string())
        print(verdict(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1500)
    parser.add_argument(
        "--demo-seeds", default="7", help="comma-separated; several add a pooled summary"
    )
    parser.add_argument("--years", type=float, default=None, help="default: demo.years")
    parser.add_argument("--end", type=date.fromisoformat, default=date(2026, 11, 16))
    parser.add_argument("--config", type=Path, default=None, help="default: configs/default.yaml")
    parser.add_argument("--targets", default=None, help="comma-separated; default: model.targets")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/churnlens-bench-demo"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached panel")
    parser.add_argument("--report-dir", type=Path, default=None)
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    total = time.perf_counter()
    settings = load_settings([args.config] if args.config else None)
    years = args.years or settings.demo.years
    targets = args.targets.split(",") if args.targets else settings.model.targets
    backtests, train_seconds = [], 0.0
    for seed in (int(s) for s in args.demo_seeds.split(",")):
        features, labels = cached_panel(
            settings,
            accounts=args.accounts,
            seed=seed,
            years=years,
            end=args.end,
            cache_dir=args.cache_dir,
            rebuild=args.rebuild,
        )
        print(
            f"demo: {args.accounts} accounts, seed {seed}, {years} years to {args.end}; "
            f"features {features.shape}, labels {labels.shape}"
        )
        clock = time.perf_counter()
        for target in targets:
            backtest = run_target(features, labels, target, settings, args.report_dir)
            backtests.append(backtest.assign(seed=seed))
        train_seconds += time.perf_counter() - clock
    if len(args.demo_seeds.split(",")) > 1:
        pooled_summary(pd.concat(backtests, ignore_index=True))
    print(
        f"\ntraining {train_seconds:.1f} s, total {time.perf_counter() - total:.1f} s on "
        f"{settings.model.num_threads} LightGBM threads"
    )


if __name__ == "__main__":
    main()
