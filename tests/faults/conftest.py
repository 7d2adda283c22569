"""Warehouses seeded once per session for jobs that run as separate processes: a DuckDB file,
and a throw-away schema on the PostgreSQL test server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.warehouse import DuckDBWarehouse, PostgresWarehouse
from tests.conftest import PG_DSN
from tests.faults.harness import Target
from tests.faults.job import seed


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` the concurrency case that only costs time: a DuckDB file admits one writing
    process, so four writers there add nothing to two (before ``-m`` and the skip read marks)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("target") == "duckdb" and len(params.get("days", ())) == 4:
            item.add_marker(pytest.mark.slow)


def _duck_target(tmp: Path) -> Target:
    path = tmp / "wh.duckdb"
    with DuckDBWarehouse(path) as wh:
        seed(wh, schema="src")
    return Target("duckdb", "src", tmp / "lists", duckdb=path)


@pytest.fixture(
    scope="session", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(request, tmp_path_factory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "duckdb":
        yield _duck_target(tmp)
        return
    schema = f"f_{uuid.uuid4().hex[:10]}"
    with PostgresWarehouse(PG_DSN) as wh:
        seed(wh, schema=schema)
    yield Target("postgres", schema, tmp / "lists", dsn=PG_DSN)
    with PostgresWarehouse(PG_DSN) as wh:
        wh.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        wh.execute(f'DROP SCHEMA IF EXISTS "{schema}_truth" CASCADE')
