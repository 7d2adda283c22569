from __future__ import annotations

import warnings

import pytest

from models.bundle import prepare_matrix
from models.config import ModelConfig, TuningConfig
from models.dataset import categorical_columns, categorical_levels, feature_columns
from models.train import base_params
from models.tuning import LIGHTGBM_DEFAULTS, search_space, tune_params
from tests.models.conftest import make_panel

CONFIGS = [
    {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20},
    {"learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 200, "lambda_l2": 10.0},
    {"min_data_in_leaf": 2000, "feature_fraction": 0.3, "lambda_l2": 0.0},
    {"num_leaves": 2, "min_data_in_leaf": 1, "bagging_fraction": 1.0},
]


@pytest.mark.parametrize("params", CONFIGS)
def test_search_space_contains_every_configured_value(params):
    space = search_space(params)
    for name, (low, high, _) in space.items():
        value = params.get(name, LIGHTGBM_DEFAULTS[name])
        assert low <= value <= high, (name, value, low, high)
        assert low < high
    assert space["num_leaves"][0] >= 2 and space["min_data_in_leaf"][0] >= 1


def test_search_space_follows_the_configured_value():
    assert search_space({"min_data_in_leaf": 200})["min_data_in_leaf"] == (50, 800, True)
    assert search_space({"min_data_in_leaf": 20})["min_data_in_leaf"] == (5, 80, True)
    low, high, log = search_space({"learning_rate": 0.05})["learning_rate"]
    assert (low, high, log) == (pytest.approx(0.02), pytest.approx(0.125), True)


def test_trial_zero_is_the_configured_params_without_range_warnings():
    panel = make_panel(n_accounts=80, n_dates=12, seed=2, horizon_days=0)
    features = feature_columns(panel.drop(columns=["churned_arr", "expansion_arr"]))
    levels = categorical_levels(panel, categorical_columns(panel, features))
    X, y = prepare_matrix(panel, features, levels), panel["churned"].to_numpy(dtype=int)
    half = len(panel) // 2
    params = {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20, "lambda_l2": 0.0}
    config = ModelConfig(
        num_threads=1,
        params=params,
        num_boost_round=20,
        tuning=TuningConfig(trials=1, timeout_seconds=600),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns on a fixed value outside its range
        tuned, summary = tune_params(
            X[:half], y[:half], X[half:], y[half:], base_params=base_params(config), config=config
        )
    assert summary["trials"] == 1 and summary["best_trial"] == 0
    assert {k: tuned[k] for k in params} == params
