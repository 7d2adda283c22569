"""Write-back on DuckDB and PostgreSQL: idempotent re-runs, history kept, atomic on failure,
identifiers validated, the previous run read back; primary keys (added to keyless tables), the
run lease and its messages, bounded lock and statement waits, configured table names."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from features.warehouse import DuckDBWarehouse, PostgresWarehouse, WarehouseError
from serving import writeback
from serving.config import OutputTables, ServingConfig
from serving.lease import LeaseBusyError
from serving.score import Scored, score_accounts
from serving.writeback import (
    PREDICTIONS_SCHEMA,
    interrupted_writes,
    read_previous,
    run_lease,
    write_scores,
)
from tests.conftest import PG_DSN
from tests.serving.conftest import CATALOG, RUN_DATE


@pytest.fixture(scope="module")
def scored(features, churn_bundle) -> Scored:
    return score_accounts(
        features.head(40),
        churn=churn_bundle,
        expansion=None,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={"churn": "churn v2"},
        catalog=CATALOG,
    )


def _week_later(scored: Scored, weeks: int = 1) -> Scored:
    day = RUN_DATE + timedelta(days=7 * weeks)
    return replace(
        scored,
        run_date=day,
        predictions=scored.predictions.assign(run_date=day),
        reasons=scored.reasons.assign(run_date=day),
    )


def _counts(wh, schema: str) -> dict[str, int]:
    out = {}
    for table in ("predictions", "prediction_reasons", "scoring_runs"):
        out[table] = int(wh.scalar(f'SELECT count(*) FROM "{schema}"."{table}"'))
    return out


def _schema(wh) -> str:
    return "churnlens_out" if wh.dialect == "duckdb" else wh.scalar("SELECT current_schema()")


@pytest.fixture(params=["duck", pytest.param("pg", marks=pytest.mark.postgres)])
def wh(request):
    return request.getfixturevalue(request.param)


def test_rerun_replaces_the_run_date_and_keeps_history(wh, scored):
    schema = _schema(wh)
    n, r = len(scored.predictions), len(scored.reasons)
    counts = write_scores(wh, scored, schema=schema, run_meta={"sources": ["accounts"]})
    assert counts == {
        f"{schema}.predictions": n,
        f"{schema}.prediction_reasons": r,
        f"{schema}.scoring_runs": 1,
    }
    write_scores(wh, scored, schema=schema, run_meta={})
    assert _counts(wh, schema) == {"predictions": n, "prediction_reasons": r, "scoring_runs": 1}
    write_scores(wh, _week_later(scored), schema=schema, run_meta={})
    assert _counts(wh, schema) == {
        "predictions": 2 * n,
        "prediction_reasons": 2 * r,
        "scoring_runs": 2,
    }
    run = wh.query(f'SELECT * FROM "{schema}".scoring_runs ORDER BY run_date').iloc[0]
    assert run["feature_snapshot_id"] == scored.feature_snapshot_id
    assert run["churn_model"] == "churn v2" and run["predictions_rows"] == n


def test_failure_mid_write_leaves_previous_state_intact(wh, scored, monkeypatch):
    schema = _schema(wh)
    write_scores(wh, scored, schema=schema, run_meta={})
    before = wh.query(
        f'SELECT account_id, churn_probability FROM "{schema}".predictions ORDER BY account_id'
    )
    changed = replace(scored, predictions=scored.predictions.assign(churn_probability=0.999))
    real_insert = writeback.bulk_insert

    def failing_insert(wh, rows, table, schema):
        if table == "prediction_reasons":
            raise RuntimeError("connection lost while writing prediction_reasons")
        return real_insert(wh, rows, table, schema)

    monkeypatch.setattr(writeback, "bulk_insert", failing_insert)
    with pytest.raises(RuntimeError, match="connection lost"):
        write_scores(wh, changed, schema=schema, run_meta={})
    monkeypatch.undo()
    after = wh.query(
        f'SELECT account_id, churn_probability FROM "{schema}".predictions ORDER BY account_id'
    )
    assert after.equals(before)
    assert _counts(wh, schema)["prediction_reasons"] == len(scored.reasons)


def test_read_previous_returns_the_latest_earlier_run(wh, scored):
    schema = _schema(wh)
    assert read_previous(wh, schema=schema, before=RUN_DATE) is None
    write_scores(wh, scored, schema=schema, run_meta={})
    write_scores(wh, _week_later(scored), schema=schema, run_meta={})
    write_scores(wh, _week_later(scored, 2), schema=schema, run_meta={})
    previous = read_previous(wh, schema=schema, before=RUN_DATE + timedelta(days=14))
    assert previous["run_date"].dt.date.unique().tolist() == [RUN_DATE + timedelta(days=7)]
    assert sorted(previous["account_id"]) == sorted(scored.predictions["account_id"])
    assert read_previous(wh, schema=schema, before=RUN_DATE) is None


def test_schema_and_table_names_are_validated(duck, scored):
    with pytest.raises(ValueError, match="invalid schema name"):
        write_scores(duck, scored, schema='x"; DROP TABLE y; --', run_meta={})


def test_existing_table_with_other_columns_is_named(duck, scored):
    duck.execute("CREATE SCHEMA out")
    duck.execute("CREATE TABLE out.predictions (run_date DATE, account_id VARCHAR)")
    with pytest.raises(WarehouseError, match=r"out\.predictions.*churn_probability"):
        write_scores(duck, scored, schema="out", run_meta={})


def test_values_are_bound_not_formatted(duck, scored):
    hostile = "x'); DROP TABLE churnlens_out.predictions; --"
    named = replace(scored, predictions=scored.predictions.assign(name=hostile))
    write_scores(duck, named, schema="churnlens_out", run_meta={"note": hostile})
    stored = duck.query("SELECT DISTINCT name FROM churnlens_out.predictions")
    assert stored["name"].tolist() == [hostile]


# --- keys, leases, timeouts, configured table names ----------------------------------------

CUSTOM = OutputTables(predictions="cl_scores", reasons="cl_why", runs="cl_runs", leases="cl_leases")


def _primary_key(wh, schema: str, table: str) -> list[str]:
    rows = wh.query(
        "SELECT k.column_name FROM information_schema.table_constraints c "
        "JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name "
        "AND k.table_schema = c.table_schema AND k.table_name = c.table_name "
        "WHERE c.table_schema = ? AND c.table_name = ? AND c.constraint_type = 'PRIMARY KEY' "
        "ORDER BY k.ordinal_position",
        [schema, table],
    )
    return rows["column_name"].tolist()


def test_tables_have_primary_keys(wh, scored):
    schema = _schema(wh)
    write_scores(wh, scored, schema=schema, run_meta={})
    assert _primary_key(wh, schema, "predictions") == ["run_date", "account_id"]
    assert _primary_key(wh, schema, "prediction_reasons") == [
        "run_date",
        "account_id",
        "target",
        "direction",
        "rank",
    ]
    assert _primary_key(wh, schema, "scoring_runs") == ["run_date"]
    assert _primary_key(wh, schema, "scoring_leases") == ["run_date"]
    row = scored.predictions.head(1)
    with pytest.raises(Exception, match=r"(?i)duplicate|primary key|unique"):
        wh.insert_frame(row.assign(run_date=RUN_DATE), "predictions", schema)


def test_configured_table_names_are_used_for_writing_and_reading(wh, scored):
    schema = _schema(wh)
    config = ServingConfig(tables=CUSTOM)
    counts = write_scores(wh, scored, schema=schema, run_meta={}, config=config)
    assert set(counts) == {f"{schema}.cl_scores", f"{schema}.cl_why", f"{schema}.cl_runs"}
    for default in ("predictions", "prediction_reasons", "scoring_runs", "scoring_leases"):
        assert not wh.table_exists(default, schema)
    assert _primary_key(wh, schema, "cl_scores") == ["run_date", "account_id"]
    assert read_previous(wh, schema=schema, before=RUN_DATE, tables=CUSTOM) is None
    later = RUN_DATE + timedelta(days=7)
    previous = read_previous(wh, schema=schema, before=later, tables=CUSTOM)
    assert len(previous) == len(scored.predictions)
    assert read_previous(wh, schema=schema, before=later) is None  # default names: nothing


def test_report_history_reads_the_configured_table(duck, scored):
    from pipelines.config import Settings
    from pipelines.report.gather import read_score_history

    settings = Settings(serving=ServingConfig(tables=CUSTOM))
    schema = settings.warehouse.output_schema
    write_scores(duck, scored, schema=schema, run_meta={}, config=settings.serving)
    history = read_score_history(duck, settings, until=RUN_DATE)
    assert history.run_dates == [RUN_DATE]
    assert len(history.predictions) == len(scored.predictions)


def test_started_at_is_the_run_start(wh, scored):
    schema = _schema(wh)
    start = datetime(2026, 11, 23, 6, 0, 5, tzinfo=UTC)
    write_scores(wh, scored, schema=schema, run_meta={"note": "x"}, started_at=start)
    run = wh.query(f'SELECT started_at, written_at, meta_json FROM "{schema}".scoring_runs')
    assert pd.Timestamp(run["started_at"].iloc[0]) == pd.Timestamp("2026-11-23 06:00:05")
    assert pd.Timestamp(run["written_at"].iloc[0]) > pd.Timestamp(run["started_at"].iloc[0])
    assert json.loads(run["meta_json"].iloc[0])["started_at"].startswith("2026-11-23 06:00:05")
    write_scores(wh, scored, schema=schema, run_meta={"started_at": "2026-11-23T07:00:00"})
    again = wh.scalar(f'SELECT started_at FROM "{schema}".scoring_runs')
    assert pd.Timestamp(again) == pd.Timestamp("2026-11-23 07:00:00")


def test_keyless_tables_of_an_earlier_version_get_their_keys(wh, scored):
    schema = _schema(wh)
    wh.create_schema(schema)
    body = ", ".join(f'"{c}" {t}' for c, t in PREDICTIONS_SCHEMA.items())
    wh.execute(f'CREATE TABLE "{schema}".predictions ({body})')
    old = scored.predictions.assign(run_date=RUN_DATE - timedelta(days=7))
    wh.insert_frame(old, "predictions", schema)
    write_scores(wh, scored, schema=schema, run_meta={})
    assert _primary_key(wh, schema, "predictions") == ["run_date", "account_id"]
    assert _counts(wh, schema)["predictions"] == 2 * len(scored.predictions)


def test_duplicates_left_by_an_earlier_version_are_named_not_deleted(wh, scored):
    schema = _schema(wh)
    wh.create_schema(schema)
    body = ", ".join(f'"{c}" {t}' for c, t in PREDICTIONS_SCHEMA.items())
    wh.execute(f'CREATE TABLE "{schema}".predictions ({body})')
    rows = scored.predictions.assign(run_date=RUN_DATE)
    wh.insert_frame(rows, "predictions", schema)
    wh.insert_frame(rows.head(3), "predictions", schema)
    with pytest.raises(WarehouseError, match=rf"3 key\(s\) .*\['{RUN_DATE}'\].*score them again"):
        write_scores(wh, scored, schema=schema, run_meta={})
    assert int(wh.scalar(f'SELECT count(*) FROM "{schema}".predictions')) == len(rows) + 3


def _second_connection(wh, tmp_path):
    """Another session on the same warehouse (a DuckDB file, or a new PostgreSQL session)."""
    if wh.dialect == "postgres":
        other = PostgresWarehouse(PG_DSN)
        return wh, other
    path = tmp_path / "wh.duckdb"
    return DuckDBWarehouse(path), DuckDBWarehouse(path)


def test_a_second_writer_of_the_date_waits_then_names_the_holder(wh, scored, tmp_path, capsys):
    first, second = _second_connection(wh, tmp_path)
    schema = _schema(wh)
    started = datetime(2026, 11, 23, 5, 30)
    quick = ServingConfig(lock_timeout_seconds=0.3)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            write_scores(second, scored, schema=schema, run_meta={}, config=quick)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    with run_lease(first, schema=schema, run_date=RUN_DATE, started_at=started):
        thread = threading.Thread(target=write)  # another thread: leases are per thread
        thread.start()
        thread.join()
    (error,) = errors
    assert isinstance(error, LeaseBusyError)
    me = f"PID {os.getpid()}/{socket.gethostname()} since 2026-11-23 05:30:00"
    assert str(error).startswith(f"run date {RUN_DATE} in {schema} is being written by {me}")
    err = capsys.readouterr().err
    assert f"waiting for lock on run date {RUN_DATE} in {schema} since " in err and me in err
    write_scores(second, scored, schema=schema, run_meta={}, config=quick)  # lease released
    assert _counts(first, schema)["predictions"] == len(scored.predictions)
    for conn in {id(first): first, id(second): second}.values():
        if conn is not wh:
            conn.close()


def test_lease_is_reentrant_and_an_interrupted_write_is_reported(wh, scored, capsys):
    schema = _schema(wh)
    with run_lease(wh, schema=schema, run_date=RUN_DATE):
        write_scores(wh, scored, schema=schema, run_meta={})  # joins the held lease
    assert interrupted_writes(wh, schema=schema).empty
    wh.execute(
        f'INSERT INTO "{schema}".scoring_leases VALUES (?, ?, ?, ?, ?)',
        [RUN_DATE, 4242, "elsewhere", datetime(2026, 11, 23, 4), datetime(2026, 11, 23, 4)],
    )
    assert interrupted_writes(wh, schema=schema)["pid"].tolist() == [4242]
    write_scores(wh, scored, schema=schema, run_meta={})
    err = capsys.readouterr().err
    assert "the write by PID 4242/elsewhere since 2026-11-23 04:00:00 did not finish" in err
    assert interrupted_writes(wh, schema=schema).empty


@pytest.mark.postgres
def test_a_table_locked_by_another_session_is_waited_for_then_named(pg, scored, capsys):
    schema = _schema(pg)
    write_scores(pg, scored, schema=schema, run_meta={})
    other = PostgresWarehouse(PG_DSN)
    try:
        other.con.execute("BEGIN")
        other.con.execute(f'LOCK TABLE "{schema}".prediction_reasons IN ACCESS EXCLUSIVE MODE')
        config = ServingConfig(lock_timeout_seconds=0.2)
        with pytest.raises(LeaseBusyError, match=r"prediction_reasons\" stayed locked by backend"):
            write_scores(pg, _week_later(scored), schema=schema, run_meta={}, config=config)
        other.con.execute("ROLLBACK")
    finally:
        other.close()
    assert f'waiting for lock on "{schema}"."prediction_reasons" since' in capsys.readouterr().err
    assert _counts(pg, schema)["predictions"] == len(scored.predictions)  # nothing written


def test_a_statement_past_the_timeout_is_cancelled_and_rolled_back(wh, scored, monkeypatch):
    schema = _schema(wh)
    write_scores(wh, scored, schema=schema, run_meta={})
    endless = (
        "SELECT pg_sleep(30)"
        if wh.dialect == "postgres"
        else "SELECT count(*) FROM range(1000000000000) a"
    )
    real_insert = writeback.bulk_insert

    def slow_insert(wh, rows, table, schema):
        wh.query(endless)
        return real_insert(wh, rows, table, schema)

    monkeypatch.setattr(writeback, "bulk_insert", slow_insert)
    config = ServingConfig(statement_timeout_seconds=0.2)
    with pytest.raises(WarehouseError, match=r"longer than 0.2 s \(serving.statement_timeout"):
        write_scores(wh, _week_later(scored), schema=schema, run_meta={}, config=config)
    monkeypatch.undo()
    assert _counts(wh, schema)["predictions"] == len(scored.predictions)


def test_a_duckdb_file_in_use_by_another_process_is_one_message(tmp_path, capsys):
    path = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); "
            "print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(WarehouseError) as info:
            DuckDBWarehouse(path, lock_wait_seconds=0.3)
    finally:
        holder.communicate("")
    message = str(info.value)
    assert message.startswith(f"DuckDB file {path} is in use by PID {holder.pid}")
    assert "waited 0.3 s" in message
    assert f"waiting for lock on {path} since" in capsys.readouterr().err


# Values the bulk paths (Arrow into DuckDB, Arrow CSV COPY into PostgreSQL) must carry exactly.
AWKWARD_TEXT = [
    'Müller & Søn "GmbH", Zürich',  # unicode, a comma, quotes
    "",  # the empty string stays empty, not NULL
    None,
    "line one\nline two\r\nthree",
    "back\\slash, 'single' and \"double\"; \\N",
    "北京 🚀 ñ",
]


def test_nulls_nan_timestamps_unicode_and_quoting_round_trip(wh, scored):
    schema = _schema(wh)
    n = len(AWKWARD_TEXT)
    predictions = scored.predictions.head(n).copy()
    predictions["name"] = AWKWARD_TEXT
    predictions["csm_owner"] = pd.Series([None, "ana", None, "", "o'neil", "zoë"], dtype=object)
    predictions["arr"] = [1.0e-300, float("nan"), None, 123456789.123456789, float("inf"), -0.0]
    predictions["churn_probability"] = [0.1 + 0.2, 1 / 3, float("nan"), 0.0, 1.0, 2.0**-40]
    predictions["green_churn"] = pd.array([True, None, False, True, None, False], dtype=object)
    reasons = scored.reasons[scored.reasons["account_id"].isin(predictions["account_id"])]
    reasons = reasons.assign(sentence='«Usage» fell by 40%, "sharply"\n', value=None)
    started = datetime(2026, 11, 30, 23, 59, 59, 123456, tzinfo=UTC) + timedelta(hours=-1)
    awkward = replace(scored, predictions=predictions, reasons=reasons)
    write_scores(
        wh, awkward, schema=schema, run_meta={"note": 'naïve "quoted"'}, started_at=started
    )

    back = wh.query(f'SELECT * FROM "{schema}".predictions ORDER BY account_id')
    expected = predictions.sort_values("account_id").reset_index(drop=True)
    assert _values(back["name"]) == _values(expected["name"])
    assert _values(back["csm_owner"]) == _values(expected["csm_owner"])
    arr = back["arr"].tolist()
    assert arr[0] == 1.0e-300 and arr[3] == 123456789.123456789 and arr[4] == float("inf")
    assert pd.isna(arr[1]) and pd.isna(arr[2])  # NaN and None are both NULL
    assert str(arr[5]) == "-0.0"
    probabilities = back["churn_probability"].tolist()
    assert probabilities[0] == 0.1 + 0.2 and probabilities[1] == 1 / 3
    assert pd.isna(probabilities[2]) and probabilities[5] == 2.0**-40
    assert _values(back["green_churn"]) == [True, None, False, True, None, False]
    nulls = wh.scalar(
        f'SELECT count(*) FROM "{schema}".predictions WHERE name IS NULL OR arr IS NULL'
    )
    assert nulls == 2  # the rows with arr NaN and None (the second also has no name)
    assert pd.Timestamp(back["run_date"].iloc[0]).date() == RUN_DATE

    sentences = wh.query(f'SELECT DISTINCT sentence, value FROM "{schema}".prediction_reasons')
    assert sentences["sentence"].tolist() == ['«Usage» fell by 40%, "sharply"\n']
    assert sentences["value"].isna().all()
    run = wh.query(f'SELECT started_at, meta_json FROM "{schema}".scoring_runs')
    assert pd.Timestamp(run["started_at"].iloc[0]) == pd.Timestamp("2026-11-30 22:59:59.123456")
    assert json.loads(run["meta_json"].iloc[0])["note"] == 'naïve "quoted"'


def _values(column: pd.Series) -> list:
    """Plain values, every kind of missing (None, NaN, NA) as None."""
    return [None if pd.isna(v) else v for v in column.tolist()]


def test_a_value_that_does_not_convert_names_table_column_and_rows(wh, scored):
    predictions = scored.predictions.head(4).copy()
    predictions["arr"] = pd.Series([1.0, "lots", 3.0, "n/a"], dtype=object)
    with pytest.raises(ValueError, match=r"predictions\.arr as DOUBLE: 2 row\(s\).*'lots', 'n/a'"):
        write_scores(wh, replace(scored, predictions=predictions), schema=_schema(wh), run_meta={})


def test_a_table_of_an_earlier_version_gets_the_columns_added_since(wh, scored):
    schema = _schema(wh)
    wh.create_schema(schema)
    kept = {c: t for c, t in PREDICTIONS_SCHEMA.items() if c not in writeback.ADDED_COLUMNS}
    body = ", ".join(f'"{c}" {t}' for c, t in kept.items())
    wh.execute(f'CREATE TABLE "{schema}".predictions ({body}, PRIMARY KEY (run_date, account_id))')
    old = scored.predictions.assign(run_date=RUN_DATE - timedelta(days=7))[list(kept)]
    wh.insert_frame(old, "predictions", schema)
    write_scores(wh, scored, schema=schema, run_meta={})
    columns = wh.columns("predictions", schema)
    assert set(writeback.ADDED_COLUMNS) <= set(columns)
    older = wh.query(
        f'SELECT count(*) AS n, count("contraction_probability") AS filled '
        f'FROM "{schema}".predictions WHERE run_date = ?',
        [RUN_DATE - timedelta(days=7)],
    )
    assert older.iloc[0].tolist() == [len(old), 0]
    assert _counts(wh, schema)["predictions"] == len(old) + len(scored.predictions)
