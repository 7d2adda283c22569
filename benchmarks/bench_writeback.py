"""Benchmark: write-back against the raw bulk path of each warehouse, and the old write-back.

    .venv/bin/python benchmarks/bench_writeback.py [--accounts 20000] [--reasons 12] \
        [--repeat 3] [--pg-dsn postgresql://127.0.0.1:5432/test] [--no-pg]

One scoring run's rows (``--accounts`` predictions with every column of
``serving.writeback.PREDICTIONS_SCHEMA``, ``--reasons`` reason rows per account; text with
accents, quotes and commas, ~5 % NULLs) are written, per repeat and in turn:

- ``write_scores``: the write-back as shipped (lease, DELETE of the run date, the three tables,
  lease row, commit), for a new run date each time (nothing to delete);
- ``before``: the same with the base commit's ``serving/writeback.py`` (``--base-ref``, loaded
  from ``git show``): rows converted per value in Python (DuckDB: a pandas frame of Python
  dates; PostgreSQL: psycopg ``COPY ... write_row``);
- ``raw``: the engine's bulk path alone for the same predictions and reasons frames into keyed
  tables of the same DDL, in one transaction: DuckDB ``pa.Table.from_pandas`` + ``INSERT ...
  SELECT`` from the registered Arrow table; PostgreSQL ``pa.Table.from_pandas`` +
  ``pyarrow.csv.write_csv`` + ``COPY ... FROM STDIN (FORMAT csv)``;
- PostgreSQL only, other raw paths, to choose the fastest: psycopg ``write_row`` in text and in
  binary COPY (``set_types``), and ``COPY (FORMAT text)`` from pandas ``to_csv``.

The fastest of ``--repeat`` counts; ratios are against ``raw`` in the same run. Rows/s counts
predictions + reasons rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from features.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse, qualified
from serving import writeback
from serving.score import Scored

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["Müller", 'the "big" one', "a, b", "Zoë", "O'Neil", "plain", "北京", ""]


def make_scored(accounts: int, reasons_per_account: int, seed: int = 0) -> Scored:
    """A scoring run with every declared column, typed as ``score_accounts`` types them."""
    rng = np.random.default_rng(seed)
    day = date(2026, 11, 30)
    ids = np.array([f"ACC{i:07d}" for i in range(accounts)])
    columns = {}
    for name, sql in writeback.PREDICTIONS_SCHEMA.items():
        if name == "run_date":
            columns[name] = [day] * accounts
        elif name == "account_id":
            columns[name] = ids
        elif sql == "DOUBLE":
            values = rng.random(accounts) * 1e5
            values[rng.random(accounts) < 0.05] = np.nan
            columns[name] = values
        elif sql == "BOOLEAN":
            columns[name] = rng.random(accounts) < 0.1
        else:
            text = rng.choice(np.array(WORDS, dtype=object), accounts)
            text[rng.random(accounts) < 0.05] = None
            columns[name] = text
    predictions = pd.DataFrame(columns)
    n = accounts * reasons_per_account
    rank = np.tile(np.arange(reasons_per_account), accounts)
    reasons = pd.DataFrame(
        {
            "run_date": [day] * n,
            "account_id": np.repeat(ids, reasons_per_account),
            "target": np.where(rank < reasons_per_account / 2, "churn", "expansion"),
            "direction": np.where((rank // 3) % 2 == 0, "raises", "lowers"),
            "rank": rank,
            "feature": rng.choice(["active_users_28d", "p1_tickets_90d", "seat_utilization"], n),
            "category": rng.choice(["usage", "support", "billing"], n),
            "value": rng.choice(["12", "0.4", "3 of 10", "n/a"], n),
            "contribution": rng.normal(size=n),
            "sentence": rng.choice(
                ["Active users fell 40 % (12 → 7)", 'Two "P1" tickets, one open', "Zoë left"], n
            ),
        }
    )
    return Scored(
        predictions=predictions,
        reasons=reasons,
        run_date=day,
        feature_snapshot_id="bench",
        model_refs={"churn": "churnlens-churn/1"},
    )


def _on(scored: Scored, day: date) -> Scored:
    return replace(
        scored,
        run_date=day,
        predictions=scored.predictions.assign(run_date=[day] * len(scored.predictions)),
        reasons=scored.reasons.assign(run_date=[day] * len(scored.reasons)),
    )


def _before_module(ref: str):
    """The base commit's serving/writeback.py, imported under another name."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:serving/writeback.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "writeback_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("writeback_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raw_tables(wh: Warehouse, schema: str) -> None:
    wh.create_schema(schema)
    for role, columns in (
        ("predictions", writeback.PREDICTIONS_SCHEMA),
        ("reasons", writeback.REASONS_SCHEMA),
    ):
        body = ", ".join(f'"{c}" {t}' for c, t in columns.items())
        key = ", ".join(f'"{c}"' for c in writeback.PRIMARY_KEYS[role])
        wh.execute(f"DROP TABLE IF EXISTS {qualified('raw_' + role, schema)}")
        wh.execute(f"CREATE TABLE {qualified('raw_' + role, schema)} ({body}, PRIMARY KEY ({key}))")


def _raw_frames(scored: Scored) -> dict[str, pd.DataFrame]:
    return {
        "raw_predictions": scored.predictions[list(writeback.PREDICTIONS_SCHEMA)],
        "raw_reasons": scored.reasons[list(writeback.REASONS_SCHEMA)],
    }


def raw_duckdb(wh: Warehouse, scored: Scored, schema: str) -> None:
    with wh.transaction():
        for table, frame in _raw_frames(scored).items():
            arrow = pa.Table.from_pandas(frame, preserve_index=False)
            wh.con.register("_raw", arrow)
            wh.con.execute(f"INSERT INTO {qualified(table, schema)} SELECT * FROM _raw")
            wh.con.unregister("_raw")


def raw_pg_csv(wh: Warehouse, scored: Scored, schema: str) -> None:
    with wh.transaction():
        for table, frame in _raw_frames(scored).items():
            buffer = io.BytesIO()
            arrow = pa.Table.from_pandas(frame, preserve_index=False)
            pa_csv.write_csv(arrow, buffer, pa_csv.WriteOptions(include_header=False))
            with (
                wh.con.cursor() as cur,
                cur.copy(f"COPY {qualified(table, schema)} FROM STDIN (FORMAT csv)") as copy,
            ):
                copy.write(buffer.getbuffer())


def raw_pg_text_pandas(wh: Warehouse, scored: Scored, schema: str) -> None:
    """COPY FORMAT text from pandas' to_csv (tab-separated, \\N for NULL). Only valid for text
    without tabs, newlines or backslashes, which this data has none of: for speed only."""
    with wh.transaction():
        for table, frame in _raw_frames(scored).items():
            text = frame.to_csv(sep="\t", header=False, index=False, na_rep="\\N")
            with (
                wh.con.cursor() as cur,
                cur.copy(f"COPY {qualified(table, schema)} FROM STDIN (FORMAT text)") as copy,
            ):
                copy.write(text.encode())


def _pg_rows(frame: pd.DataFrame) -> list[tuple]:
    from features.warehouse import _py_columns

    return list(zip(*_py_columns(frame), strict=True))


def raw_pg_write_row(wh: Warehouse, scored: Scored, schema: str, *, binary: bool) -> None:
    types = {"DATE": "date", "VARCHAR": "text", "DOUBLE": "float8", "BIGINT": "int8"}
    types["BOOLEAN"] = "bool"
    with wh.transaction():
        for (table, frame), declared in zip(
            _raw_frames(scored).items(),
            (writeback.PREDICTIONS_SCHEMA, writeback.REASONS_SCHEMA),
            strict=True,
        ):
            how = "(FORMAT binary)" if binary else ""
            with (
                wh.con.cursor() as cur,
                cur.copy(f"COPY {qualified(table, schema)} FROM STDIN {how}") as copy,
            ):
                if binary:
                    copy.set_types([types[t] for t in declared.values()])
                for row in _pg_rows(frame):
                    copy.write_row(row)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(wh: Warehouse, schema: str, scored: Scored, before, repeat: int) -> dict:
    _raw_tables(wh, schema)
    writeback.ensure_tables(wh, schema=schema)
    meta = {"bench": True}
    variants = {
        "write_scores": lambda s: writeback.write_scores(wh, s, schema=schema, run_meta=meta),
        "before": lambda s: before.write_scores(wh, s, schema=schema, run_meta=meta),
    }
    if wh.dialect == "duckdb":
        variants["raw"] = lambda s: raw_duckdb(wh, s, schema)
    else:
        variants["raw"] = lambda s: raw_pg_csv(wh, s, schema)
        variants["raw write_row text"] = lambda s: raw_pg_write_row(wh, s, schema, binary=False)
        variants["raw write_row binary"] = lambda s: raw_pg_write_row(wh, s, schema, binary=True)
        variants["raw text from pandas"] = lambda s: raw_pg_text_pandas(wh, s, schema)
    seconds: dict[str, list[float]] = defaultdict(list)
    day = scored.run_date
    for _ in range(repeat):
        for name, write in variants.items():
            day += timedelta(days=7)  # a new run date: nothing to delete, keys never clash
            seconds[name].append(_timed(lambda w=write, d=day: w(_on(scored, d))))
    day += timedelta(days=7)
    again = _on(scored, day)
    writeback.write_scores(wh, again, schema=schema, run_meta=meta)
    seconds["write_scores, rerun of a date"].append(
        _timed(lambda: writeback.write_scores(wh, again, schema=schema, run_meta=meta))
    )
    return seconds


def _report(engine: str, seconds: dict, rows: int) -> None:
    raw = min(seconds["raw"])
    print(f"\n{engine}: {rows:,} rows per write (predictions + reasons)")
    print("| path | seconds (fastest; all) | rows/s | / raw |")
    print("|---|---:|---:|---:|")
    for name, values in seconds.items():
        best = min(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {best:.2f} ({runs}) | {rows / best:,.0f} | {best / raw:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--reasons", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--base-ref", default=None, help="the code before (default: merge-base of main and HEAD)"
    )
    parser.add_argument(
        "--pg-dsn", default=os.environ.get("CHURNLENS_PG_DSN", "postgresql://127.0.0.1:5432/test")
    )
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    scored = make_scored(args.accounts, args.reasons)
    rows = len(scored.predictions) + len(scored.reasons)
    args.base_ref = (
        args.base_ref
        or subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "main", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()[:10]
    )
    before = _before_module(args.base_ref)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}; before = {args.base_ref}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(str(Path(tmp) / "bench.duckdb"))
        try:
            _report("DuckDB (file)", bench(wh, "bench_out", scored, before, args.repeat), rows)
        finally:
            wh.close()
    if not args.no_pg:
        schema = f"bench_writeback_{os.getpid()}"
        wh = PostgresWarehouse(args.pg_dsn)
        try:
            _report("PostgreSQL", bench(wh, schema, scored, before, args.repeat), rows)
        finally:
            wh.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            wh.close()


if __name__ == "__main__":
    main()
