"""The warehouse resource behaves the same on DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from features.warehouse import (
    DuckDBWarehouse,
    Warehouse,
    _redact,
    qualified,
    quote_ident,
    validate_ident,
)

both = pytest.mark.parametrize(
    "wh", ["duck", pytest.param("pg", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def wh(request) -> Warehouse:
    return request.getfixturevalue(request.param)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a3"],
            "arr": [100.5, 0.0, None],
            "seats": [3, 4, 5],
            "active": [True, False, True],
            "as_of": pd.to_datetime(["2025-01-06", "2025-01-06", "2025-01-13"]),
        }
    )


@both
def test_create_insert_query_round_trip(wh) -> None:
    frame = _frame()
    wh.create_table_from_frame(frame.iloc[:0], "scores")
    wh.insert_frame(frame, "scores")
    back = wh.query("SELECT * FROM scores WHERE seats >= ? ORDER BY account_id", [3])
    assert back["account_id"].tolist() == ["a1", "a2", "a3"]
    assert back["arr"].iloc[0] == 100.5 and pd.isna(back["arr"].iloc[2])
    assert back["seats"].tolist() == [3, 4, 5]
    assert back["active"].tolist() == [True, False, True]
    assert back["as_of"].tolist() == list(frame["as_of"])
    assert wh.scalar("SELECT count(*) FROM scores WHERE as_of = ?", [dt.datetime(2025, 1, 6)]) == 2


@both
def test_transaction_rolls_back_on_exception(wh) -> None:
    wh.create_table_from_frame(_frame(), "scores")
    with pytest.raises(RuntimeError, match="halfway"), wh.transaction():
        wh.execute("DELETE FROM scores WHERE as_of = ?", [dt.datetime(2025, 1, 6)])
        wh.insert_frame(_frame().iloc[:1], "scores")
        with wh.transaction():  # nested blocks join the outer transaction
            wh.execute("DELETE FROM scores")
        raise RuntimeError("failure halfway")
    assert wh.scalar("SELECT count(*) FROM scores") == 3
    with wh.transaction():
        wh.execute("DELETE FROM scores WHERE account_id = ?", ["a3"])
    assert wh.scalar("SELECT count(*) FROM scores") == 2


@both
def test_literal_percent_signs_survive_bound_parameters(wh) -> None:
    wh.create_table_from_frame(_frame(), "scores")
    sql = "SELECT count(*) FROM scores WHERE account_id LIKE 'a%' AND seats > ?"
    assert wh.scalar(sql, [3]) == 2


@both
def test_try_cast_returns_null_for_values_that_do_not_cast(wh) -> None:
    wh.create_table_from_frame(pd.DataFrame({"v": ["12", " 3.5 ", "x", None, "1e3"]}), "raw")
    sql = f"SELECT v, {wh.try_cast('v', 'DOUBLE')} AS d FROM raw"
    casted = wh.query(sql).set_index("v")["d"]
    assert casted.notna().tolist() == [True, True, False, False, True]
    assert casted[["12", " 3.5 ", "1e3"]].tolist() == [12.0, 3.5, 1000.0]


@both
def test_columns_lists_types_and_is_empty_for_absent_tables(wh) -> None:
    wh.create_table_from_frame(_frame(), "scores")
    cols = wh.columns("scores")
    assert list(cols) == ["account_id", "arr", "seats", "active", "as_of"]
    assert cols["seats"] == "bigint" and cols["active"] == "boolean"
    assert wh.columns("nope") == {}
    assert not wh.table_exists("nope")


def test_duckdb_columns_do_not_merge_tables_of_other_schemas(duck) -> None:
    duck.create_schema("other")
    duck.execute('CREATE TABLE other."t" (secret VARCHAR)')
    duck.execute('CREATE TABLE "t" (a INTEGER)')
    assert duck.columns("t") == {"a": "integer"}
    assert duck.columns("t", "other") == {"secret": "varchar"}


@pytest.mark.postgres
def test_pg_temp_view_never_drops_a_permanent_view(pg) -> None:
    pg.execute("CREATE VIEW stg_accounts AS SELECT 1 AS kept")
    pg.replace_temp_view("stg_accounts", "SELECT 2 AS staged")
    pg.replace_temp_view("stg_accounts", "SELECT 3 AS staged")
    assert pg.scalar("SELECT staged FROM stg_accounts") == 3
    schema = pg.scalar("SELECT current_schema()")
    assert pg.scalar(f"SELECT kept FROM {quote_ident(schema)}.stg_accounts") == 1


@pytest.mark.parametrize(
    "name",
    ["x; drop table accounts", 'a"b', "1abc", "", "accounts\n", "a b", "a" * 64, "tab--le"],
)
def test_identifier_validation_rejects_injection(name) -> None:
    with pytest.raises(ValueError, match="invalid"):
        validate_ident(name)
    with pytest.raises(ValueError, match="invalid table name"):
        qualified(name, "analytics")


def test_identifier_validation_quotes_plain_names() -> None:
    assert qualified("usage_events", "analytics") == '"analytics"."usage_events"'
    assert quote_ident("select") == '"select"'


def test_injection_through_a_table_name_never_reaches_sql(duck) -> None:
    duck.create_table_from_frame(_frame(), "scores")
    with pytest.raises(ValueError):
        duck.insert_frame(_frame(), "scores; DROP TABLE scores")
    with pytest.raises(ValueError):
        duck.columns("scores; DROP TABLE scores")
    assert duck.scalar("SELECT count(*) FROM scores") == 3


@pytest.mark.parametrize(
    ("dsn", "secret"),
    [
        ("postgresql://bob:s3cret@db.example:5432/prod", "s3cret"),
        ("host=db.example user=bob password=s3cret dbname=prod", "s3cret"),
        ("host=db password='sp ace' user=bob", "sp ace"),
    ],
)
def test_dsn_password_is_redacted(dsn, secret) -> None:
    redacted = _redact(dsn)
    assert secret not in redacted and "***" in redacted


def test_postgres_older_than_14_is_refused_with_the_reason() -> None:
    from features.warehouse import WarehouseError, check_postgres_version

    check_postgres_version(140000)
    check_postgres_version(150004)
    with pytest.raises(WarehouseError, match=r"PostgreSQL 13\.11 is too old.*14 or later"):
        check_postgres_version(130011)


def test_bit_count_reaches_postgres_as_a_count_of_bit_64() -> None:
    from features.warehouse import _to_postgres

    sql = _to_postgres("select bit_count(a & b) from t")
    assert "BIT_COUNT(CAST(a & b AS BIT(64)))" in sql


# --- opening a warehouse: every failure is one message naming the path ---------------------


def test_missing_duckdb_file_is_an_error_and_nothing_is_created(tmp_path) -> None:
    from features.warehouse import DuckDBWarehouse, WarehouseError

    path = tmp_path / "nowhere" / "warehouse.duckdb"
    with pytest.raises(WarehouseError, match=r"no DuckDB warehouse at .*churnlens demo-data"):
        DuckDBWarehouse(path, create=False)
    assert not path.parent.exists()
    with DuckDBWarehouse(path, create=True) as wh:
        wh.execute("CREATE TABLE t AS SELECT 1 AS x")
    with DuckDBWarehouse(path, create=False) as wh:
        assert wh.scalar("SELECT x FROM t") == 1


@pytest.mark.parametrize("content", [b"", b"not a database " * 500, "truncated"])
def test_a_file_that_is_not_duckdb_is_named(tmp_path, content) -> None:
    from features.warehouse import DuckDBWarehouse, WarehouseError

    path = tmp_path / "broken.duckdb"
    if content == "truncated":
        with DuckDBWarehouse(tmp_path / "whole.duckdb") as wh:
            wh.execute("CREATE TABLE t AS SELECT range AS i FROM range(100000)")
        data = (tmp_path / "whole.duckdb").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(WarehouseError, match="is not a readable DuckDB database") as info:
        DuckDBWarehouse(path, create=False)
    assert str(path) in str(info.value)


def test_a_duckdb_file_held_by_another_process_names_it(tmp_path) -> None:
    import subprocess
    import sys

    from features.warehouse import DuckDBWarehouse, WarehouseError

    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WarehouseError, match=r"is in use by PID \d+"):
            DuckDBWarehouse(path, create=False)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("not a dsn", r"is not a valid connection string: missing \"=\" after \"not\""),
        ("host=127.0.0.1 port=notaport password=s3cret", "invalid integer value"),
    ],
)
def test_a_dsn_that_is_not_a_dsn_is_one_message(dsn, message) -> None:
    from features.warehouse import PostgresWarehouse, WarehouseError

    with pytest.raises(WarehouseError, match=message) as info:
        PostgresWarehouse(dsn)
    assert "s3cret" not in str(info.value) and "\n" not in str(info.value)


def test_duckdb_try_cast_to_bigint_never_rounds(duck) -> None:
    duck.create_table_from_frame(pd.DataFrame({"v": ["25", "25.5", " 7 ", "x"]}), "raw")
    casted = duck.query(f"SELECT v, {duck.try_cast('v', 'BIGINT')} AS n FROM raw")
    assert casted["n"].isna().tolist() == [False, True, False, True]


@pytest.mark.parametrize("path", ["query", "connection"])
def test_a_signal_during_a_duckdb_query_stays_an_interrupt(path: str) -> None:
    """DuckDB 2.0 swallows the KeyboardInterrupt a signal handler raises mid-query and raises
    RuntimeError('Query interrupted'); the warehouse gives the interrupt back, so the command
    stops as interrupted (exit 130, no retry) instead of failing with a traceback."""
    import signal

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt

    wh = DuckDBWarehouse()
    previous = signal.signal(signal.SIGALRM, _stop)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        slow = "SELECT sum(i * i) AS s FROM range(50000000000) t(i)"
        with pytest.raises(KeyboardInterrupt) as stopped:
            if path == "query":
                wh.query(slow)
            else:  # views, tables, transactions: every statement on the connection
                wh.con.execute(f"CREATE TABLE t AS {slow}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        wh.close()
    assert isinstance(stopped.value.__cause__, RuntimeError)
