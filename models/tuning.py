"""A small, seeded Optuna search over LightGBM parameters within a wall-time budget.

The search runs on data before the first backtest test window, so the backtest stays honest.
Each trial trains with early stopping on the later validation slice and is scored by its
validation log-loss.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import optuna
import pandas as pd

from models.config import ModelConfig


def _suggest(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 31, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 50, 500, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l2": trial.suggest_float("lambda_l2", 0.1, 30.0, log=True),
    }


def tune_params(
    fit_X: pd.DataFrame,
    fit_y: pd.Series,
    valid_X: pd.DataFrame,
    valid_y: pd.Series,
    *,
    base_params: dict[str, Any],
    config: ModelConfig,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (tuned LightGBM params, a summary of the search). With ``tuning.trials == 0`` the
    configured params are returned unchanged. The configured params are always trial 0."""
    if config.tuning.trials == 0:
        return dict(config.params), {"trials": 0}
    # feature_pre_filter off: trials vary min_data_in_leaf on one reused Dataset
    dataset_params = {"feature_pre_filter": False}
    train_set = lgb.Dataset(fit_X, fit_y, params=dataset_params, free_raw_data=False)
    valid_set = lgb.Dataset(
        valid_X, valid_y, params=dataset_params, reference=train_set, free_raw_data=False
    )

    def objective(trial: optuna.Trial) -> float:
        params = base_params | _suggest(trial)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=config.num_boost_round,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        )
        trial.set_user_attr("best_iteration", booster.best_iteration)
        return float(booster.best_score["valid_0"]["binary_logloss"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=config.seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    defaults = {k: v for k, v in config.params.items() if k in _suggest_names()}
    study.enqueue_trial(defaults, skip_if_exists=True)
    study.optimize(objective, n_trials=config.tuning.trials, timeout=config.tuning.timeout_seconds)
    best = dict(config.params) | study.best_params | {"bagging_freq": 1}
    summary = {
        "trials": len(study.trials),
        "best_valid_logloss": study.best_value,
        "best_trial": study.best_trial.number,
        "best_iteration": study.best_trial.user_attrs.get("best_iteration"),
    }
    return best, summary


def _suggest_names() -> set[str]:
    return {
        "learning_rate",
        "num_leaves",
        "min_data_in_leaf",
        "feature_fraction",
        "bagging_fraction",
        "lambda_l2",
    }
