"""Warehouses seeded once per module for jobs that run as separate processes: a DuckDB file,
and a throw-away schema on the PostgreSQL test server."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from features.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from tests.conftest import PG_DSN
from tests.faults.job import seed, spawn


@dataclass
class Target:
    """Where a job writes: a DuckDB file or a PostgreSQL schema, and its risk list folder."""

    kind: str
    schema: str
    lists: Path
    duckdb: Path | None = None

    def args(self) -> list[str]:
        where = ["--duckdb", str(self.duckdb)] if self.duckdb else ["--pg-dsn", PG_DSN]
        return [*where, "--schema", self.schema]

    def connect(self) -> Warehouse:
        return DuckDBWarehouse(self.duckdb) if self.duckdb else PostgresWarehouse(PG_DSN)

    def start(
        self, *, run_date: str, variant: int, fault: str | None = None, extra: tuple = ()
    ) -> Job:
        """Start one job (``tests.faults.job.main``) in its own process."""
        argv = [
            *self.args(),
            "--run-date",
            run_date,
            "--out",
            str(self.lists / run_date),
            "--variant",
            str(variant),
            *extra,
        ]
        self.lists.mkdir(parents=True, exist_ok=True)
        log = self.lists.parent / f"job-{uuid.uuid4().hex[:8]}.log"
        return Job(spawn(argv, fault=fault, log=log), log)

    def run(self, **kwargs) -> Job:
        job = self.start(**kwargs)
        job.wait()
        return job


@dataclass
class Job:
    """A started job: its process and the file its output goes to."""

    process: multiprocessing.Process
    log: Path

    def wait(self, timeout: float = 300) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            raise AssertionError(f"job did not finish in {timeout} s:\n{self.output}")
        return self.process.exitcode

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    @property
    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def _duck_target(tmp: Path) -> Target:
    path = tmp / "wh.duckdb"
    with DuckDBWarehouse(path) as wh:
        seed(wh, schema="src")
    return Target("duckdb", "src", tmp / "lists", duckdb=path)


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(request, tmp_path_factory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "duckdb":
        yield _duck_target(tmp)
        return
    schema = f"f_{uuid.uuid4().hex[:10]}"
    with PostgresWarehouse(PG_DSN) as wh:
        seed(wh, schema=schema)
    yield Target("postgres", schema, tmp / "lists")
    with PostgresWarehouse(PG_DSN) as wh:
        wh.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        wh.execute(f'DROP SCHEMA IF EXISTS "{schema}_truth" CASCADE')
