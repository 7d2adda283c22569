"""Weekly scoring memory: seconds and peak RSS per step of the weekly path, on generated Parquet.

    .venv/bin/python benchmarks/generate_data.py --accounts 20000 --out /work/bench-data/w20k
    .venv/bin/python benchmarks/bench_weekly_memory.py --data /work/bench-data/w20k \
        [--memory-limit 1GB] [--threads 2]

The steps are those of ``pipelines.flows.weekly_score`` without Prefect and MLflow:

1. validate + stage (``features.validation.prepare_sources`` at the end of the run date);
2. features at the score date (``features.build.build_model_features``);
3. features at the drift reference date (the churn model's training end, as the flow does);
4. ``serving.score.score_accounts`` (predictions, exact SHAP reasons).

A LightGBM churn bundle (the project's default tree shape, 300 trees) is first trained in a
separate process on the features of an earlier date with a synthetic label (not part of the
measured path) and saved to a temporary folder (or ``--bundle``). The measured path then runs
in a fresh process per ``--memory-limit``, which resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``) before each step and reads ``VmHWM`` after it, so each step's peak
is its own (memory a step keeps, such as DuckDB's buffer pool, still counts in the next). A
sampling thread on ``VmRSS`` stands in where the reset is not allowed. ``--memory-limit`` sets
the warehouse's DuckDB ``memory_limit`` (``default``: the warehouse's own default; ``80%``:
DuckDB's own default, as before the cap).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.config import SourceTable, WarehouseConfig
from features.sources import CONTRACT
from features.warehouse import DuckDBWarehouse

TRAIN_WEEKS_BEFORE = 16  # the bundle's training date, weeks before the run date
SAMPLE_ACCOUNTS = 5_000
TREES = 300  # a typical early-stopped champion of the default config


def _config(data: Path) -> WarehouseConfig:
    tables = {}
    for name in CONTRACT:
        folder, single = data / name, data / f"{name}.parquet"
        if folder.is_dir():
            tables[name] = SourceTable(parquet=str(folder / "*.parquet"))
        elif single.exists():
            tables[name] = SourceTable(parquet=str(single))
    return WarehouseConfig(tables=tables)


def _warehouse(memory_limit: str, threads: int) -> DuckDBWarehouse:
    wh = DuckDBWarehouse(memory_limit=None if memory_limit == "default" else memory_limit)
    wh.execute("SET threads = ?", [threads])
    return wh


def _run_date(data: Path) -> date:
    """The last Monday on or before the newest event."""
    import duckdb

    glob = str(data / "usage_events" / "*.parquet")
    (last,) = (
        duckdb.connect().execute("SELECT max(event_time) FROM read_parquet(?)", [glob]).fetchone()
    )
    return (last - timedelta(days=last.weekday())).date()


# --- memory probes ------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the kernel's VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class _Sampler(threading.Thread):
    """Highest VmRSS seen every 10 ms since the last :meth:`reset`."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0
        self.stop = threading.Event()

    def reset(self) -> None:
        self.peak_kb = _status_kb("VmRSS")

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))


def _measure(label: str, fn, rows: list[dict], sampler: _Sampler, resettable: bool):
    start_kb = _status_kb("VmRSS")
    if resettable:
        _reset_peak()
    sampler.reset()
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    peak_kb = max(_status_kb("VmHWM") if resettable else 0, sampler.peak_kb)
    rows.append(
        {"step": label, "seconds": seconds, "start_mb": start_kb / 1024, "peak_mb": peak_kb / 1024}
    )
    print(f"  {label:<34} {seconds:7.1f} s  peak {peak_kb / 1024:7.0f} MB", file=sys.stderr)
    return out


# --- the two child processes --------------------------------------------------------------------


def train_bundle(data: Path, out: Path, run_date: date, threads: int) -> None:
    """A small churn bundle: features of an earlier date, a label from usage and ARR plus noise."""
    import lightgbm as lgb
    import numpy as np

    from features.build import build_features
    from features.catalog import FEATURES
    from features.validation import prepare_sources
    from models.bundle import ModelBundle, prepare_matrix
    from models.config import ModelConfig
    from pipelines.dates import as_of_for, data_horizon

    train_date = run_date - timedelta(weeks=TRAIN_WEEKS_BEFORE)
    wh = _warehouse("4GB", threads)
    report = prepare_sources(wh, _config(data), reference_time=data_horizon(train_date))
    frame = build_features(wh, [as_of_for(train_date)], available_tables=report.available)
    wh.close()
    frame = frame.sample(n=min(len(frame), SAMPLE_ACCOUNTS), random_state=0)
    features = [c for c in frame.columns if c not in ("account_id", "as_of", "name")]
    levels = {
        c: sorted(frame[c].dropna().astype(str).unique())
        for c in features
        if c in FEATURES and FEATURES[c].unit == "category"
    }
    X = prepare_matrix(frame, features, levels)
    numeric = X.select_dtypes("number").fillna(0).to_numpy()
    rng = np.random.default_rng(0)
    scaled = (numeric - numeric.mean(axis=0)) / (numeric.std(axis=0) + 1e-9)
    logit = scaled[:, :8] @ rng.normal(0, 0.6, min(8, scaled.shape[1])) - 1.5
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    config = ModelConfig()  # the project's tree shape: TreeSHAP cost grows with depth
    params = {**config.params, "objective": "binary", "verbose": -1}
    params.update(num_threads=threads, seed=0)
    booster = lgb.train(params, lgb.Dataset(X, y), TREES)
    start = datetime.combine(train_date - timedelta(days=365), datetime.min.time())
    ModelBundle(
        target="churn",
        booster=booster,
        feature_names=features,
        categorical_levels=levels,
        calibrator=None,
        train_window=(start, as_of_for(train_date)),
        params=params,
    ).save(out)


def weekly_path(data: Path, bundle_dir: Path, run_date: date, args: argparse.Namespace) -> None:
    """The measured steps, in this (fresh) process; the table rows go to stdout as JSON."""
    from features.build import build_model_features
    from features.validation import prepare_sources
    from models.bundle import ModelBundle
    from pipelines.dates import as_of_for, data_horizon
    from serving.config import ServingConfig
    from serving.score import score_accounts

    resettable = _reset_peak()
    sampler = _Sampler()
    sampler.start()
    rows: list[dict] = []
    bundle = ModelBundle.load(bundle_dir)
    wh = _warehouse(args.memory_limit, args.threads)
    settings = wh.con.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    ).fetchall()[0]
    report = _measure(
        "validate + stage",
        lambda: prepare_sources(wh, _config(data), reference_time=data_horizon(run_date)),
        rows,
        sampler,
        resettable,
    )
    names = bundle.feature_names

    def features_at(moment: datetime):
        return build_model_features(
            wh, [moment], feature_names=names, available_tables=report.available
        )

    features = _measure(
        "features, score date", lambda: features_at(as_of_for(run_date)), rows, sampler, resettable
    )
    reference = _measure(
        "features, drift reference date",
        lambda: features_at(bundle.train_window[1]),
        rows,
        sampler,
        resettable,
    )
    scored = _measure(
        "score_accounts (churn, SHAP)",
        lambda: score_accounts(
            features,
            churn=bundle,
            expansion=None,
            run_date=run_date,
            config=ServingConfig(),
            model_refs={"churn": "bench v1"},
        ),
        rows,
        sampler,
        resettable,
    )
    sampler.stop.set()
    summary = {
        "rows": rows,
        "process_peak_mb": _status_kb("VmHWM") / 1024 if not resettable else None,
        "accounts_scored": len(scored.predictions),
        "reference_rows": len(reference),
        "events": int(report.rows.get("usage_events", 0)),
        "exclusions": report.exclusions.get("usage_events", {}),
        "duckdb": {"memory_limit": settings[0], "temp_directory": settings[1]},
        "peak_reset": resettable,
        "checksum": float(scored.predictions["churn_probability"].sum()),
    }
    wh.close()
    print(json.dumps(summary))


# --- the parent ---------------------------------------------------------------------------------


def _child(args: list[str]) -> str:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout


def _print_table(result: dict, label: str) -> None:
    print(f"\n{label}: DuckDB memory_limit {result['duckdb']['memory_limit']}, "
          f"temp_directory {result['duckdb']['temp_directory'] or '(none)'}")  # fmt: skip
    print(f"{'step':<34} {'seconds':>8} {'RSS at start MB':>16} {'peak RSS MB':>12}")
    for row in result["rows"]:
        print(f"{row['step']:<34} {row['seconds']:8.1f} {row['start_mb']:16.0f} "
              f"{row['peak_mb']:12.0f}")  # fmt: skip
    total = sum(r["seconds"] for r in result["rows"])
    peak = max(r["peak_mb"] for r in result["rows"])
    print(f"{'whole path':<34} {total:8.1f} {'':>16} {peak:12.0f}")
    print(f"accounts scored {result['accounts_scored']:,}; usage events {result['events']:,}; "
          f"usage exclusions {result['exclusions']}; "
          f"sum of churn probabilities {result['checksum']:.6f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/bench-data/w20k"))
    parser.add_argument(
        "--memory-limit",
        action="append",
        help="DuckDB memory_limit for a run (repeatable: one fresh process each); "
        "'default' keeps the warehouse's own setting (the default)",
    )
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument("--bundle", type=Path, help="reuse a bundle folder written before")
    parser.add_argument("--child", choices=["train", "path"], help=argparse.SUPPRESS)
    parser.add_argument("--run-date", type=date.fromisoformat, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "train":
        train_bundle(args.data, args.bundle, args.run_date, args.threads)
        return
    if args.child == "path":
        args.memory_limit = args.memory_limit[0]
        weekly_path(args.data, args.bundle, args.run_date, args)
        return
    if not (args.data / "usage_events").is_dir():
        sys.exit(f"no generated warehouse in {args.data}: run benchmarks/generate_data.py first")
    run_date = _run_date(args.data)
    common = ["--data", str(args.data), "--threads", str(args.threads)]
    common += ["--run-date", run_date.isoformat()]
    print(f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"duckdb {__import__('duckdb').__version__}, {datetime.now():%Y-%m-%d %H:%M}; "
          f"data {args.data}, run date {run_date}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="churnlens-bench-") as tmp:
        bundle = args.bundle or Path(tmp) / "bundle"
        if not (bundle / "bundle.json").exists():
            print("training the churn bundle (not measured) ...", flush=True)
            _child([*common, "--child", "train", "--bundle", str(bundle)])
        for limit in args.memory_limit or ["default"]:
            out = _child(
                [*common, "--child", "path", "--bundle", str(bundle), "--memory-limit", limit]
            )
            _print_table(json.loads(out.strip().splitlines()[-1]), f"memory_limit={limit}")


if __name__ == "__main__":
    main()
