"""The Spark warehouse resource: the same feature SQL, transpiled by sqlglot, run on Apache Spark.

A :class:`SparkWarehouse` is one Spark SQL session (``SparkSession.newSession()`` of a shared
session, so temp views of one warehouse never leak into the next, as with a DuckDB connection)
over the tables of a catalog/database, or over Parquet files mapped in configuration
(``warehouse.spark.parquet``, ``warehouse.spark.parquet_dir``), each registered as a temp view
under its table name. Library SQL stays DuckDB's dialect with ``?`` placeholders; it is
transpiled once per text (cached) and values are bound through ``spark.sql(args=[...])``.

Spark differs from DuckDB in ways the transpiler alone does not cover, handled here:

- time: the session time zone is UTC and ``TIMESTAMP`` means ``TIMESTAMP_NTZ`` (naive UTC,
  as everywhere in churnlens); ``epoch(t)`` is seconds as a DOUBLE (DuckDB's), not Spark's
  whole-second ``unix_timestamp``;
- ``CROSS JOIN generate_series(a, b) AS g(day)`` over columns of the left side becomes a
  ``LATERAL`` explode of ``sequence(a, b)``;
- session tables: Spark has no temporary tables, so :meth:`SparkWarehouse.materialize` keeps a
  query's result as a locally checkpointed DataFrame under a temp view (computed once, like
  ``CREATE TEMP TABLE AS``);
- no transactions: outputs are written by :mod:`serving.spark_scoring` with partition
  overwrite of a staged copy, never with DELETE/INSERT.

ANSI mode stays on (Spark 4's default): an overflow or a bad cast is an error, not a NULL.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.warehouse import (
    Warehouse,
    WarehouseError,
    _normalise_pg_frame,
    qualified,
    quote_ident,
    validate_ident,
    whole_try_cast,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from features.config import SparkConfig, WarehouseConfig

# Session settings churnlens's SQL relies on; configuration cannot override them.
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
}
# Defaults for a local session, which ``warehouse.spark.conf`` may override.
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
}

_SESSION_LOCK = threading.Lock()


def spark_session(config: SparkConfig, *, warehouse_dir: Path | None = None) -> SparkSession:
    """The shared SparkSession for ``config``: ``master`` ``local[*]``/a cluster URL, or a
    Spark Connect ``sc://`` address (then ``remote``), ``app_name`` and extra ``conf``
    (``spark.sql.warehouse.dir`` defaults to ``warehouse_dir``). Reuses the active session."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise WarehouseError(
            "warehouse.kind is spark but pyspark is not installed: install churnlens[spark] "
            "(pip install 'churnlens[spark]') and Java 17"
        ) from None
    conf = {**LOCAL_DEFAULTS, **dict(config.conf), **REQUIRED_CONF}
    # Python workers run this interpreter (its packages), not whatever python3 is on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if warehouse_dir is not None:
        conf.setdefault("spark.sql.warehouse.dir", str(warehouse_dir))
    with _SESSION_LOCK:
        builder = SparkSession.builder.appName(config.app_name)
        if config.master.startswith("sc://"):
            builder = builder.remote(config.master)
            conf = {k: v for k, v in conf.items() if not k.startswith("spark.ui.")}
        else:
            builder = builder.master(config.master)
        for key, value in conf.items():
            builder = builder.config(key, value)
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # the JVM did not start (no Java), or Connect refused
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WarehouseError(
                f"cannot start Spark (master {config.master}): {first}. Local Spark needs "
                "Java 17 (java on PATH or JAVA_HOME); a cluster or sc:// URL must be reachable"
            ) from None
        if not config.master.startswith("sc://"):
            atexit.register(_stop_quietly, session)
            session.sparkContext.setLogLevel("ERROR")  # no WARN lines in the command's output
    # pyspark 4.3 warns on every Arrow conversion that pandas 3 is "not fully supported";
    # churnlens's conversions are covered by tests/spark
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    return session


def _stop_quietly(session: SparkSession) -> None:
    with contextlib.suppress(Exception):  # the JVM is already gone at exit
        session.stop()


# --- SQL: DuckDB dialect -> Spark SQL ---------------------------------------------------------


@lru_cache(maxsize=512)
def to_spark(sql: str) -> str:
    """One DuckDB-dialect statement (``?`` placeholders kept) as Spark SQL."""
    import sqlglot

    trees = [t for t in sqlglot.parse(sql, read="duckdb") if t]
    if len(trees) != 1:
        raise ValueError(f"expected one SQL statement, got {len(trees)}")
    return trees[0].transform(_spark_functions).sql(dialect="spark")


def _spark_functions(node: Any) -> Any:
    """Rewrite what Spark spells or means differently (see the module docstring)."""
    import sqlglot
    from sqlglot import exp

    if isinstance(node, exp.Select) and node.args.get("windows"):
        return _inline_named_windows(node)
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.TIMESTAMPTZ:
        # an instant: Spark's TIMESTAMP_LTZ (plain TIMESTAMP means TIMESTAMP_NTZ here)
        return exp.DataType.build("TIMESTAMP_LTZ", udt=True)
    if isinstance(node, exp.AtTimeZone) and node.args["zone"].name.upper() == "UTC":
        # instant AT TIME ZONE 'UTC' = its UTC wall time: the session time zone is UTC, so the
        # CAST to TIMESTAMP (NTZ) around it does exactly that
        return node.this.transform(_spark_functions)
    if isinstance(node, exp.TimeToUnix):
        # DuckDB's epoch(): seconds as a DOUBLE, fractions kept
        inner = node.this.sql(dialect="spark")
        return sqlglot.parse_one(
            f"CAST(UNIX_MICROS(CAST({inner} AS TIMESTAMP_LTZ)) AS DOUBLE) / 1000000", read="spark"
        )
    if (
        isinstance(node, exp.Join)
        and isinstance(node.this, exp.Table)
        and isinstance(node.this.this, exp.GenerateSeries)
    ):
        series, alias = node.this.this, node.this.args.get("alias")
        if alias is None or len(alias.columns) != 1:
            raise ValueError("generate_series in FROM needs an alias with one column: g(day)")
        start = series.args["start"].sql(dialect="spark")
        end = series.args["end"].sql(dialect="spark")
        lateral = (
            f"SELECT * FROM _x CROSS JOIN LATERAL (SELECT EXPLODE(SEQUENCE({start}, {end})) "
            f"AS {alias.columns[0].sql(dialect='spark')}) AS {alias.this.sql(dialect='spark')}"
        )
        return sqlglot.parse_one(lateral, read="spark").args["joins"][0]
    return node


def _inline_named_windows(select: Any) -> Any:
    """``OVER (by_day RANGE ...)`` refines a named window, which Spark does not accept: write
    the named window's PARTITION BY and ORDER BY into each OVER that names it."""
    from sqlglot import exp

    named = {w.this.name: w for w in select.args["windows"]}
    for window in select.find_all(exp.Window):
        if window.parent_select is not select or window.args.get("alias") is None:
            continue
        definition = named.get(window.args["alias"].name)
        if definition is None:
            continue
        window.set("alias", None)
        window.set("partition_by", [p.copy() for p in definition.args.get("partition_by") or []])
        if definition.args.get("order") is not None:
            window.set("order", definition.args["order"].copy())
    select.set("windows", None)
    return select


def _spark_value(value: Any) -> Any:
    """A bound value as the plain Python value Spark's ``args`` turns into a literal: naive
    UTC datetimes (TIMESTAMP_NTZ), dates, Python numbers."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- the resource ---------------------------------------------------------------------------


class SparkWarehouse(Warehouse):
    """Apache Spark through a SparkSession (local, a cluster, or Spark Connect)."""

    dialect = "spark"

    def __init__(
        self,
        session: SparkSession,
        *,
        catalog: str | None = None,
        database: str | None = None,
        parquet: Mapping[str, str | Path] | None = None,
        output_dir: Path | None = None,
    ) -> None:
        """Work in a new SQL session of ``session`` (temp views of its own), in ``catalog`` and
        ``database`` when given, with each ``parquet`` entry (table name -> file, folder or glob)
        a temp view of that name. Outputs (predictions, reasons, runs) are Parquet folders
        under ``output_dir``, one table each in the output schema (see :meth:`attach_outputs`)."""
        try:
            self.spark = session.newSession()
        except Exception:  # Spark Connect sessions cannot fork: share this one
            self.spark = session
        for key, value in REQUIRED_CONF.items():
            self.spark.conf.set(key, value)
        if catalog:
            self.spark.catalog.setCurrentCatalog(validate_ident(catalog, what="Spark catalog"))
        if database:
            self.spark.catalog.setCurrentDatabase(validate_ident(database, what="database"))
        self.default_schema = self.spark.catalog.currentDatabase()
        self.output_dir = output_dir
        self._checkpointed: dict[str, DataFrame] = {}
        for table, path in (parquet or {}).items():
            self.register_parquet(table, path)

    # Warehouse interface ----------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return to_pandas(self.sql(sql, params))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.sql(sql, params).collect()

    def sql(self, sql: str, params: Sequence[Any] = ()) -> DataFrame:
        """The Spark DataFrame of one DuckDB-dialect statement with ``params`` bound."""
        args = [_spark_value(v) for v in params] or None
        from pyspark.errors import AnalysisException

        try:
            return self.spark.sql(to_spark(sql), args=args)
        except AnalysisException as exc:  # ParseException is one too
            first = str(exc).strip().splitlines()[0]
            raise WarehouseError(f"Spark SQL failed: {first}") from exc

    def materialize(self, name: str, select_sql: str, params: Sequence[Any] = ()) -> None:
        """``CREATE OR REPLACE TEMP TABLE name AS select_sql``: the result computed once
        (a local checkpoint) and kept under the temp view ``name``."""
        self._keep(name, self.sql(select_sql, params).localCheckpoint(eager=True))

    def append(self, name: str, select_sql: str, params: Sequence[Any] = ()) -> None:
        """``INSERT INTO name select_sql`` for a table made by :meth:`materialize`."""
        rows = self.sql(select_sql, params)
        combined = self.spark.table(quote_ident(name).replace('"', "`")).unionByName(rows)
        self._keep(name, combined.localCheckpoint(eager=True))

    def _keep(self, name: str, frame: DataFrame) -> None:
        frame.createOrReplaceTempView(validate_ident(name, what="table name"))
        self._checkpointed[name] = frame

    def insert_frame(self, df: pd.DataFrame, table: str, schema: str | None = None) -> None:
        if df.empty:
            return
        self.to_spark_frame(df).write.insertInto(_spark_name(table, schema))

    def create_table_from_frame(
        self, df: pd.DataFrame, table: str, schema: str | None = None, *, temporary: bool = False
    ) -> None:
        frame = self.to_spark_frame(df)
        if temporary:
            self._keep(table, frame)
        else:
            frame.write.mode("overwrite").format("parquet").saveAsTable(_spark_name(table, schema))

    def to_spark_frame(self, df: pd.DataFrame) -> DataFrame:
        """A pandas frame as a Spark DataFrame, through Arrow: naive datetimes become
        TIMESTAMP_NTZ, dates DATE, nullable integers BIGINT, text STRING."""
        import pyarrow as pa

        table = pa.Table.from_pandas(df, preserve_index=False)
        fields = []
        for field in table.schema:
            kind = field.type
            if pa.types.is_large_string(kind) or pa.types.is_null(kind):
                kind = pa.string()
            fields.append(pa.field(field.name, kind))
        return self.spark.createDataFrame(table.cast(pa.schema(fields)))

    def columns(self, table: str, schema: str | None = None) -> dict[str, str]:
        from pyspark.errors import AnalysisException

        name = _spark_name(table, schema)
        try:
            fields = self.spark.table(name).schema.fields
        except AnalysisException:
            return {}
        return {f.name: _type_name(f.dataType.simpleString()) for f in fields}

    def try_cast(self, expr: str, sql_type: str) -> str:
        return whole_try_cast(expr, sql_type)

    def replace_temp_view(self, name: str, select_sql: str) -> None:
        self.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS\n{select_sql}")

    @contextmanager
    def _outermost_transaction(self) -> Iterator[None]:
        # Spark SQL has no transactions: writes that must be atomic (serving.spark_scoring)
        # stage a copy and swap it in.
        yield

    def close(self) -> None:
        """Forget this warehouse's temp views and checkpoints; the shared session stays up
        for the next warehouse of the process (starting Spark takes tens of seconds)."""
        for name in list(self._checkpointed):
            self.spark.catalog.dropTempView(name)
        self._checkpointed.clear()
        for view in self.spark.catalog.listTables():
            if view.isTemporary:
                self.spark.catalog.dropTempView(view.name)

    def create_schema(self, schema: str) -> None:
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS `{validate_ident(schema)}`")

    # Parquet sources and outputs ----------------------------------------------------------
    def register_parquet(self, table: str, path: str | Path) -> None:
        """Make the Parquet file(s) at ``path`` the temp view ``table``; a clear error naming
        the table when nothing is there."""
        from pyspark.errors import AnalysisException

        try:
            frame = self.spark.read.parquet(str(path))
        except AnalysisException:
            raise WarehouseError(
                f"Parquet source {table}: no Parquet data at {path} (warehouse.spark.parquet "
                "or parquet_dir)"
            ) from None
        frame.createOrReplaceTempView(validate_ident(table, what="table name"))

    def output_path(self, table: str) -> Path:
        if self.output_dir is None:
            raise WarehouseError(
                "this Spark warehouse has no output folder: set warehouse.spark.output_dir"
            )
        return self.output_dir / validate_ident(table, what="table name")

    def attach_outputs(self, schema: str, tables: Sequence[str]) -> None:
        """Expose each output Parquet folder that exists as the table ``schema.<table>`` of
        the session catalog (partitions recovered), so the SQL that reads predictions (risk
        list changes, the report) runs unchanged."""
        self.create_schema(schema)
        for table in tables:
            path = self.output_path(table)
            name = _spark_name(table, schema)
            self.spark.sql(f"DROP TABLE IF EXISTS {name}")
            if not any(path.glob("**/*.parquet")):
                continue
            location = str(path).replace("'", "\\'")
            self.spark.sql(f"CREATE TABLE {name} USING parquet LOCATION '{location}'")
            if any(p.is_dir() and "=" in p.name for p in path.iterdir()):
                self.spark.sql(f"ALTER TABLE {name} RECOVER PARTITIONS")

    def replace_keyed_rows(self, table: str, schema: str, rows: pd.DataFrame, *, key: str) -> None:
        """The output table ``schema.table`` (a Parquet folder under ``output_dir``) with its
        rows whose ``key`` is among ``rows``'s replaced by ``rows``: the new contents are
        written beside the folder, then swapped in by renames (Parquet has no DELETE), so a
        failure while writing leaves the table as it was. For small keyed tables
        (``source_checks``); the weekly outputs go through serving.spark_scoring."""
        import shutil
        import uuid

        path = self.output_path(table)
        kept = pd.DataFrame(columns=rows.columns)
        if any(path.glob("*.parquet")):
            kept = to_pandas(self.spark.read.parquet(str(path)))
            kept = kept[~kept[key].isin(rows[key])]
        combined = pd.concat([kept[list(rows.columns)], rows], ignore_index=True)
        combined = combined.astype({c: rows[c].dtype for c in rows.columns})
        staged = path.with_name(f"_{path.name}-{uuid.uuid4().hex[:8]}")
        self.to_spark_frame(combined).coalesce(1).write.parquet(str(staged))
        old = staged.with_name(staged.name + "-old")
        if path.exists():
            path.rename(old)
        staged.rename(path)
        shutil.rmtree(old, ignore_errors=True)
        self.attach_outputs(schema, [table])


def _spark_name(table: str, schema: str | None = None) -> str:
    """``schema.table`` validated and quoted with Spark's backticks."""
    return qualified(table, schema).replace('"', "`")


def _type_name(spark_type: str) -> str:
    """Spark's type names as the source checks read them (``features.physical_types.type_family``):
    TIMESTAMP (an instant, shown in the session's UTC) is a plain timestamp there."""
    return {"timestamp_ntz": "timestamp", "timestamp_ltz": "timestamp"}.get(spark_type, spark_type)


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """Every row of a Spark DataFrame as pandas, typed as DuckDB's resource returns them
    (through Arrow; decimals as floats, dates as datetime64)."""
    table = frame.toArrow()
    out = table.to_pandas(types_mapper=None, date_as_object=True)
    return _normalise_pg_frame(out)


def parquet_sources(config: WarehouseConfig, *, data_dir: Path) -> dict[str, Path]:
    """Physical table name -> Parquet path of every contract table ``warehouse.spark`` maps:
    ``parquet`` entries, then ``<parquet_dir>/<table>.parquet`` (or ``<table>/``) for the
    others that exist there. Relative paths are against ``data_dir``."""
    from features.sources import CONTRACT

    spark = config.spark

    def resolved(path: str | Path) -> Path:
        path = Path(path)
        return path if path.is_absolute() else data_dir / path

    unknown = sorted(set(spark.parquet) - set(CONTRACT))
    if unknown:
        raise WarehouseError(
            f"warehouse.spark.parquet.{unknown[0]}: not a contract table; the contract tables "
            f"are {', '.join(CONTRACT)}"
        )
    out: dict[str, Path] = {}
    for name in CONTRACT:
        mapping = config.tables.get(name)
        physical = (mapping.table if mapping else None) or name
        if name in spark.parquet:
            out[physical] = resolved(spark.parquet[name])
        elif spark.parquet_dir is not None:
            folder = resolved(spark.parquet_dir)
            for candidate in (folder / f"{name}.parquet", folder / name):
                if candidate.exists():
                    out[physical] = candidate
                    break
    return out


def export_parquet(
    duckdb_path: Path, out_dir: Path, *, schema: str | None = None
) -> dict[str, int]:
    """Copy every contract table of a DuckDB warehouse (``churnlens demo-data``'s) to
    ``<out_dir>/<table>.parquet``, the layout ``warehouse.spark.parquet_dir`` reads. Rows per
    table; tables the warehouse lacks are skipped."""
    from features.sources import CONTRACT
    from features.warehouse import DuckDBWarehouse

    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    wh = DuckDBWarehouse(duckdb_path, read_only=True, create=False)
    with wh:
        for name in CONTRACT:
            if not wh.table_exists(name, schema):
                continue
            relation = wh.con.table(f"{schema}.{name}" if schema else name)
            relation.write_parquet(str(out_dir / f"{name}.parquet"))
            counts[name] = int(wh.scalar(f"SELECT count(*) FROM {qualified(name, schema)}"))
    return counts
