"""Soak the write path with kill -9: N scoring jobs per warehouse, each SIGKILLed at a random
checkpoint (``serving.faults.CHECKPOINTS``), each followed by a rerun of the same run date.

A try *survives* when, after the kill, the warehouse holds one whole run of the date (the
previous one or the killed one, never a mix; one row per account) and the risk list folder is
one run's whole (its manifest checks), and the rerun then completes with one row per
(run date, account), no lease row and no temporary folder left. Prints one line per try and
``tries / survived`` per warehouse.

    .venv/bin/python benchmarks/soak_faults.py --tries 20            # DuckDB and PostgreSQL
    .venv/bin/python benchmarks/soak_faults.py --warehouses duckdb --tries 5

PostgreSQL is the test server (``CHURNLENS_TEST_PG_DSN``, default
postgresql://postgres@127.0.0.1:5432/test); a throw-away schema is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.warehouse import DuckDBWarehouse, PostgresWarehouse
from serving.faults import CHECKPOINTS
from serving.writeback import interrupted_writes
from tests.faults.harness import DAY, Target, lists_run, warehouse_run
from tests.faults.job import seed

PG_DSN = os.environ.get("CHURNLENS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _one_try(target: Target, point: str, variant: int, accounts: int) -> tuple[bool, str]:
    killed = target.run(run_date=DAY, variant=variant, fault=point)
    if killed.returncode != -signal.SIGKILL:
        return False, f"not killed (exit {killed.returncode}): {killed.output[-300:]}"
    try:
        model, rows = warehouse_run(target)
        assert rows == accounts, f"{rows} rows for {accounts} accounts"
        lists_run(target)
    except AssertionError as exc:
        return False, f"half a run after the kill: {exc}"
    rerun = target.run(run_date=DAY, variant=variant + 1)
    if rerun.returncode != 0:
        return False, f"rerun failed: {rerun.output[-300:]}"
    try:
        assert warehouse_run(target) == (f"tiny v{variant + 1}", accounts)
        assert lists_run(target) == f"tiny v{variant + 1}"
        with target.connect() as wh:
            assert interrupted_writes(wh, schema=target.schema).empty, "lease row left"
        assert not list(target.lists.glob(f".{DAY}.tmp-*")), "temporary folder left"
    except AssertionError as exc:
        return False, f"rerun left: {exc}"
    return True, f"after the kill the warehouse held {model}"


def soak(target: Target, *, tries: int, rng: random.Random) -> tuple[int, int]:
    first = target.run(run_date=DAY, variant=1)
    if first.returncode != 0:
        raise SystemExit(f"baseline run failed on {target.kind}:\n{first.output}")
    _, accounts = warehouse_run(target)
    survived = 0
    for i in range(tries):
        point = rng.choice(CHECKPOINTS)
        started = time.perf_counter()
        ok, note = _one_try(target, point, 2 * i + 2, accounts)
        survived += ok
        print(
            f"{target.kind:8s} try {i + 1:3d}  kill at {point:26s} "
            f"{'survived' if ok else 'FAILED  '}  {time.perf_counter() - started:5.1f} s  {note}",
            flush=True,
        )
    return tries, survived


def _targets(kinds: list[str], tmp: Path):
    for kind in kinds:
        if kind == "duckdb":
            path = tmp / "soak.duckdb"
            with DuckDBWarehouse(path) as wh:
                seed(wh, schema="src")
            yield Target("duckdb", "src", tmp / "duck_lists", duckdb=path)
            continue
        schema = f"soak_{uuid.uuid4().hex[:8]}"
        with PostgresWarehouse(PG_DSN) as wh:
            seed(wh, schema=schema)
        try:
            yield Target("postgres", schema, tmp / "pg_lists", dsn=PG_DSN)
        finally:
            with PostgresWarehouse(PG_DSN) as wh:
                wh.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                wh.execute(f'DROP SCHEMA IF EXISTS "{schema}_truth" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20, help="kills per warehouse")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--warehouses", nargs="+", default=["duckdb", "postgres"])
    args = parser.parse_args()
    rng = random.Random(args.seed)
    totals = {}
    with tempfile.TemporaryDirectory(prefix="churnlens-soak-") as tmp:
        for target in _targets(args.warehouses, Path(tmp)):
            totals[target.kind] = soak(target, tries=args.tries, rng=rng)
    for kind, (tries, survived) in totals.items():
        print(f"{kind}: {tries} tries / {survived} survived")
    all_tries = sum(t for t, _ in totals.values())
    all_survived = sum(s for _, s in totals.values())
    print(f"total: {all_tries} tries / {all_survived} survived")
    raise SystemExit(0 if all_tries == all_survived else 1)


if __name__ == "__main__":
    main()
