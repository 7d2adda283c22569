"""A small, seeded Optuna search over LightGBM parameters within a wall-time budget.

The search runs on data before the first backtest test window, so the backtest stays honest.
Each trial trains with early stopping on the later validation slice and is scored by its
validation log-loss. The search space is centred on the configured parameters (trial 0 is exactly
them), so a config that moves a parameter moves the search with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import optuna
import pandas as pd

from models.config import ModelConfig

# LightGBM's own defaults: the centre of the search for a parameter the config leaves out
LIGHTGBM_DEFAULTS = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l2": 0.0,
}

# name -> (kind, how far the search reaches from the configured value)
#   "log"/"log_int": [value / reach, value * reach] on a log scale; "share": [min(reach, value), 1]
_SEARCH: dict[str, tuple[str, float]] = {
    "learning_rate": ("log", 2.5),
    "num_leaves": ("log_int", 2.0),
    "min_data_in_leaf": ("log_int", 4.0),
    "feature_fraction": ("share", 0.5),
    "bagging_fraction": ("share", 0.5),
    "lambda_l2": ("log", 10.0),
}
_LOWEST = {"num_leaves": 2, "min_data_in_leaf": 1}  # LightGBM's own lower bounds
LIGHTGBM_SEARCHED = frozenset(_SEARCH)


def search_space(params: Mapping[str, Any]) -> dict[str, tuple[float, float, bool]]:
    """``name -> (low, high, log)`` around each configured value (LightGBM's default where the
    config leaves it out); every configured value lies inside its range."""
    space = {}
    for name, (kind, reach) in _SEARCH.items():
        value = float(params.get(name, LIGHTGBM_DEFAULTS[name]))
        if kind == "share":
            space[name] = (min(reach, value), 1.0, False)
        elif value <= 0:  # lambda_l2 = 0: no log scale through zero
            space[name] = (0.0, reach, False)
        elif kind == "log_int":
            low = max(_LOWEST[name], int(value // reach))
            space[name] = (low, max(low + 1, round(value * reach)), True)
        else:
            space[name] = (value / reach, value * reach, True)
    return space


def _suggest(trial: optuna.Trial, space: dict[str, tuple[float, float, bool]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (low, high, log) in space.items():
        if _SEARCH[name][0] == "log_int":
            out[name] = trial.suggest_int(name, int(low), int(high), log=log)
        else:
            out[name] = trial.suggest_float(name, low, high, log=log)
    return out | {"bagging_freq": 1}


@dataclass(frozen=True)
class TunedFit:
    """The search's best trial, kept so that the backtest fold that trains on the searched window
    need not fit it again (:func:`models.train.fit_bundle` checks it is the same fit)."""

    booster: lgb.Booster | None  # early-stopped, as the trial left it
    params: dict[str, Any]  # every LightGBM parameter the trial trained with
    fit_index: pd.Index  # rows of the fit matrix and of the early-stopping slice
    valid_index: pd.Index
    feature_bins: list[int]  # bins per feature of the search's (unfiltered) Dataset


def tune_params(
    fit_X: pd.DataFrame,
    fit_y: pd.Series,
    valid_X: pd.DataFrame,
    valid_y: pd.Series,
    *,
    base_params: dict[str, Any],
    config: ModelConfig,
    centre: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (tuned LightGBM params, a summary of the search). With ``tuning.trials == 0`` the
    configured params are returned unchanged. The search is centred on ``centre`` (default
    ``model.params``; training passes them completed by the data-size defaults), which is
    always trial 0."""
    best, summary, _ = search_params(
        fit_X, fit_y, valid_X, valid_y, base_params=base_params, config=config, centre=centre
    )
    return best, summary


def search_params(
    fit_X: pd.DataFrame,
    fit_y: pd.Series,
    valid_X: pd.DataFrame,
    valid_y: pd.Series,
    *,
    base_params: dict[str, Any],
    config: ModelConfig,
    centre: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], TunedFit | None]:
    """:func:`tune_params`, and the best trial's booster (None without a search).

    Every trial trains on one pair of Datasets, binned once (``free_raw_data=False``; the slice
    binned with the fit matrix's bins through ``reference=``)."""
    centre = dict(config.params if centre is None else centre)
    if config.tuning.trials == 0:
        return dict(config.params), {"trials": 0}, None
    # feature_pre_filter off: trials vary min_data_in_leaf on one reused Dataset
    dataset_params = {"feature_pre_filter": False}
    train_set = lgb.Dataset(fit_X, fit_y, params=dataset_params, free_raw_data=False)
    valid_set = lgb.Dataset(
        valid_X, valid_y, params=dataset_params, reference=train_set, free_raw_data=False
    )
    space = search_space(centre)
    best_fit: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        params = base_params | centre | _suggest(trial, space)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=config.num_boost_round,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        )
        trial.set_user_attr("best_iteration", booster.best_iteration)
        loss = float(booster.best_score["valid_0"]["binary_logloss"])
        if not best_fit or loss < best_fit["loss"]:  # Optuna's best: the first lowest loss
            best_fit.update(loss=loss, trial=trial.number, booster=booster, params=params)
        return loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=config.seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(
        {name: centre.get(name, LIGHTGBM_DEFAULTS[name]) for name in space},
        skip_if_exists=True,
    )
    study.optimize(objective, n_trials=config.tuning.trials, timeout=config.tuning.timeout_seconds)
    best = centre | study.best_params | {"bagging_freq": 1}
    summary = {
        "trials": len(study.trials),
        "best_valid_logloss": study.best_value,
        "best_trial": study.best_trial.number,
        "best_iteration": study.best_trial.user_attrs.get("best_iteration"),
    }
    kept = best_fit.get("trial") == study.best_trial.number
    tuned = TunedFit(
        booster=best_fit["booster"] if kept else None,
        params=best_fit.get("params", {}),
        fit_index=fit_X.index,
        valid_index=valid_X.index,
        feature_bins=[train_set.feature_num_bin(i) for i in range(train_set.num_feature())],
    )
    return best, summary, tuned
