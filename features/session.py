"""The feature SQL files and the session-local tables a build materialises from them.

A build runs DuckDB-dialect SQL from ``features/sql/<name>.sql`` (PostgreSQL and Spark
warehouses rewrite it) into temporary tables that live as long as the connection, so that
the groups of one build read each prepared table instead of recomputing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from features.warehouse import Warehouse, quote_ident

SQL_DIR = Path(__file__).parent / "sql"


@cache
def read_sql(name: str) -> str:
    """The text of ``features/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()


def materialize(wh: Warehouse, name: str, select_sql: str, params: Sequence[object] = ()) -> None:
    """Create or replace the session-local table ``name`` from a DuckDB-dialect SELECT
    (``params`` bound to its ``?``)."""
    table = quote_ident(name)
    if wh.dialect == "spark":
        # Spark has no temp tables: a checkpointed result under a temp view (features/spark.py)
        wh.materialize(name, select_sql, params)  # type: ignore[attr-defined]
    elif wh.dialect == "postgres":
        # pg_temp.: never drop a permanent table of that name on the search path
        wh.execute(f"DROP TABLE IF EXISTS pg_temp.{table}")
        wh.execute(f"CREATE TEMP TABLE {table} AS\n{select_sql}", params)
    else:
        wh.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS\n{select_sql}", params)


def append(wh: Warehouse, name: str, select_sql: str, params: Sequence[object] = ()) -> None:
    """Add the rows of a DuckDB-dialect SELECT to the session table ``name`` (made by
    :func:`materialize`)."""
    if wh.dialect == "spark":
        wh.append(name, select_sql, params)  # type: ignore[attr-defined]
    else:
        wh.execute(f"INSERT INTO {quote_ident(name)}\n{select_sql}", params)
