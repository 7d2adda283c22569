"""kill -9 of a scoring job at each stage, on DuckDB and PostgreSQL: afterwards the warehouse
holds the previous run of the date or the new one, whole, never a mix; the risk list folder is
one run's, whole (its manifest checks); a rerun completes with one row per (run date, account)
and leaves no lease row and no temporary folder behind.

The job is ``tests.faults.job`` in a subprocess; ``CHURNLENS_FAULT_AT`` makes it SIGKILL itself
at a named checkpoint (``serving.faults``), so each kill lands at a known point.
"""

from __future__ import annotations

import signal

import pytest

from serving.writeback import interrupted_writes
from tests.faults.harness import DAY, Target, lists_run, warehouse_run

# (kill point, whose rows the warehouse holds afterwards, whose lists the folder holds)
KILLS = [
    ("features:built", "old", "old"),
    ("shap:explained", "old", "old"),
    ("write-back:after-delete", "old", "old"),
    ("risk-lists:half-written", "new", "old"),
]
MORE_KILLS = [
    ("write-back:after-lease", "old", "old"),
    ("write-back:after-insert", "old", "old"),
    ("write-back:before-commit", "old", "old"),
    ("risk-lists:before-rename", "new", "old"),
    ("risk-lists:after-rename", "new", "new"),
]


@pytest.fixture(scope="module")
def baseline(target: Target) -> int:
    done = target.run(run_date=DAY, variant=1)
    assert done.returncode == 0, done.output
    model, rows = warehouse_run(target)
    assert model == "tiny v1" and lists_run(target) == "tiny v1"
    return rows


def _kill_then_check(target: Target, baseline: int, point: str, db: str, lists: str) -> None:
    old_db, old_lists = warehouse_run(target)[0], lists_run(target)
    variant = int(old_db.split("v")[-1]) + 1
    killed = target.run(run_date=DAY, variant=variant, fault=point)
    assert killed.returncode == -signal.SIGKILL, killed.output
    new = f"tiny v{variant}"
    model, rows = warehouse_run(target)
    assert model == (new if db == "new" else old_db)
    assert rows == baseline
    assert lists_run(target) == (new if lists == "new" else old_lists)
    if point.startswith("write-back:"):
        with target.connect() as wh:
            left = interrupted_writes(wh, schema=target.schema)
        assert left["pid"].tolist() != [] and str(left["run_date"].iloc[0])[:10] == DAY


def _rerun_completes(target: Target, baseline: int, variant: int) -> None:
    done = target.run(run_date=DAY, variant=variant)
    assert done.returncode == 0, done.output
    assert warehouse_run(target) == (f"tiny v{variant}", baseline)
    assert lists_run(target) == f"tiny v{variant}"
    with target.connect() as wh:
        assert interrupted_writes(wh, schema=target.schema).empty
    assert not list(target.lists.glob(f".{DAY}.tmp-*"))


@pytest.mark.parametrize(("point", "db", "lists"), KILLS, ids=[k[0] for k in KILLS])
def test_a_kill_leaves_one_whole_run(target, baseline, point, db, lists):
    _kill_then_check(target, baseline, point, db, lists)


def test_rerun_after_the_kills_completes_with_one_row_per_account(target, baseline):
    _rerun_completes(target, baseline, variant=50)


@pytest.mark.slow
@pytest.mark.parametrize(("point", "db", "lists"), MORE_KILLS, ids=[k[0] for k in MORE_KILLS])
def test_more_kill_points_leave_one_whole_run(target, baseline, point, db, lists):
    _kill_then_check(target, baseline, point, db, lists)
    _rerun_completes(target, baseline, variant=60 + MORE_KILLS.index((point, db, lists)))
