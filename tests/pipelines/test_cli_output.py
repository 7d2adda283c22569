"""What the CLI prints: --version, the quiet default against -v, paths whole in narrow tables,
and the message for a package that shadows churnlens's own."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipelines import runtime
from pipelines.cli import _outputs_table, app

CHURNLENS = str(Path(sys.executable).parent / "churnlens")


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"churnlens {version('churnlens')}"


def test_quiet_and_verbose_together_are_refused() -> None:
    result = CliRunner().invoke(app, ["-q", "-v", "validate", "--help"])
    assert result.exit_code == 2
    assert "contradict" in result.output


@pytest.fixture
def console_level(monkeypatch: pytest.MonkeyPatch):
    """Prefect's console handler in this process, put back as it was afterwards."""
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    monkeypatch.delenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", raising=False)
    monkeypatch.setattr(runtime, "_SET_BY_US", {})
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    if not handlers:
        setup_logging(incremental=False)
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    before = [h.level for h in handlers]
    yield handlers
    for handler, level in zip(handlers, before, strict=True):
        handler.setLevel(level)


@pytest.mark.parametrize(
    ("verbosity", "level"),
    [(runtime.NORMAL, logging.WARNING), (runtime.QUIET, logging.ERROR), (runtime.VERBOSE, 20)],
)
def test_verbosity_sets_prefect_console_level(console_level, verbosity, level) -> None:
    runtime.set_verbosity(verbosity)
    assert [h.level for h in console_level] == [level] * len(console_level)
    assert os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == logging.getLevelName(level)


def test_default_goes_back_to_warnings_after_verbose(console_level) -> None:
    runtime.set_verbosity(runtime.VERBOSE)
    runtime.set_verbosity(runtime.NORMAL)
    assert [h.level for h in console_level] == [logging.WARNING] * len(console_level)


def test_an_exported_console_level_wins_by_default(console_level, monkeypatch) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "DEBUG")
    assert runtime.set_verbosity(runtime.NORMAL) == "DEBUG"
    assert runtime.set_verbosity(runtime.QUIET) == "ERROR"


def test_paths_are_folded_never_cut_in_narrow_tables() -> None:
    path = "/srv/churnlens/data/risk_lists/2026-11-30/risk_list_a_very_long_csm_name.html"
    console = Console(width=40, record=True, color_system=None)
    console.print(_outputs_table("Where everything went", [("risk lists", path)]))
    text = console.export_text()
    assert "…" not in text
    joined = "".join(line.strip().removeprefix("risk lists").strip() for line in text.splitlines())
    assert path in joined


def test_a_shadowing_models_package_in_the_working_directory_is_one_message(tmp_path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    # python -m puts the working directory first on sys.path, as PYTHONPATH=. would
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"'models' from {tmp_path / 'models' / '__init__.py'}" in result.stderr
    assert "shadows" in result.stderr


def test_a_plain_models_data_folder_does_not_shadow(tmp_path, monkeypatch) -> None:
    """A folder without __init__.py is a namespace portion: the real package still wins."""
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert runtime.shadowing_packages() == []


_TINY = textwrap.dedent(
    """
    import os
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "240")
    from prefect import flow, get_run_logger, task
    from pipelines.cli import app, main

    @task(name="tiny-step")
    def step() -> int:
        get_run_logger().info("accounts: 3 rows checked")
        get_run_logger().warning("a warning always shows")
        return 1

    @flow(name="tiny")
    def tiny() -> int:
        return step()

    @app.command("tiny")
    def tiny_command() -> None:
        from pipelines.runtime import prefect_session
        with prefect_session():
            print("result", tiny())

    main()
    """
)


@pytest.mark.slow
def test_default_output_has_no_per_task_info_lines_and_verbose_has(tmp_path) -> None:
    """A real flow run through the CLI entry point, with its own temporary Prefect server."""
    script = tmp_path / "tiny.py"
    script.write_text(_TINY)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)

    def run(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), *flags, "tiny"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    default, verbose = run(), run("-v")
    for output in (default, verbose):
        assert "result 1" in output
        assert "a warning always shows" in output
    assert "rows checked" not in default
    assert "Finished in state" not in default
    assert "| INFO" not in default
    assert "accounts: 3 rows checked" in verbose
    assert "Task run 'tiny-step" in verbose and "Finished in state Completed()" in verbose
