"""Shared fixtures: an in-memory DuckDB warehouse and the PostgreSQL test warehouse.

PostgreSQL runs at 127.0.0.1:5432 (trust auth, database ``test``) on every machine, CI included;
override with ``CHURNLENS_TEST_PG_DSN``. Each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from features.warehouse import DuckDBWarehouse, PostgresWarehouse

PG_DSN = os.environ.get("CHURNLENS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def duck() -> Iterator[DuckDBWarehouse]:
    wh = DuckDBWarehouse()
    yield wh
    wh.close()


@pytest.fixture
def pg() -> Iterator[PostgresWarehouse]:
    """A PostgreSQL warehouse whose default schema is a fresh, throw-away one."""
    wh = PostgresWarehouse(PG_DSN)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    wh.create_schema(schema)
    wh.execute(f'SET search_path TO "{schema}", public')
    yield wh
    wh.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    wh.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run only when selected (``-m slow``) or with CHURNLENS_SLOW=1."""
    if "slow" in (config.getoption("-m") or "") or os.environ.get("CHURNLENS_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or CHURNLENS_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
