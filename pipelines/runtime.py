"""How churnlens runs Prefect flows from the command line, with or without a Prefect server.

With ``PREFECT_API_URL`` set, flow runs are reported to that server (``prefect server start``
or Prefect Cloud). Without it, Prefect starts a temporary local server for the life of the
process: nothing to set up. Either way this module turns off what only costs time offline
(analytics, per-run heartbeats) and drains Prefect's log and event queues before the process
exits, which otherwise can hang for about 75 seconds (see shared STACK-NOTES).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager


def quiet_prefect_defaults() -> None:
    """Environment defaults for offline runs; an explicit user setting always wins."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # MLflow's per-artifact progress bars interleave with Prefect's logs and say nothing useful.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(_drain())


@contextmanager
def prefect_session() -> Iterator[None]:
    """Run flows inside this block: heartbeats off, queues drained on the way out."""
    quiet_prefect_defaults()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        try:
            yield
        finally:
            drain_prefect_queues()
