from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.config import ModelConfig, TuningConfig
from models.dataset import NON_FEATURE_COLUMNS, feature_columns, training_frame
from models.gate import baseline_verdict
from models.metrics import LEVEL_SD_METRIC, level_spread
from models.train import (
    CHAMPION,
    HEALTH,
    LOGISTIC,
    MODEL,
    RFM,
    base_params,
    data_size_params,
    fit_bundle,
    train_model,
)
from tests.models.conftest import make_panel

GAP = 28


def _config(**overrides) -> ModelConfig:
    settings = {
        "seed": 3,
        "num_threads": 1,
        "num_boost_round": 60,
        "early_stopping_rounds": 10,
        "n_folds": 2,
        "fold_days": 14,
        "tuning": TuningConfig(trials=2, timeout_seconds=600),
        "params": {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20},
    } | overrides
    return ModelConfig(**settings)


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    panel = make_panel(n_accounts=120, n_dates=24, seed=11, horizon_days=GAP)
    labels = panel[["account_id", "as_of", "churned", "expanded", "contracted", "arr_at_as_of"]]
    features = panel.drop(columns=["churned", "expanded", "contracted", "arr_at_as_of"])
    features = features.drop(columns=["churned_arr", "expansion_arr"])
    return training_frame(features, labels, target="churn")


@pytest.fixture(scope="module")
def result(dataset):
    return train_model(dataset, target="churn", config=_config(), gap_days=GAP)


def test_training_frame_drops_censored_rows_and_derives_churned_arr(dataset):
    assert dataset["churned"].notna().all()
    assert dataset["as_of"].max() <= pd.Timestamp("2025-01-06") + pd.Timedelta(weeks=23 - 4)
    churned = dataset["churned"] == 1
    assert (dataset.loc[churned, "churned_arr"] == dataset.loc[churned, "arr_at_as_of"]).all()
    assert (dataset.loc[~churned, "churned_arr"] == 0).all()


def test_feature_list_excludes_keys_labels_and_reporting_columns(result):
    features = result.bundle.feature_names
    assert not set(features) & NON_FEATURE_COLUMNS
    assert {"segment", "health_color", "health_score", "active_users_28d"} <= set(features)
    assert set(result.bundle.categorical_levels) == {"segment", "industry", "health_color"}


def test_forecast_level_spread_is_fitted_on_the_boosters_out_of_time_predictions(result):
    ours = result.predictions[result.predictions["model"] == MODEL]
    expected = level_spread(ours["as_of"], ours["y"], ours["p"])
    assert result.bundle.metrics[LEVEL_SD_METRIC] == expected
    assert ours["fold"].nunique() == 2  # every backtest fold, none of the training rows


def test_backtest_has_every_model_on_every_fold(result):
    assert set(result.backtest["model"]) == {MODEL, LOGISTIC, HEALTH}
    assert result.backtest.groupby("fold")["model"].nunique().tolist() == [3, 3]
    folds = result.backtest.drop_duplicates("fold")
    assert (folds["train_end"] < folds["test_start"] - pd.Timedelta(days=GAP)).all()
    p = result.predictions["p"]
    assert ((p >= 0) & (p <= 1)).all()


def test_booster_beats_health_score_on_the_learnable_signal(result):
    latest = result.latest_fold()
    assert latest.loc[MODEL, "pr_auc"] > latest.loc[HEALTH, "pr_auc"]


def test_same_seed_gives_identical_scores(dataset, result):
    again = train_model(dataset, target="churn", config=_config(), gap_days=GAP)
    np.testing.assert_array_equal(
        again.bundle.predict_proba(dataset), result.bundle.predict_proba(dataset)
    )
    pd.testing.assert_frame_equal(again.backtest, result.backtest)


@pytest.mark.parametrize(
    ("refit", "validation_fraction", "in_sample"),
    [(False, 0.2, False), (False, 0.05, True), (True, 0.2, True)],
)
def test_previous_champion_is_scored_on_the_same_folds(
    dataset, refit, validation_fraction, in_sample
):
    config = _config(
        tuning=TuningConfig(trials=0), validation_fraction=validation_fraction, refit=refit
    )
    champion = train_model(dataset, target="churn", config=config, gap_days=GAP).bundle
    again = train_model(dataset, target="churn", config=_config(), gap_days=GAP, previous=champion)
    rows = again.backtest[again.backtest["model"] == CHAMPION]
    assert len(rows) == 2
    # in sample where the champion's booster saw rows whose label windows reach the test window
    fit_end = pd.Timestamp(champion.params["booster_fit_end"])
    expected = fit_end >= rows["test_start"] - pd.Timedelta(days=GAP)
    assert rows["champion_in_sample"].tolist() == expected.tolist() == [in_sample, in_sample]


def test_refit_ships_a_booster_trained_on_the_whole_window(dataset):
    features = feature_columns(dataset)
    fitted = {}
    for refit in (False, True):
        config = _config(refit=refit)
        params = base_params(config) | dict(config.params)
        fitted[refit] = fit_bundle(
            dataset, target="churn", features=features, params=params, config=config, gap_days=GAP
        )
    early, whole = fitted[False].params, fitted[True].params
    calibration_start = pd.Timestamp(early["calibration_start"])
    assert pd.Timestamp(early["booster_fit_end"]) < calibration_start - pd.Timedelta(days=GAP)
    assert pd.Timestamp(whole["booster_fit_end"]) == dataset["as_of"].max()
    # same number of trees and the same calibrator, fitted on the held-out slice, read at the
    # refit booster's margins shifted so that its level on that slice is the calibrated one
    assert whole["num_boost_round"] == early["num_boost_round"]
    assert whole["calibration_start"] == early["calibration_start"]
    shifted = fitted[True].calibrator
    assert shifted.method.endswith("level-aligned") and shifted.offset != 0
    grid = np.linspace(-6, 2, 50)
    np.testing.assert_array_equal(
        shifted.predict(grid + shifted.offset), fitted[False].calibrator.predict(grid)
    )
    margin = {k: b.predict_margin(dataset) for k, b in fitted.items()}
    assert not np.allclose(margin[True], margin[False])
    valid = dataset[dataset["as_of"] >= calibration_start]
    level = {k: b.predict_proba(valid).mean() for k, b in fitted.items()}
    assert level[True] == pytest.approx(level[False], abs=1e-5)


def test_no_health_column_means_no_health_baseline(dataset):
    config = _config(tuning=TuningConfig(trials=0), n_folds=1)
    result = train_model(
        dataset.drop(columns=["health_score"]), target="churn", config=config, gap_days=GAP
    )
    assert HEALTH not in set(result.backtest["model"])


def test_report_and_plots_are_written(dataset, result, tmp_path):
    from models.evaluation import write_report

    report = write_report(result, tmp_path)
    assert report.html.exists() and "Metrics by model" in report.html.read_text()
    assert "ece: ECE (10 equal-count bins)" in report.markdown.read_text()
    assert {"calibration", "gain", "shap_summary", "pr_auc_by_segment"} <= set(report.figures)
    assert all(path.stat().st_size > 1000 for path in report.figures.values())
    assert report.directory == tmp_path and set(tmp_path.iterdir()) == {
        report.html,
        report.markdown,
        *report.figures.values(),
    }


def test_monotone_constraint_means_more_usage_never_raises_churn_risk(dataset):
    config = _config(
        tuning=TuningConfig(trials=0),
        n_folds=1,
        monotone={"churn": {"active_users_28d": -1, "seat_utilization": -1}},
    )
    result = train_model(dataset, target="churn", config=config, gap_days=GAP)
    grid = dataset.head(40).copy()
    risks = []
    for users in np.linspace(0, 60, 13):
        grid["active_users_28d"] = users
        risks.append(result.bundle.predict_proba(grid))
    assert np.all(np.diff(np.vstack(risks), axis=0) <= 1e-12)


def test_monotone_on_an_unknown_feature_names_it(dataset):
    config = _config(tuning=TuningConfig(trials=0), monotone={"churn": {"logins": -1}})
    with pytest.raises(ValueError, match=r"model.monotone.churn: \['logins'\]"):
        train_model(dataset, target="churn", config=config, gap_days=GAP)


def test_censored_labels_are_refused(dataset):
    frame = dataset.astype({"churned": "Int64"})
    frame.loc[frame.index[:3], "churned"] = pd.NA
    with pytest.raises(ValueError, match="3 rows with a censored"):
        train_model(frame, target="churn", config=_config(), gap_days=GAP)


def test_expansion_target_uses_expansion_arr(dataset):
    growth = np.where(dataset["expanded"] == 1, 1.2, 1.0)
    frame = dataset.assign(
        expanded=dataset["expanded"].astype(int), arr_at_horizon=dataset["arr_at_as_of"] * growth
    )
    with pytest.raises(ValueError, match="neither 'expansion_arr' nor 'arr_at_horizon'"):
        train_model(
            frame.drop(columns="arr_at_horizon"), target="expansion", config=_config(), gap_days=GAP
        )
    config = _config(tuning=TuningConfig(trials=0), n_folds=1)
    result = train_model(frame, target="expansion", config=config, gap_days=GAP)
    assert result.bundle.target == "expansion"
    expanded = result.predictions.query("model == 'lightgbm' and y == 1")
    assert (expanded["value"] > 0).all()
    # the bundle carries the ARR gain its training rows show (+20 % on every expansion)
    assert result.bundle.outcome_value["if_expanded"]["*"] == pytest.approx(0.2)


def test_champion_with_other_features_is_skipped_with_a_warning(dataset, result):
    config = _config(tuning=TuningConfig(trials=0), n_folds=1)
    frame = dataset.drop(columns=["p1_tickets_90d"])
    with pytest.warns(UserWarning, match=r"lacks its features \['p1_tickets_90d'\]"):
        again = train_model(
            frame, target="churn", config=config, gap_days=GAP, previous=result.bundle
        )
    assert CHAMPION not in set(again.backtest["model"])


# --- any history length, data-size defaults, baselines that a booster must beat -------------

SHORT_GAP = 37  # horizon 30 + grace 7


@pytest.fixture(scope="module")
def short_dataset() -> pd.DataFrame:
    """14 labelled weekly as_of dates (horizon 30 days): about three months of history."""
    panel = make_panel(n_accounts=300, n_dates=20, seed=5, horizon_days=42)
    labels = panel[["account_id", "as_of", "churned", "expanded", "contracted", "arr_at_as_of"]]
    features = panel.drop(columns=["churned", "expanded", "contracted", "arr_at_as_of"])
    frame = training_frame(
        features.drop(columns=["churned_arr", "expansion_arr"]), labels, target="churn"
    )
    assert frame["as_of"].nunique() == 14
    return frame


def test_short_history_trains_scores_and_says_what_was_reduced(short_dataset, tmp_path):
    config = ModelConfig(seed=1, num_threads=1, num_boost_round=80)  # 3 folds, 8 trials asked
    result = train_model(short_dataset, target="churn", config=config, gap_days=SHORT_GAP)
    assert result.backtest["fold"].nunique() < 3
    said = " | ".join(result.reductions)
    assert "instead of model.n_folds=3" in said and "tuning: skipped" in said
    assert "holds out 30% of accounts" in said
    assert result.bundle.params["reductions"] == result.reductions
    assert result.tuning["trials"] == 0
    folds = result.backtest.drop_duplicates("fold")
    assert (folds["train_end"] < folds["test_start"] - pd.Timedelta(days=SHORT_GAP)).all()
    p = result.bundle.predict_proba(short_dataset)
    assert np.all((p > 0) & (p < 1)) and len(np.unique(p)) > 50
    latest = result.latest_fold()
    assert latest.loc[MODEL, "roc_auc"] > 0.7
    from models.bundle import ModelBundle

    loaded = ModelBundle.load(result.bundle.save(tmp_path / "short"))
    np.testing.assert_array_equal(loaded.predict_proba(short_dataset), p)


def test_history_too_short_for_one_fold_names_the_minimum_in_days(short_dataset):
    from models.backtest import SplitError

    frame = short_dataset[
        short_dataset["as_of"] < short_dataset["as_of"].min() + pd.Timedelta(weeks=7)
    ]
    with pytest.raises(SplitError, match=r"needs at least 52 days of labelled as_of dates"):
        train_model(frame, target="churn", config=ModelConfig(num_threads=1), gap_days=SHORT_GAP)


@pytest.mark.parametrize(
    ("rows", "leaf"), [(78_000, 200), (14_400, 200), (4_200, 70), (1_190, 20), (300, 20)]
)
def test_leaf_size_follows_the_number_of_rows(rows, leaf):
    frame = pd.DataFrame({"churned": np.r_[np.ones(10), np.zeros(rows - 10)]})
    params = data_size_params(frame, label="churned", configured={})
    assert params == {"min_data_in_leaf": leaf}


def test_configured_sizes_win_over_data_size_defaults():
    frame = pd.DataFrame({"churned": [0, 1] * 50})
    assert data_size_params(frame, label="churned", configured={"min_data_in_leaf": 7}) == {}


def test_backtest_reports_spread_rfm_baseline_and_the_verdict(dataset):
    frame = dataset.assign(
        days_since_last_activity=dataset["days_since_last_login"],
        events_28d=dataset["active_users_28d"] * 9,
        tenure_days=np.arange(len(dataset)) % 700,
    )
    config = _config(tuning=TuningConfig(trials=0), n_folds=3)
    result = train_model(frame, target="churn", config=config, gap_days=GAP)
    assert RFM in set(result.backtest["model"])
    ours = result.backtest[result.backtest["model"] == MODEL]["pr_auc"]
    metrics = result.bundle.metrics
    assert metrics["sd_pr_auc"] == pytest.approx(ours.std())
    assert metrics["min_pr_auc"] == ours.min() and metrics["max_pr_auc"] == ours.max()
    assert metrics["n_folds"] == 3
    assert result.verdict == baseline_verdict(result.backtest, "pr_auc")
    assert result.verdict.reason


def test_refused_verdict_is_in_the_report(dataset, tmp_path):
    from models.evaluation import write_report
    from models.gate import Verdict

    config = _config(tuning=TuningConfig(trials=0), n_folds=1)
    result = train_model(dataset, target="churn", config=config, gap_days=GAP)
    result.verdict = Verdict(False, "does not beat the baseline(s) ['logistic']")
    realised = pd.DataFrame(
        {
            "model": ["v1", "v2"],
            "metric": ["pr_auc"] * 2,
            "backtest": [0.5, 0.6],
            "realised": [0.4, 0.55],
        }
    )
    report = write_report(result, tmp_path, realised=realised)
    text = (tmp_path / "churn_report.md").read_text()
    assert "REFUSED: does not beat the baseline(s) ['logistic']" in text
    assert "Spread over backtest folds" in text
    table = report.realised_comparison
    assert table["shortfall"].tolist() == [0.1, 0.05]
    expected = result.latest_fold().loc[MODEL, "pr_auc"] - 0.075
    assert table["this_model_expected"].iloc[0] == pytest.approx(expected, abs=1e-4)
    write_report(result, tmp_path)
    assert "no realised metrics of earlier champions" in (tmp_path / "churn_report.md").read_text()
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['realised'\]"):
        write_report(result, tmp_path, realised=realised.drop(columns="realised"))
