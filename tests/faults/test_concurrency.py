"""Concurrent scoring jobs, each a process of its own: two and four writers, for the same and for
different run dates, on PostgreSQL and on a DuckDB file. Every job finishes, no row is
duplicated, and a job that has to wait says so ("waiting for lock on ... since T", naming the
holder); one that may not wait fails with who is writing.

The test itself holds the lease (PostgreSQL) or the file (DuckDB) while the jobs start, so the
waits are certain, not a matter of timing."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import pytest

from serving.config import ServingConfig
from serving.writeback import interrupted_writes, run_lease
from tests.faults.harness import Job, Target
from tests.faults.job import RUN_DATE

D1, D2 = RUN_DATE.isoformat(), (RUN_DATE - timedelta(days=7)).isoformat()


def _wait_for_line(job: Job, text: str, *, limit: float = 240) -> None:
    """Block until ``job`` has printed ``text`` (a hang guard, not a timing assertion)."""
    end = time.monotonic() + limit
    while text not in job.output:
        if job.returncode is not None or time.monotonic() > end:
            raise AssertionError(f"job never printed {text!r}:\n{job.output}")
        time.sleep(0.05)


def _one_row_per_account(target: Target, days: set[str]) -> None:
    with target.connect() as wh:
        s = target.schema
        per_day = wh.query(
            f"SELECT run_date, count(*) AS n, count(DISTINCT account_id) AS accounts "
            f'FROM "{s}".predictions GROUP BY run_date'
        )
        runs = wh.query(f'SELECT run_date, count(*) AS n FROM "{s}".scoring_runs GROUP BY run_date')
        reasons = wh.query(
            f"SELECT count(*) AS n FROM (SELECT DISTINCT run_date, account_id, target, direction, "
            f'rank FROM "{s}".prediction_reasons) AS k'
        )
        total_reasons = int(wh.scalar(f'SELECT count(*) FROM "{s}".prediction_reasons'))
        assert interrupted_writes(wh, schema=s).empty
    assert {str(d)[:10] for d in per_day["run_date"]} >= days
    assert (per_day["n"] == per_day["accounts"]).all(), per_day
    assert (runs["n"] == 1).all(), runs
    assert int(reasons["n"].iloc[0]) == total_reasons


@pytest.mark.parametrize(
    "days", [[D1, D1], [D1, D1, D2, D2]], ids=["2-writers-one-date", "4-writers-two-dates"]
)
def test_concurrent_writers_wait_and_never_interleave(target, days):
    """The writers of the held date wait, then write one at a time; on PostgreSQL the writers
    of another date go ahead meanwhile. A DuckDB file admits one writing process: every
    writer waits for the file, whatever its date (four add nothing to two but time: the
    DuckDB case of four is marked slow in tests/faults/conftest.py)."""
    me = f"PID {os.getpid()}"
    config = ServingConfig(lock_timeout_seconds=0)
    holder = target.connect()
    try:
        with run_lease(holder, schema=target.schema, run_date=RUN_DATE, config=config):
            jobs = [target.start(run_date=d, variant=i + 1) for i, d in enumerate(days)]
            waiting = [j for j, d in zip(jobs, days, strict=True) if d == D1]
            for job in waiting:
                _wait_for_line(job, "waiting for lock on")
                assert me in job.output
            for job, day in zip(jobs, days, strict=True):
                if day == D2 and target.kind == "postgres":  # not held up by the lease on D1
                    assert job.wait() == 0, job.output
            if target.kind == "duckdb":
                holder.close()  # the lease is released right after: nothing else uses the file
        for job in jobs:
            assert job.wait() == 0, job.output
    finally:
        if target.kind == "postgres":
            holder.close()
    _one_row_per_account(target, set(days))


def test_a_writer_that_may_not_wait_names_the_holder(target):
    holder = target.connect()
    try:
        with run_lease(holder, schema=target.schema, run_date=RUN_DATE, config=ServingConfig()):
            job = target.run(run_date=D1, variant=9, extra=("--lock-timeout", "0"))
    finally:
        holder.close()
    assert job.returncode == 1, job.output
    assert "Traceback" not in job.output
    if target.kind == "postgres":
        assert f"run date {D1} in {target.schema} is being written by PID {os.getpid()}/" in (
            job.output
        )
        assert socket.gethostname() in job.output and " since 20" in job.output
    else:
        assert f"DuckDB file {target.duckdb} is in use by PID {os.getpid()}" in job.output
