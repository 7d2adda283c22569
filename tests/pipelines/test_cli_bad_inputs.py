"""Known bad inputs end the CLI with one message and exit 1, never a traceback; config typos in
``warehouse.tables`` are named at load time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_settings, open_warehouse

ROOT = Path(__file__).resolve().parents[2]


def _churnlens(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a child process (what a user runs)."""
    code = (
        "import sys; from pipelines.cli import main; "
        "sys.argv = ['churnlens', *sys.argv[1:]]; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


def _config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n{text}")
    return path


def test_validate_on_a_missing_duckdb_file_is_an_error_and_creates_nothing(tmp_path) -> None:
    result = _churnlens("validate", "--config", str(_config(tmp_path)))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    assert f"no DuckDB warehouse at {tmp_path / 'data' / 'warehouse.duckdb'}" in " ".join(
        out.split()
    )
    assert "churnlens demo-data" in out
    assert not (tmp_path / "data").exists()


def test_validate_on_a_file_that_is_not_duckdb_is_one_message(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "warehouse.duckdb").write_bytes(b"")
    result = _churnlens("validate", "--config", str(_config(tmp_path)))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    assert "not a readable DuckDB database" in out


def test_a_dsn_that_is_not_a_dsn_is_one_message(tmp_path) -> None:
    config = _config(tmp_path, "warehouse: {kind: postgres}\n")
    result = _churnlens("validate", "--config", str(config), env={"CHURNLENS_PG_DSN": "nope"})
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    assert "WarehouseError" in out and "not a valid connection string" in out


def test_a_misspelt_table_names_the_key_and_the_known_tables(tmp_path) -> None:
    config = _config(tmp_path, "warehouse: {tables: {usage_event: {table: events}}}\n")
    with pytest.raises(ConfigError) as info:
        load_settings([config])
    text = str(info.value)
    assert "warehouse.tables.usage_event" in text
    assert "the contract tables are accounts, contracts, usage_events" in text
    result = _churnlens("validate", "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert "warehouse.tables.usage_event" in result.stdout


def test_a_misspelt_column_mapping_names_the_key(tmp_path) -> None:
    config = _config(tmp_path, "warehouse: {tables: {contracts: {columns: {ARR: amount}}}}\n")
    with pytest.raises(ConfigError, match=r"warehouse\.tables\.contracts\.columns .*ARR"):
        load_settings([config])


def test_parquet_sources_on_postgres_are_a_config_error(tmp_path) -> None:
    config = _config(
        tmp_path, "warehouse: {kind: postgres, tables: {usage_events: {parquet: x.parquet}}}\n"
    )
    with pytest.raises(ConfigError, match=r"warehouse\.tables\.usage_events\.parquet"):
        load_settings([config])


def test_open_warehouse_creates_only_when_asked(tmp_path) -> None:
    from features.warehouse import WarehouseError

    settings = load_settings([_config(tmp_path)])
    with pytest.raises(WarehouseError, match="churnlens demo-data"):
        open_warehouse(settings)
    assert not settings.duckdb_path.exists()
    with open_warehouse(settings, create=True):
        pass
    assert settings.duckdb_path.is_file()
    with open_warehouse(settings) as wh:
        assert wh.dialect == "duckdb"


def test_validate_exits_1_with_the_rows_of_a_bad_input(tmp_path) -> None:
    from datetime import date

    from pipelines.demo.data import generate_demo, write_demo

    config = _config(tmp_path)
    data = generate_demo(n_accounts=30, seed=5, end=date(2026, 11, 16), years=1.0)
    with open_warehouse(load_settings([config]), create=True) as wh:
        write_demo(wh, data)
        wh.execute("UPDATE contracts SET seats = 0, contract_id = 'zero-seats' WHERE rowid = 0")
    result = _churnlens("validate", "--config", str(config), "--run-date", "2026-11-16")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    assert "contracts.seats: bad_value; expected >= 1" in out
    assert "zero-seats" in out


def test_what_the_cli_writes_is_readable_by_its_owner_only(tmp_path) -> None:
    config = _config(tmp_path)
    result = _churnlens(
        "demo-data", "--config", str(config), "--accounts", "12", "--years", "1", "--end",
        "2026-06-01",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    assert warehouse.stat().st_mode & 0o077 == 0  # created under umask 077, not the caller's
    assert (tmp_path / "data").stat().st_mode & 0o077 == 0
