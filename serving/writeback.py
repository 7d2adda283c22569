"""Write scores back into the warehouse: predictions, reasons and run metadata.

The schema and tables are created if missing (never dropped); then, in one transaction, the run
date's rows are deleted and the new ones inserted, so re-running a date replaces it, earlier
weeks stay for backtesting, and a failure half-way leaves the previous state untouched.
Schema and table names are validated and quoted; every value is bound or bulk-loaded, never
formatted into SQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from features.warehouse import Warehouse, WarehouseError, qualified, quote_ident
from serving.config import OutputTables
from serving.score import PREDICTION_COLUMNS, Scored

PREDICTIONS_SCHEMA: dict[str, str] = {
    "run_date": "DATE",
    "account_id": "VARCHAR",
    "name": "VARCHAR",
    "csm_owner": "VARCHAR",
    "segment": "VARCHAR",
    "arr": "DOUBLE",
    "churn_probability": "DOUBLE",
    "churn_tier": "VARCHAR",
    "arr_at_risk": "DOUBLE",
    "expansion_probability": "DOUBLE",
    "expected_expansion_arr": "DOUBLE",
    "health_score": "DOUBLE",
    "health_color": "VARCHAR",
    "green_churn": "BOOLEAN",
    "green_churn_drivers": "VARCHAR",
    "penetration": "DOUBLE",
    "penetration_vs_segment": "DOUBLE",
    "expansion_quadrant": "VARCHAR",
    "top_reasons": "VARCHAR",
    "protective_factors": "VARCHAR",
    "churn_reason_features": "VARCHAR",
    "churn_model": "VARCHAR",
    "expansion_model": "VARCHAR",
}
REASONS_SCHEMA: dict[str, str] = {
    "run_date": "DATE",
    "account_id": "VARCHAR",
    "target": "VARCHAR",
    "direction": "VARCHAR",
    "rank": "BIGINT",
    "feature": "VARCHAR",
    "category": "VARCHAR",
    "value": "VARCHAR",
    "contribution": "DOUBLE",
    "sentence": "VARCHAR",
}
RUNS_SCHEMA: dict[str, str] = {
    "run_date": "DATE",
    "started_at": "TIMESTAMP",
    "written_at": "TIMESTAMP",
    "churn_model": "VARCHAR",
    "expansion_model": "VARCHAR",
    "feature_snapshot_id": "VARCHAR",
    "predictions_rows": "BIGINT",
    "reasons_rows": "BIGINT",
    "meta_json": "VARCHAR",
}
assert list(PREDICTIONS_SCHEMA) == PREDICTION_COLUMNS


def write_scores(
    wh: Warehouse,
    scored: Scored,
    *,
    schema: str,
    run_meta: Mapping[str, Any],
    tables: OutputTables | None = None,
) -> dict[str, int]:
    """Replace ``scored.run_date``'s rows in the output tables, in one transaction.

    ``run_meta`` is stored as JSON in the runs table (``started_at``, if given, in its own
    column). Returns rows written per qualified table name."""
    tables = tables or OutputTables()
    layout = _layout(tables)
    frames = {
        tables.predictions: _as_rows(scored.predictions, PREDICTIONS_SCHEMA, tables.predictions),
        tables.reasons: _as_rows(scored.reasons, REASONS_SCHEMA, tables.reasons),
        tables.runs: _run_row(scored, run_meta),
    }
    run_day = _day(scored.run_date)
    # DDL first, outside the data transaction: probing a missing table inside a DuckDB
    # transaction aborts it. CREATE ... IF NOT EXISTS is idempotent and never drops anything.
    wh.create_schema(schema)
    for table, columns in layout.items():
        _ensure_table(wh, schema, table, columns)
    with wh.transaction():
        for table in layout:
            wh.execute(f"DELETE FROM {qualified(table, schema)} WHERE run_date = ?", [run_day])
        for table, frame in frames.items():
            wh.insert_frame(frame, table, schema)
    return {f"{schema}.{table}": len(frame) for table, frame in frames.items()}


def read_previous(
    wh: Warehouse, *, schema: str, before: date, tables: OutputTables | None = None
) -> pd.DataFrame | None:
    """Predictions of the latest run strictly before ``before`` (``None`` when there is none).

    The ``churn_reason_features`` column holds that run's churn-raising reason features, which
    is what week-over-week changes compare."""
    tables = tables or OutputTables()
    if not wh.table_exists(tables.predictions, schema):
        return None
    target = qualified(tables.predictions, schema)
    latest = wh.scalar(f"SELECT max(run_date) FROM {target} WHERE run_date < ?", [_day(before)])
    if latest is None or pd.isna(latest):
        return None
    frame = wh.query(f"SELECT * FROM {target} WHERE run_date = ?", [_day(latest)])
    frame["run_date"] = pd.to_datetime(frame["run_date"])
    return frame


def _layout(tables: OutputTables) -> dict[str, dict[str, str]]:
    return {
        tables.predictions: PREDICTIONS_SCHEMA,
        tables.reasons: REASONS_SCHEMA,
        tables.runs: RUNS_SCHEMA,
    }


def _ensure_table(wh: Warehouse, schema: str, table: str, columns: Mapping[str, str]) -> None:
    """Create the table if missing; if present, it must hold every column we write."""
    existing = wh.columns(table, schema)
    if existing:
        missing = [c for c in columns if c not in existing]
        if missing:
            raise WarehouseError(
                f"table {schema}.{table} exists but lacks column(s) {missing}; it was created by "
                "another version of churnlens or another tool. Add the columns, or point "
                "serving.tables / warehouse.output_schema elsewhere"
            )
        return
    body = ", ".join(f"{quote_ident(c, what='column name')} {t}" for c, t in columns.items())
    wh.execute(f"CREATE TABLE IF NOT EXISTS {qualified(table, schema)} ({body})")


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()


def _as_rows(frame: pd.DataFrame, columns: Mapping[str, str], table: str) -> pd.DataFrame:
    """The frame's columns in table order, run_date as a date; names the missing ones."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"cannot write {table}: the scored frame lacks column(s) {missing}")
    out = frame[list(columns)].copy()
    out["run_date"] = [_day(v) for v in out["run_date"]] if len(out) else out["run_date"]
    return out


def _naive_utc(moment: Any) -> datetime:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def _run_row(scored: Scored, run_meta: Mapping[str, Any]) -> pd.DataFrame:
    started = run_meta.get("started_at")
    written = datetime.now(UTC).replace(tzinfo=None)  # the I/O edge: when the rows were written
    return pd.DataFrame(
        {
            "run_date": [_day(scored.run_date)],
            "started_at": [_naive_utc(started) if started else written],
            "written_at": [written],
            "churn_model": [scored.model_refs.get("churn")],
            "expansion_model": [scored.model_refs.get("expansion")],
            "feature_snapshot_id": [scored.feature_snapshot_id],
            "predictions_rows": [len(scored.predictions)],
            "reasons_rows": [len(scored.reasons)],
            "meta_json": [json.dumps(dict(run_meta), default=str, sort_keys=True)],
        }
    )
