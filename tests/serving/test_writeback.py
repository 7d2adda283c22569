"""Write-back on DuckDB and PostgreSQL: idempotent re-runs, history kept, atomic on failure,
identifiers validated, the previous run read back."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from features.warehouse import WarehouseError
from serving.config import ServingConfig
from serving.score import Scored, score_accounts
from serving.writeback import read_previous, write_scores
from tests.serving.conftest import CATALOG, RUN_DATE


@pytest.fixture(scope="module")
def scored(features, churn_bundle) -> Scored:
    return score_accounts(
        features.head(40),
        churn=churn_bundle,
        expansion=None,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={"churn": "churn v2"},
        catalog=CATALOG,
    )


def _week_later(scored: Scored, weeks: int = 1) -> Scored:
    day = RUN_DATE + timedelta(days=7 * weeks)
    return replace(
        scored,
        run_date=day,
        predictions=scored.predictions.assign(run_date=day),
        reasons=scored.reasons.assign(run_date=day),
    )


def _counts(wh, schema: str) -> dict[str, int]:
    out = {}
    for table in ("predictions", "prediction_reasons", "scoring_runs"):
        out[table] = int(wh.scalar(f'SELECT count(*) FROM "{schema}"."{table}"'))
    return out


def _schema(wh) -> str:
    return "churnlens_out" if wh.dialect == "duckdb" else wh.scalar("SELECT current_schema()")


@pytest.fixture(params=["duck", pytest.param("pg", marks=pytest.mark.postgres)])
def wh(request):
    return request.getfixturevalue(request.param)


def test_rerun_replaces_the_run_date_and_keeps_history(wh, scored):
    schema = _schema(wh)
    n, r = len(scored.predictions), len(scored.reasons)
    counts = write_scores(wh, scored, schema=schema, run_meta={"sources": ["accounts"]})
    assert counts == {
        f"{schema}.predictions": n,
        f"{schema}.prediction_reasons": r,
        f"{schema}.scoring_runs": 1,
    }
    write_scores(wh, scored, schema=schema, run_meta={})
    assert _counts(wh, schema) == {"predictions": n, "prediction_reasons": r, "scoring_runs": 1}
    write_scores(wh, _week_later(scored), schema=schema, run_meta={})
    assert _counts(wh, schema) == {
        "predictions": 2 * n,
        "prediction_reasons": 2 * r,
        "scoring_runs": 2,
    }
    run = wh.query(f'SELECT * FROM "{schema}".scoring_runs ORDER BY run_date').iloc[0]
    assert run["feature_snapshot_id"] == scored.feature_snapshot_id
    assert run["churn_model"] == "churn v2" and run["predictions_rows"] == n


def test_failure_mid_write_leaves_previous_state_intact(wh, scored, monkeypatch):
    schema = _schema(wh)
    write_scores(wh, scored, schema=schema, run_meta={})
    before = wh.query(
        f'SELECT account_id, churn_probability FROM "{schema}".predictions ORDER BY account_id'
    )
    changed = replace(scored, predictions=scored.predictions.assign(churn_probability=0.999))
    real_insert = wh.insert_frame

    def failing_insert(df, table, schema=None):
        if table == "prediction_reasons":
            raise RuntimeError("connection lost while writing prediction_reasons")
        return real_insert(df, table, schema)

    monkeypatch.setattr(wh, "insert_frame", failing_insert)
    with pytest.raises(RuntimeError, match="connection lost"):
        write_scores(wh, changed, schema=schema, run_meta={})
    monkeypatch.undo()
    after = wh.query(
        f'SELECT account_id, churn_probability FROM "{schema}".predictions ORDER BY account_id'
    )
    assert after.equals(before)
    assert _counts(wh, schema)["prediction_reasons"] == len(scored.reasons)


def test_read_previous_returns_the_latest_earlier_run(wh, scored):
    schema = _schema(wh)
    assert read_previous(wh, schema=schema, before=RUN_DATE) is None
    write_scores(wh, scored, schema=schema, run_meta={})
    write_scores(wh, _week_later(scored), schema=schema, run_meta={})
    write_scores(wh, _week_later(scored, 2), schema=schema, run_meta={})
    previous = read_previous(wh, schema=schema, before=RUN_DATE + timedelta(days=14))
    assert previous["run_date"].dt.date.unique().tolist() == [RUN_DATE + timedelta(days=7)]
    assert sorted(previous["account_id"]) == sorted(scored.predictions["account_id"])
    assert read_previous(wh, schema=schema, before=RUN_DATE) is None


def test_schema_and_table_names_are_validated(duck, scored):
    with pytest.raises(ValueError, match="invalid schema name"):
        write_scores(duck, scored, schema='x"; DROP TABLE y; --', run_meta={})


def test_existing_table_with_other_columns_is_named(duck, scored):
    duck.execute("CREATE SCHEMA out")
    duck.execute("CREATE TABLE out.predictions (run_date DATE, account_id VARCHAR)")
    with pytest.raises(WarehouseError, match=r"out\.predictions.*churn_probability"):
        write_scores(duck, scored, schema="out", run_meta={})


def test_values_are_bound_not_formatted(duck, scored):
    hostile = "x'); DROP TABLE churnlens_out.predictions; --"
    named = replace(scored, predictions=scored.predictions.assign(name=hostile))
    write_scores(duck, named, schema="churnlens_out", run_meta={"note": hostile})
    stored = duck.query("SELECT DISTINCT name FROM churnlens_out.predictions")
    assert stored["name"].tolist() == [hostile]
