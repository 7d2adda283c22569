"""Write scores back into the warehouse: predictions, reasons and run metadata.

Every table has a primary key (predictions: run date + account; reasons: run date + account +
target + direction + rank; runs and leases: run date), created with the table or added to a
table an earlier version made without one. A write holds the run lease of its (schema, run
date) (:mod:`serving.lease`), so a second job for the same date waits, then fails with who is
writing, and never interleaves. Under the lease, one transaction deletes the run date's rows
and inserts the new ones: a rerun replaces the date exactly, earlier weeks stay for
backtesting, and a failure or a kill half-way leaves the previous state untouched. Lock and
statement waits are bounded by ``serving.lock_timeout_seconds`` / ``statement_timeout_seconds``.

Schema and table names are validated and quoted; every value is bound or bulk-loaded, never
formatted into SQL. Rows go through each engine's bulk path, column by column, never row by row
in Python: the frame becomes an Arrow table typed from the table's declared columns
(:func:`arrow_rows`, generic over whatever columns a schema declares), which DuckDB reads in
place (``INSERT ... SELECT`` from the registered Arrow table) and PostgreSQL receives as one
``COPY ... FROM STDIN (FORMAT csv)`` of Arrow's CSV writer (faster than psycopg's binary
``write_row``, which converts every value in Python; see benchmarks/bench_writeback.py).
Missing values (None, NaN, NaT, NA) are written as NULL on both.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from features.warehouse import (
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    WarehouseError,
    qualified,
    quote_ident,
)
from serving import lease
from serving.config import OutputTables, ServingConfig
from serving.faults import checkpoint
from serving.holdout import HOLDOUT_COLUMN, HOLDOUTS_KEY, HOLDOUTS_SCHEMA, holdout_rows
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
    "contraction_probability": "DOUBLE",
    "expected_contraction_arr": "DOUBLE",
    "contraction_model": "VARCHAR",
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
LEASES_SCHEMA: dict[str, str] = {
    "run_date": "DATE",
    "pid": "BIGINT",
    "host": "VARCHAR",
    "started_at": "TIMESTAMP",
    "acquired_at": "TIMESTAMP",
}
assert list(PREDICTIONS_SCHEMA) == PREDICTION_COLUMNS

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "predictions": ("run_date", "account_id"),
    "reasons": ("run_date", "account_id", "target", "direction", "rank"),
    "runs": ("run_date",),
    "leases": ("run_date",),
    "holdouts": HOLDOUTS_KEY,
}
"""Primary key of each output table, by its role in :class:`serving.config.OutputTables`."""


def write_scores(
    wh: Warehouse,
    scored: Scored,
    *,
    schema: str,
    run_meta: Mapping[str, Any],
    config: ServingConfig | None = None,
    tables: OutputTables | None = None,
    started_at: datetime | None = None,
) -> dict[str, int]:
    """Replace ``scored.run_date``'s rows in the output tables, in one transaction under the
    run date's lease.

    ``config`` gives the table names (``serving.tables``) and the lock/statement timeouts
    (``ServingConfig()`` when omitted); ``tables``, if given, overrides its table names.
    ``started_at`` is when the run began (naive UTC, or aware); it defaults to
    ``run_meta["started_at"]``, then to now. ``run_meta`` is stored as JSON in the runs table.
    Returns rows written per qualified table name."""
    config = config or ServingConfig()
    if tables is not None:
        config = config.model_copy(update={"tables": tables})
    tables = config.tables
    started = _naive_utc(started_at or run_meta.get("started_at") or lease.utc_now())
    meta = {**run_meta, "started_at": started}
    run_day = _day(scored.run_date)
    frames = {
        tables.predictions: arrow_rows(scored.predictions, PREDICTIONS_SCHEMA, tables.predictions),
        tables.reasons: arrow_rows(scored.reasons, REASONS_SCHEMA, tables.reasons),
        tables.runs: arrow_rows(_run_row(scored, meta, started), RUNS_SCHEMA, tables.runs),
    }
    if HOLDOUT_COLUMN in scored.predictions:  # drawn (serving.holdout); its old rows go anyway
        frames[tables.holdouts] = arrow_rows(
            _holdouts(scored, config), HOLDOUTS_SCHEMA, tables.holdouts
        )
    with run_lease(wh, schema=schema, run_date=run_day, config=config, started_at=started):
        checkpoint("write-back:after-lease")
        with _statement_timeout(wh, config.statement_timeout_seconds), wh.transaction():
            if isinstance(wh, PostgresWarehouse):
                _set_local_timeouts(wh, config)
            for table in _layout(tables):
                target = qualified(table, schema)
                _lock_table(wh, target, config.lock_timeout_seconds)
                wh.execute(f"DELETE FROM {target} WHERE run_date = ?", [run_day])
            checkpoint("write-back:after-delete")
            for table, rows in frames.items():
                bulk_insert(wh, rows, table, schema)
            checkpoint("write-back:after-insert")
            _end_lease_row(wh, schema, tables, run_day)
            checkpoint("write-back:before-commit")
    return {f"{schema}.{table}": rows.num_rows for table, rows in frames.items()}


@contextmanager
def run_lease(
    wh: Warehouse,
    *,
    schema: str,
    run_date: date,
    config: ServingConfig | None = None,
    started_at: datetime | None = None,
) -> Iterator[None]:
    """Hold the write lease of ``run_date`` in ``schema`` for the block: the output tables
    exist with their keys, no other job writes that date meanwhile, and a lease row says who
    writes (removed when the write commits; one left behind marks an interrupted write).

    Re-entrant: a flow may wrap write-back and risk lists in one lease, and ``write_scores``
    inside joins it. Waits up to ``config.lock_timeout_seconds``, then raises
    :class:`serving.lease.LeaseBusyError` ("run date D ... is being written by PID/host since T").
    """
    config = config or ServingConfig()
    tables = config.tables
    day = _day(run_date)
    info = lease.holder_info(_naive_utc(started_at) if started_at else None)
    ensure_tables(wh, schema=schema, config=config)
    lock = lease.lock_for(
        wh,
        schema=schema,
        name=day.isoformat(),
        info=info,
        holder_of=lambda: _lease_row(wh, schema, tables, day),
    )
    with lease.hold(
        lock,
        what=f"run date {day} in {schema}",
        timeout_seconds=config.lock_timeout_seconds,
        on_acquired=lambda: _begin_lease_row(wh, schema, tables, day, info),
    ):
        yield


# Columns added to the output tables after their first release: a table an earlier churnlens
# created gets them (ALTER TABLE ... ADD COLUMN, NULL in its older rows), so the unattended
# weekly job survives an upgrade. Any other missing column means the table is not ours.
ADDED_COLUMNS = frozenset(
    {"contraction_probability", "expected_contraction_arr", "contraction_model"}
)


def ensure_tables(wh: Warehouse, *, schema: str, config: ServingConfig | None = None) -> None:
    """Create the schema and the output tables with their primary keys, or add the keys to
    tables that lack them; one writer at a time per schema (concurrent ``CREATE TABLE IF NOT
    EXISTS`` can collide in PostgreSQL's catalog)."""
    config = config or ServingConfig()
    tables = config.tables
    layout = _layout(tables)
    if all(
        _has_primary_key(wh, schema, t) and not _missing_columns(wh, schema, t, columns)
        for t, (columns, _) in layout.items()
    ):
        return
    info = lease.holder_info()
    lock = lease.lock_for(wh, schema=schema, name="ddl", info=info)
    what = f"the output tables of {schema}"
    # DDL outside the data transaction: probing a missing table inside a DuckDB transaction
    # aborts it. CREATE ... IF NOT EXISTS never drops anything.
    with (
        lease.hold(lock, what=what, timeout_seconds=config.lock_timeout_seconds),
        _bounded_ddl(wh, schema, config),
    ):
        wh.create_schema(schema)
        for table, (columns, key) in _layout(tables).items():
            _ensure_table(wh, schema, table, columns, key)


@contextmanager
def _bounded_ddl(wh: Warehouse, schema: str, config: ServingConfig) -> Iterator[None]:
    """PostgreSQL: run the DDL in one transaction whose lock waits and statements are bounded
    (adding a key needs an exclusive lock, which a long reader would otherwise make wait
    silently). DuckDB runs it as is."""
    if not isinstance(wh, PostgresWarehouse):
        yield
        return
    import psycopg

    try:
        with wh.transaction():
            _set_local_timeouts(wh, config)
            yield
    except psycopg.errors.LockNotAvailable as exc:
        raise lease.LeaseBusyError(
            f"could not create or key the output tables of {schema}: a table stayed locked by "
            f"another session for more than {config.lock_timeout_seconds:g} s "
            "(serving.lock_timeout_seconds); nothing was changed"
        ) from exc


def read_previous(
    wh: Warehouse, *, schema: str, before: date, tables: OutputTables | None = None
) -> pd.DataFrame | None:
    """Predictions of the latest run strictly before ``before`` (``None`` when there is none),
    from ``tables.predictions`` (``serving.tables``; the default names when omitted).

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


def interrupted_writes(
    wh: Warehouse, *, schema: str, tables: OutputTables | None = None
) -> pd.DataFrame:
    """Lease rows left by writes that never committed (killed, or the connection lost): run
    date, PID, host and start. Their transactions were rolled back, so the tables hold the
    previous state of those dates; rerunning a date clears its row."""
    tables = tables or OutputTables()
    if not wh.table_exists(tables.leases, schema):
        return pd.DataFrame(columns=list(LEASES_SCHEMA))
    return wh.query(f"SELECT * FROM {qualified(tables.leases, schema)} ORDER BY run_date")


def _layout(tables: OutputTables) -> dict[str, tuple[dict[str, str], tuple[str, ...]]]:
    return {
        tables.predictions: (PREDICTIONS_SCHEMA, PRIMARY_KEYS["predictions"]),
        tables.reasons: (REASONS_SCHEMA, PRIMARY_KEYS["reasons"]),
        tables.runs: (RUNS_SCHEMA, PRIMARY_KEYS["runs"]),
        tables.leases: (LEASES_SCHEMA, PRIMARY_KEYS["leases"]),
        tables.holdouts: (HOLDOUTS_SCHEMA, PRIMARY_KEYS["holdouts"]),
    }


def _holdouts(scored: Scored, config: ServingConfig) -> pd.DataFrame:
    """The run's flagged accounts, each with its holdout group."""
    flagged = config.changes.list_tiers
    return holdout_rows(scored.predictions, config=config.holdout, flagged_tiers=flagged)


def _ensure_table(
    wh: Warehouse, schema: str, table: str, columns: Mapping[str, str], key: tuple[str, ...]
) -> None:
    """Create the table with its key if missing; if present, it must hold every column we
    write except those a later churnlens added (:data:`ADDED_COLUMNS`: added, NULL in the
    rows written before), and gets the key if it has none."""
    existing = wh.columns(table, schema)
    if not existing:
        body = ", ".join(f"{quote_ident(c, what='column name')} {t}" for c, t in columns.items())
        wh.execute(
            f"CREATE TABLE IF NOT EXISTS {qualified(table, schema)} ({body}, "
            f"PRIMARY KEY ({_column_list(key)}))"
        )
        return
    missing = [c for c in columns if c not in existing]
    foreign = [c for c in missing if c not in ADDED_COLUMNS]
    if foreign:
        raise WarehouseError(
            f"table {schema}.{table} exists but lacks column(s) {foreign}; it was created by "
            "another tool. Add the columns, or point serving.tables / "
            "warehouse.output_schema elsewhere"
        )
    for column in missing:  # written by an earlier churnlens: add what this version writes
        wh.execute(
            f"ALTER TABLE {qualified(table, schema)} ADD COLUMN "
            f"{quote_ident(column, what='column name')} {columns[column]}"
        )
    if not _has_primary_key(wh, schema, table):
        _add_primary_key(wh, schema, table, key)


def _missing_columns(
    wh: Warehouse, schema: str, table: str, columns: Mapping[str, str]
) -> list[str]:
    existing = wh.columns(table, schema)
    return [c for c in columns if c not in existing] if existing else list(columns)


def _column_list(columns: tuple[str, ...]) -> str:
    return ", ".join(quote_ident(c, what="column name") for c in columns)


def _has_primary_key(wh: Warehouse, schema: str, table: str) -> bool:
    found = wh.scalar(
        "SELECT count(*) FROM information_schema.table_constraints WHERE table_schema = ? "
        "AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [schema, table],
    )
    return bool(found)


def _add_primary_key(wh: Warehouse, schema: str, table: str, key: tuple[str, ...]) -> None:
    """Key a table written before keys existed; duplicates or NULL keys are named, not
    deleted (they are the traces of concurrent writes, for a person to look at)."""
    target, cols = qualified(table, schema), _column_list(key)
    nulls = " OR ".join(f"{quote_ident(c)} IS NULL" for c in key)
    dupes = wh.query(
        f"SELECT run_date, count(*) AS n FROM (SELECT {cols} FROM {target} GROUP BY {cols} "
        f"HAVING count(*) > 1 UNION ALL SELECT {cols} FROM {target} WHERE {nulls}) AS d "
        "GROUP BY run_date ORDER BY run_date"
    )
    if len(dupes):
        days = [str(pd.Timestamp(d).date()) if pd.notna(d) else "NULL" for d in dupes["run_date"]]
        raise WarehouseError(
            f"cannot add the primary key ({', '.join(key)}) to {schema}.{table}: "
            f"{int(dupes['n'].sum())} key(s) are duplicated or NULL, on run date(s) {days[:10]} "
            "(left by concurrent writes of an earlier version). Delete those run dates' rows "
            f"(DELETE FROM {schema}.{table} WHERE run_date IN (...)) and score them again"
        )
    wh.execute(f"ALTER TABLE {target} ADD PRIMARY KEY ({cols})")


def _begin_lease_row(
    wh: Warehouse, schema: str, tables: OutputTables, day: date, info: dict[str, Any]
) -> None:
    """Record the holder (committed at once, so waiters can read it). A row already there is
    a write that never committed: say so, then take it over."""
    left = _lease_row(wh, schema, tables, day)
    if left:
        lease.say(
            f"run date {day} in {schema}: the write by {lease.describe(left)} did not finish "
            "(it was rolled back); writing it again"
        )
    target = qualified(tables.leases, schema)
    now = lease.utc_now()
    with wh.transaction():
        wh.execute(f"DELETE FROM {target} WHERE run_date = ?", [day])
        wh.execute(
            f"INSERT INTO {target} (run_date, pid, host, started_at, acquired_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [day, info["pid"], info["host"], datetime.fromisoformat(info["started_at"]), now],
        )


def _end_lease_row(wh: Warehouse, schema: str, tables: OutputTables, day: date) -> None:
    wh.execute(f"DELETE FROM {qualified(tables.leases, schema)} WHERE run_date = ?", [day])


def _lease_row(
    wh: Warehouse, schema: str, tables: OutputTables, day: date
) -> dict[str, Any] | None:
    frame = wh.query(
        f"SELECT pid, host, started_at FROM {qualified(tables.leases, schema)} WHERE run_date = ?",
        [day],
    )
    if frame.empty:
        return None
    row = frame.iloc[0]
    return {"pid": int(row["pid"]), "host": row["host"], "started_at": str(row["started_at"])}


def _set_local_timeouts(wh: PostgresWarehouse, config: ServingConfig) -> None:
    """PostgreSQL: bound every lock wait and statement of this transaction (SET LOCAL ends
    with it)."""
    lock_ms = max(int(config.lock_timeout_seconds * 1000), 1)
    wh.con.execute(f"SET LOCAL lock_timeout = {lock_ms}")
    statement_ms = int((config.statement_timeout_seconds or 0) * 1000)
    wh.con.execute(f"SET LOCAL statement_timeout = {statement_ms}")


def _lock_table(wh: Warehouse, target: str, timeout_seconds: float) -> None:
    """PostgreSQL: take the row-exclusive lock DELETE/INSERT need, first without waiting; when
    another session holds a conflicting lock, say who and since when, then wait (bounded by
    ``lock_timeout``). DuckDB has no table locks."""
    if not isinstance(wh, PostgresWarehouse):
        return
    import psycopg

    con = wh.con
    con.execute("SAVEPOINT churnlens_lock")
    try:
        con.execute(f"LOCK TABLE {target} IN ROW EXCLUSIVE MODE NOWAIT")
    except psycopg.errors.LockNotAvailable:
        con.execute("ROLLBACK TO SAVEPOINT churnlens_lock")
    else:
        con.execute("RELEASE SAVEPOINT churnlens_lock")
        return
    since = lease.utc_now()
    holders = con.execute(
        "SELECT l.pid, a.application_name, a.xact_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.relation = %s::regclass "
        "AND l.granted AND l.pid <> pg_backend_pid()",
        [target],
    ).fetchall()
    who = ", ".join(f"backend {p} ({a or 'no application name'}, since {t})" for p, a, t in holders)
    lease.say(
        f"waiting for lock on {target} since {since:%Y-%m-%d %H:%M:%S} UTC: held by "
        f"{who or 'another session'} (waiting up to {timeout_seconds:g} s, "
        "serving.lock_timeout_seconds)"
    )
    try:
        con.execute(f"LOCK TABLE {target} IN ROW EXCLUSIVE MODE")
    except psycopg.errors.LockNotAvailable as exc:
        raise lease.LeaseBusyError(
            f"table {target} stayed locked by {who or 'another session'} for more than "
            f"{timeout_seconds:g} s (serving.lock_timeout_seconds); nothing was written"
        ) from exc


@contextmanager
def _statement_timeout(wh: Warehouse, seconds: float | None) -> Iterator[None]:
    """Turn a statement that ran past ``seconds`` into one message. PostgreSQL cancels it by
    ``statement_timeout`` (set per transaction); DuckDB has none, so the connection is
    interrupted from a timer. Either way the transaction rolls back."""
    too_long = WarehouseError(
        f"write-back ran longer than {seconds:g} s (serving.statement_timeout_seconds) and was "
        "cancelled; nothing was written"
        if seconds
        else "write-back was cancelled; nothing was written"
    )
    if isinstance(wh, PostgresWarehouse):
        import psycopg

        try:
            yield
        except psycopg.errors.QueryCanceled as exc:
            if "statement timeout" not in str(exc):
                raise  # a cancel by a person (Ctrl-C) stays what it is
            raise too_long from exc
        return
    if not seconds or not isinstance(wh, DuckDBWarehouse):
        yield
        return
    import duckdb

    fired = threading.Event()

    def _cancel() -> None:
        fired.set()
        wh.con.interrupt()

    timer = threading.Timer(seconds, _cancel)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.InterruptException as exc:
        if not fired.is_set():
            raise  # a cancel by a person (Ctrl-C) stays what it is
        raise too_long from exc
    finally:
        timer.cancel()


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()


# Arrow type of each SQL type the output schemas declare.
ARROW_TYPES: dict[str, pa.DataType] = {
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
}


def arrow_rows(frame: pd.DataFrame, columns: Mapping[str, str], table: str) -> pa.Table:
    """The frame's ``columns`` (name -> SQL type) in table order as an Arrow table of those
    types, converted column by column: dates and timestamps from dates, datetimes, strings or
    ``datetime64`` (aware ones as their UTC wall time for TIMESTAMP and their own date for
    DATE), missing values (None, NaN, NaT, NA) as nulls. Names the missing columns, and the
    column and rows that do not convert."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"cannot write {table}: the scored frame lacks column(s) {missing}")
    arrays = [_arrow_column(frame[name], sql, table) for name, sql in columns.items()]
    return pa.Table.from_arrays(arrays, names=list(columns))


def _arrow_column(values: pd.Series, sql_type: str, table: str) -> pa.Array:
    kind = sql_type.upper()
    if kind not in ARROW_TYPES:
        raise ValueError(f"cannot write {table}.{values.name}: no Arrow type for {sql_type!r}")
    try:
        if kind in ("DATE", "TIMESTAMP"):
            return _arrow_moments(values, kind)
        if kind == "VARCHAR":
            return _arrow_text(values)
        if kind == "DOUBLE":
            values = pd.to_numeric(values, errors="raise").astype("Float64")
        return pa.array(values, type=ARROW_TYPES[kind], from_pandas=True)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise ValueError(
            f"cannot write {table}.{values.name} as {sql_type}: {_bad_rows(values, kind)} ({exc})"
        ) from exc


def _arrow_text(values: pd.Series) -> pa.Array:
    """Text as it is (converted in Arrow); a column that also holds other values (numbers,
    categories) gets ``str(value)`` for those."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    try:
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        text = values.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore")
        return pa.array(text.astype(object), type=pa.string(), from_pandas=True)


def _arrow_moments(values: pd.Series, kind: str) -> pa.Array:
    """DATE: each value's own calendar date (as ``datetime.date()`` gives it); TIMESTAMP: naive
    values as they are, aware ones converted to UTC."""
    stamps = pd.Series(pd.to_datetime(values), index=values.index)
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_localize(None) if kind == "DATE" else stamps.dt.tz_convert(None)
    unit = "D" if kind == "DATE" else "us"
    moments = stamps.dt.floor("D") if kind == "DATE" else stamps
    array = moments.to_numpy(dtype=f"datetime64[{unit}]")
    return pa.array(array, type=ARROW_TYPES[kind], mask=stamps.isna().to_numpy())


def _bad_rows(values: pd.Series, kind: str) -> str:
    if kind in ("DATE", "TIMESTAMP"):
        parsed = pd.to_datetime(values, errors="coerce")
    else:
        parsed = pd.to_numeric(values, errors="coerce")
    bad = values[pd.isna(parsed) & values.notna()]
    if bad.empty:
        return "values out of range"
    examples = bad.head(3).tolist()
    return f"{len(bad)} row(s) do not convert, e.g. rows {bad.index[:3].tolist()}: {examples}"


def bulk_insert(wh: Warehouse, rows: pa.Table, table: str, schema: str) -> None:
    """Append ``rows`` to ``schema.table`` through the engine's bulk path (columns by name):
    DuckDB scans the Arrow table in place, PostgreSQL gets one CSV ``COPY``; another engine
    gets the rows as a pandas frame through ``Warehouse.insert_frame``."""
    if rows.num_rows == 0:
        return
    cols = ", ".join(quote_ident(c, what="column name") for c in rows.column_names)
    target = qualified(table, schema)
    if isinstance(wh, DuckDBWarehouse):
        wh.con.register("_churnlens_rows", rows)
        try:
            wh.con.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM _churnlens_rows")
        finally:
            wh.con.unregister("_churnlens_rows")
    elif isinstance(wh, PostgresWarehouse):
        buffer = io.BytesIO()
        pa_csv.write_csv(rows, buffer, pa_csv.WriteOptions(include_header=False))
        with (
            wh.con.cursor() as cur,
            cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(buffer.getbuffer())
    else:
        wh.insert_frame(rows.to_pandas(), table, schema)


def _naive_utc(moment: Any) -> datetime:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def _run_row(scored: Scored, run_meta: Mapping[str, Any], started: datetime) -> pd.DataFrame:
    written = lease.utc_now()  # the I/O edge: when the rows were written
    return pd.DataFrame(
        {
            "run_date": [_day(scored.run_date)],
            "started_at": [started],
            "written_at": [written],
            "churn_model": [scored.model_refs.get("churn")],
            "expansion_model": [scored.model_refs.get("expansion")],
            "feature_snapshot_id": [scored.feature_snapshot_id],
            "predictions_rows": [len(scored.predictions)],
            "reasons_rows": [len(scored.reasons)],
            "meta_json": [json.dumps(dict(run_meta), default=str, sort_keys=True)],
        }
    )
