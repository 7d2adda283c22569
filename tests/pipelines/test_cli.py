import pytest
from typer.testing import CliRunner

from pipelines.cli import app

COMMANDS = [
    [],
    ["demo"],
    ["demo-data"],
    ["validate"],
    ["features"],
    ["train"],
    ["score"],
    ["backfill"],
    ["serve"],
    ["report"],
    ["models"],
    ["models", "list"],
    ["models", "promote"],
    ["models", "rollback"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_bad_config_key_exits_with_its_name(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("warehouse: {kindd: duckdb}\n")
    result = CliRunner().invoke(app, ["validate", "--config", str(bad)])
    assert result.exit_code == 2
    assert "warehouse.kindd" in result.output


def test_validate_names_missing_tables_and_exits_1(tmp_path) -> None:
    from features.warehouse import DuckDBWarehouse

    config = tmp_path / "empty.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    DuckDBWarehouse(tmp_path / "data" / "warehouse.duckdb", create=True).close()
    result = CliRunner().invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 1
    for table in ("accounts", "contracts", "usage_events"):
        assert f"{table}: missing_table" in result.output


def test_validate_prints_offending_rows_verbatim(tmp_path) -> None:
    """Example rows are shown as the warehouse holds them; rich markup must not eat ``[x]``."""
    from datetime import date

    from pipelines.config import load_settings, open_warehouse
    from pipelines.demo.data import generate_demo, write_demo

    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    data = generate_demo(n_accounts=40, seed=3, end=date(2026, 11, 16), years=1.0)
    with open_warehouse(load_settings([config]), create=True) as wh:
        write_demo(wh, data)
        wh.execute("UPDATE contracts SET arr = -1, contract_id = '[red]neg[/red]' WHERE rowid = 0")
    result = CliRunner().invoke(
        app, ["validate", "--config", str(config), "--run-date", "2026-11-16"]
    )
    assert result.exit_code == 1, result.output
    assert "contracts" in result.output and "arr" in result.output
    assert "[red]neg[/red]" in result.output


def test_main_prints_a_known_error_without_traceback(tmp_path, monkeypatch, capsys) -> None:
    from pipelines.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    monkeypatch.setattr("sys.argv", ["churnlens", "models", "list", "--config", str(config)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "RegistryError: no registered versions" in out
    assert "Traceback" not in out


class _Failed:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def result(self) -> None:
        raise self.exc


def test_flow_tasks_retry_only_what_a_retry_can_heal() -> None:
    from features.validation import ContractError
    from features.warehouse import WarehouseError
    from models.registry import RegistryError
    from pipelines.flows import _is_transient

    assert _is_transient(None, None, _Failed(WarehouseError("connection reset")))
    assert _is_transient(None, None, _Failed(OSError("disk busy")))
    for permanent in (ContractError([]), RegistryError("no champion"), ValueError("bad")):
        assert not _is_transient(None, None, _Failed(permanent))
