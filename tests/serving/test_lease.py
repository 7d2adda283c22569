"""Run lease primitives: the file lock (holder recorded, removed on release, retaken after its
holder is gone), the process-local lock, the PostgreSQL advisory lock and who holds it, and the
fault checkpoint hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from features.warehouse import DuckDBWarehouse, PostgresWarehouse
from serving import lease
from serving.faults import CHECKPOINTS, FAULT_ENV, checkpoint
from tests.conftest import PG_DSN


def test_file_lock_records_the_holder_and_excludes_another_opener(tmp_path):
    info = lease.holder_info()
    first = lease._FileLock(tmp_path / "x.lock", info)
    second = lease._FileLock(tmp_path / "x.lock", {"pid": 1})
    assert first.try_acquire()
    assert not second.try_acquire()
    assert second.holder() == info
    assert json.loads((tmp_path / "x.lock").read_text())["pid"] == os.getpid()
    first.release()
    assert not (tmp_path / "x.lock").exists()
    assert second.try_acquire()
    second.release()


def test_a_lock_file_left_by_a_killed_holder_is_taken_over(tmp_path):
    path = tmp_path / "wh.duckdb.out.2026-11-23.lock"
    path.write_text(json.dumps({"pid": 999999999, "host": "gone", "started_at": "then"}))
    lock = lease._FileLock(path, lease.holder_info())
    assert lock.try_acquire()  # the kernel dropped the dead holder's flock
    assert lock.holder()["pid"] == os.getpid()
    lock.release()


def test_locks_are_per_schema_and_run_date(tmp_path):
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    try:
        a = lease.lock_for(wh, schema="out", name="2026-11-23", info={})
        b = lease.lock_for(wh, schema="out", name="2026-11-30", info={})
        c = lease.lock_for(wh, schema="other", name="2026-11-23", info={})
        assert len({a.label, b.label, c.label}) == 3
        assert a.label == f"{tmp_path / 'wh.duckdb'}.out.2026-11-23.lock"
        with pytest.raises(ValueError, match="invalid schema name"):
            lease.lock_for(wh, schema="../x", name="d", info={})
    finally:
        wh.close()


def test_memory_warehouses_use_a_process_local_lock(duck):
    a = lease.lock_for(
        duck, schema="out", name="d", info={"pid": 1, "host": "h", "started_at": "t"}
    )
    b = lease.lock_for(duck, schema="out", name="d", info={})
    assert a.try_acquire() and not b.try_acquire()
    assert lease.describe(b.holder()) == "PID 1/h since t"
    a.release()
    assert b.try_acquire()
    b.release()


def test_advisory_key_is_stable_and_signed_64_bit():
    key = lease.advisory_key("churnlens/out/2026-11-23")
    assert key == lease.advisory_key("churnlens/out/2026-11-23")
    assert key != lease.advisory_key("churnlens/out/2026-11-30")
    assert -(2**63) <= key < 2**63


@pytest.mark.postgres
def test_postgres_names_the_session_holding_the_lock_when_no_lease_row_says():
    a, b = PostgresWarehouse(PG_DSN), PostgresWarehouse(PG_DSN)
    try:
        mine = lease.lock_for(a, schema="out", name="2026-11-23", info={})
        theirs = lease.lock_for(b, schema="out", name="2026-11-23", info={})
        assert mine.try_acquire() and not theirs.try_acquire()
        backend = a.con.info.backend_pid
        assert lease.describe(theirs.holder()).startswith(f"PostgreSQL backend {backend} (")
        mine.release()
        assert theirs.try_acquire()
        theirs.release()
    finally:
        a.close()
        b.close()


def test_checkpoint_is_a_no_op_unless_named(monkeypatch):
    monkeypatch.delenv(FAULT_ENV, raising=False)
    for name in CHECKPOINTS:
        checkpoint(name)
    monkeypatch.setenv(FAULT_ENV, "write-back:after-delete")
    checkpoint("write-back:after-insert")


def test_checkpoint_kills_the_process_it_names():
    code = "from serving.faults import checkpoint; checkpoint('a'); print('alive', flush=True); "
    code += "checkpoint('b'); print('not reached')"
    env = {**os.environ, FAULT_ENV: "x, b"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == -9
    assert done.stdout == "alive\n"
