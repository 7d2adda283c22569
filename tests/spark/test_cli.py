"""The CLI on Spark over a Parquet copy of a demo warehouse gives DuckDB's predictions.

A small demo warehouse (DuckDB) is copied to Parquet with ``churnlens export-parquet``; the
Spark config ``extends`` the DuckDB one and changes only the warehouse. Models are trained once
on DuckDB; the fast test runs ``churnlens score`` on both warehouses with them (one MLflow store);
the slow one runs every command on Spark alone (validate, train, score, backfill, report) in a
data folder of its own, and compares with DuckDB to 1e-9 again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.warehouse import DuckDBWarehouse
from pipelines.cli import app
from serving.config import OutputTables
from serving.spark_scoring import read_week
from tests.features.test_parity import assert_same

END = date(2026, 11, 30)  # the demo's last day; fixed, so the test is the same every day
RUN_DATE = END - timedelta(days=7)
TRAINED = RUN_DATE - timedelta(days=7)  # the models see data up to here
QUICK = {
    "features": {"observation": {"history_days": 280}, "event_types": {"top_k": 3}},
    "model": {
        "num_boost_round": 40,
        "n_folds": 2,
        "tuning": {"trials": 0},
        "params": {"min_data_in_leaf": 20},
        "promotion": {"require_beats_baselines": False},
    },
}
SPARK = {
    "extends": "duckdb.yaml",
    "warehouse": {
        "kind": "spark",
        "spark": {
            "master": "local[2]",
            "conf": {"spark.sql.shuffle.partitions": "2"},
            "parquet_dir": "parquet",
            "output_dir": "spark-output",
        },
    },
}
TABLES = OutputTables()
KEYS = ["account_id"]
REASON_KEYS = ["target", "account_id", "direction", "rank"]


@dataclass(frozen=True)
class World:
    root: Path
    duckdb: Path  # config files
    spark: Path

    def spark_in(self, data_dir: Path) -> Path:
        """A Spark config like ``self.spark`` with its own data folder (MLflow store, outputs)
        that reads the same Parquet copy."""
        path = self.root / f"spark-{data_dir.name}.yaml"
        layered = {**SPARK, "data_dir": str(data_dir)}
        layered["warehouse"] = {
            **SPARK["warehouse"],
            "spark": {**SPARK["warehouse"]["spark"], "parquet_dir": str(self.parquet)},
        }
        path.write_text(yaml.safe_dump(layered))
        return path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def parquet(self) -> Path:
        return self.data / "parquet"


def churnlens(*args: str | Path) -> str:
    """Run one churnlens command in process; its output, after checking it succeeded."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"churnlens {' '.join(map(str, args))}:\n{result.output}"
    return result.output


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect server for the module's commands (each would start its own),
    or the session's when another test module started one."""
    from prefect.logging.configuration import setup_logging
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.runtime import temporary_server

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    setup_logging(incremental=False)
    if PREFECT_API_URL.value():
        yield
        return
    with temporary_server(timeout=180) as url, temporary_settings({PREFECT_API_URL: url}):
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, spark: object, prefect_api: None) -> World:
    from pipelines.demo.data import generate_demo, write_demo

    root = tmp_path_factory.mktemp("cli-world")
    duck = root / "duckdb.yaml"
    duck.write_text(yaml.safe_dump({"data_dir": str(root / "data"), **QUICK}))
    world = World(root=root, duckdb=duck, spark=root / "spark.yaml")
    world.spark.write_text(yaml.safe_dump(SPARK))
    world.data.mkdir()
    with DuckDBWarehouse(world.data / "warehouse.duckdb", create=True) as wh:
        write_demo(wh, generate_demo(n_accounts=90, seed=11, end=END, years=1.5))
    churnlens("export-parquet", "--config", world.spark)
    churnlens("train", "--config", world.duckdb, "--run-date", TRAINED)
    return world


def duckdb_week(world: World, table: str, day: date) -> pd.DataFrame:
    with DuckDBWarehouse(world.data / "warehouse.duckdb", read_only=True, create=False) as wh:
        return wh.query(f"SELECT * FROM churnlens.{table} WHERE run_date = ?", [day])


def spark_week(data_dir: Path, table: str, day: date, spark: object) -> pd.DataFrame:
    return read_week(data_dir / "spark-output", table, day, spark)


def assert_same_week(duck: pd.DataFrame, spark: pd.DataFrame, keys: list[str]) -> None:
    """The same rows (sorted by ``keys``), columns and values, within 1e-9."""
    assert len(duck) > 0
    columns = list(duck.columns)
    assert sorted(spark.columns) == sorted(columns)
    left = duck.sort_values(keys).reset_index(drop=True)
    right = spark[columns].sort_values(keys).reset_index(drop=True)
    for frame in (left, right):
        frame["run_date"] = pd.to_datetime(frame["run_date"])
    assert_same(left, right)


def test_spark_score_command_equals_duckdb_scoring(world: World, spark: object) -> None:
    """``churnlens score`` on Spark (features on Spark, the week written as Parquet) gives the
    predictions and reasons the in-process DuckDB run gives, with the same champions."""
    churnlens("score", "--config", world.duckdb, "--run-date", RUN_DATE)
    out = churnlens("score", "--config", world.spark, "--run-date", RUN_DATE)
    assert "rows in churnlens.predictions" in out
    for table, keys in ((TABLES.predictions, KEYS), (TABLES.reasons, REASON_KEYS)):
        expected = duckdb_week(world, table, RUN_DATE)
        assert_same_week(expected, spark_week(world.data, table, RUN_DATE, spark), keys)


@pytest.mark.slow
def test_every_command_on_spark_matches_duckdb(world: World, spark: object) -> None:
    """validate, train, score, backfill and report on Spark alone (its own MLflow store):
    the models trained on Spark's features score what DuckDB's models score, to 1e-9."""
    own = world.root / "spark-alone"
    config = world.spark_in(own)
    out = churnlens("validate", "--config", config, "--run-date", TRAINED)
    assert "usage_events" in out
    churnlens("train", "--config", config, "--run-date", TRAINED)
    start = RUN_DATE - timedelta(days=7)
    for cfg in (world.duckdb, config):
        churnlens("backfill", "--config", cfg, "--start", start, "--end", RUN_DATE)
    churnlens("score", "--config", config, "--run-date", RUN_DATE)  # a rerun replaces the week
    for day in (start, RUN_DATE):
        for table, keys in ((TABLES.predictions, KEYS), (TABLES.reasons, REASON_KEYS)):
            assert_same_week(
                duckdb_week(world, table, day), spark_week(own, table, day, spark), keys
            )
    assert len(spark_week(own, TABLES.runs, RUN_DATE, spark)) == 1
    out = churnlens("report", "--config", config, "--run-date", RUN_DATE)
    assert (own / "reports").is_dir() and "report ->" in out
