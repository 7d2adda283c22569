"""Process hygiene of the CLI: the temporary Prefect server it starts dies with it, also when
the command is killed with SIGKILL; SIGTERM stops a running command like Ctrl-C does.

Linux only (the server is tied to its parent with PR_SET_PDEATHSIG; /proc lists processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipelines.config import PROJECT_ROOT, load_settings, open_warehouse
from tests.pipelines.conftest import RUN_DATE, TrainedWorld, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")

SERVER_APP = "prefect.server.api.server:create_app"
BOUND = 300  # generous bounds for a loaded machine, not speed assertions


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _server_children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or int(fields[1]) != parent:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if SERVER_APP in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No PREFECT_API_URL: every command starts its own temporary server."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-cli")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # the per-task INFO lines these tests wait for (hidden by default since -v exists)
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",
    }
    env.pop("PREFECT_API_URL", None)
    return env


def _start_score(world: TrainedWorld, env: dict[str, str], log: Path, day) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "churnlens"), "score"]
    command += ["--config", str(world.config), "--run-date", day.isoformat()]
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_for_server(cli: subprocess.Popen, log: Path) -> int:
    children: list[int] = []

    def started() -> bool:
        children[:] = _server_children(cli.pid)
        if not children and cli.poll() is not None:
            pytest.fail(f"the command ended before its server started:\n{log.read_text()}")
        return bool(children)

    wait_until(started, timeout=BOUND, what="the temporary Prefect server", interval=0.1)
    return children[0]


def test_the_temporary_server_dies_when_its_command_is_killed(
    trained_world: TrainedWorld, cli_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "score.log"
    cli = _start_score(trained_world, cli_env, log, RUN_DATE + timedelta(days=3))
    server = _wait_for_server(cli, log)
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    wait_until(lambda: not _alive(server), timeout=30, what=f"server {server} to exit")


def test_sigterm_stops_a_running_score_with_exit_130_and_leaves_the_warehouse_whole(
    trained_world: TrainedWorld, cli_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "score.log"
    day = RUN_DATE + timedelta(days=4)
    cli = _start_score(trained_world, cli_env, log, day)
    server = _wait_for_server(cli, log)
    wait_until(
        lambda: "validate-and-build-features" in log.read_text() or cli.poll() is not None,
        timeout=BOUND,
        what="the scoring flow to start its first warehouse task",
    )
    cli.send_signal(signal.SIGTERM)
    sent = datetime.now().strftime("%H:%M:%S.%f")
    code = cli.wait(timeout=BOUND)
    output = log.read_text()
    assert code == 130, f"SIGTERM sent at {sent}\n" + output[-6000:]
    assert output.rstrip().splitlines()[-1] == "interrupted"
    assert "Retry" not in output and "Traceback" not in output, output[-6000:]
    wait_until(lambda: not _alive(server), timeout=30, what=f"server {server} to exit")
    with open_warehouse(load_settings([trained_world.config])) as wh:
        if not wh.table_exists("predictions", "churnlens"):
            return  # interrupted before the first write-back of this session
        written = wh.query(
            "SELECT count(*) AS n, count(DISTINCT account_id) AS accounts "
            "FROM churnlens.predictions WHERE run_date = ?",
            [day],
        )
    assert int(written["n"].iloc[0]) == int(written["accounts"].iloc[0])
