"""Faults the unattended job must survive or refuse: a dropped warehouse connection heals on
retry; an interrupted or cancelled query is never retried; a model that has seen the future is
refused; a target that cannot be trained is skipped with its reason."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from tests.conftest import PG_DSN
from tests.pipelines.conftest import QUICK, RUN_DATE, TODAY, TrainedWorld


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self) -> None:
        raise self.exc


def _raised_from(cause: BaseException, exc: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise exc from inner
    except BaseException as outer:
        return outer


def _interrupts() -> list[BaseException]:
    import duckdb
    import psycopg
    from prefect.exceptions import CancelledRun

    from features.warehouse import WarehouseError

    return [
        KeyboardInterrupt(),
        psycopg.errors.QueryCanceled("canceling statement due to user request"),
        duckdb.InterruptException("INTERRUPT Error: Interrupted!"),
        CancelledRun("cancelled"),
        _raised_from(KeyboardInterrupt(), WarehouseError("query failed")),
    ]


@pytest.mark.parametrize("exc", _interrupts(), ids=lambda e: type(e).__name__)
def test_an_interrupted_or_cancelled_query_is_never_retried(exc: BaseException) -> None:
    from pipelines.flows import _is_transient

    assert not _is_transient(None, None, _Failed(exc))


def test_a_dropped_connection_is_retried() -> None:
    import psycopg

    from pipelines.flows import _is_transient

    dropped = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    assert _is_transient(None, None, _Failed(dropped))


# --- look-ahead ---------------------------------------------------------------------------


def _bundle(params: dict, window_end: datetime) -> SimpleNamespace:
    return SimpleNamespace(
        target="churn", params=params, train_window=(datetime(2025, 1, 6), window_end)
    )


def test_lookahead_refuses_a_model_trained_after_the_run_date_naming_both_dates() -> None:
    from serving.lookahead import LookaheadError, check_lookahead

    bundle = _bundle({"data_end": "2026-11-16"}, datetime(2026, 8, 1))
    with pytest.raises(LookaheadError) as refused:
        check_lookahead(bundle, date(2026, 11, 9), allow=False)
    message = str(refused.value)
    assert "churn model" in message and "2026-11-16" in message and "2026-11-09" in message
    check_lookahead(bundle, date(2026, 11, 9), allow=True)
    check_lookahead(bundle, date(2026, 11, 16), allow=False)  # the training date itself is fine


def test_lookahead_falls_back_to_the_last_training_as_of_for_older_bundles() -> None:
    from serving.lookahead import LookaheadError, check_lookahead, data_end

    bundle = _bundle({}, datetime(2026, 8, 3))
    assert data_end(bundle) == date(2026, 8, 3)
    check_lookahead(bundle, date(2026, 8, 3), allow=False)
    with pytest.raises(LookaheadError, match="2026-08-03"):
        check_lookahead(bundle, date(2026, 8, 2), allow=False)


# --- untrainable targets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ([], "no rows with a matured 'expanded' label"),
        ([0, 0, 0], "no positive 'expanded' labels in 3 rows"),
        ([1, 1], "no negative 'expanded' labels in 2 rows"),
        ([0, 1, 0], None),
    ],
)
def test_untrainable_reason(labels: list[int], reason: str | None) -> None:
    from pipelines.flows import untrainable_reason

    frame = pd.DataFrame({"account_id": [f"a{i}" for i in range(len(labels))], "expanded": labels})
    found = untrainable_reason(frame, "expansion")
    assert found == reason if reason is None else found.startswith(reason)


def test_a_target_that_cannot_be_calibrated_is_skipped_and_the_others_go_on(
    trained_world: TrainedWorld, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """The expansion model's calibration slice has one class: train registers churn, skips
    expansion with the calibration message, and the CLI prints it; scoring then runs without
    an expansion model. On a copy of the world's
    warehouse, with its own registry, so the session's champions stay as they are."""
    import shutil

    from models import train as train_module
    from pipelines import cli, flows
    from pipelines.config import load_settings, open_warehouse

    source = load_settings([trained_world.config]).duckdb_path
    (tmp_path / "data").mkdir()
    shutil.copy(source, tmp_path / "data" / source.name)
    config = tmp_path / "copy.yaml"
    config.write_text(
        yaml.safe_dump(
            {**yaml.safe_load(trained_world.config.read_text()), "data_dir": str(tmp_path / "data")}
        )
    )

    real = train_module.train_model

    def one_class_expansion(dataset: pd.DataFrame, *, target: str, **kwargs: object):
        if target == "expansion":
            raise ValueError("calibration slice has only one class ([0]) in 40 rows")
        return real(dataset, target=target, **kwargs)

    monkeypatch.setattr(flows, "train_model", one_class_expansion)
    result = flows.train(RUN_DATE, str(config))
    assert set(result["registered"]) == {"churn"}
    assert result["skipped"] == {
        "expansion": "calibration slice has only one class ([0]) in 40 rows"
    }
    with cli.console.capture() as captured:
        cli._print_train(result)
    printed = captured.get()
    assert "expansion" in printed and "skipped: calibration slice has only one class" in printed
    scored = flows.weekly_score(RUN_DATE, str(config))  # no expansion model: churn only
    assert scored["accounts"] > 50
    with open_warehouse(load_settings([config])) as wh:
        expansion = wh.query(
            "SELECT count(expansion_probability) AS n FROM churnlens.predictions "
            "WHERE run_date = ?",
            [RUN_DATE],
        )
    assert int(expansion["n"].iloc[0]) == 0


# --- a dropped PostgreSQL connection --------------------------------------------------------


@pytest.mark.postgres
def test_a_connection_killed_before_write_back_is_retried_on_a_new_connection(
    trained_world: TrainedWorld, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """pg_terminate_backend on the job's own connection just before write-back: the task fails,
    retries on a fresh connection from the factory, and the run completes with every row."""
    from features.warehouse import PostgresWarehouse
    from pipelines import flows
    from pipelines.demo.data import generate_demo, write_demo

    schema = f"t_{uuid.uuid4().hex[:10]}"
    schemas = (schema, f"{schema}_out", f"{schema}_truth")
    day = RUN_DATE + timedelta(days=1)
    admin = PostgresWarehouse(PG_DSN)
    try:
        data = generate_demo(n_accounts=120, seed=5, end=TODAY, years=2.5)
        write_demo(admin, data, schema=schema, truth_schema=schemas[2])
        config = tmp_path / "pg.yaml"
        warehouse = {
            "kind": "postgres",
            "dsn_env": "CHURNLENS_FAULT_PG_DSN",
            "source_schema": schema,
            "output_schema": schemas[1],
        }
        data_dir = str(trained_world.root / "data")
        config.write_text(yaml.safe_dump({"data_dir": data_dir, "warehouse": warehouse, **QUICK}))
        monkeypatch.setenv("CHURNLENS_FAULT_PG_DSN", PG_DSN)

        backends: list[int] = []
        real = flows.write_scores

        def killed_once(wh, scored, **kwargs):
            backends.append(wh.con.info.backend_pid)
            if len(backends) == 1:
                admin.con.execute("SELECT pg_terminate_backend(%s)", [backends[0]])
            return real(wh, scored, **kwargs)

        monkeypatch.setattr(flows, "write_scores", killed_once)
        result = flows.weekly_score(day, str(config))
        assert len(backends) == 2 and backends[0] != backends[1]
        written = admin.query(
            f'SELECT count(*) AS n, count(DISTINCT account_id) AS accounts FROM "{schemas[1]}".'
            "predictions WHERE run_date = ?",
            [day],
        )
        assert int(written["n"].iloc[0]) == int(written["accounts"].iloc[0])
        assert int(written["n"].iloc[0]) == result["accounts"] > 20
    finally:
        for name in schemas:
            admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.close()
