"""Benchmark: `churnlens train` against the raw LightGBM fits it makes, per phase, old code vs new.

    .venv/bin/python benchmarks/bench_train.py --data /work/bench-data/w20k \
        [--work /tmp/churnlens-bench-train] [--account-share 0.25] [--trials 8] \
        [--base-ref COMMIT] [--repeat 1] [--threads 2]

Three steps, the last two in fresh processes, interleaved (before, after, before, after, ...):

1. ``prepare`` (once, cached in ``--work``): validate + stage the generated warehouse, build the
   features and labels on the default training grid (weekly, 540 days up to the last Monday of
   the data), as ``pipelines.flows.training_data`` does; timed, and saved as Parquet.
2. ``child`` with the code of ``--base-ref`` (exported with ``git archive`` into ``--work``) and
   with this worktree's code: for each target (churn, expansion) ``training_frame`` +
   ``train_model`` (tuning, backtest, final fit, evaluation report with SHAP) + MLflow
   ``log_and_register`` into a throw-away SQLite store, timed per phase by wrapping the library
   functions it calls (``lightgbm.train``, the baselines, the calibrators, SHAP, the report).
3. In the same child, right after each target: the *raw reference*, every ``lightgbm.train``
   call that target made, replayed bare: each distinct training matrix the run fitted on is
   turned into one ``lgb.Dataset`` (``free_raw_data=False``, reused by every fit on it), then
   ``lgb.train`` with the same parameters for exactly the number of boosting rounds the run
   built (early-stopping overrun included), without validation sets or callbacks.

The ratio is the target's train time (``train_model`` + logging) over its raw reference time;
the boosting work of a run is the sum over its fits of (training rows x boosting rounds), so a
run that fits less shows it there, not as a better ratio.

Training grid: the accounts are sub-sampled (``--account-share``, a stable hash of the id) so an
interleaved before/after pair fits in minutes on a shared machine; the weekly 540-day grid and
every config default stay (``--trials`` tuning trials with no wall-time budget, so both
versions run the same trials).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("churn", "expansion")
# Buckets a target's time is split into (exclusive: a bucket's time is not also another's).
BUCKETS = ("lgb_early_stopped", "lgb_refit", "baselines", "calibration", "shap", "report")


# --- 1. features and labels (once) -------------------------------------------------------------


def prepare(data: Path, work: Path, threads: int) -> dict[str, float]:
    """Stage the Parquet warehouse, build features and labels on the default grid; save them."""
    sys.path.insert(0, str(ROOT))
    from features.build import build_features
    from features.config import FeatureConfig, SourceTable, WarehouseConfig
    from features.contract import CONTRACT
    from features.grid import observation_dates
    from features.labels import build_labels
    from features.validation import prepare_sources
    from features.warehouse import DuckDBWarehouse
    from pipelines.dates import data_horizon, end_of

    tables = {}
    for name in CONTRACT:
        folder, single = data / name, data / f"{name}.parquet"
        if folder.is_dir():
            tables[name] = SourceTable(parquet=str(folder / "*.parquet"))
        elif single.exists():
            tables[name] = SourceTable(parquet=str(single))
    config = FeatureConfig()
    wh = DuckDBWarehouse(memory_limit="4GB")
    wh.execute("SET threads = ?", [threads])
    last = wh.scalar(
        "SELECT max(event_time) FROM read_parquet(?)", [str(data / "usage_events/*.parquet")]
    )
    run_date = (last - timedelta(days=last.weekday())).date()
    obs = config.observation
    grid = observation_dates(
        run_date - timedelta(days=obs.history_days), run_date, frequency=obs.frequency
    )
    timings = {}
    clock = time.perf_counter()
    report = prepare_sources(
        wh, WarehouseConfig(tables=tables), reference_time=data_horizon(run_date)
    )
    timings["validate_stage_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    features = build_features(wh, grid, available_tables=report.available, config=config)
    timings["features_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    labels = build_labels(
        wh, grid, config=config.labels, data_end=end_of(run_date), active=config.active
    )
    timings["labels_s"] = time.perf_counter() - clock
    wh.close()
    work.mkdir(parents=True, exist_ok=True)
    features.to_parquet(work / "features.parquet", index=False)
    labels.to_parquet(work / "labels.parquet", index=False)
    meta = timings | {
        "run_date": run_date.isoformat(),
        "grid_dates": len(grid),
        "feature_rows": len(features),
        "feature_columns": features.shape[1],
        "health": "health_scores" in report.available,
        "gap_days": config.labels.maturity_days,
    }
    (work / "prepared.json").write_text(json.dumps(meta, indent=1))
    return meta


def prepare_synthetic(accounts: int, work: Path) -> dict[str, float]:
    """The synthetic panel of benchmarks/bench_models_train.py (104 weeks) as the frames."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_models_train import GRACE, HORIZON, generate

    clock = time.perf_counter()
    features, labels = generate(accounts, 104)
    work.mkdir(parents=True, exist_ok=True)
    features.to_parquet(work / "features.parquet", index=False)
    labels.to_parquet(work / "labels.parquet", index=False)
    meta = {
        "validate_stage_s": 0.0,
        "features_s": time.perf_counter() - clock,
        "labels_s": 0.0,
        "run_date": str(features["as_of"].max().date()),
        "grid_dates": 104,
        "feature_rows": len(features),
        "feature_columns": features.shape[1],
        "health": True,
        "gap_days": HORIZON + GRACE,
    }
    (work / "prepared.json").write_text(json.dumps(meta, indent=1))
    return meta


# --- 2-3. one training run, instrumented, and its raw reference ----------------------------------


class _Clock:
    """Exclusive time per bucket: a wrapped call's time goes to its bucket, minus the time of
    wrapped calls nested inside it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []

    def wrap(self, bucket, fn):
        def timed(*args, **kwargs):
            self._stack.append([0.0])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                nested = self._stack.pop()[0]
                name = bucket(args, kwargs) if callable(bucket) else bucket
                self.seconds[name] += spent - nested
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][0] += spent

        return timed


def _instrument(clock: _Clock, fits: list[dict]) -> None:
    """Wrap what training calls, in the modules that call it (the old and the new code use
    the same names for these)."""
    import lightgbm as lgb

    import models.bundle
    import models.evaluation
    import models.train

    raw_train = lgb.train

    def recording_train(params, train_set, *args, **kwargs):
        data, label = train_set.data, train_set.label
        booster = raw_train(params, train_set, *args, **kwargs)
        fits.append(
            {
                "params": dict(params),
                "data": data,
                "label": label,
                "rows": train_set.num_data(),
                "rounds": booster.current_iteration(),
                "early_stopped": bool(kwargs.get("valid_sets")),
            }
        )
        return booster

    def fit_bucket(args, kwargs):
        return "lgb_early_stopped" if kwargs.get("valid_sets") else "lgb_refit"

    lgb.train = clock.wrap(fit_bucket, recording_train)
    for name in (
        "fit_logistic",
        "fit_rfm",
        "predict_logistic",
        "fit_health_baseline",
        "predict_health_baseline",
    ):
        setattr(models.train, name, clock.wrap("baselines", getattr(models.train, name)))
    for name in ("choose_calibrator", "level_offset"):
        setattr(models.train, name, clock.wrap("calibration", getattr(models.train, name)))
    bundle = models.bundle.ModelBundle
    bundle.contributions = clock.wrap("shap", bundle.contributions)
    models.evaluation.write_report = clock.wrap("report", models.evaluation.write_report)


def _raw_reference(fits: list[dict]) -> tuple[float, dict[str, float]]:
    """Seconds to make the same boosters bare: one Dataset per distinct matrix, fixed rounds."""
    import lightgbm as lgb

    by_data: dict[int, lgb.Dataset] = {}
    seconds = {"dataset_s": 0.0, "train_s": 0.0}
    for fit in fits:
        key = id(fit["data"])
        start = time.perf_counter()
        if key not in by_data:
            by_data[key] = lgb.Dataset(
                fit["data"],
                fit["label"],
                params={"feature_pre_filter": False},
                free_raw_data=False,
            ).construct()
        seconds["dataset_s"] += time.perf_counter() - start
        start = time.perf_counter()
        lgb.train(fit["params"], by_data[key], num_boost_round=fit["rounds"])
        seconds["train_s"] += time.perf_counter() - start
    return seconds["dataset_s"] + seconds["train_s"], seconds


def _sample_accounts(frame, share: float):
    if share >= 1:
        return frame
    ids = frame["account_id"].astype(str)
    keep = ids.map(lambda a: zlib.crc32(a.encode()) % 10_000 < share * 10_000)
    return frame[keep.to_numpy()].reset_index(drop=True)


def child(code: Path, work: Path, label: str, args: argparse.Namespace) -> dict:
    """One instrumented training run of ``code``'s models/ on the prepared frames."""
    sys.path.insert(0, str(code))
    import lightgbm as lgb
    import pandas as pd

    import models.evaluation
    import models.train
    from models.config import ModelConfig, TrackingConfig, TuningConfig
    from models.dataset import training_frame
    from models.registry import configure_tracking, log_and_register

    assert Path(models.train.__file__).resolve().is_relative_to(code.resolve()), models.train
    meta = json.loads((work / "prepared.json").read_text())
    features = _sample_accounts(pd.read_parquet(work / "features.parquet"), args.account_share)
    labels = _sample_accounts(pd.read_parquet(work / "labels.parquet"), args.account_share)
    config = ModelConfig(
        num_threads=args.threads,
        tuning=TuningConfig(trials=args.trials, timeout_seconds=24 * 3600),
    )
    out: dict = {"label": label, "code": str(code), "lightgbm": lgb.__version__, "targets": {}}
    # models/ before the pure training core wrote the report inside train_model and took the
    # tracking config and data_dir in log_and_register; since, the report is its own call and
    # log_and_register takes the tracking resource configure_tracking returns
    pure = "output_dir" not in inspect.signature(models.train.train_model).parameters
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tracking = TrackingConfig(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        store = configure_tracking(tracking, data_dir=Path(tmp))
        where = {"tracking": store} if pure else {"tracking": tracking, "data_dir": Path(tmp)}
        for target in TARGETS:
            clock, fits = _Clock(), []
            _instrument(clock, fits)
            start = time.perf_counter()
            dataset = training_frame(features, labels, target=target)
            frame_s = time.perf_counter() - start
            start = time.perf_counter()
            report_dir = Path(tmp) / "evaluation" / target
            result = models.train.train_model(
                dataset,
                target=target,
                config=config,
                gap_days=meta["gap_days"],
                health_available=meta["health"],
                **({} if pure else {"output_dir": report_dir}),
            )
            if pure:
                models.evaluation.write_report(result, report_dir)
            train_s = time.perf_counter() - start
            start = time.perf_counter()
            log_and_register(result, **where, run_name=f"{target}-{label}")
            logging_s = time.perf_counter() - start
            _uninstrument()
            raw_s, raw_parts = _raw_reference(fits)
            out["targets"][target] = {
                "rows": len(dataset),
                "training_frame_s": frame_s,
                "train_model_s": train_s,
                "logging_s": logging_s,
                "phases": {k: v for k, v in result.timings.items()},
                "buckets": {b: clock.seconds.get(b, 0.0) for b in BUCKETS},
                "calls": dict(clock.calls),
                "fits": len(fits),
                "early_stopped_fits": sum(f["early_stopped"] for f in fits),
                "boosting_work": sum(f["rows"] * f["rounds"] for f in fits),
                "raw_s": raw_s,
                "raw_parts": raw_parts,
                "trees": result.bundle.booster.num_trees(),
                "latest_pr_auc": float(result.latest_fold().loc["lightgbm", "pr_auc"]),
                "model_sha": _sha(result.bundle.booster.model_to_string()),
                "backtest_sha": _sha(result.backtest.to_csv()),
                "predictions_sha": _sha(result.predictions.to_csv()),
            }
            del fits
    return out


_ORIGINALS: dict = {}


def _uninstrument() -> None:
    """Put the original functions back (the next target is wrapped afresh)."""
    for (owner, name), fn in _ORIGINALS.items():
        setattr(owner, name, fn)


def _remember_originals() -> None:
    import lightgbm as lgb

    import models.bundle
    import models.evaluation
    import models.train

    names = [
        (lgb, "train"),
        (models.bundle.ModelBundle, "contributions"),
        (models.evaluation, "write_report"),
        *[
            (models.train, n)
            for n in (
                "fit_logistic",
                "fit_rfm",
                "predict_logistic",
                "fit_health_baseline",
                "predict_health_baseline",
                "choose_calibrator",
                "level_offset",
            )
        ],
    ]
    for owner, name in names:
        _ORIGINALS[(owner, name)] = getattr(owner, name)


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- driver ------------------------------------------------------------------------------------


def _export_base(ref: str, work: Path) -> Path:
    """The code of ``ref`` as plain files (``git archive``), not a worktree."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    target = work / f"code-{commit[:10]}"
    if not (target / "models" / "train.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _run_child(code: Path, label: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(code),
        "--label",
        label,
        "--work",
        str(args.work),
        "--account-share",
        str(args.account_share),
        "--trials",
        str(args.trials),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=code)
    if done.returncode != 0:
        raise SystemExit(f"{label} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print_run(run: dict) -> None:
    for target, t in run["targets"].items():
        total = t["train_model_s"] + t["logging_s"]
        phases = t["phases"]
        buckets = ", ".join(f"{k} {v:.1f}" for k, v in t["buckets"].items())
        print(
            f"  {run['label']:6s} {target:9s} rows {t['rows']:,}: total {total:.1f} s = "
            f"train_model {t['train_model_s']:.1f} (tuning {phases.get('tuning_s', 0):.1f}, "
            f"backtest {phases.get('backtest_s', 0):.1f}, "
            f"final {phases.get('final_fit_s', 0):.1f}) "
            f"+ logging {t['logging_s']:.1f}; [{buckets}]; {t['fits']} fits "
            f"({t['early_stopped_fits']} early-stopped), work {t['boosting_work'] / 1e6:.1f} M "
            f"row-rounds; raw {t['raw_s']:.1f} s -> ratio {total / t['raw_s']:.2f}x; "
            f"model {t['model_sha']} backtest {t['backtest_sha']} pr_auc {t['latest_pr_auc']:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/bench-data/w20k"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/churnlens-bench-train"))
    parser.add_argument("--account-share", type=float, default=0.25)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--base-ref", default=None, help="the code before (default: merge-base of main and HEAD)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument(
        "--synthetic-accounts",
        type=int,
        default=0,
        help="instead of --data: bench_models_train.generate's panel of this many accounts x "
        "104 weeks (use its own --work directory)",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--label", default="after", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _remember_originals_in(args.child)
        print(json.dumps(child(args.child, args.work, args.label, args)))
        return
    started = datetime.now(UTC)
    if args.synthetic_accounts and not (args.work / "prepared.json").exists():
        meta = prepare_synthetic(args.synthetic_accounts, args.work)
    elif not (args.work / "prepared.json").exists():
        if not (args.data / ".done").exists():
            raise SystemExit(f"{args.data} is not complete yet (no .done file); wait for it")
        meta = prepare(args.data, args.work, args.threads)
    else:
        meta = json.loads((args.work / "prepared.json").read_text())
    print(
        f"prepared: {meta['feature_rows']:,} feature rows x {meta['feature_columns']} columns on "
        f"{meta['grid_dates']} weekly dates to {meta['run_date']}: validate+stage "
        f"{meta['validate_stage_s']:.1f} s, features {meta['features_s']:.1f} s, labels "
        f"{meta['labels_s']:.1f} s"
    )
    if args.prepare_only:
        return
    args.base_ref = (
        args.base_ref
        or subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "main", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()[:10]
    )
    base = _export_base(args.base_ref, args.work)
    print(
        f"{started:%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; account share {args.account_share}, {args.trials} trials; "
        f"before = {args.base_ref} ({base.name}), after = {ROOT}"
    )
    runs = []
    for i in range(args.repeat):
        for label, code in (("before", base), ("after", ROOT)):
            run = _run_child(code, label, args)
            run["load"] = os.getloadavg()[0]
            runs.append(run)
            print(f"run {i + 1} {label} (load {run['load']:.1f}):")
            _print_run(run)
    (args.work / f"runs-{started:%H%M}.json").write_text(json.dumps(runs, indent=1))


def _remember_originals_in(code: Path) -> None:
    sys.path.insert(0, str(code))
    _remember_originals()


if __name__ == "__main__":
    main()
