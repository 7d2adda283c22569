"""The Prefect flows end to end on a small demo warehouse, against the session test server.

One module-scoped world: generate demo data, run ``train`` as of the first week, then
``weekly_score`` for two weeks and the second week again. Each test reads what those runs left
behind.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.warehouse import Warehouse
from pipelines.config import load_settings, open_warehouse
from tests.pipelines.conftest import PREVIOUS, RUN_DATE, TrainedWorld


@pytest.fixture(scope="module")
def world(trained_world: TrainedWorld) -> dict:
    from pipelines.flows import weekly_score
    from pipelines.runtime import drain_prefect_queues

    config = str(trained_world.config)
    first = weekly_score(PREVIOUS, config)
    second = weekly_score(RUN_DATE, config)
    again = weekly_score(RUN_DATE, config)
    drain_prefect_queues()
    return {
        "config": trained_world.config,
        "settings": load_settings([trained_world.config]),
        "trained": trained_world.trained,
        "runs": [first, second, again],
    }


def test_train_records_the_end_of_its_data_for_the_look_ahead_guard(world: dict) -> None:
    from models.registry import load_bundle
    from pipelines.runtime import tracking_store
    from serving.lookahead import data_end

    settings = world["settings"]
    bundle, _ = load_bundle(tracking=tracking_store(settings), target="churn", alias="champion")
    assert bundle.params["data_end"] == PREVIOUS.isoformat()
    assert data_end(bundle) == PREVIOUS


def test_weekly_score_refuses_a_date_before_the_champion_saw_its_data(world: dict) -> None:
    from pipelines.flows import weekly_score
    from serving.lookahead import LookaheadError

    earlier = PREVIOUS - timedelta(days=7)
    with pytest.raises(LookaheadError) as refused:
        weekly_score(earlier, str(world["config"]))
    message = str(refused.value)
    assert PREVIOUS.isoformat() in message and earlier.isoformat() in message
    assert "--allow-lookahead" in message
    with open_warehouse(world["settings"]) as wh:
        assert _count(wh, "predictions", earlier) == 0


def test_cli_score_names_both_dates_of_a_look_ahead_and_exits_1(
    world: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from pipelines.cli import main

    earlier = (PREVIOUS - timedelta(days=1)).isoformat()
    argv = ["churnlens", "score", "--config", str(world["config"]), "--run-date", earlier]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr().out
    assert exit_info.value.code == 1, out
    assert "LookaheadError" in out and earlier in out and PREVIOUS.isoformat() in out
    assert "Traceback" not in out


def _count(wh: Warehouse, table: str, run_date: date) -> int:
    sql = f"SELECT count(*) AS n FROM churnlens.{table} WHERE run_date = ?"
    return int(wh.query(sql, [run_date])["n"].iloc[0])


def test_train_registers_both_targets_and_makes_the_first_version_champion(world: dict) -> None:
    registered = world["trained"]["registered"]
    assert set(registered) == {"churn", "expansion"}
    for target, line in registered.items():
        assert line.startswith(f"churnlens-{target} v1 -> champion"), line
    assert world["trained"]["skipped"] == {}


def test_weekly_score_writes_every_active_account_once_and_a_rerun_replaces_it(
    world: dict,
) -> None:
    first, second, again = world["runs"]
    assert second["accounts"] > 50
    assert again["written"] == second["written"]
    with open_warehouse(world["settings"]) as wh:
        predictions = _count(wh, "predictions", RUN_DATE)
        assert predictions == second["accounts"]
        assert _count(wh, "predictions", PREVIOUS) == first["accounts"]
        reasons = _count(wh, "prediction_reasons", RUN_DATE)
        assert reasons == second["written"]["churnlens.prediction_reasons"] > 0
        duplicates = wh.query(
            "SELECT account_id, run_date, count(*) AS n FROM churnlens.predictions "
            "GROUP BY account_id, run_date HAVING count(*) > 1"
        )
    assert duplicates.empty


def test_weekly_score_leaves_risk_lists_and_a_drift_table(world: dict) -> None:
    settings = world["settings"]
    lists = settings.risk_list_dir / RUN_DATE.isoformat()
    csvs = sorted(lists.rglob("*.csv"))
    pages = sorted(lists.rglob("*.html"))
    assert csvs and pages
    assert (settings.report_dir / "monitoring" / f"drift-{RUN_DATE.isoformat()}.csv").exists()


def test_report_reads_the_scored_weeks(world: dict) -> None:
    from pipelines.report.gather import build_run_report

    settings = world["settings"]
    path: Path = build_run_report(settings, RUN_DATE)
    html = path.read_text()
    # the drift the latest weekly run kept (against the champion's training window), not a
    # drift rebuilt from today's warehouse: its status counts and every moved feature
    kept = pd.read_csv(settings.report_dir / "monitoring" / f"drift-{RUN_DATE.isoformat()}.csv")
    counts = kept["status"].value_counts()
    assert (
        f"{counts.get('alert', 0)} alert(s), {counts.get('warn', 0)} warning(s), "
        f"{counts.get('ok', 0)} stable feature(s)"
    ) in html
    monitoring = html[html.index('id="drift"') : html.index('id="realised"')]
    moved = kept[kept["status"].isin(["alert", "warn"])]
    for row in moved.itertuples():
        assert f"feature drift {row.status}: {row.feature} PSI" in monitoring
    assert "No weekly checks were kept" not in html
    # the forecast comes from the latest scored week, with its horizon
    horizon = settings.features.labels.lead_days + settings.features.labels.horizon_days
    assert f"Forecast NDR, next {horizon} days" in html


def test_train_stores_the_drift_reference_of_its_training_window_in_the_bundle(world: dict) -> None:
    from models.monitoring import DriftReference
    from models.registry import load_bundle
    from pipelines.runtime import tracking_store

    settings = world["settings"]
    bundle, _ = load_bundle(tracking=tracking_store(settings), target="churn", alias="champion")
    reference = DriftReference.from_state(bundle.drift_reference)
    assert set(reference.features) == set(bundle.feature_names)
    assert reference.window[1] == bundle.train_window[1].date().isoformat()
    assert set(reference.scores) == {"churn_probability"}
    assert (settings.data_dir / "evaluation" / "churn" / PREVIOUS.isoformat()).is_dir()


def test_weekly_monitoring_uses_the_stored_reference_and_keeps_it_in_the_run_record(
    world: dict,
) -> None:
    import json

    from models.monitoring import read_monitoring

    settings = world["settings"]
    kept = read_monitoring(settings.report_dir / "monitoring", RUN_DATE)
    assert "stored with the model" in kept["summary"]["drift_reference"]
    assert set(kept["volumes"]["source"]) >= {"usage_events"}
    assert set(kept["estimate"]["metric"]) == {"roc_auc", "pr_auc", "churners"}
    drift = kept["drift"].set_index("feature")
    assert drift.loc["tenure_days", "status"] == "excluded"
    with open_warehouse(settings) as wh:
        meta = wh.query(
            "SELECT meta_json FROM churnlens.scoring_runs WHERE run_date = ?", [RUN_DATE]
        )["meta_json"].iloc[0]
    record = json.loads(meta)
    assert {"source_volumes", "performance_estimate", "drift_reference"} <= set(record)
    second = world["runs"][1]
    assert second["monitoring"].startswith(f"{second['drift_alerts']} drift row(s)")


def test_a_weekly_run_builds_features_once_for_its_run_date(
    world: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.flows as flows
    from pipelines.dates import as_of_for
    from pipelines.runtime import drain_prefect_queues

    built: list[list] = []
    original = flows.build_model_features

    def counting(wh, dates, **kwargs):
        built.append(list(dates))
        return original(wh, dates, **kwargs)

    monkeypatch.setattr(flows, "build_model_features", counting)
    flows.weekly_score(RUN_DATE, str(world["config"]))
    drain_prefect_queues()
    assert built == [[as_of_for(RUN_DATE)]]
