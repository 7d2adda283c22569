"""One local SparkSession for the whole test session (``local[2]``, two shuffle partitions, no
UI): starting Spark's JVM takes tens of seconds, each warehouse then opens a fresh SQL session
of it. Every Spark test is skipped, saying why, when pyspark or Java is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
import pytest

from features.config import WarehouseConfig
from features.sources import create_staging_view, locate_sources
from features.warehouse import Warehouse

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (churnlens[spark])")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: local Spark needs Java 17 (.ci/run installs it)")
    from features.config import SparkConfig
    from features.spark import spark_session

    config = SparkConfig(
        master="local[2]",
        app_name="churnlens-tests",
        conf={"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"},
    )
    session = spark_session(config, warehouse_dir=tmp_path_factory.mktemp("spark-warehouse"))
    session.sparkContext.setLogLevel("ERROR")
    yield session


@pytest.fixture
def spark_wh(spark: object, tmp_path: Path) -> Iterator[Warehouse]:
    from features.spark import SparkWarehouse

    wh = SparkWarehouse(spark, output_dir=tmp_path / "out")  # type: ignore[arg-type]
    yield wh
    wh.close()


def stage_parquet(wh: Warehouse, tables: Mapping[str, pd.DataFrame], folder: Path) -> list[str]:
    """Write raw tables as Parquet files, read them into ``wh`` (Spark: temp views over the
    files; DuckDB: tables) and create their staging views; returns the tables staged."""
    folder.mkdir(parents=True, exist_ok=True)
    located = locate_sources(WarehouseConfig())
    for name, frame in tables.items():
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        if wh.dialect == "spark":
            wh.register_parquet(name, path)  # type: ignore[attr-defined]
        else:
            wh.create_table_from_frame(pd.read_parquet(path), name)
    return [name for name in tables if create_staging_view(wh, located[name])]
