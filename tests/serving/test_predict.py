"""Scoring given (account_id, as_of) rows: same numbers as weekly scoring, every requested row
back with a status, look-ahead refused, rows files read or refused with the file and column."""

from __future__ import annotations

from datetime import date, datetime

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.build import build_features
from features.validation import prepare_sources
from features.warehouse import DuckDBWarehouse
from models.bundle import ModelBundle, prepare_matrix
from models.registry import ModelRef
from pipelines.config import load_settings
from pipelines.demo.data import generate_demo, write_demo
from serving.config import ServingConfig
from serving.lookahead import LookaheadError, data_end
from serving.predict import (
    RowsFileError,
    normalize_rows,
    predict_rows,
    read_rows,
    status_counts,
)
from serving.score import score_accounts

END = date(2026, 6, 1)
MAY, JUNE = datetime(2026, 5, 4), datetime(2026, 6, 1)
TRAIN_DATES = [datetime(2026, 1, 5), datetime(2026, 2, 2), datetime(2026, 3, 2)]
FEATURES = ["segment", "arr", "active_users_28d", "events_28d", "tenure_days", "seats"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small demo warehouse in a DuckDB file, staged, and a churn bundle trained on it."""
    root = tmp_path_factory.mktemp("predict")
    config = root / "churnlens.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(root / "data")}))
    settings = load_settings([config])
    wh = DuckDBWarehouse(settings.duckdb_path)
    write_demo(wh, generate_demo(n_accounts=80, seed=3, end=END, years=1.5))
    report = prepare_sources(wh, settings.warehouse, reference_time=datetime(2026, 6, 2))
    bundle = _bundle(build_features(wh, TRAIN_DATES, available_tables=report.available))
    state = {"wh": wh, "available": report.available, "bundle": bundle, "config": config}
    yield state
    state["wh"].close()  # the CLI test reopens it


def _bundle(frame: pd.DataFrame) -> ModelBundle:
    features = [f for f in FEATURES if f in frame.columns]
    levels = {"segment": sorted(frame["segment"].dropna().unique())}
    rng = np.random.default_rng(0)
    quiet = frame["active_users_28d"].fillna(0) < frame["active_users_28d"].median()
    y = (rng.random(len(frame)) < np.where(quiet, 0.6, 0.2)).astype(int)
    params = {"objective": "binary", "num_leaves": 5, "min_data_in_leaf": 5, "verbose": -1}
    params |= {"num_threads": 1, "seed": 0, "min_data_per_group": 5, "cat_smooth": 1}
    matrix = prepare_matrix(frame, features, levels)
    booster = lgb.train(params, lgb.Dataset(matrix, y), 20)
    return ModelBundle(
        target="churn",
        booster=booster,
        feature_names=features,
        categorical_levels=levels,
        calibrator=None,
        train_window=(TRAIN_DATES[0], TRAIN_DATES[-1]),
        params=params,
    )


def _predict(world, rows, **kwargs):
    pairs = [(world["bundle"], "churnlens-churn v1")]
    return predict_rows(world["wh"], rows, pairs, available_tables=world["available"], **kwargs)


def test_predict_equals_weekly_scoring_at_the_same_date(world):
    frame = build_features(world["wh"], [JUNE], available_tables=world["available"])
    weekly = score_accounts(
        frame,
        churn=world["bundle"],
        expansion=None,
        run_date=JUNE.date(),
        config=ServingConfig(),
        model_refs={"churn": "churnlens-churn v1"},
    ).predictions
    rows = pd.DataFrame({"account_id": weekly["account_id"][::-1], "as_of": JUNE.date()})
    got = _predict(world, rows)
    assert (got["status"] == "scored").all()
    assert got["account_id"].tolist() == rows["account_id"].tolist()  # the order given
    merged = got.merge(weekly, on="account_id", suffixes=("", "_weekly"))
    assert len(merged) == len(weekly) > 50
    np.testing.assert_allclose(
        merged["churn_probability"], merged["churn_probability_weekly"], rtol=0, atol=1e-12
    )
    assert (got["churn_model"] == "churnlens-churn v1").all()


def test_mixed_dates_one_build_every_row_back_with_its_status(world):
    may = build_features(world["wh"], [MAY], available_tables=world["available"])
    june = build_features(world["wh"], [JUNE], available_tables=world["available"])
    gone = sorted(set(may["account_id"]) - set(june["account_id"]))
    assert gone, "the demo world should lose an account between May and June"
    rows = pd.concat(
        [
            pd.DataFrame({"account_id": june["account_id"][:5], "as_of": pd.Timestamp(JUNE)}),
            pd.DataFrame({"account_id": may["account_id"][:5], "as_of": pd.Timestamp(MAY)}),
            pd.DataFrame({"account_id": [gone[0], "nobody"], "as_of": pd.Timestamp(JUNE)}),
        ],
        ignore_index=True,
    ).sample(frac=1.0, random_state=1)
    got = _predict(world, rows)
    assert list(got.columns) == [
        "account_id",
        "as_of",
        "churn_probability",
        "churn_model",
        "status",
    ]
    assert got[["account_id", "as_of"]].astype(str).values.tolist() == (
        rows.astype(str).values.tolist()
    )
    assert status_counts(got) == {"scored": 10, "not_active": 1, "unknown_account": 1}
    assert got.loc[got["status"] != "scored", "churn_probability"].isna().all()
    for day, frame in ((MAY, may), (JUNE, june)):
        alone = frame.assign(p=world["bundle"].predict_proba(frame))[["account_id", "p"]]
        mine = got[(got["as_of"] == day) & (got["status"] == "scored")].merge(alone)
        assert len(mine) == 5
        np.testing.assert_allclose(mine["churn_probability"], mine["p"], rtol=0, atol=1e-12)


def test_a_model_trained_after_an_as_of_is_refused_unless_allowed(world):
    rows = pd.DataFrame({"account_id": ["A1", "A2"], "as_of": [JUNE, datetime(2026, 2, 2)]})
    with pytest.raises(LookaheadError, match=r"data up to 2026-03-02.*2026-02-02.*allow-lookahead"):
        _predict(world, rows)
    got = _predict(world, rows, allow_lookahead=True)
    assert len(got) == 2


@pytest.mark.parametrize(
    ("params", "window_end", "expected"),
    [
        ({"data_end": "2026-04-10T23:59:59.999999"}, datetime(2026, 1, 1), "2026-04-10"),
        ({"gap_days": 120}, datetime(2026, 1, 5), "2026-05-05"),
        ({}, datetime(2026, 3, 2), "2026-03-02"),
    ],
)
def test_data_end_prefers_the_recorded_end_then_the_label_gap(params, window_end, expected):
    bundle = ModelBundle(
        target="churn",
        booster=None,
        feature_names=[],
        categorical_levels={},
        calibrator=None,
        train_window=(datetime(2025, 1, 1), window_end),
        params=params,
    )
    assert data_end(bundle) == date.fromisoformat(expected)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_rows_files_take_dates_or_timestamps(tmp_path, suffix):
    rows = pd.DataFrame(
        {
            "account_id": ["007", "B"],
            "as_of": ["2026-06-01", "2026-05-04T00:00:00Z"],
            "label": [1, 0],
        }
    )
    path = tmp_path / f"rows{suffix}"
    rows.to_csv(path, index=False) if suffix == ".csv" else rows.to_parquet(path)
    got = read_rows(path)
    assert got["account_id"].tolist() == ["007", "B"]  # an id is text, leading zeros kept
    assert got["as_of"].tolist() == [pd.Timestamp("2026-06-01"), pd.Timestamp("2026-05-04")]
    dates = pd.DataFrame({"account_id": ["A"], "as_of": [date(2026, 6, 1)]})
    assert normalize_rows(dates)["as_of"].dtype == "datetime64[us]"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"account": ["A"], "as_of": ["2026-06-01"]}), r"missing column.*account_id"),
        (pd.DataFrame({"account_id": ["A"], "as_of": ["soon"]}), r"column as_of .*not dates"),
        (
            pd.DataFrame({"account_id": ["A"], "as_of": ["2026-06-01 09:30"]}),
            r"column as_of .*not midnights",
        ),
        (pd.DataFrame({"account_id": [None], "as_of": ["2026-06-01"]}), r"account_id is empty"),
    ],
)
def test_a_bad_rows_file_names_the_file_and_column(tmp_path, frame, message):
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(RowsFileError, match=message) as info:
        read_rows(path)
    assert str(path) in str(info.value)


def test_cli_predict_writes_scores_and_refuses_lookahead(world, tmp_path, monkeypatch):
    import models.registry
    from pipelines.cli import app

    def fake_load(**kwargs):
        assert kwargs["target"] == "churn" and kwargs["alias"] == "champion"
        return world["bundle"], ModelRef("churnlens-churn", "1", "champion", "run")

    monkeypatch.setattr(models.registry, "load_bundle", fake_load)
    monkeypatch.setattr("pipelines.cli.tracking_store", lambda settings: None)  # no store needed
    june = build_features(world["wh"], [JUNE], available_tables=world["available"])
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"account_id": [*june["account_id"][:3], "nobody"], "as_of": "2026-06-01"}).to_csv(
        rows, index=False
    )
    out = tmp_path / "scores.parquet"
    world["wh"].close()  # the CLI opens the DuckDB file itself
    try:
        args = ["predict", "--rows", str(rows), "--out", str(out), "-c", str(world["config"])]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "3 scored" in result.output and "1 unknown_account" in result.output
        scores = pd.read_parquet(out)
        assert scores["churn_probability"].notna().sum() == 3
        pd.DataFrame({"account_id": ["A1"], "as_of": ["2026-01-05"]}).to_csv(rows, index=False)
        refused = CliRunner().invoke(app, args)
        assert refused.exit_code == 1
        assert "LookaheadError" in refused.output and "Traceback" not in refused.output
    finally:
        settings = load_settings([world["config"]])
        world["wh"] = DuckDBWarehouse(settings.duckdb_path)
        prepare_sources(world["wh"], settings.warehouse, reference_time=datetime(2026, 6, 2))


@pytest.mark.slow  # a fresh MLflow store and a training run: ~50 s on a loaded 2-core machine
def test_load_model_version_reads_that_version_from_the_registry(tmp_path):
    import mlflow

    from models.config import ModelConfig, TrackingConfig, TuningConfig
    from models.registry import RegistryError, configure_tracking, load_bundle, log_and_register
    from models.train import train_model
    from tests.models.conftest import make_panel

    before = mlflow.get_tracking_uri()
    panel = make_panel(n_accounts=80, n_dates=20, seed=4, horizon_days=28)
    dataset = panel.dropna(subset=["churned"]).astype({"churned": int})
    config = ModelConfig(
        seed=1,
        num_threads=1,
        num_boost_round=30,
        n_folds=1,
        fold_days=14,
        tuning=TuningConfig(trials=0),
        params={"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20},
    )
    store = TrackingConfig(experiment="test-predict", model_name_prefix="p")
    try:
        tracking = configure_tracking(store, data_dir=tmp_path)
        trained = train_model(dataset, target="churn", config=config, gap_days=28)
        log_and_register(trained, tracking=tracking, run_name="v1")
        bundle, ref = load_bundle(tracking=tracking, target="churn", version=1)
        assert (str(ref), ref.alias) == ("p-churn v1", None)
        np.testing.assert_array_equal(
            bundle.predict_proba(dataset), trained.bundle.predict_proba(dataset)
        )
        with pytest.raises(RegistryError, match="p-churn has no version 7"):
            load_bundle(tracking=tracking, target="churn", version=7)
    finally:
        mlflow.set_tracking_uri(before)
