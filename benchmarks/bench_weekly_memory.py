"""Weekly scoring memory: seconds and peak RSS per step of the weekly path, on generated Parquet.

    .venv/bin/python benchmarks/generate_data.py --accounts 20000 --out /work/bench-data/w20k
    .venv/bin/python benchmarks/bench_weekly_memory.py --data /work/bench-data/w20k \
        [--memory-limit 1GB] [--threads 2] [--reference-build] [--repeat 2] \
        [--before ../main-checkout]

The steps are those of ``pipelines.flows.weekly_score`` without Prefect and MLflow:

1. validate + stage (``features.validation.prepare_sources`` at the end of the run date, checking
   and deduplicating only what the run's feature windows read, ``reads_after``). The run of the
   week before goes first in the same warehouse (measured, not part of the path): a first run,
   which checks every row once and records ``source_checks``; the measured weekly run then checks
   only the rows the record does not vouch for;
2. features at the score date (``features.build.build_model_features``);
3. only with ``--reference-build``: features at the drift reference date (the churn model's
   training end), as the weekly flow did before the reference was stored with the model;
4. ``serving.score.score_accounts`` (predictions, exact SHAP reasons).

``--before DIR`` runs, interleaved with each run of this code, the same steps on the code of the
checkout in DIR (e.g. ``git worktree add ../base main``; a checkout without ``reads_after``
validates every row, as main does, and has no week-before run), and prints both tables and a
before/after table: the ratios come from one run. Each step also reports the process's CPU
seconds (every thread), which a machine shared with other jobs stretches less than wall time.

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

# --code DIR (set by --before for its children): import the project from another checkout
_CODE = sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv else None
sys.path.insert(0, _CODE or str(Path(__file__).resolve().parents[1]))

from features.config import SourceTable, WarehouseConfig  # noqa: E402
from features.contract import CONTRACT  # noqa: E402
from features.warehouse import DuckDBWarehouse  # noqa: E402

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
    started, cpu = time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak_kb = max(_status_kb("VmHWM") if resettable else 0, sampler.peak_kb)
    rows.append(
        {
            "step": label,
            "seconds": seconds,
            "cpu_s": cpu,
            "start_mb": start_kb / 1024,
            "peak_mb": peak_kb / 1024,
        }
    )
    print(f"  {label:<34} {seconds:7.1f} s  cpu {cpu:7.1f} s  peak {peak_kb / 1024:7.0f} MB",
          file=sys.stderr)  # fmt: skip
    return out


# --- the two child processes --------------------------------------------------------------------


def train_bundle(data: Path, out: Path, run_date: date, threads: int) -> None:
    """A small churn bundle: features of an earlier date, a label from usage and ARR plus noise."""
    import lightgbm as lgb
    import numpy as np

    from features import validation
    from features.build import build_features
    from features.catalog import FEATURES
    from features.validation import prepare_sources
    from models.bundle import ModelBundle, prepare_matrix
    from models.config import ModelConfig
    from pipelines.dates import as_of_for, data_horizon

    train_date = run_date - timedelta(weeks=TRAIN_WEEKS_BEFORE)
    wh = _warehouse("4GB", threads)
    moment = as_of_for(train_date)
    windowed = {}  # code before issue 16 validates every row
    if hasattr(validation, "feature_reads_after"):
        windowed = {"reads_after": validation.feature_reads_after([moment])}
    report = prepare_sources(wh, _config(data), reference_time=data_horizon(train_date), **windowed)
    frame = build_features(wh, [moment], available_tables=report.available)
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
    from features import validation
    from features.build import build_model_features
    from features.validation import prepare_sources
    from models.bundle import ModelBundle
    from pipelines.dates import as_of_for, data_horizon
    from serving.config import ServingConfig
    from serving.score import score_accounts
    from serving.writeback import write_scores

    resettable = _reset_peak()
    sampler = _Sampler()
    sampler.start()
    rows: list[dict] = []
    bundle = ModelBundle.load(bundle_dir)
    wh = _warehouse(args.memory_limit, args.threads)
    settings = wh.con.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    ).fetchall()[0]
    config = _config(data)
    dates = [as_of_for(run_date)]
    if args.reference_build:
        dates.append(bundle.train_window[1])
    week = timedelta(days=7)

    windowed = hasattr(validation, "feature_reads_after")  # False on code before issue 16

    def stage(day: date, moments: list[datetime]):
        if not windowed:
            return prepare_sources(wh, config, reference_time=data_horizon(day))
        return prepare_sources(
            wh,
            config,
            reference_time=data_horizon(day),
            reads_after=validation.feature_reads_after(moments),
        )

    if windowed:
        _measure(
            "(week before: first run)",
            lambda: stage(run_date - week, [d - week for d in dates]),
            rows,
            sampler,
            resettable,
        )
        rows[-1]["extra"] = True
    report = _measure("validate + stage", lambda: stage(run_date, dates), rows, sampler, resettable)
    names = bundle.feature_names

    def features_at(moment: datetime):
        return build_model_features(
            wh, [moment], feature_names=names, available_tables=report.available
        )

    features = _measure(
        "features, score date", lambda: features_at(as_of_for(run_date)), rows, sampler, resettable
    )
    reference = []
    if args.reference_build:
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
    written = _measure(
        "write-back (predictions, reasons)",
        lambda: write_scores(
            wh, scored, schema="churnlens", run_meta={"run_date": run_date.isoformat()}
        ),
        rows,
        sampler,
        resettable,
    )
    sampler.stop.set()
    summary = {
        "rows_written": int(sum(written.values())),
        "rows": rows,
        "process_peak_mb": _status_kb("VmHWM") / 1024 if not resettable else None,
        "accounts_scored": len(scored.predictions),
        "reference_rows": len(reference),
        "events": int(report.rows.get("usage_events", 0)),
        "exclusions": report.exclusions.get("usage_events", {}),
        "notes": [n for n in report.notes if n.startswith("usage_events")],
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


def _path_rows(result: dict) -> list[dict]:
    return [r for r in result["rows"] if not r.get("extra")]


def _print_table(result: dict, label: str) -> None:
    print(f"\n{label}: DuckDB memory_limit {result['duckdb']['memory_limit']}, "
          f"temp_directory {result['duckdb']['temp_directory'] or '(none)'}")  # fmt: skip
    print(f"{'step':<34} {'seconds':>8} {'CPU s':>8} {'RSS at start MB':>16} {'peak RSS MB':>12}")
    for row in result["rows"]:
        print(f"{row['step']:<34} {row['seconds']:8.1f} {row['cpu_s']:8.1f} "
              f"{row['start_mb']:16.0f} {row['peak_mb']:12.0f}")  # fmt: skip
    total = sum(r["seconds"] for r in _path_rows(result))
    cpu = sum(r["cpu_s"] for r in _path_rows(result))
    peak = max(r["peak_mb"] for r in _path_rows(result))
    print(f"{'whole path':<34} {total:8.1f} {cpu:8.1f} {'':>16} {peak:12.0f}")
    print(f"accounts scored {result['accounts_scored']:,}; usage events checked "
          f"{result['events']:,}; usage exclusions {result['exclusions']}; "
          f"sum of churn probabilities {result['checksum']:.6f}")  # fmt: skip
    for note in result.get("notes", []):
        print(f"  {note}")


def _print_comparison(before: list[dict], after: list[dict]) -> None:
    """Seconds of every run (before / after, interleaved) and the peak of the first."""
    order = [r["step"] for r in _path_rows(after[0])]
    order += [r["step"] for r in _path_rows(before[0]) if r["step"] not in order]

    def cell(results: list[dict], step: str | None) -> tuple[str, str, str]:
        peaks = [r["peak_mb"] for r in _path_rows(results[0]) if step in (None, r["step"])]
        if not peaks:
            return "-", "-", "-"

        def runs(key: str) -> str:
            found = [
                sum(r[key] for r in _path_rows(res) if step in (None, r["step"])) for res in results
            ]
            return " / ".join(f"{x:.1f}" for x in found)

        return runs("seconds"), runs("cpu_s"), f"{max(peaks):,.0f}"

    print("\n| step | before s | CPU s | peak MB | after s | CPU s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for step in [*order, None]:
        b, a = cell(before, step), cell(after, step)
        print(f"| {step or 'whole path'} | {' | '.join(b)} | {' | '.join(a)} |")
    for label, results in (("before", before), ("after", after)):
        sums = {f"{res['checksum']:.6f}" for res in results}
        print(f"{label}: sum of churn probabilities {', '.join(sorted(sums))}")


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
    parser.add_argument(
        "--reference-build",
        action="store_true",
        help="add a feature build at the drift reference date (the flow before the reference "
        "was stored with the model; for comparisons with such a checkout)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each setting")
    parser.add_argument(
        "--before", type=Path, help="a checkout whose benchmark runs interleaved with this one"
    )
    parser.add_argument("--child", choices=["train", "path"], help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
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
        extra = ["--reference-build"] if args.reference_build else []
        for limit in args.memory_limit or ["default"]:
            path = [*common, "--child", "path", "--bundle", str(bundle), "--memory-limit", limit]
            before, after = [], []
            for i in range(args.repeat):
                out = _child([*path, *extra])
                after.append(json.loads(out.strip().splitlines()[-1]))
                _print_table(after[-1], f"run {i + 1}, memory_limit={limit}")
                if args.before is not None:
                    out = _child([*path, *extra, "--code", str(args.before.resolve())])
                    before.append(json.loads(out.strip().splitlines()[-1]))
                    _print_table(before[-1], f"before ({args.before}), run {i + 1}, {limit}")
            if before:
                _print_comparison(before, after)


if __name__ == "__main__":
    main()
