"""Delivery wired into the weekly job (its own task after the write-back) and the resend
command ``churnlens deliver --run-date``, against local receivers on loopback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import load_settings, open_warehouse
from serving.changes import week_over_week
from serving.config import ServingConfig
from serving.risk_list import write_risk_lists
from serving.score import score_accounts
from serving.writeback import write_scores
from tests.pipelines.conftest import RUN_DATE, TrainedWorld, free_port
from tests.serving.conftest import CATALOG, make_features, train_bundle
from tests.serving.test_delivery import Inbox, _smtp_server, receiver  # noqa: F401 (fixture)

SCHEMA = "churnlens"


def _config(path: Path, data_dir: Path, delivery: dict, base: dict | None = None) -> Path:
    path.write_text(
        yaml.safe_dump({**(base or {}), "data_dir": str(data_dir), "delivery": delivery})
    )
    return path


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB warehouse with one scored run and its lists where the flow puts them."""
    from tests.serving.conftest import RUN_DATE as DAY

    features = make_features(40)
    scored = score_accounts(
        features,
        churn=train_bundle(make_features(), "churn"),
        expansion=None,
        run_date=DAY,
        config=ServingConfig(),
        model_refs={"churn": "churn v1"},
        catalog=CATALOG,
    )
    data_dir = tmp_path_factory.mktemp("deliver") / "data"
    settings = load_settings([_config(data_dir.parent / "c.yaml", data_dir, {})])
    with open_warehouse(settings, create=True) as wh:
        write_scores(wh, scored, schema=SCHEMA, run_meta={})
    changes = week_over_week(scored.predictions, None, config=ServingConfig())
    out = settings.risk_list_dir / DAY.isoformat()
    write_risk_lists(scored, changes, out_dir=out, run_date=DAY)
    return data_dir


def test_deliver_resends_a_week_and_records_it(written: Path, tmp_path: Path, receiver) -> None:  # noqa: F811
    from tests.serving.conftest import RUN_DATE as DAY

    inbox = Inbox()
    smtp = _smtp_server(inbox)
    try:
        delivery = {
            "email": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": smtp.port,
                "starttls": False,
                "recipients": {"csm_0": "ann@example.com", "csm_1": "bo@example.com"},
            },
            "webhook": {"enabled": True, "url": receiver.url},
        }
        config = _config(tmp_path / "c.yaml", written, delivery)
        result = CliRunner().invoke(
            app, ["deliver", "--config", str(config), "--run-date", DAY.isoformat()]
        )
    finally:
        smtp.stop()
    assert result.exit_code == 0, result.output
    assert f"delivery {DAY.isoformat()}: 3 sent, 0 failed, 2 skipped" in result.output
    assert sorted(rcpt for rcpt, _ in inbox.messages) == [["ann@example.com"], ["bo@example.com"]]
    for _, message in inbox.messages:
        (attachment,) = message.iter_attachments()
        assert attachment.get_filename().startswith("risk_list_")
    assert receiver.bodies[0]["text"].startswith(f"Churn risk {DAY.isoformat()}: ")
    with open_warehouse(load_settings([config])) as wh:
        meta = json.loads(wh.scalar(f"SELECT meta_json FROM {SCHEMA}.scoring_runs"))
    assert meta["delivery"]["summary"] == "3 sent, 0 failed, 2 skipped"


def test_deliver_exits_1_and_names_what_failed(written: Path, tmp_path: Path) -> None:
    from tests.serving.conftest import RUN_DATE as DAY

    hook = {"enabled": True, "url": f"http://127.0.0.1:{free_port()}/"}
    config = _config(tmp_path / "c.yaml", written, {"webhook": hook, "retries": 0})
    result = CliRunner().invoke(
        app, ["deliver", "--config", str(config), "--run-date", DAY.isoformat()]
    )
    assert result.exit_code == 1, result.output
    assert "FAILED: webhook: connection refused" in result.output


def test_deliver_without_lists_or_when_off_is_one_message(written: Path, tmp_path: Path) -> None:
    hook = {"enabled": True, "url": "http://127.0.0.1:9/"}
    config = _config(tmp_path / "c.yaml", written, {"webhook": hook})
    missing = CliRunner().invoke(app, ["deliver", "-c", str(config), "--run-date", "2020-01-06"])
    assert missing.exit_code == 1
    assert "no predictions for run date 2020-01-06" in missing.output
    off = CliRunner().invoke(app, ["deliver", "-c", str(_config(tmp_path / "o.yaml", written, {}))])
    assert off.exit_code == 2 and "delivery is off" in off.output


def test_weekly_score_delivers_after_the_write_back_and_survives_failures(
    trained_world: TrainedWorld,
    tmp_path: Path,
    receiver,  # noqa: F811
) -> None:
    """The webhook gets its message; the SMTP server refuses the connection: the run still
    completes, its rows are written, and the failure is in the summary and the run record."""
    from pipelines.flows import weekly_score
    from pipelines.runtime import drain_prefect_queues

    base = yaml.safe_load(trained_world.config.read_text())
    # Its own output schema: the session world's churnlens.* tables stay as the flow tests expect.
    base["warehouse"] = {**base.get("warehouse", {}), "output_schema": "delivery_test"}
    with open_warehouse(load_settings([trained_world.config])) as wh:
        owner = wh.scalar("SELECT min(csm_owner) FROM accounts")
    delivery = {
        "email": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": free_port(),  # nothing listens
            "starttls": False,
            "recipients": {owner: "csm@example.com"},
        },
        "webhook": {"enabled": True, "url": receiver.url},
        "retries": 0,
    }
    config = _config(tmp_path / "c.yaml", Path(base.pop("data_dir")), delivery, base)
    day = RUN_DATE + timedelta(days=7)
    result = weekly_score(day, str(config))
    drain_prefect_queues()
    assert result["delivery"].startswith("1 sent, 1 failed, ")  # the other CSMs: no address
    assert receiver.bodies[0]["text"].startswith(f"Churn risk {day.isoformat()}: ")
    with open_warehouse(load_settings([config])) as wh:
        rows = wh.scalar("SELECT count(*) FROM delivery_test.predictions WHERE run_date = ?", [day])
        meta = json.loads(
            wh.scalar("SELECT meta_json FROM delivery_test.scoring_runs WHERE run_date = ?", [day])
        )
    assert rows == result["accounts"]
    assert meta["delivery"]["summary"] == result["delivery"]
    assert meta["delivery"]["failed"] == [
        {"to": f"e-mail to {owner} <csm@example.com>", "error": "connection refused"}
    ]
