"""Weekly scoring partitioned over Spark: the same scoring functions as in process, run per
partition of accounts, and the week written to Parquet tables partitioned by run date.

:func:`score_partitioned` broadcasts the champion bundles once and runs
:func:`serving.score.score_accounts` (probabilities, exact SHAP reasons, tiers, green churn)
in ``mapInPandas`` over account partitions. The one cross-account quantity, the segment median
of penetration behind ``penetration_vs_segment`` and the expansion 2x2, is computed over all
accounts afterwards (with pandas' own median, as in process) and applied per partition with
:func:`serving.score.expansion_quadrant`. Results equal in-process scoring.

:func:`write_week` replaces one run date in the predictions, reasons and runs tables (Parquet
folders partitioned by ``run_date``): every table's rows are first computed and staged
(``_staging/<run_date>/<table>``), so a failure while scoring or staging leaves every table
as it was; the staged rows then replace the week's partition with Spark's dynamic partition
overwrite (which itself writes aside and renames at commit). A rerun replaces its week and
never duplicates it. Delta Lake is not required; docs/spark.md says how to use it on a
cluster that has ``delta-spark``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.build import tidy_features
from models.bundle import ModelBundle
from serving import lease
from serving.config import ServingConfig
from serving.holdout import HOLDOUT_COLUMN, HOLDOUTS_SCHEMA, holdout_rows
from serving.reasons import REASON_COLUMNS
from serving.score import PREDICTION_COLUMNS, Scored, expansion_quadrant, score_accounts
from serving.writeback import PREDICTIONS_SCHEMA, REASONS_SCHEMA, RUNS_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

KIND = "_churnlens_kind"
SEGMENT_MEDIAN = "_segment_median_penetration"
_SPARK_TYPES = {
    "DATE": "date",
    "VARCHAR": "string",
    "DOUBLE": "double",
    "BOOLEAN": "boolean",
    "BIGINT": "bigint",
    "TIMESTAMP": "timestamp_ntz",
}


@dataclass
class SparkScored:
    """One partitioned scoring run: Spark DataFrames of predictions and reasons (lazy)."""

    predictions: DataFrame
    reasons: DataFrame
    run_date: date
    model_refs: dict[str, str] = field(default_factory=dict)
    feature_snapshot_id: str | None = None  # in-process runs only: partitions never meet
    holdouts: DataFrame | None = None  # list_holdouts rows, when the run drew holdouts

    def to_scored(self) -> Scored:
        """The run as an in-process :class:`Scored` (collects every row to the driver), for
        the risk lists and the report."""
        predictions = _frame(self.predictions, PREDICTIONS_SCHEMA)
        reasons = _frame(self.reasons, REASONS_SCHEMA)
        predictions["run_date"] = pd.Timestamp(self.run_date)
        reasons["run_date"] = pd.Timestamp(self.run_date)
        order = ["account_id"]
        predictions = predictions.sort_values(order, kind="stable").reset_index(drop=True)
        reasons = reasons.sort_values(["target", "account_id", "direction", "rank"])
        return Scored(
            predictions=predictions[PREDICTION_COLUMNS],
            reasons=reasons.reset_index(drop=True)[["run_date", *REASON_COLUMNS]],
            run_date=self.run_date,
            feature_snapshot_id=self.feature_snapshot_id or "",
            model_refs=dict(self.model_refs),
        )


def _ddl(schema: Mapping[str, str], *, skip: tuple[str, ...] = ()) -> list[str]:
    return [f"`{c}` {_SPARK_TYPES[t]}" for c, t in schema.items() if c not in skip]


def _union_schema() -> str:
    """One output row type for both kinds of rows a partition yields (predictions, reasons)."""
    reason_only = {c: t for c, t in REASONS_SCHEMA.items() if c not in PREDICTIONS_SCHEMA}
    columns = [
        f"`{KIND}` string",
        *_ddl(PREDICTIONS_SCHEMA, skip=("run_date",)),
        *_ddl(reason_only),
    ]
    return ", ".join(columns)


def score_partitioned(
    features: DataFrame,
    *,
    columns: list[str],
    churn: ModelBundle,
    expansion: ModelBundle | None,
    run_date: date,
    config: ServingConfig,
    model_refs: dict[str, str],
) -> SparkScored:
    """Score every account of the Spark DataFrame ``features`` (one as_of; the assembled
    feature relation of :func:`features.build.assemble_features`, whose feature columns are
    ``columns``) partition by partition. Returns lazy DataFrames; nothing runs until read."""
    spark = features.sparkSession
    models = (churn, expansion)
    try:
        shared = spark.sparkContext.broadcast(models)  # once per run, not once per task
        get = lambda: shared.value  # noqa: E731
    except Exception:  # Spark Connect has no SparkContext: the closure carries the bundles
        get = lambda: models  # noqa: E731
    keep = list(columns)

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        frames = [b for b in batches if len(b)]
        if not frames:
            return
        churn_model, expansion_model = get()
        part = tidy_features(pd.concat(frames, ignore_index=True), keep)
        scored = score_accounts(
            part,
            churn=churn_model,
            expansion=expansion_model,
            run_date=run_date,
            config=config,
            model_refs=model_refs,
        )
        yield _union_rows(scored)

    union = features.mapInPandas(score_partition, schema=_union_schema())
    predictions, reasons = _split(union)
    predictions = _with_segment_medians(predictions, config)
    return SparkScored(predictions, reasons, run_date, dict(model_refs))


def _union_rows(scored: Scored) -> pd.DataFrame:
    predictions = scored.predictions.drop(columns="run_date").assign(**{KIND: "prediction"})
    reasons = scored.reasons.drop(columns="run_date").assign(**{KIND: "reason"})
    out = pd.concat([predictions, reasons], ignore_index=True)
    out["rank"] = out["rank"].astype("Int64")
    for name in ("green_churn",):
        out[name] = out[name].astype("boolean")
    for name, kind in {**PREDICTIONS_SCHEMA, **REASONS_SCHEMA}.items():
        if kind == "VARCHAR" and name in out:
            values = out[name]
            out[name] = values.astype(object).where(values.notna(), None)
            out[name] = out[name].map(lambda v: v if v is None else str(v))
    columns = [KIND, *(c for c in PREDICTIONS_SCHEMA if c != "run_date")]
    columns += [c for c in REASONS_SCHEMA if c not in PREDICTIONS_SCHEMA]
    return _plain(out[columns])


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as plain Python objects: pandas 3's Arrow-backed ``str`` columns make
    pyspark's Arrow serializer fail (ChunkedArray where it expects an Array)."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object or pd.api.types.is_string_dtype(out[name].dtype):
            values = out[name].astype(object)
            out[name] = values.where(values.notna(), None).astype(object)
    return out


def _split(union: DataFrame) -> tuple[DataFrame, DataFrame]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    union = union.persist(StorageLevel.MEMORY_AND_DISK)
    predictions = union.where(F.col(KIND) == "prediction").select(
        *[c for c in PREDICTIONS_SCHEMA if c != "run_date"]
    )
    reasons = union.where(F.col(KIND) == "reason").select(
        *[c for c in REASONS_SCHEMA if c != "run_date"]
    )
    return predictions, reasons


def _with_segment_medians(predictions: DataFrame, config: ServingConfig) -> DataFrame:
    """``penetration_vs_segment`` and ``expansion_quadrant`` against the median penetration of
    each segment over all accounts (a partition only sees some): the medians by pandas on the
    driver (two columns), exactly as in process; the quadrant by the in-process function."""
    from pyspark.sql import functions as F

    spark = predictions.sparkSession
    pairs: pd.DataFrame = predictions.select("segment", "penetration").toPandas()
    medians = pairs.groupby("segment", dropna=False)["penetration"].median().reset_index()
    medians.columns = ["segment", SEGMENT_MEDIAN]
    medians["segment"] = medians["segment"].astype(object).where(medians["segment"].notna(), None)
    lookup = spark.createDataFrame(medians, schema=f"segment string, {SEGMENT_MEDIAN} double")
    joined = predictions.join(
        F.broadcast(lookup.withColumnRenamed("segment", "_segment")),
        predictions["segment"].eqNullSafe(F.col("_segment")),
        "left",
    ).drop("_segment")
    expansion = config.expansion
    names = [c for c in PREDICTIONS_SCHEMA if c != "run_date"]

    def place(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            with np.errstate(divide="ignore", invalid="ignore"):
                batch["penetration_vs_segment"] = batch["penetration"] / batch[SEGMENT_MEDIAN]
            batch["expansion_quadrant"] = expansion_quadrant(batch, expansion)
            yield _plain(batch[names])

    return joined.mapInPandas(place, schema=", ".join(_ddl(PREDICTIONS_SCHEMA, skip=("run_date",))))


# --- writing one week ---------------------------------------------------------------------------


def write_week(
    scored: SparkScored,
    *,
    output_dir: Path,
    tables: Any,
    run_meta: Mapping[str, Any],
    started_at: Any = None,
) -> dict[str, int]:
    """Replace ``scored.run_date`` in the Parquet tables ``<output_dir>/<table>`` (predictions,
    reasons, runs and, when drawn, holdouts of ``tables``, a
    :class:`serving.config.OutputTables`). Nothing changes unless every table's rows were
    computed; a rerun replaces the week (a table with no rows this week loses the week's
    partition). Rows per table."""
    from pyspark.sql import functions as F

    spark = scored.predictions.sparkSession
    day = scored.run_date
    staging = output_dir / "_staging" / f"{day.isoformat()}-{uuid.uuid4().hex[:8]}"
    week = F.lit(day).cast("date")
    frames = {
        tables.predictions: scored.predictions.withColumn("run_date", week),
        tables.reasons: scored.reasons.withColumn("run_date", week),
    }
    if scored.holdouts is not None:
        frames[tables.holdouts] = scored.holdouts.withColumn("run_date", week)
    counts: dict[str, int] = {}
    try:
        for table, frame in frames.items():
            frame.write.mode("overwrite").parquet(str(staging / table))
        staged = {t: spark.read.parquet(str(staging / t)) for t in frames}
        _refuse_duplicate_accounts(staged[tables.predictions], tables.predictions)
        counts = {t: staged[t].count() for t in frames}
        run = _run_row(scored, counts, tables, run_meta, started_at)
        staged[tables.runs] = spark.createDataFrame(run, schema=", ".join(_ddl(RUNS_SCHEMA)))
        for table, frame in staged.items():
            columns = [c for c in _layout(tables)[table] if c != "run_date"]
            ordered = frame.select(*columns).withColumn("run_date", week)
            (
                ordered.write.mode("overwrite")
                .option("partitionOverwriteMode", "dynamic")
                .partitionBy("run_date")
                .parquet(str(output_dir / table))
            )
        for table, n in counts.items():
            if n == 0:  # an empty write replaces no partition: drop the week's by hand
                _remove(spark, output_dir / table / f"run_date={day.isoformat()}")
        counts[tables.runs] = 1
    finally:
        _remove(spark, staging)
    return counts


def _refuse_duplicate_accounts(predictions: Any, table: str, *, shown: int = 5) -> None:
    """The week's key is (run_date, account_id): an account scored twice (in one partition or
    across two) stops the write before anything of the week is replaced, naming the accounts."""
    from pyspark.sql import functions as F

    dupes = (
        predictions.groupBy("account_id").count().where(F.col("count") > 1).limit(shown).collect()
    )
    if dupes:
        names = ", ".join(f"{r['account_id']} ({r['count']} rows)" for r in dupes)
        raise ValueError(
            f"{table}: duplicate account_id in this week's scores, e.g. {names}; nothing of "
            "the week was replaced (the feature frame holds an account twice)"
        )


def _layout(tables: Any) -> dict[str, list[str]]:
    return {
        tables.predictions: list(PREDICTIONS_SCHEMA),
        tables.reasons: list(REASONS_SCHEMA),
        tables.runs: list(RUNS_SCHEMA),
        tables.holdouts: list(HOLDOUTS_SCHEMA),
    }


def _run_row(
    scored: SparkScored,
    counts: Mapping[str, int],
    tables: Any,
    run_meta: Mapping[str, Any],
    started_at: Any,
) -> pd.DataFrame:
    started = pd.Timestamp(started_at or lease.utc_now())
    if started.tzinfo is not None:
        started = started.tz_convert("UTC").tz_localize(None)
    written = pd.Timestamp(lease.utc_now()).tz_localize(None)
    meta = {**run_meta, "started_at": started, "engine": "spark"}
    return pd.DataFrame(
        {
            "run_date": [scored.run_date],
            "started_at": [started.to_pydatetime()],
            "written_at": [written.to_pydatetime()],
            "churn_model": [scored.model_refs.get("churn")],
            "expansion_model": [scored.model_refs.get("expansion")],
            "feature_snapshot_id": [scored.feature_snapshot_id],
            "predictions_rows": [counts[tables.predictions]],
            "reasons_rows": [counts[tables.reasons]],
            "meta_json": [json.dumps(dict(meta), default=str, sort_keys=True)],
        }
    )


def _remove(spark: Any, path: Path) -> None:
    """Delete a staging folder (local or any Hadoop file system Spark writes to)."""
    import shutil

    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
        parent = path.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()


def read_week(output_dir: Path, table: str, run_date: date, spark: Any) -> pd.DataFrame:
    """One week of an output table as pandas (empty when the week was never written)."""
    from pyspark.sql import functions as F

    path = output_dir / table
    if not path.exists():
        return pd.DataFrame()
    frame = spark.read.parquet(str(path)).where(F.col("run_date") == F.lit(run_date))
    return frame.toPandas()


def _frame(frame: DataFrame, schema: Mapping[str, str]) -> pd.DataFrame:
    from features.spark import to_pandas

    out = to_pandas(frame)
    for name, kind in schema.items():
        if name in out and kind == "VARCHAR":
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def write_scored(
    wh: Any,
    scored: Scored,
    *,
    schema: str,
    tables: Any,
    run_meta: Mapping[str, Any],
    started_at: Any = None,
    serving: ServingConfig | None = None,
) -> dict[str, int]:
    """:func:`write_week` for an in-process :class:`Scored` on a Spark warehouse (the weekly
    flow's write-back on ``warehouse.kind: spark``), with the holdout rows ``serving`` draws;
    the output tables are re-attached to the session afterwards. Rows per ``schema.table``."""
    predictions = scored.predictions.drop(columns="run_date")
    reasons = scored.reasons.drop(columns="run_date")
    spark_scored = SparkScored(
        wh.spark.createDataFrame(
            _typed(predictions, PREDICTIONS_SCHEMA),
            schema=", ".join(_ddl(PREDICTIONS_SCHEMA, skip=("run_date",))),
        ),
        wh.spark.createDataFrame(
            _typed(reasons, REASONS_SCHEMA),
            schema=", ".join(_ddl(REASONS_SCHEMA, skip=("run_date",))),
        ),
        scored.run_date,
        dict(scored.model_refs),
        scored.feature_snapshot_id,
        _holdouts(wh, scored, serving),
    )
    counts = write_week(
        spark_scored,
        output_dir=wh.output_dir,
        tables=tables,
        run_meta=run_meta,
        started_at=started_at,
    )
    wh.attach_outputs(schema, list(_layout(tables)))
    return {f"{schema}.{table}": n for table, n in counts.items()}


def _holdouts(wh: Any, scored: Scored, serving: ServingConfig | None) -> DataFrame | None:
    """The run's ``list_holdouts`` rows (serving.holdout) as Spark rows; None when the run drew
    none (no ``holdout`` column), as serving.writeback.write_scores decides."""
    if serving is None or HOLDOUT_COLUMN not in scored.predictions:
        return None
    rows = holdout_rows(
        scored.predictions, config=serving.holdout, flagged_tiers=serving.changes.list_tiers
    )
    return wh.spark.createDataFrame(
        _typed(rows, HOLDOUTS_SCHEMA), schema=", ".join(_ddl(HOLDOUTS_SCHEMA, skip=("run_date",)))
    )


def _typed(frame: pd.DataFrame, schema: Mapping[str, str]) -> pd.DataFrame:
    out = frame[[c for c in schema if c != "run_date"]].copy()
    for name, kind in schema.items():
        if name not in out:
            continue
        if kind == "VARCHAR":
            values = out[name].astype(object).where(out[name].notna(), None)
            out[name] = values.map(lambda v: v if v is None else str(v))
        elif kind == "BOOLEAN":
            out[name] = out[name].astype(object).where(out[name].notna(), None)
        elif kind == "BIGINT":
            out[name] = out[name].astype("Int64")
        elif kind == "DOUBLE":
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    return _plain(out)
