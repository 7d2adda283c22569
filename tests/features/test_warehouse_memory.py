"""DuckDB's memory cap and spill folder: bounded by default, configurable, errors as messages."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from features.config import WarehouseConfig
from features.warehouse import (
    DEFAULT_MEMORY_LIMIT_BYTES,
    DuckDBWarehouse,
    WarehouseError,
    default_memory_limit,
)


def _setting(wh: DuckDBWarehouse, name: str) -> str:
    return wh.con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0]


def _limit_bytes(wh: DuckDBWarehouse) -> int:
    text = _setting(wh, "memory_limit")  # e.g. "1.5 GiB"
    number, unit = text.split()
    return int(float(number) * {"MiB": 2**20, "GiB": 2**30, "KiB": 2**10}[unit])


def test_default_cap_is_at_most_1_gib_not_duckdbs_80_percent() -> None:
    assert default_memory_limit().endswith("MiB")
    with DuckDBWarehouse() as wh:
        limit = _limit_bytes(wh)
    assert 0 < limit <= DEFAULT_MEMORY_LIMIT_BYTES


def test_an_explicit_cap_is_applied() -> None:
    with DuckDBWarehouse(memory_limit="300MiB") as wh:
        assert _setting(wh, "memory_limit") == "300.0 MiB"


def test_in_memory_spills_to_its_own_temp_folder_never_the_current_directory() -> None:
    with DuckDBWarehouse() as a, DuckDBWarehouse() as b:
        folders = {Path(_setting(a, "temp_directory")), Path(_setting(b, "temp_directory"))}
    assert len(folders) == 2
    for folder in folders:
        assert folder.parent == Path(tempfile.gettempdir())
        assert folder.name.startswith("churnlens-duckdb-")


def test_a_file_spills_beside_itself_unless_told(tmp_path) -> None:
    path = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(path) as wh:
        assert _setting(wh, "temp_directory") == f"{path}.tmp"
    with DuckDBWarehouse(path, temp_directory=tmp_path / "spill") as wh:
        assert _setting(wh, "temp_directory") == str(tmp_path / "spill")


def test_a_query_larger_than_the_cap_spills_and_gives_the_same_answer(tmp_path) -> None:
    sql = (
        "SELECT count(*) FROM "
        "(SELECT DISTINCT i % 700000 AS k, i % 3 AS j FROM range(2100000) t(i))"
    )
    with DuckDBWarehouse(memory_limit="40MiB", temp_directory=tmp_path / "spill") as wh:
        wh.execute("SET threads = 1")
        assert wh.scalar(sql) == 2_100_000  # (i mod 700000, i mod 3) is unique for i < 2.1M


def test_a_refused_setting_is_one_message_naming_it() -> None:
    with pytest.raises(WarehouseError, match=r"memory_limit='lots'.*such as 1.5GB"):
        DuckDBWarehouse(memory_limit="lots")


@pytest.mark.parametrize("value", ["1.5GB", "800MiB", "40%", "2 GB"])
def test_config_accepts_sizes_and_shares(value: str) -> None:
    assert WarehouseConfig(duckdb_memory_limit=value).duckdb_memory_limit == value


@pytest.mark.parametrize("value", ["lots", "1.5", "GB", "-1GB"])
def test_config_rejects_what_duckdb_would_not_read(value: str) -> None:
    with pytest.raises(ValidationError, match="duckdb_memory_limit"):
        WarehouseConfig(duckdb_memory_limit=value)


def test_the_configured_cap_and_spill_folder_reach_the_warehouse(tmp_path: Path) -> None:
    from pipelines.config import load_settings, open_warehouse

    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "warehouse": {"duckdb_memory_limit": "256MiB", "duckdb_temp_directory": "spill"},
        }
    )
    with open_warehouse(settings, create=True) as wh:
        assert _setting(wh, "memory_limit") == "256.0 MiB"
        assert _setting(wh, "temp_directory") == str(tmp_path / "spill")
