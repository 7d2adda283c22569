"""The weekly job as users deploy it, against a real ``prefect server start`` on loopback.

Two ways, as in the README: ``churnlens serve`` (the flow served by a long-running process) and
``prefect.yaml`` + ``prefect deploy`` + a process worker. Each deployment is triggered through
the Prefect client (``run_deployment``), with and without parameters, must reach COMPLETED, and
must leave that run date's rows in the warehouse. A run without parameters is what a schedule
starts: it scores the day it runs. The serve test is the schedule test CI runs; the worker
path costs another ~100 s and is marked slow (``make test-all``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.config import PROJECT_ROOT, load_settings, open_warehouse
from tests.pipelines.conftest import PrefectAPI, TrainedWorld, stop_group, wait_until

DEPLOYMENT = "weekly-score/churnlens-weekly"
RUN_TIMEOUT = 600  # a bound for a busy 2-core machine; a run takes about 20 s when idle
BIN = Path(sys.executable).parent


@contextmanager
def _api(prefect_api: PrefectAPI) -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_api.url}):
        yield


@contextmanager
def _background(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A long-running process in its own session (so its flow-run children are stopped with
    it), output to ``log``; SIGTERM on the way out."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_group(process)


def _deployment_ready(prefect_api: PrefectAPI, *, work_pool: str | None) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with _api(prefect_api), get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            return False
    return deployment.work_pool_name == work_pool


def _run(prefect_api: PrefectAPI, log: Path, parameters: dict | None = None) -> date:
    """Trigger one run through the client, wait for it to finish; return the date it scored."""
    from prefect.deployments import run_deployment

    started = datetime.now(UTC).date()
    with _api(prefect_api):
        run = run_deployment(
            DEPLOYMENT, parameters=parameters or {}, timeout=RUN_TIMEOUT, poll_interval=1
        )
    assert run.state is not None and run.state.is_completed(), (
        f"{run.name}: {run.state}\n{log.read_text()[-4000:]}"
    )
    if parameters and "run_date" in parameters:
        return date.fromisoformat(parameters["run_date"])
    return started


def _predictions(config: Path, day: date) -> int:
    with open_warehouse(load_settings([config])) as wh:
        sql = "SELECT count(*) AS n FROM churnlens.predictions WHERE run_date = ?"
        return int(wh.query(sql, [day])["n"].iloc[0])


def test_serve_runs_the_weekly_job_with_and_without_parameters_and_stops_on_sigint(
    trained_world: TrainedWorld, prefect_api: PrefectAPI, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    command = [str(BIN / "churnlens"), "serve", "--config", str(trained_world.config)]
    with _background([*command, "--cron", "0 6 * * 1"], prefect_api.env, log) as serve:
        wait_until(
            lambda: _deployment_ready(prefect_api, work_pool=None),
            timeout=RUN_TIMEOUT,
            what=f"the served deployment\n{log.read_text()[-2000:]}",
        )
        last_week = datetime.now(UTC).date() - timedelta(days=7)
        dated = _run(prefect_api, log, {"run_date": last_week.isoformat()})
        scheduled = _run(prefect_api, log)  # what the cron schedule starts: no parameters
        serve.send_signal(signal.SIGINT)
        code = serve.wait(timeout=RUN_TIMEOUT)
    assert code == 130, log.read_text()[-2000:]
    # a line of its own; the last flow run's process may still log after it
    assert "interrupted" in log.read_text().splitlines()
    for day in (dated, scheduled):
        assert _predictions(trained_world.config, day) > 50, day


@pytest.mark.slow  # about 100 s on a loaded 2-core machine: `prefect deploy` imports the flow
def test_prefect_yaml_deploys_to_a_process_worker(
    trained_world: TrainedWorld, prefect_api: PrefectAPI, tmp_path: Path
) -> None:
    env = {
        **prefect_api.env,
        "CHURNLENS_HOME": str(PROJECT_ROOT),
        "CHURNLENS_CONFIG": str(trained_world.config),
    }
    prefect = str(BIN / "prefect")
    for step in (
        [prefect, "work-pool", "create", "churnlens", "--type", "process", "--overwrite"],
        [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.yaml"],
    ):
        done = subprocess.run(
            step, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert _deployment_ready(prefect_api, work_pool="churnlens")
    log = tmp_path / "worker.log"
    worker = [prefect, "worker", "start", "--pool", "churnlens", "--type", "process"]
    with _background(worker, env, log) as process:
        day = datetime.now(UTC).date() - timedelta(days=3)
        scored = _run(prefect_api, log, {"run_date": day.isoformat()})
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=RUN_TIMEOUT)
    assert _predictions(trained_world.config, scored) > 50
