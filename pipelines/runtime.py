"""How churnlens runs Prefect flows from the command line, with or without a Prefect server.

With ``PREFECT_API_URL`` set, flow runs are reported to that server (``prefect server start``
or Prefect Cloud). Without it, churnlens starts a temporary local server for the life of the
command: nothing to set up. It starts that server itself rather than letting Prefect do it, so
that the server dies with the command even when the command is killed with SIGKILL (Prefect's
own temporary server is stopped only by an ``atexit`` hook, and a killed command left it running,
re-parented to PID 1). Either way this module turns off what only costs time offline (analytics,
per-run heartbeats) and drains Prefect's log and event queues before the process exits, which
otherwise can hang for about 75 seconds (see shared STACK-NOTES).
"""

from __future__ import annotations

import ctypes
import inspect
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.registry import Tracking
    from pipelines.config import Settings

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_STOP = threading.Event()


def request_stop() -> None:
    """Record that a person or the system asked this process to stop (Ctrl-C, SIGTERM)."""
    _STOP.set()


def stop_requested() -> bool:
    """Whether :func:`request_stop` was called: nothing that fails afterwards is retried."""
    return _STOP.is_set()


def tracking_store(settings: Settings) -> Tracking:
    """The MLflow tracking store of ``settings`` as the resource ``models.registry`` takes:
    the one caller of :func:`models.registry.configure_tracking`. A flow run, a CLI command
    and a report build each call it once and pass the resource down."""
    from models.registry import configure_tracking

    return configure_tracking(settings.tracking, data_dir=settings.data_dir)


def quiet_prefect_defaults() -> None:
    """Environment defaults for offline runs; an explicit user setting always wins."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # MLflow's per-artifact progress bars interleave with Prefect's logs and say nothing useful.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


QUIET, NORMAL, VERBOSE = -1, 0, 1
_CONSOLE_LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
_LEVELS = {QUIET: "ERROR", NORMAL: "WARNING", VERBOSE: "INFO"}
_SET_BY_US: dict[str, str] = {}  # the console level this process chose (vs. one a user exported)


def set_verbosity(verbosity: int) -> str:
    """How much of the log reaches the terminal; returns the console level it set.

    Prefect's console handler (which prints every library's log records, Prefect's "Created
    task run" / "Finished in state" lines and churnlens's per-task lines such as "N rows
    checked") shows warnings by default, errors only with ``QUIET`` and everything from INFO
    with ``VERBOSE``. The Prefect API still receives every record, so a server's run pages stay
    complete. At ``NORMAL`` an explicit ``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL`` wins."""
    current = os.environ.get(_CONSOLE_LEVEL)
    if verbosity == NORMAL and current and current != _SET_BY_US.get(_CONSOLE_LEVEL):
        level = current
    else:
        level = os.environ[_CONSOLE_LEVEL] = _SET_BY_US[_CONSOLE_LEVEL] = _LEVELS[verbosity]
    # MLflow prints its INFO lines (uv.lock copied, input example validated) through its own
    # handler: the same level, set before it is imported (it reads MLFLOW_LOGGING_LEVEL then).
    mlflow_level = os.environ.get("MLFLOW_LOGGING_LEVEL")
    if not mlflow_level or mlflow_level == _SET_BY_US.get("MLFLOW_LOGGING_LEVEL"):
        mlflow_level = os.environ["MLFLOW_LOGGING_LEVEL"] = level.upper()
        _SET_BY_US["MLFLOW_LOGGING_LEVEL"] = mlflow_level
    logging.getLogger("mlflow").setLevel(mlflow_level.upper())
    if "prefect.logging.handlers" in sys.modules:  # already configured in this process
        from prefect.logging.handlers import PrefectConsoleHandler

        loggers = [logging.getLogger(), *map(logging.getLogger, ("uvicorn", "fastapi"))]
        for logger in loggers:
            for handler in logger.handlers:
                if isinstance(handler, PrefectConsoleHandler):
                    handler.setLevel(level.upper())
    return level


_STAGES = ("features", "models", "serving")


def shadowing_packages() -> list[tuple[str, str]]:
    """churnlens's top-level packages (``features``, ``models``, ``serving``) that Python would
    import from somewhere other than beside ``pipelines``: typically a ``models/`` package or a
    ``models.py`` in the working directory when it is on ``sys.path`` (``python -m``,
    ``PYTHONPATH=.``). Returns (name, where it would come from)."""
    import importlib.util

    home = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    found = []
    for name in _STAGES:
        spec = importlib.util.find_spec(name)
        expected = os.path.join(home, name, "__init__.py")
        if spec is not None and spec.origin and os.path.realpath(spec.origin) == expected:
            continue
        if spec is None:
            where = "nowhere (not installed)"
        else:
            where = spec.origin or next(iter(spec.submodule_search_locations or []), "?")
        found.append((name, str(where)))
    return found


def shadowing_message(found: list[tuple[str, str]]) -> str:
    names = ", ".join(f"'{name}' from {where}" for name, where in found)
    return (
        f"churnlens cannot start: Python would import {names} instead of churnlens's own "
        "package. A folder or module of that name in the working directory (or on PYTHONPATH) "
        "shadows it: run churnlens from another directory, rename that folder, or drop it "
        "from PYTHONPATH (see docs/architecture.md, 'Import names')."
    )


def drain_prefect_queues() -> None:
    """Flush queued logs and events to the API so the process can exit promptly."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def _drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # the worker never started
            pass
        drained = EventsWorker.drain_all()
        if inspect.isawaitable(drained):
            await drained

    run_coro_as_sync(_drain())


@contextmanager
def prefect_session() -> Iterator[None]:
    """Run flows inside this block: against ``PREFECT_API_URL`` if set, else a temporary
    server tied to this process; heartbeats off; queues drained on the way out."""
    quiet_prefect_defaults()
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    with ExitStack() as stack:
        updates: dict = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        if not PREFECT_API_URL.value():
            updates[PREFECT_API_URL] = stack.enter_context(temporary_server())
        stack.enter_context(temporary_settings(updates))
        try:
            yield
        finally:
            drain_prefect_queues()


@contextmanager
def temporary_server(timeout: float | None = None) -> Iterator[str]:
    """A local Prefect API server for the life of this block; yields its API URL.

    It runs the same app, on loopback, as Prefect's own temporary server, but as a child that
    the kernel stops when this process dies (``PR_SET_PDEATHSIG`` on Linux), so a crashed or
    killed command cannot leave it behind."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    wait = timeout or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    process, url = _start_server(wait)
    try:
        yield url
    finally:
        stop_process(process)


def _start_server(wait: float) -> tuple[subprocess.Popen, str]:
    """Start the server on a free port and wait for it to answer; a port taken in between
    (uvicorn exits with 3) is retried on another."""
    for _ in range(5):
        port = _free_port()
        process = subprocess.Popen(
            _server_command(port),
            env=_server_environment(),
            preexec_fn=_die_with_parent(os.getpid()),
            stdout=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/api"
        try:
            if _wait_healthy(process, url, wait):
                return process, url
        except BaseException:
            stop_process(process)
            raise
    raise RuntimeError("could not start a temporary Prefect server: no free port on 127.0.0.1")


def _server_command(port: int) -> list[str]:
    import prefect

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def _server_environment() -> dict[str, str]:
    """What Prefect gives its own temporary server: this process's settings, no UI."""
    from prefect.settings import get_current_settings

    return {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(process: subprocess.Popen, url: str, wait: float) -> bool:
    """True once ``url``/health answers 200; False if the port was taken (exit code 3)."""
    import httpx

    deadline = time.monotonic() + wait
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            code = process.poll()
            if code == 3:
                return False
            if code is not None:
                raise RuntimeError(f"the temporary Prefect server exited with code {code}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError(
        f"the temporary Prefect server did not answer within {wait:.0f} s; raise "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS on a busy machine"
    )


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to SIGTERM the child when its parent dies
    (Linux); elsewhere None, and the server is stopped on a normal exit only."""
    if not sys.platform.startswith("linux"):
        return None

    def _set() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return _set


def stop_process(process: subprocess.Popen, *, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
