"""Session fixtures for the flow tests: one Prefect test server, one trained demo world, and
(for the deployment tests) one real ``prefect server start`` on loopback.

Starting a Prefect server costs 5-15 s, more on a busy machine; training the demo models about
a minute: each is done once per session.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Imported here, before any CliRunner test: Prefect binds its log handlers to the stderr of the
# moment, and a CliRunner stream is closed by the time the flow tests log to it.
import prefect  # noqa: F401
import pytest
import yaml

# Generous: a server that starts in 10 s on an idle machine took over 90 s under load.
SERVER_STARTUP_TIMEOUT = 180

TODAY = datetime.now(UTC).date()
# The demo world ends today, so a scheduled run (which scores "today") has live accounts;
# training sees data up to PREVIOUS, every scored date is on or after it.
RUN_DATE = TODAY - timedelta(days=14)
PREVIOUS = RUN_DATE - timedelta(days=7)

QUICK = {
    "features": {"observation": {"frequency": "weekly", "history_days": 600}},
    "model": {
        "num_boost_round": 80,
        "n_folds": 2,
        "tuning": {"trials": 0},
        "params": {"min_data_in_leaf": 40},
        # 220 accounts: the booster need not beat the baselines to test the flow
        "promotion": {"require_beats_baselines": False},
    },
}


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.logging.configuration import setup_logging
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # Re-bind Prefect's console handlers to the session's stderr: an earlier test may have
    # configured logging while a CliRunner or capsys stream (closed since) was sys.stderr.
    setup_logging(incremental=False)
    with (
        prefect_test_harness(server_startup_timeout=SERVER_STARTUP_TIMEOUT),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@dataclass(frozen=True)
class TrainedWorld:
    """A demo warehouse (DuckDB) ending today with churn and expansion champions trained as of
    ``PREVIOUS``; ``config`` is the YAML file every flow and command is given."""

    root: Path
    config: Path
    trained: dict


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> TrainedWorld:
    from pipelines.config import load_settings, open_warehouse
    from pipelines.demo.data import generate_demo, write_demo
    from pipelines.flows import train
    from pipelines.runtime import drain_prefect_queues

    root = tmp_path_factory.mktemp("world")
    config = root / "churnlens.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(root / "data"), **QUICK}))
    with open_warehouse(load_settings([config]), create=True) as wh:
        write_demo(wh, generate_demo(n_accounts=220, seed=11, end=TODAY, years=2.5))
    trained = train(PREVIOUS, str(config))
    drain_prefect_queues()
    return TrainedWorld(root=root, config=config, trained=trained)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds (a
    generous bound for a busy machine, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass(frozen=True)
class PrefectAPI:
    """A real ``prefect server start`` on loopback and the environment that points at it."""

    url: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectAPI]:
    import httpx

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
    }
    for name in ("PREFECT_API_KEY", "PREFECT_PROFILE"):
        env.pop(name, None)
    log = (home / "server.log").open("w")
    prefect_cli = str(Path(sys.executable).parent / "prefect")
    server = subprocess.Popen(
        [prefect_cli, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = env["PREFECT_API_URL"]

    def healthy() -> bool:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited with {server.returncode}: {_tail(home)}")
        try:
            return httpx.get(f"{url}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout=SERVER_STARTUP_TIMEOUT, what="prefect server start")
        yield PrefectAPI(url=url, env=env)
    finally:
        stop_group(server)
        log.close()


def _tail(home: Path) -> str:
    return (home / "server.log").read_text()[-2000:]


def stop_group(process: subprocess.Popen, *, grace: float = 15) -> None:
    """SIGTERM the process group of ``process`` (started with a new session), SIGKILL after
    ``grace`` seconds, and reap it."""
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with contextlib.suppress(ProcessLookupError):  # children the leader left behind
        os.killpg(process.pid, signal.SIGKILL)
