"""Spark benchmark: the same feature build on local Spark (1 and 2 cores) and on DuckDB over the
same Parquet files, and weekly scoring of 1,000,000 accounts on Spark.

    .venv/bin/python benchmarks/bench_spark.py features --data /work/bench-data/w20k
        [--engine duckdb|spark] [--cores 1] [--weeks 52]
    .venv/bin/python benchmarks/bench_spark.py scoring --data /work/bench-data/w20k
        [--cores 2] [--copies 50]
    .venv/bin/python benchmarks/bench_spark.py matrix --data /work/bench-data/w20k [--quick]

``matrix`` runs issue #11's table, one child process per configuration: ``features`` on DuckDB
and on Spark at 1 and 2 cores (one date and the 52-week grid), then ``scoring`` of 50 copies of
the world on Spark at 1 and 2 cores (20k x 50 = 1,000,000 accounts), and prints each JSON line
and a table with the 1-to-2-core speed-ups and Spark/DuckDB ratios. ``--quick`` (a smoke
test of the benchmark itself, e.g. on ``generate_data.py --accounts 500``) uses a 4-week grid
and 2 copies: its figures mean nothing.

``features`` validates and stages the warehouse (``benchmarks/generate_data.py``'s layout:
``<table>.parquet`` per contract table, usage events as a folder), then times
``build_features`` at the last Monday of the data and on a ``--weeks`` weekly grid ending there.
``scoring`` builds the 20k world's features at that date (with DuckDB: the feature build is
what ``features`` times), trains a small churn and
expansion bundle on them (synthetic labels: the cost of scoring is the model's size, not its
quality), replicates the feature rows ``--copies`` times under new account ids (50 x 20k =
1M accounts) and times partitioned scoring with SHAP reasons and the Parquet write of the week.

One engine and core count per process (a JVM's master is fixed at start), so run it once per
configuration. Each prints one JSON line: seconds per step, the process's peak RSS and, for
Spark, the peak RSS of its children (the driver JVM and Python workers), measured after the
session stopped, and the load average before each step (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from features.build import assemble_features, build_features, tidy_features
from features.config import FeatureConfig, SourceTable, SparkConfig, WarehouseConfig
from features.contract import CONTRACT
from features.grid import observation_dates
from features.validation import prepare_sources
from features.warehouse import DuckDBWarehouse, Warehouse


def _parquet_paths(data: Path) -> dict[str, str]:
    out = {}
    for name in CONTRACT:
        if (data / f"{name}.parquet").exists():
            out[name] = str(data / f"{name}.parquet")
        elif (data / name).is_dir():
            out[name] = str(data / name / "*.parquet")
    return out


def _last_monday(data: Path) -> datetime:
    """The last Monday midnight of the data (benchmarks/generate_data.py ends 2026-11-30)."""
    import duckdb

    end = duckdb.sql(
        f"SELECT max(event_time) FROM read_parquet('{data}/usage_events/*.parquet')"
    ).fetchall()[0][0]
    day = datetime(end.year, end.month, end.day)
    return day - timedelta(days=day.weekday())


def _open(engine: str, data: Path, cores: int, tmp: Path) -> tuple[Warehouse, WarehouseConfig]:
    paths = _parquet_paths(data)
    if engine == "duckdb":
        config = WarehouseConfig(tables={n: SourceTable(parquet=p) for n, p in paths.items()})
        wh = DuckDBWarehouse(memory_limit="1500MB")
        wh.execute(f"SET threads = {int(cores)}")
        return wh, config
    from features.spark import SparkWarehouse, spark_session

    spark = SparkConfig(
        master=f"local[{cores}]",
        app_name="churnlens-bench",
        conf={
            "spark.sql.shuffle.partitions": str(4 * cores),
            "spark.driver.memory": "3g",
            "spark.sql.adaptive.enabled": "true",
        },
    )
    session = spark_session(spark, warehouse_dir=tmp / "spark-warehouse")
    session.sparkContext.setLogLevel("ERROR")
    folders = {n: p.removesuffix("/*.parquet") for n, p in paths.items()}
    return SparkWarehouse(session, parquet=folders, output_dir=tmp / "out"), WarehouseConfig()


def _step(timings: dict, loads: dict, name: str, fn):  # type: ignore[no-untyped-def]
    loads[name] = round(os.getloadavg()[0], 1)
    started = time.perf_counter()
    result = fn()
    timings[name] = round(time.perf_counter() - started, 1)
    print(f"  {name}: {timings[name]} s (load {loads[name]})", file=sys.stderr, flush=True)
    return result


def bench_features(args: argparse.Namespace) -> dict:
    timings: dict = {}
    loads: dict = {}
    as_of = _last_monday(args.data)
    grid = observation_dates(as_of - timedelta(weeks=args.weeks - 1), as_of, frequency="weekly")
    with tempfile.TemporaryDirectory() as tmp:
        wh, config = _step(
            timings, loads, "open", lambda: _open(args.engine, args.data, args.cores, Path(tmp))
        )
        report = _step(
            timings,
            loads,
            "validate_and_stage",
            lambda: prepare_sources(wh, config, reference_time=as_of + timedelta(days=1)),
        )
        features = FeatureConfig()
        one = _step(
            timings,
            loads,
            "features_one_date",
            lambda: build_features(wh, [as_of], available_tables=report.available, config=features),
        )
        rows_grid = None
        if args.weeks > 1:
            many = _step(
                timings,
                loads,
                f"features_{args.weeks}_weeks",
                lambda: build_features(
                    wh, grid, available_tables=report.available, config=features
                ),
            )
            rows_grid = len(many)
        wh.close()
        if args.engine == "spark":
            wh.spark.stop()
    return {
        "rows_one_date": len(one),
        "rows_grid": rows_grid,
        "columns": one.shape[1],
        "seconds": timings,
        "load_before": loads,
    }


def _bundles(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    import lightgbm as lgb

    from models.bundle import ModelBundle, prepare_matrix

    names = [
        c
        for c in frame.columns
        if c not in ("account_id", "as_of", "name", "csm_owner", "industry")
    ]
    levels = {
        c: sorted(frame[c].dropna().astype(str).unique())
        for c in names
        if frame[c].dtype == object or str(frame[c].dtype) in ("str", "string")
    }
    X = prepare_matrix(frame, names, levels)
    rng = np.random.default_rng(1)
    risk = -np.log1p(frame["events_28d"].fillna(0).to_numpy()) + rng.normal(size=len(frame))
    bundles = []
    for target, sign in (("churn", 1), ("expansion", -1)):
        y = (sign * risk > np.quantile(sign * risk, 0.8)).astype(int)
        params = {"objective": "binary", "num_leaves": 7, "learning_rate": 0.05, "verbose": -1,
                  "num_threads": 1, "seed": 1}  # fmt: skip
        booster = lgb.train(
            params, lgb.Dataset(X, y, categorical_feature=list(levels) or "auto"), 300
        )
        bundles.append(
            ModelBundle(
                target=target,
                booster=booster,
                feature_names=names,
                categorical_levels=levels,
                calibrator=None,
                train_window=(datetime(2025, 1, 1), datetime(2026, 6, 1)),
                params=params,
            )
        )
    return bundles


def bench_scoring(args: argparse.Namespace) -> dict:
    from pyspark.sql import functions as F

    from serving.config import ServingConfig
    from serving.spark_scoring import score_partitioned, write_week

    timings: dict = {}
    loads: dict = {}
    as_of = _last_monday(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        # the 20k world's features by DuckDB (timed by `features`); Spark scores their copies
        duck, config = _open("duckdb", args.data, 2, Path(tmp))
        report = _step(
            timings,
            loads,
            "duckdb_validate_and_stage",
            lambda: prepare_sources(duck, config, reference_time=as_of + timedelta(days=1)),
        )

        def features() -> tuple[pd.DataFrame, list[str]]:
            sql, columns = assemble_features(duck, [as_of], available_tables=report.available)
            return tidy_features(duck.query(sql), columns), columns

        local, columns = _step(timings, loads, "duckdb_features_one_date", features)
        duck.close()
        churn, expansion = _step(timings, loads, "train_bundles", lambda: _bundles(local))
        wh, _ = _step(
            timings, loads, "spark_start", lambda: _open("spark", args.data, args.cores, Path(tmp))
        )
        base = wh.to_spark_frame(local)
        copies = wh.spark.range(args.copies).withColumnRenamed("id", "_copy")
        world = (
            base.crossJoin(copies)
            .withColumn("account_id", F.concat_ws("-r", "account_id", F.col("_copy")))
            .drop("_copy")
            .repartition(8 * args.cores, "account_id")
        )
        world = _step(timings, loads, "replicate", lambda: world.localCheckpoint(eager=True))
        n_accounts = world.count()
        scored = score_partitioned(
            world,
            columns=columns,
            churn=churn,
            expansion=expansion,
            run_date=as_of.date(),
            config=ServingConfig(),
            model_refs={"churn": "bench", "expansion": "bench"},
        )
        counts = _step(
            timings,
            loads,
            "score_explain_write",
            lambda: write_week(
                scored,
                output_dir=Path(tmp) / "out",
                tables=ServingConfig().tables,
                run_meta={"bench": True},
            ),
        )
        wh.close()
        wh.spark.stop()
    return {"accounts": n_accounts, "rows": counts, "seconds": timings, "load_before": loads}


def _matrix(args: argparse.Namespace) -> list[dict]:
    """Every configuration in its own process (a JVM's master is fixed at start)."""
    import subprocess

    weeks, copies = (4, 2) if args.quick else (args.weeks, args.copies)
    runs = [["features", "--engine", e, "--cores", str(c), "--weeks", str(weeks)]
            for e in ("duckdb", "spark") for c in (1, 2)]  # fmt: skip
    runs += [["scoring", "--cores", str(c), "--copies", str(copies)] for c in (1, 2)]
    results = []
    for run in runs:
        command = [sys.executable, __file__, *run, "--data", str(args.data)]
        print("+", " ".join(command[1:]), file=sys.stderr, flush=True)
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        line = done.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        results.append(json.loads(line))
    return results


def _summary(results: list[dict]) -> str:
    """Seconds per step per configuration, then speed-ups (1 -> 2 cores, DuckDB vs Spark)."""
    lines = ["| run | engine | cores | step | seconds | peak RSS MB (self/children) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    by: dict[tuple[str, str, int], dict] = {}
    for r in results:
        by[(r["what"], r["engine"], r["cores"])] = r["seconds"]
        for step, seconds in r["seconds"].items():
            lines.append(f"| {r['what']} | {r['engine']} | {r['cores']} | {step} | {seconds} | "
                         f"{r['peak_rss_mb']}/{r['peak_children_rss_mb']} |")  # fmt: skip
    lines.append("")
    for (what, engine, _), one in sorted((k, v) for k, v in by.items() if k[2] == 1):
        two = by.get((what, engine, 2), {})
        for step in one:
            if two.get(step):
                lines.append(f"speed-up 1->2 cores, {engine} {what} {step}: "
                             f"{one[step] / two[step]:.2f}x")  # fmt: skip
    duck, spark = by.get(("features", "duckdb", 2), {}), by.get(("features", "spark", 2), {})
    for step in duck:
        if spark.get(step) and duck[step]:
            lines.append(f"Spark / DuckDB at 2 cores, {step}: {spark[step] / duck[step]:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["features", "scoring", "matrix"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="spark")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--copies", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="matrix: 4 weeks, 2 copies")
    args = parser.parse_args()
    if not (args.data / ".done").exists() and not (args.data / "accounts.parquet").exists():
        # generate_data.py writes accounts.parquet after every event block
        sys.exit(f"{args.data} is not complete yet (no accounts.parquet or .done file)")
    if args.what == "matrix":
        print(_summary(_matrix(args)))
        return
    result = bench_features(args) if args.what == "features" else bench_scoring(args)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result.update(
        what=args.what,
        data=str(args.data),
        engine=args.engine if args.what == "features" else "spark",
        cores=args.cores,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        peak_children_rss_mb=round(children / 1024),
        machine=f"{platform.machine()} {os.cpu_count()} cores",
        at=datetime.now().isoformat(timespec="minutes"),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
