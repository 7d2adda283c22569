"""One Prefect test server for the whole session (starting one costs 5-15 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Imported here, before any CliRunner test: Prefect binds its log handlers to the stderr of the
# moment, and a CliRunner stream is closed by the time the flow tests log to it.
import prefect  # noqa: F401
import pytest


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
