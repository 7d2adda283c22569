"""Warehouse resources: one small interface over DuckDB (embedded default) and PostgreSQL.

Library code writes SQL once, in DuckDB's dialect with ``?`` placeholders. The PostgreSQL
resource transpiles it with sqlglot (cached) and binds the same parameters. Values are always
bound, never formatted into SQL; identifiers that come from configuration go through
:func:`quote_ident`, which validates them against a strict pattern first.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message says which table and what to do."""


def validate_ident(name: str, *, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise a ValueError naming it."""
    # fullmatch, not match: "$" would accept a trailing newline ("accounts\n")
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits and underscores, starting with a "
            "letter or underscore, at most 63 characters"
        )
    return name


def quote_ident(name: str, *, what: str = "identifier") -> str:
    """Validate and double-quote one identifier (table, schema or column name)."""
    return '"' + validate_ident(name, what=what) + '"'


def qualified(table: str, schema: str | None = None) -> str:
    """``"schema"."table"`` (or just ``"table"``), both parts validated."""
    if schema:
        return f"{quote_ident(schema, what='schema name')}.{quote_ident(table, what='table name')}"
    return quote_ident(table, what="table name")


_PARAM_TOKEN = "__churnlens_param__"


@lru_cache(maxsize=512)
def _to_postgres(sql: str, *, bound: bool = False) -> str:
    """DuckDB-dialect SQL as PostgreSQL. With ``bound`` parameters, psycopg reads every ``%`` as
    a placeholder, so literal ``%`` (``LIKE 'a%'``) are doubled and ``?`` become ``%s``."""
    import sqlglot
    from sqlglot import exp

    trees = [t.transform(_postgres_functions) for t in sqlglot.parse(sql, read="duckdb") if t]
    if not bound:
        return ";\n".join(t.sql(dialect="postgres") for t in trees)
    out = []
    for tree in trees:
        tree = tree.transform(
            lambda node: exp.var(_PARAM_TOKEN) if isinstance(node, exp.Placeholder) else node
        )
        out.append(tree.sql(dialect="postgres").replace("%", "%%").replace(_PARAM_TOKEN, "%s"))
    return ";\n".join(out)


def _postgres_functions(node: Any) -> Any:
    """DuckDB functions PostgreSQL spells differently: ``bit_count`` of a BIGINT (the day masks of
    ``features/sql/usage_users.sql``) counts the bits of a ``bit(64)`` there (PostgreSQL 14+)."""
    from sqlglot import exp

    if isinstance(node, exp.Anonymous) and str(node.this).lower() == "bit_count":
        (arg,) = node.expressions
        return exp.Anonymous(
            this="bit_count", expressions=[exp.cast(arg, exp.DataType.build("bit(64)"))]
        )
    return node


# What PostgreSQL's CAST accepts, for the try_cast emulation (PostgreSQL < 16 has no
# pg_input_is_valid). Values that pass these patterns cast without error.
_PG_CASTABLE: dict[str, str] = {
    "BIGINT": r"^\s*[+-]?[0-9]{1,18}\s*$",
    "DOUBLE": r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?\s*$",
    "BOOLEAN": r"^\s*(t|true|f|false|y|yes|n|no|on|off|1|0)\s*$",
    "DATE": r"^\s*[0-9]{4}-(0?[1-9]|1[0-2])-(0?[1-9]|[12][0-9]|3[01])\s*$",
    "TIMESTAMPTZ": r"^\s*[0-9]{4}-(0?[1-9]|1[0-2])-(0?[1-9]|[12][0-9]|3[01])"
    r"([ T]([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?)?"
    r"\s*(Z|z|UTC|[+-][0-9]{2}(:?[0-9]{2})?)?\s*$",
}


def whole_try_cast(expr: str, sql_type: str) -> str:
    """``TRY_CAST`` where a fraction must not cast to BIGINT (DuckDB's
    ``TRY_CAST('25.5' AS BIGINT)`` rounds it to 26); DuckDB and Spark share it so that both
    refuse the same values."""
    if sql_type.upper() == "BIGINT":
        whole = f"TRY_CAST({expr} AS BIGINT)"
        return f"CASE WHEN TRY_CAST({expr} AS DOUBLE) = {whole} THEN {whole} END"
    return f"TRY_CAST({expr} AS {sql_type})"


class Warehouse(ABC):
    """A connection to the warehouse that holds the source tables and receives predictions."""

    dialect: str
    default_schema: str

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run one SELECT (DuckDB dialect, ``?`` placeholders) and return every row."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns nothing."""

    @abstractmethod
    def insert_frame(self, df: pd.DataFrame, table: str, schema: str | None = None) -> None:
        """Append the rows of ``df`` to an existing table, matching columns by name."""

    @abstractmethod
    def create_table_from_frame(
        self, df: pd.DataFrame, table: str, schema: str | None = None, *, temporary: bool = False
    ) -> None:
        """Create (or replace) ``table`` with the columns and rows of ``df``."""

    @abstractmethod
    def columns(self, table: str, schema: str | None = None) -> dict[str, str]:
        """Column name -> lower-case SQL type of an existing table or view; {} if absent."""

    _depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together, or nothing does. Nested blocks join the
        outermost one (write-back wraps table writes that open their own)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self._outermost_transaction():
                yield
        finally:
            self._depth = 0

    @abstractmethod
    def _outermost_transaction(self) -> AbstractContextManager[object]:
        """Begin a transaction; commit on leaving, roll back on an exception."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def try_cast(self, expr: str, sql_type: str) -> str:
        """SQL (DuckDB dialect) for ``expr`` cast to ``sql_type``, or NULL where it does not cast.

        ``sql_type`` is one of BIGINT, DOUBLE, BOOLEAN, DATE, TIMESTAMPTZ, VARCHAR.
        """

    @abstractmethod
    def replace_temp_view(self, name: str, select_sql: str) -> None:
        """Create or replace the session-local view ``name`` (never a permanent object)."""

    # shared conveniences -------------------------------------------------------------
    def table_exists(self, table: str, schema: str | None = None) -> bool:
        return bool(self.columns(table, schema))

    def create_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema, what='schema name')}")

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        frame = self.query(sql, params)
        return None if frame.empty else frame.iat[0, 0]

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBWarehouse(Warehouse):
    """Embedded DuckDB: a file (the default warehouse) or ``:memory:`` for tests."""

    dialect = "duckdb"

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        read_only: bool = False,
        create: bool = True,
        lock_wait_seconds: float = 0,
        memory_limit: str | None = None,
        temp_directory: str | Path | None = None,
    ) -> None:
        """Open (with ``create``, create if absent, folders included) the DuckDB file ``path``.

        ``memory_limit`` caps DuckDB's own memory (``"1GiB"``, ``"40%"``); None takes
        :func:`default_memory_limit`, not DuckDB's 80% of RAM: past the cap, large aggregates
        (the exact-duplicate DISTINCT over every usage event) spill to ``temp_directory``
        instead of growing the process. ``temp_directory`` None is DuckDB's ``<file>.tmp``
        beside a database file, and a folder of its own in the system temp directory for
        ``:memory:`` (DuckDB's would be ``.tmp`` in the current directory). DuckDB creates the
        folder when it first spills and removes it on close.

        Without ``create`` a missing file is a :class:`WarehouseError`, so a mistyped
        ``duckdb_path`` never turns into a fresh, empty warehouse. A file that another process
        holds is waited for up to ``lock_wait_seconds`` (saying so once); then, like a file that
        is not a DuckDB database (empty, truncated, another format), it is a
        :class:`WarehouseError` that names the path and says what to do.
        """
        self.path = str(path)
        if self.path != ":memory:" and not Path(path).exists():
            if not create:
                raise WarehouseError(
                    f"no DuckDB warehouse at {path}: `churnlens demo-data` creates one, or "
                    "set warehouse.duckdb_path (or data_dir) to your DuckDB file"
                )
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.con = _duckdb_connect(self.path, read_only=read_only, wait_seconds=lock_wait_seconds)
        self.con.execute("SET TimeZone = 'UTC'")
        self._limit_memory(memory_limit, temp_directory)
        # DuckDB's own progress bar would interleave with the CLI's status line and Prefect logs.
        self.con.execute("SET enable_progress_bar = false")
        self.default_schema = "main"

    def _limit_memory(self, memory_limit: str | None, temp_directory: str | Path | None) -> None:
        import duckdb

        limit = default_memory_limit() if memory_limit is None else memory_limit
        if temp_directory is None and self.path == ":memory:":
            temp_directory = (
                Path(tempfile.gettempdir())
                / f"churnlens-duckdb-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            )
        try:
            self.con.execute("SET memory_limit = ?", [limit])
            if temp_directory is not None:
                self.con.execute("SET temp_directory = ?", [str(temp_directory)])
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            self.con.close()
            raise WarehouseError(
                f"DuckDB memory settings memory_limit={limit!r}, temp_directory="
                f"{temp_directory!r} were refused ({first}): use a size such as 1.5GB or a "
                "share of RAM such as 40%, and an existing parent folder"
            ) from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with _signals_as_interrupts():
            return self.con.execute(sql, list(params)).df()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with _signals_as_interrupts():
            self.con.execute(sql, list(params))

    def try_cast(self, expr: str, sql_type: str) -> str:
        return whole_try_cast(expr, sql_type)

    def replace_temp_view(self, name: str, select_sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS\n{select_sql}")

    def insert_frame(self, df: pd.DataFrame, table: str, schema: str | None = None) -> None:
        if df.empty:
            return
        cols = ", ".join(quote_ident(c, what="column name") for c in df.columns)
        self.con.register("_churnlens_insert", df)
        try:
            self.con.execute(
                f"INSERT INTO {qualified(table, schema)} ({cols}) "
                f"SELECT {cols} FROM _churnlens_insert"
            )
        finally:
            self.con.unregister("_churnlens_insert")

    def create_table_from_frame(
        self, df: pd.DataFrame, table: str, schema: str | None = None, *, temporary: bool = False
    ) -> None:
        self.con.register("_churnlens_create", df)
        try:
            kind = "TEMP TABLE" if temporary else "TABLE"
            target = quote_ident(table) if temporary else qualified(table, schema)
            self.con.execute(
                f"CREATE OR REPLACE {kind} {target} AS SELECT * FROM _churnlens_create"
            )
        finally:
            self.con.unregister("_churnlens_create")

    def columns(self, table: str, schema: str | None = None) -> dict[str, str]:
        # DESCRIBE resolves the name exactly as a query would (temp objects first, then the
        # current schema); information_schema by name alone merged same-named tables of
        # different schemas/catalogs into one column list.
        import duckdb

        try:
            rows = self.con.execute(f"DESCRIBE SELECT * FROM {qualified(table, schema)}").fetchall()
        except (duckdb.CatalogException, duckdb.BinderException):
            return {}
        return {name: str(type_).lower() for name, type_, *_ in rows}

    @contextmanager
    def _outermost_transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def close(self) -> None:
        # Drop the reference too: Prefect keeps task parameters (this object) alive in context
        # snapshots until exit, and a live DuckDB handle then makes nanobind report leaks.
        self.con.close()
        self.con = _CLOSED


# DuckDB 2.0 turns an exception raised by a signal handler during a query (Ctrl-C's
# KeyboardInterrupt, SIGTERM's) into this plain RuntimeError and drops the original.
_DUCKDB_INTERRUPTED = "Query interrupted"


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """Give back the KeyboardInterrupt DuckDB swallowed, so a stopped query stops the command
    as an interrupt (no retry, no traceback) rather than failing as an error. A query cancelled
    by ``con.interrupt()`` (a statement timeout) stays a ``duckdb.InterruptException``."""
    try:
        yield
    except RuntimeError as exc:
        if type(exc) is RuntimeError and str(exc) == _DUCKDB_INTERRUPTED:
            raise KeyboardInterrupt(_DUCKDB_INTERRUPTED) from exc
        raise


DEFAULT_MEMORY_LIMIT_BYTES = 2**30


def default_memory_limit() -> str:
    """DuckDB's memory cap unless configured: 1 GiB, or half the RAM on a smaller machine.
    With it the weekly path peaks at 1.1 GB RSS at 20,000 accounts and 2.2 GB at 200,000
    (benchmarks/README.md, "Weekly job"), against ~6 GB at 20,000 under DuckDB's own default
    of 80% of RAM (docs/decisions/benchmark-history.md)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    limit = min(DEFAULT_MEMORY_LIMIT_BYTES, ram // 2) if ram > 0 else DEFAULT_MEMORY_LIMIT_BYTES
    return f"{limit // 2**20}MiB"


class _InterruptibleConnection:
    """A DuckDB connection whose ``execute`` gives back the interrupt DuckDB swallows
    (:func:`_signals_as_interrupts`), for every statement the warehouse runs, views and
    transactions included; everything else is the connection's own."""

    def __init__(self, con: Any) -> None:
        self._con = con

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        with _signals_as_interrupts():
            return self._con.execute(*args, **kwargs)

    def close(self) -> None:
        # Let go of the handle: an interrupt's traceback keeps this wrapper alive until exit,
        # and a live DuckDB handle then makes nanobind print leak reports after "interrupted".
        self._con.close()
        self._con = _CLOSED

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _duckdb_connect(path: str, *, read_only: bool, wait_seconds: float) -> Any:
    """``duckdb.connect`` with its failures as messages. While another process holds the file
    (DuckDB admits one writing process), wait up to ``wait_seconds`` saying so once, then fail
    with one message naming the holder; a file that is not a database fails at once."""
    import sys
    import time

    import duckdb

    deadline, waiting = time.monotonic() + wait_seconds, False
    while True:
        try:
            return _InterruptibleConnection(duckdb.connect(path, read_only=read_only))
        except duckdb.Error as exc:
            held = re.search(r"held in (.+?) \(PID (\d+)\)", str(exc))
            if held is None or time.monotonic() >= deadline:
                raise WarehouseError(_duckdb_open_message(path, str(exc), wait_seconds)) from None
            if not waiting:
                waiting = True
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
                print(
                    f"waiting for lock on {path} since {since} UTC: in use by PID "
                    f"{held.group(2)} ({held.group(1)})",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(0.2)


def _duckdb_open_message(path: str, error: str, waited: float = 0) -> str:
    lock = re.search(r"held in (.*?) \(PID (\d+)\)", error)
    if lock:
        return (
            f"DuckDB file {path} is in use by PID {lock.group(2)} ({lock.group(1)}; waited "
            f"{waited:g} s): DuckDB lets one process write a file at a time. Let that process "
            "finish (another churnlens run?) or stop it, then run again"
        )
    if "not a valid DuckDB database file" in error or "Could not read enough bytes" in error:
        return (
            f"{path} is not a readable DuckDB database (empty, truncated or another format): "
            "restore it from a backup, point warehouse.duckdb_path at the right file, or move "
            "it away and run `churnlens demo-data` for a new demo warehouse"
        )
    first = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return f"cannot open the DuckDB warehouse {path}: {first}"


MIN_POSTGRES_VERSION = 140000  # bit_count(bit) (features/sql/usage_users.sql) is PostgreSQL 14+


def check_postgres_version(server_version: int) -> None:
    """A clear error for a server older than PostgreSQL 14 (psycopg's ``server_version``,
    e.g. 150004 for 15.4), before a feature query fails on a missing function."""
    if server_version < MIN_POSTGRES_VERSION:
        found = f"{server_version // 10000}.{server_version % 10000}"
        raise WarehouseError(
            f"PostgreSQL {found} is too old: churnlens needs PostgreSQL 14 or later "
            "(the usage features count bits with bit_count)"
        )


class PostgresWarehouse(Warehouse):
    """PostgreSQL through psycopg 3; SQL is transpiled from DuckDB's dialect by sqlglot."""

    dialect = "postgres"

    def __init__(self, dsn: str) -> None:
        import psycopg

        try:
            self.con = psycopg.connect(dsn, autocommit=True)
        except psycopg.ProgrammingError as exc:
            # a malformed connection string: libpq's parser names the offending part
            raise WarehouseError(
                f"the PostgreSQL DSN ({_redact(dsn)}) is not a valid connection string: "
                f"{_redact(_one_line(exc))}. Set CHURNLENS_PG_DSN (or warehouse.dsn_env) to a "
                "URL such as postgresql://user@host:5432/db or key=value pairs"
            ) from None
        except psycopg.Error as exc:
            raise WarehouseError(
                f"cannot connect to PostgreSQL ({_redact(dsn)}): {_redact(_one_line(exc))}. "
                "Check CHURNLENS_PG_DSN and that the server is running."
            ) from None
        check_postgres_version(self.con.info.server_version)
        self.con.execute("SET TIME ZONE 'UTC'")
        self.default_schema = "public"

    def _sql(self, sql: str, params: Sequence[Any] = ()) -> str:
        return _to_postgres(sql, bound=bool(params))

    def try_cast(self, expr: str, sql_type: str) -> str:
        if sql_type.upper() == "VARCHAR":
            return f"CAST({expr} AS VARCHAR)"
        pattern = _PG_CASTABLE[sql_type.upper()]
        return (
            f"CASE WHEN REGEXP_MATCHES(lower(CAST({expr} AS VARCHAR)), '{pattern}') "
            f"THEN CAST({expr} AS {sql_type}) END"
        )

    def replace_temp_view(self, name: str, select_sql: str) -> None:
        # pg_temp.: a plain DROP VIEW would drop a permanent view of that name on the search path
        view = quote_ident(name)
        with self.transaction():
            self.con.execute(f"DROP VIEW IF EXISTS pg_temp.{view}")
            self.con.execute(f"CREATE TEMP VIEW {view} AS\n{self._sql(select_sql)}")

    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self.con.cursor() as cur:
            cur.execute(self._sql(sql, params), list(params) or None)
            names = [d.name for d in cur.description or ()]
            rows = cur.fetchall()
        frame = pd.DataFrame.from_records(rows, columns=names)
        return _normalise_pg_frame(frame)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.con.execute(self._sql(sql, params), list(params) or None)

    def insert_frame(self, df: pd.DataFrame, table: str, schema: str | None = None) -> None:
        if df.empty:
            return
        cols = ", ".join(quote_ident(c, what="column name") for c in df.columns)
        with (
            self.con.cursor() as cur,
            cur.copy(f"COPY {qualified(table, schema)} ({cols}) FROM STDIN") as copy,
        ):
            for row in zip(*_py_columns(df), strict=True):
                copy.write_row(row)

    def create_table_from_frame(
        self, df: pd.DataFrame, table: str, schema: str | None = None, *, temporary: bool = False
    ) -> None:
        target = quote_ident(table) if temporary else qualified(table, schema)
        cols = ", ".join(
            f"{quote_ident(c, what='column name')} {_pg_type(df[c])}" for c in df.columns
        )
        kind = "TEMP TABLE" if temporary else "TABLE"
        with self.transaction():
            self.con.execute(f"DROP TABLE IF EXISTS {target}")
            self.con.execute(f"CREATE {kind} {target} ({cols})")
            self.insert_frame(df, table, None if temporary else schema)

    def columns(self, table: str, schema: str | None = None) -> dict[str, str]:
        validate_ident(table, what="table name")
        rows = self.con.execute(
            "SELECT a.attname, lower(format_type(a.atttypid, a.atttypmod)) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "AND c.relkind IN ('r', 'v', 'm', 'f', 'p') "
            "AND (%s::text IS NULL AND pg_table_is_visible(c.oid) OR n.nspname = %s) "
            "ORDER BY a.attnum",
            [table, schema, schema],
        ).fetchall()
        return dict(rows)

    def _outermost_transaction(self) -> AbstractContextManager[object]:
        return self.con.transaction()

    def close(self) -> None:
        self.con.close()


class _Closed:
    """Stands in for a closed connection; any use says so instead of an AttributeError."""

    def __getattr__(self, name: str) -> Any:
        raise WarehouseError("the warehouse connection is closed")


_CLOSED: Any = _Closed()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _redact(dsn: str) -> str:
    """The DSN without its password, in URL (``user:pw@host``) and key=value form."""
    dsn = re.sub(r"(://[^:/@\s]*:)\S*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn, flags=re.I)


def _py(value: Any) -> Any:
    """A pandas/numpy scalar as the plain Python value psycopg's COPY understands."""
    if value is None or value is pd.NaT:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def _py_columns(df: pd.DataFrame) -> list[list[Any]]:
    """Each column as plain Python values for COPY, converted per column (vectorised) rather
    than per cell: NaN/NaT/NA become None, timestamps datetimes, numpy scalars Python ones."""
    columns = []
    for name in df.columns:
        series = df[name]
        missing = series.isna().to_numpy()
        if series.dtype.kind == "M":
            values = list(series.dt.to_pydatetime())
        elif series.dtype.kind in "biuf" and isinstance(series.dtype, np.dtype):
            values = series.to_numpy().tolist()  # plain numpy: ints stay ints
        else:
            values = [_py(v) for v in series.tolist()]
        if missing.any():
            values = [None if gone else v for v, gone in zip(values, missing, strict=True)]
        columns.append(values)
    return columns


def _pg_type(series: pd.Series) -> str:
    kind = series.dtype.kind
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "bigint"
    if kind == "f":
        return "double precision"
    if kind == "M":
        return "timestamptz" if getattr(series.dtype, "tz", None) is not None else "timestamp"
    if series.dtype == object and len(series.dropna()):
        import datetime as dt

        sample = series.dropna().iloc[0]
        if isinstance(sample, dt.datetime):  # before date: datetime is a date subclass
            return "timestamptz" if sample.tzinfo is not None else "timestamp"
        if isinstance(sample, dt.date):
            return "date"
        if isinstance(sample, bool):
            return "boolean"
    return "text"


def _normalise_pg_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Make psycopg's Decimal/date objects look like what DuckDB returns for the same SQL."""
    import datetime as dt
    from decimal import Decimal

    for col in frame.columns:
        sample = frame[col].dropna()
        if sample.empty:
            continue
        first = sample.iloc[0]
        if isinstance(first, Decimal):
            frame[col] = pd.to_numeric(frame[col].astype(object), errors="coerce").astype("float64")
        elif isinstance(first, dt.datetime):
            frame[col] = pd.to_datetime(frame[col], utc=first.tzinfo is not None)
            if first.tzinfo is not None:
                frame[col] = frame[col].dt.tz_localize(None)
        elif isinstance(first, dt.date):
            frame[col] = pd.to_datetime(frame[col])
    return frame
