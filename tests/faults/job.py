"""One weekly scoring job as a separate process, for the fault, concurrency and soak runs.

It is the weekly path without Prefect (to stay fast): stage and validate the sources, build the
features of one run date, score them with a tiny LightGBM model trained here, then write the
scores back and the risk lists under one run lease. ``--variant`` changes the model (so a
second run's rows differ from the first's) and names it ``tiny v<variant>``.

    python -m tests.faults.job --duckdb wh.duckdb --schema out --run-date 2026-11-16 \\
        --out lists/2026-11-16 --variant 2

``CHURNLENS_FAULT_AT`` (see ``serving.faults``) kills the process at a named checkpoint.
:func:`spawn` starts the job from a fork server that has imported everything once, so a job
costs its work, not 2-3 s of imports: it is still a process of its own, killed for real.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
from datetime import date, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.build import build_features
from features.config import WarehouseConfig
from features.validation import prepare_sources
from features.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse, WarehouseError
from models.bundle import ModelBundle, prepare_matrix
from pipelines.dates import as_of_for, data_horizon
from serving.changes import week_over_week
from serving.config import OutputTables, ServingConfig
from serving.faults import FAULT_ENV
from serving.lease import utc_now
from serving.risk_list import write_risk_lists
from serving.score import score_accounts
from serving.writeback import read_previous, run_lease, write_scores

FEATURES = ["arr", "seat_utilization", "active_users_28d", "events_28d", "tickets_90d"]


def tiny_model(features: pd.DataFrame, *, variant: int) -> ModelBundle:
    """A 10-tree booster on the numeric features the frame has, labels hashed from the ids."""
    names = [c for c in FEATURES if c in features.columns] or ["arr"]
    X = prepare_matrix(features, names, {})
    y = np.array(
        [
            int(hashlib.sha256(f"{a}/{variant}".encode()).digest()[0] < 80)
            for a in features["account_id"]
        ]
    )
    y[:2] = [0, 1]  # both classes, whatever the hash gives
    params = {
        "objective": "binary",
        "num_leaves": 4,
        "min_data_in_leaf": 3,
        "learning_rate": 0.3,
        "num_threads": 1,
        "verbose": -1,
        "seed": variant,
    }
    booster = lgb.train(params, lgb.Dataset(X, y), 10)
    return ModelBundle(
        target="churn",
        booster=booster,
        feature_names=names,
        categorical_levels={},
        calibrator=None,
        train_window=(datetime(2025, 1, 6), datetime(2026, 1, 5)),
        params=params,
    )


def run_job(
    wh: Warehouse,
    *,
    schema: str,
    run_date: date,
    out_dir: Path,
    variant: int,
    config: ServingConfig,
) -> dict[str, int]:
    started = utc_now()
    report = prepare_sources(
        wh, WarehouseConfig(source_schema=schema), reference_time=data_horizon(run_date)
    )
    features = build_features(wh, [as_of_for(run_date)], available_tables=report.available)
    scored = score_accounts(
        features,
        churn=tiny_model(features, variant=variant),
        expansion=None,
        run_date=run_date,
        config=config,
        model_refs={"churn": f"tiny v{variant}"},
    )
    with run_lease(wh, schema=schema, run_date=run_date, config=config, started_at=started):
        counts = write_scores(
            wh,
            scored,
            schema=schema,
            run_meta={"variant": variant},
            config=config,
            started_at=started,
        )
        previous = read_previous(wh, schema=schema, before=run_date, tables=config.tables)
        changes = week_over_week(scored.predictions, previous, config=config)
        write_risk_lists(scored, changes, out_dir=out_dir, run_date=run_date)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--duckdb", type=Path)
    where.add_argument("--pg-dsn")
    parser.add_argument("--schema", required=True)
    parser.add_argument("--run-date", type=date.fromisoformat, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", type=int, default=1)
    parser.add_argument("--lock-timeout", type=float, default=60.0)
    parser.add_argument("--tables", default="", help="JSON of serving.tables overrides")
    args = parser.parse_args(argv)
    tables = OutputTables(**json.loads(args.tables)) if args.tables else OutputTables()
    config = ServingConfig(tables=tables, lock_timeout_seconds=args.lock_timeout)
    try:
        wh = (
            DuckDBWarehouse(args.duckdb, lock_wait_seconds=args.lock_timeout)
            if args.duckdb
            else PostgresWarehouse(args.pg_dsn)
        )
        with wh:
            counts = run_job(
                wh,
                schema=args.schema,
                run_date=args.run_date,
                out_dir=args.out,
                variant=args.variant,
                config=config,
            )
    except WarehouseError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


RUN_DATE = date(2026, 11, 16)
"""The run date the seeded data ends at (a Monday)."""


def seed(wh: Warehouse, *, schema: str, n_accounts: int = 30) -> None:
    """A small demo warehouse in ``schema`` (its ground truth in ``<schema>_truth``)."""
    from pipelines.demo.data import generate_demo, write_demo

    data = generate_demo(n_accounts=n_accounts, seed=5, end=RUN_DATE, years=1.0)
    write_demo(wh, data, schema=schema, truth_schema=f"{schema}_truth")


_CONTEXT: multiprocessing.context.ForkServerContext | None = None


def spawn(argv: list[str], *, fault: str | None, log: Path) -> multiprocessing.Process:
    """Start ``main(argv)`` in a new process (``CHURNLENS_FAULT_AT=fault`` there), its stdout
    and stderr going to ``log``. ``Process.exitcode`` is -9 after a SIGKILL."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload([__name__])
    proc = _CONTEXT.Process(target=_child, args=(argv, fault, str(log)), daemon=True)
    proc.start()
    return proc


def _child(argv: list[str], fault: str | None, log: str) -> None:
    os.environ.pop(FAULT_ENV, None)
    if fault:
        os.environ[FAULT_ENV] = fault
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
