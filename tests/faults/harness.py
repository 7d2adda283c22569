"""The pieces the fault, concurrency and soak runs share: where a job writes (:class:`Target`),
a started job (:class:`Job`), and the checks that a run date's rows and lists are one whole
run (plain ``assert``, so the soak script can count failures too)."""

from __future__ import annotations

import multiprocessing
import uuid
from dataclasses import dataclass
from pathlib import Path

from features.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from serving.risk_list import MANIFEST, read_manifest
from tests.faults.job import RUN_DATE, spawn

DAY = RUN_DATE.isoformat()


@dataclass
class Target:
    """Where a job writes: a DuckDB file or a PostgreSQL schema, and its risk list folder."""

    kind: str
    schema: str
    lists: Path
    duckdb: Path | None = None
    dsn: str | None = None

    def args(self) -> list[str]:
        where = ["--duckdb", str(self.duckdb)] if self.duckdb else ["--pg-dsn", str(self.dsn)]
        return [*where, "--schema", self.schema]

    def connect(self) -> Warehouse:
        return DuckDBWarehouse(self.duckdb) if self.duckdb else PostgresWarehouse(str(self.dsn))

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


def warehouse_run(target: Target) -> tuple[str, int]:
    """The model whose rows the warehouse holds for DAY, checking they form one whole run."""
    with target.connect() as wh:
        s = target.schema
        preds = wh.query(
            f'SELECT account_id, churn_model FROM "{s}".predictions WHERE run_date = ?', [RUN_DATE]
        )
        runs = wh.query(f'SELECT * FROM "{s}".scoring_runs WHERE run_date = ?', [RUN_DATE])
        reasons = int(
            wh.scalar(
                f'SELECT count(*) FROM "{s}".prediction_reasons WHERE run_date = ?', [RUN_DATE]
            )
        )
        total = int(wh.scalar(f'SELECT count(*) FROM "{s}".predictions'))
        keys = f'SELECT DISTINCT run_date, account_id FROM "{s}".predictions'
        distinct = int(wh.scalar(f"SELECT count(*) FROM ({keys}) AS k"))
    assert len(runs) == 1, runs
    model = runs["churn_model"].iloc[0]
    assert preds["churn_model"].unique().tolist() == [model]
    assert len(preds) == preds["account_id"].nunique() == runs["predictions_rows"].iloc[0]
    assert reasons == runs["reasons_rows"].iloc[0]
    assert total == distinct  # one row per (run date, account), all dates
    return model, len(preds)


def lists_run(target: Target) -> str:
    """The model the list folder was written from, checking the folder is exactly one run's."""
    folder = target.lists / DAY
    manifest = read_manifest(folder)  # every file present and unchanged
    assert {p.name for p in folder.iterdir()} == {*manifest["files"], MANIFEST}
    assert manifest["run_date"] == DAY
    return manifest["model_versions"]["churn"]
