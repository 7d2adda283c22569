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
