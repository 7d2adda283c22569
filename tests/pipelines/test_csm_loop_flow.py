"""The weekly flow on the small demo world with a holdout configured: the predictions carry
the holdout draw and expansion signals, list_holdouts is written with them, and the report has
the uplift, churn-reason and expansion sections."""

from __future__ import annotations

import pytest
import yaml

from pipelines.config import load_settings, open_warehouse
from tests.pipelines.conftest import PREVIOUS, RUN_DATE, TrainedWorld

# two more weekly runs and a report on the session's trained world: about a minute idle
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def looped(trained_world: TrainedWorld) -> dict:
    from pipelines.flows import weekly_score
    from pipelines.runtime import drain_prefect_queues

    base = yaml.safe_load(trained_world.config.read_text())
    base["serving"] = {"holdout": {"share": 0.5, "seed": 1}}
    config = trained_world.root / "holdout.yaml"
    config.write_text(yaml.safe_dump(base))
    runs = [weekly_score(day, str(config)) for day in (PREVIOUS, RUN_DATE)]
    drain_prefect_queues()
    return {"settings": load_settings([config]), "runs": runs}


def test_holdouts_are_recorded_with_the_predictions(looped: dict) -> None:
    run = looped["runs"][1]
    written = run["written"]["churnlens.list_holdouts"]
    with open_warehouse(looped["settings"]) as wh:
        rows = wh.query(
            "SELECT h.churn_tier, h.holdout, p.churn_tier AS predicted_tier "
            "FROM churnlens.list_holdouts AS h JOIN churnlens.predictions AS p "
            "USING (run_date, account_id) WHERE h.run_date = ?",
            [RUN_DATE],
        )
    assert len(rows) == written > 0
    assert (rows["churn_tier"] == rows["predicted_tier"]).all()
    assert set(rows["churn_tier"]) <= set(looped["settings"].serving.changes.list_tiers)
    assert rows["holdout"].sum() == int(len(rows) * 0.5 + 0.5)  # one tier: round(share * n)


def test_report_has_the_loop_sections(looped: dict) -> None:
    from pipelines.report.gather import build_run_report

    html = build_run_report(looped["settings"], RUN_DATE).read_text()
    assert 'id="uplift"' in html and 'id="churn-reasons"' in html
    assert 'id="expansion-signals"' in html
    # two weekly runs a week apart: nothing has matured, and the report says so plainly
    assert "outcomes have not matured yet" in html
