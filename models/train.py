"""Train one target: tune, backtest against baselines on rolling-origin folds, fit the final bundle.

Every model — per fold and final — goes through :func:`fit_bundle`: a selection booster learns on
the earlier part of its window and early-stops on the latest ``validation_fraction`` of as_of
dates (purged by the label gap); the calibrator is fitted on its margins on that later slice,
which it never trained on. With ``model.refit`` (the default) the booster that ships is then
retrained with the same parameters and number of trees on the whole window.

Why refit: the purge of the label gap leaves the selection booster only the oldest part of its
window and none of the latest months. The calibrator is applied to the refit booster's margins,
shifted so that its mean calibrated risk on the calibration slice equals the selection
booster's there (``models.calibration.level_offset``), or the level would be counted twice when
the churn rate drifts. The backtest's ECE and observed/expected (on test windows neither booster
saw) check it; the experiments are in docs/decisions/0001-refit-and-level-shift.md.

Any history length: the label gap is purged once, between backtest folds
(:func:`models.backtest.plan_folds` drops or shortens folds the history cannot hold); inside a
window, the early-stopping slice keeps the full gap when it can and otherwise holds out accounts
with a shorter gap (:func:`models.backtest.inner_split`); tuning is skipped on small windows; and
LightGBM's leaf and categorical sizes follow the number of rows and positives unless the config
sets them (:func:`data_size_params`). Every such reduction is a sentence in
``TrainResult.reductions``, the bundle's params, the log and the evaluation report.

Models that earn their place: the booster is backtested against a logistic regression on every
feature, a recency/RFM logistic regression and the health score; ``TrainResult.verdict``
(:func:`models.gate.baseline_verdict`) says whether it beats them all on the promotion metric,
and the promotion gate refuses it when it does not.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.backtest import InnerSplit, TimeFold, inner_split, plan_folds
from models.baselines import (
    fit_health_baseline,
    fit_logistic,
    fit_rfm,
    predict_health_baseline,
    predict_logistic,
)
from models.baselines import (
    health_available as frame_has_health,
)
from models.bundle import ModelBundle, prepare_matrix
from models.calibration import ShiftedCalibrator, choose_calibrator, level_offset
from models.config import ModelConfig
from models.dataset import (
    SEGMENT_COLUMN,
    categorical_columns,
    categorical_levels,
    data_fingerprint,
    feature_columns,
    target_spec,
    target_value,
)
from models.gate import BOOSTER, CHAMPION, Verdict, baseline_verdict, latest_fold
from models.metrics import LEVEL_SD_METRIC, METRIC_NAMES, level_spread, score_metrics
from models.tuning import LIGHTGBM_SEARCHED, TunedFit, search_params
from models.value import fit_contraction_value, fit_expansion_value

MODEL = BOOSTER
HEALTH = "health_score"
LOGISTIC = "logistic"
RFM = "rfm"
SHAP_SAMPLE_ROWS = 2000
# Tuning is skipped when the window it would search on has fewer positives than this: a few
# dozen churned accounts cannot tell trial log-losses apart, and the search then over-fits.
MIN_TUNING_POSITIVES = 150
# Data-size-adaptive LightGBM default (for a min_data_in_leaf that model.params leaves out):
# a leaf holds at least one in ROWS_PER_LEAF rows, within [MIN_LEAF_ROWS, MAX_LEAF_ROWS].
# Weekly rows of one account are near-duplicates, so leaves must stay large
# (docs/decisions/0002-leaf-and-categorical-sizes.md).
ROWS_PER_LEAF = 60
MIN_LEAF_ROWS, MAX_LEAF_ROWS = 20, 200
# Fewest positives (and negatives) in the fit rows and in the early-stopping slice to early-stop
# and calibrate on; below, SMALL_DATA_TREES trees are fitted on the whole window, uncalibrated.
MIN_SLICE_POSITIVES = 5
SMALL_DATA_TREES = 50
logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Everything one training run produced for one target."""

    target: str
    bundle: ModelBundle
    backtest: pd.DataFrame  # one row per (fold, model): window bounds and metrics
    predictions: pd.DataFrame  # out-of-sample test predictions of every model on every fold
    tuning: dict[str, Any]
    dataset_info: dict[str, Any]
    gap_days: int
    config: ModelConfig
    shap_sample: pd.DataFrame | None = None  # latest-fold rows explained in the SHAP summary
    timings: dict[str, float] = field(default_factory=dict)
    reductions: list[str] = field(default_factory=list)  # what small data made us reduce, why
    verdict: Verdict | None = None  # does the booster beat the baselines (models.gate)

    def latest_fold(self) -> pd.DataFrame:
        """Metrics of every model on the latest backtest fold, indexed by model."""
        return latest_fold(self.backtest)


def base_params(config: ModelConfig) -> dict[str, Any]:
    """LightGBM parameters churnlens always sets: binary log-loss, no class re-weighting,
    seeded and deterministic with a fixed thread count."""
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }


def data_size_params(
    frame: pd.DataFrame, *, label: str, configured: dict[str, Any]
) -> dict[str, Any]:
    """``min_data_in_leaf`` for this many rows, unless ``configured`` (``model.params``) sets it:
    rows/60 within [20, 200] (20 below 1,200 rows, where 200 would leave no split). Categorical
    settings stay LightGBM's; docs/decisions/0002-leaf-and-categorical-sizes.md says why."""
    del label  # sizes follow rows: positives cluster in few accounts, rows per account are many
    if "min_data_in_leaf" in configured:
        return {}
    return {
        "min_data_in_leaf": int(
            np.clip(round(len(frame) / ROWS_PER_LEAF), MIN_LEAF_ROWS, MAX_LEAF_ROWS)
        )
    }


def fit_bundle(
    frame: pd.DataFrame,
    *,
    target: str,
    features: list[str],
    params: dict[str, Any],
    config: ModelConfig,
    gap_days: int,
    tuned: TunedFit | None = None,
) -> ModelBundle:
    """Fit booster + calibrator on one training window (rows of ``frame``): early stopping and
    calibration on the window's latest slice, then (``config.refit``) the shipped booster is
    retrained on the whole window with the early-stopped number of trees.

    The window's model matrix is prepared once and sliced for the fit rows and the slice;
    ``tuned`` (the tuning search's best trial, when it searched this very window) stands in for
    the early-stopped booster when it is provably the same fit (:func:`_reusable_trial`)."""
    label = target_spec(target).label
    levels = categorical_levels(frame, categorical_columns(frame, features))
    split = _inner_split(frame, config, gap_days)
    if _too_few_positives(frame, split, label):
        return _small_data_bundle(frame, target, features, levels, params, config, gap_days)
    matrix = prepare_matrix(frame, features, levels)
    y = frame[label].to_numpy()
    fit_X, valid_X = matrix.iloc[split.fit_rows], matrix.iloc[split.valid_rows]
    fit_y, valid_y = y[split.fit_rows], y[split.valid_rows]
    train_set = lgb.Dataset(fit_X, fit_y, params=params)
    booster = _reusable_trial(tuned, train_set, fit_X, valid_X, params)
    if booster is None:
        valid_set = lgb.Dataset(valid_X, valid_y, reference=train_set)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=config.num_boost_round,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        )
    booster = _truncate(booster)
    margin = np.asarray(booster.predict(valid_X, raw_score=True))
    calibrator, scores = choose_calibrator(margin, valid_y, method=config.calibration)
    booster_rows = frame.iloc[split.fit_rows]
    if config.refit:
        booster_rows = frame
        booster = lgb.train(params, lgb.Dataset(matrix, y), num_boost_round=booster.num_trees())
        refit_margin = np.asarray(booster.predict(valid_X, raw_score=True))
        offset = level_offset(calibrator, margin, refit_margin)
        calibrator = ShiftedCalibrator(calibrator, offset)
    used = {
        **params,
        "num_boost_round": booster.num_trees(),
        "gap_days": gap_days,
        "inner_gap_days": split.gap_days,
        "inner_accounts_held_out": split.accounts_held_out,
        "refit": config.refit,
        "booster_fit_end": pd.Timestamp(booster_rows["as_of"].max()).isoformat(),
        "calibration_start": pd.Timestamp(frame["as_of"].iloc[split.valid_rows].min()).isoformat(),
    }
    metrics = {f"calibration_brier_{k}": v for k, v in scores.items()}
    return ModelBundle(
        target=target,
        booster=booster,
        feature_names=list(features),
        categorical_levels=levels,
        calibrator=calibrator,
        train_window=(_ts(frame["as_of"].min()), _ts(frame["as_of"].max())),
        metrics=metrics,
        params=used,
    )


def _reusable_trial(
    tuned: TunedFit | None,
    train_set: lgb.Dataset,
    fit_X: pd.DataFrame,
    valid_X: pd.DataFrame,
    params: dict[str, Any],
) -> lgb.Booster | None:
    """The tuning search's best booster when it is exactly the early-stopped fit asked for: the
    same parameters, fit rows and slice, and the same binned matrix. The search bins without
    LightGBM's feature pre-filter (its trials vary ``min_data_in_leaf``), this fit with it; the
    two matrices are the same when the pre-filter drops no feature, which is checked bin count
    by bin count on ``train_set`` (constructed here, and used for the fit otherwise)."""
    if tuned is None or tuned.booster is None or tuned.params != params:
        return None
    if not (fit_X.index.equals(tuned.fit_index) and valid_X.index.equals(tuned.valid_index)):
        return None
    train_set.construct()
    bins = [train_set.feature_num_bin(i) for i in range(train_set.num_feature())]
    return tuned.booster if bins == tuned.feature_bins else None


def _too_few_positives(frame: pd.DataFrame, split: InnerSplit, label: str) -> str | None:
    """Why early stopping and calibration cannot be trusted on this split, if they cannot: fewer
    than ``MIN_SLICE_POSITIVES`` positives (or negatives) in the fit rows or in the slice."""
    for part, rows in (("fit rows", split.fit_rows), ("early-stopping slice", split.valid_rows)):
        y = frame[label].to_numpy()[rows]
        if min(int(y.sum()), int(len(y) - y.sum())) < MIN_SLICE_POSITIVES:
            return (
                f"the {part} hold {int(y.sum())} positives in {len(y)} rows (< "
                f"{MIN_SLICE_POSITIVES})"
            )
    return None


def _small_data_bundle(
    frame: pd.DataFrame,
    target: str,
    features: list[str],
    levels: dict[str, list[str]],
    params: dict[str, Any],
    config: ModelConfig,
    gap_days: int,
) -> ModelBundle:
    """Too few positives to early-stop or calibrate on held-out rows: ``SMALL_DATA_TREES`` trees
    on the whole window, no calibrator (LightGBM's log-loss fit starts from the window's base
    rate, and the shallow, L2-shrunk trees move little from it)."""
    label = target_spec(target).label
    trees = min(SMALL_DATA_TREES, config.num_boost_round)
    booster = lgb.train(
        params,
        lgb.Dataset(prepare_matrix(frame, features, levels), frame[label].to_numpy()),
        num_boost_round=trees,
    )
    used = {
        **params,
        "num_boost_round": booster.num_trees(),
        "gap_days": gap_days,
        "small_data_rule": True,
        "refit": False,
        "booster_fit_end": pd.Timestamp(frame["as_of"].max()).isoformat(),
    }
    return ModelBundle(
        target=target,
        booster=booster,
        feature_names=list(features),
        categorical_levels=levels,
        calibrator=None,
        train_window=(_ts(frame["as_of"].min()), _ts(frame["as_of"].max())),
        params=used,
    )


def _split_note(frame: pd.DataFrame, config: ModelConfig, gap_days: int, label: str) -> str | None:
    split = _inner_split(frame, config, gap_days)
    if why := _too_few_positives(frame, split, label):
        return (
            f"early stopping/calibration: {why}, so {SMALL_DATA_TREES} trees are fitted on the "
            "whole window with no calibrator"
        )
    return split.note


def _inner_split(frame: pd.DataFrame, config: ModelConfig, gap_days: int) -> InnerSplit:
    return inner_split(
        frame["as_of"],
        validation_fraction=config.validation_fraction,
        gap_days=gap_days,
        accounts=frame["account_id"],
        seed=config.seed,
    )


def _truncate(booster: lgb.Booster) -> lgb.Booster:
    """A booster holding exactly its best iteration's trees, so every predict path agrees."""
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _ts(value: Any) -> Any:
    return pd.Timestamp(value).to_pydatetime()


def train_model(
    dataset: pd.DataFrame,
    *,
    target: str,
    config: ModelConfig,
    gap_days: int,
    health_available: bool | None = None,
    previous: ModelBundle | None = None,
) -> TrainResult:
    """Tune, backtest (LightGBM vs baselines on the same rolling-origin folds), then fit the
    final bundle on the whole dataset (a :func:`models.dataset.training_frame`).

    ``gap_days`` is the label gap (``features.config.LabelConfig.maturity_days``); the health-score
    baseline runs when ``health_score`` has values unless ``health_available`` is False;
    ``previous`` is the current champion, scored as-is on every fold (skipped with a warning when
    the dataset lacks its features). Writes nothing: the evaluation report is
    :func:`models.evaluation.write_report` of the result, the MLflow run
    :func:`models.registry.log_and_register`.
    """
    clock = time.perf_counter()
    spec = target_spec(target)
    dataset = _checked_dataset(dataset, target)
    features = feature_columns(dataset, exclude=config.exclude_features)
    use_health = frame_has_health(dataset) and health_available is not False
    if previous is not None and (missing := sorted(set(previous.feature_names) - set(dataset))):
        warnings.warn(
            f"previous {target} champion not scored: the dataset lacks its features {missing}",
            stacklevel=2,
        )
        previous = None
    folds, reductions = plan_folds(
        dataset["as_of"], n_folds=config.n_folds, fold_days=config.fold_days, gap_days=gap_days
    )
    timings: dict[str, float] = {}
    window = dataset.iloc[folds[0].train_rows]
    adaptive = data_size_params(window, label=spec.label, configured=dict(config.params))
    base = base_params(config) | adaptive | monotone_params(features, config, target)
    params, tuning, tuned = _tune(window, target, features, config, gap_days, base, reductions)
    timings["tuning_s"] = time.perf_counter() - clock
    backtest, predictions, notes = _backtest(
        dataset, folds, target, features, params, config, gap_days, use_health, previous, tuned
    )
    timings["backtest_s"] = time.perf_counter() - clock - timings["tuning_s"]
    bundle = fit_bundle(
        dataset, target=target, features=features, params=params, config=config, gap_days=gap_days
    )
    reductions += _split_notes([*notes, _split_note(dataset, config, gap_days, spec.label)])
    if adaptive:
        reductions.append(
            f"LightGBM sizes from the data (model.params leaves them out): {adaptive}"
        )
    bundle.params["reductions"] = list(reductions)
    bundle.metrics |= _summary_metrics(backtest)
    ours = predictions[predictions["model"] == MODEL]
    bundle.metrics[LEVEL_SD_METRIC] = level_spread(ours["as_of"], ours["y"], ours["p"])
    if target == "expansion" and {"arr_at_as_of", "arr_at_horizon", "churned"} <= set(dataset):
        bundle.outcome_value = fit_expansion_value(dataset)
    if target == "contraction" and {"arr_at_as_of", "arr_at_horizon", "churned"} <= set(dataset):
        bundle.outcome_value = fit_contraction_value(dataset)
    timings["final_fit_s"] = time.perf_counter() - clock - sum(timings.values())
    verdict = baseline_verdict(backtest, config.promotion.metric)
    result = TrainResult(
        target=target,
        bundle=bundle,
        backtest=backtest,
        predictions=predictions,
        tuning=tuning,
        dataset_info=_dataset_info(dataset, spec.label, features, folds),
        gap_days=gap_days,
        config=config,
        shap_sample=_shap_sample(dataset, folds[-1]),
        timings=timings,
        reductions=reductions,
        verdict=verdict,
    )
    for line in reductions:
        logger.info("%s: %s", target, line)
    if not verdict.passed:
        logger.warning(
            "%s: the booster %s; the promotion gate will refuse it", target, verdict.reason
        )
    result.timings["total_s"] = time.perf_counter() - clock
    return result


def _split_notes(notes: list[str | None]) -> list[str]:
    """Each distinct early-stopping note once, counted: 'in 2 of 4 fits, ...'."""
    found = [n for n in notes if n]
    return [f"in {found.count(n)} of {len(notes)} fits, {n}" for n in dict.fromkeys(found)]


def _checked_dataset(dataset: pd.DataFrame, target: str) -> pd.DataFrame:
    """Sorted by time, integer label, value column present; censored labels are refused."""
    spec = target_spec(target)
    missing = [c for c in ("account_id", "as_of", spec.label) if c not in dataset.columns]
    if missing:
        raise ValueError(f"training dataset for {target!r} lacks column(s) {missing}")
    censored = int(dataset[spec.label].isna().sum())
    if censored:
        raise ValueError(
            f"training dataset has {censored} rows with a censored (NA) {spec.label!r} label: "
            "build it with models.dataset.training_frame, which drops them"
        )
    dataset = dataset.sort_values(["as_of", "account_id"], kind="stable").reset_index(drop=True)
    dataset[spec.label] = dataset[spec.label].astype(int)
    if spec.value not in dataset.columns:
        dataset[spec.value] = target_value(dataset, target)
    return dataset


def monotone_params(features: list[str], config: ModelConfig, target: str) -> dict[str, Any]:
    """LightGBM ``monotone_constraints`` aligned with ``features``, from ``model.monotone``."""
    wanted = config.monotone.get(target, {})
    unknown = sorted(set(wanted) - set(features))
    if unknown:
        raise ValueError(
            f"model.monotone.{target}: {unknown} are not features of this dataset "
            f"(features: {features})"
        )
    if not wanted:
        return {}
    return {"monotone_constraints": [int(wanted.get(name, 0)) for name in features]}


def _shap_sample(dataset: pd.DataFrame, fold: TimeFold) -> pd.DataFrame:
    latest = dataset.iloc[fold.test_rows]
    return latest.sample(min(SHAP_SAMPLE_ROWS, len(latest)), random_state=0)


def _tune(
    window: pd.DataFrame,
    target: str,
    features: list[str],
    config: ModelConfig,
    gap_days: int,
    base: dict[str, Any],
    reductions: list[str],
) -> tuple[dict[str, Any], dict[str, Any], TunedFit | None]:
    """Search on the first fold's training window; skipped (and said in ``reductions``) when
    that window is too small for trials to differ by more than noise. Returns the parameters,
    the search summary and its best trial (None when skipped)."""
    centre = {k: v for k, v in base.items() if k in LIGHTGBM_SEARCHED} | dict(config.params)
    if config.tuning.trials == 0:
        return base | dict(config.params), {"trials": 0}, None
    label = target_spec(target).label
    split = _inner_split(window, config, gap_days)
    fit, valid = window.iloc[split.fit_rows], window.iloc[split.valid_rows]
    positives = int(fit[label].sum())
    if positives < MIN_TUNING_POSITIVES or split.accounts_held_out:
        why = (
            f"{positives} positives to fit on (< {MIN_TUNING_POSITIVES})"
            if positives < MIN_TUNING_POSITIVES
            else "a validation slice that had to share time with the fit rows"
        )
        reductions.append(
            f"tuning: skipped (model.tuning.trials={config.tuning.trials}): the window before "
            f"the first backtest fold has {why}; the configured/data-size parameters are used"
        )
        return base | dict(config.params), {"trials": 0, "skipped": why}, None
    levels = categorical_levels(window, categorical_columns(window, features))
    matrix = prepare_matrix(window, features, levels)
    tuned, summary, best = search_params(
        matrix.iloc[split.fit_rows],
        fit[label].to_numpy(),
        matrix.iloc[split.valid_rows],
        valid[label].to_numpy(),
        base_params=base,
        config=config,
        centre=centre,
    )
    return base | tuned, summary, best


def _backtest(
    dataset: pd.DataFrame,
    folds: list[TimeFold],
    target: str,
    features: list[str],
    params: dict[str, Any],
    config: ModelConfig,
    gap_days: int,
    use_health: bool,
    previous: ModelBundle | None,
    tuned: TunedFit | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str | None]]:
    rows, predictions, notes = [], [], []
    for fold in folds:
        train, test = dataset.iloc[fold.train_rows], dataset.iloc[fold.test_rows]
        scores = _fold_scores(
            train, test, target, features, params, config, gap_days, use_health, previous, tuned
        )
        notes.append(_split_note(train, config, gap_days, target_spec(target).label))
        for model, p in scores.items():
            rows.append(_metric_row(fold, model, test, target, p, previous, gap_days))
            predictions.append(_prediction_rows(fold, model, test, target, p))
    return pd.DataFrame(rows), pd.concat(predictions, ignore_index=True), notes


def _fold_scores(
    train: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    features: list[str],
    params: dict[str, Any],
    config: ModelConfig,
    gap_days: int,
    use_health: bool,
    previous: ModelBundle | None,
    tuned: TunedFit | None = None,
) -> dict[str, np.ndarray]:
    """Test-window probabilities of LightGBM and every baseline, all fitted on ``train`` only
    (the fold that trains on the searched window may take the search's best trial as its
    early-stopped booster, see :func:`fit_bundle`)."""
    label = target_spec(target).label
    y = train[label].to_numpy()
    bundle = fit_bundle(
        train,
        target=target,
        features=features,
        params=params,
        config=config,
        gap_days=gap_days,
        tuned=tuned,
    )
    scores = {MODEL: bundle.predict_proba(test)}
    categorical = list(bundle.categorical_levels)
    numeric = [c for c in features if c not in bundle.categorical_levels]
    logistic = fit_logistic(
        train, y, numeric=numeric, categorical=categorical, c=config.logistic_c, seed=config.seed
    )
    scores[LOGISTIC] = predict_logistic(logistic, test)
    rfm = fit_rfm(train, y, c=config.logistic_c, seed=config.seed)
    if rfm is not None:
        scores[RFM] = predict_logistic(rfm, test)
    if use_health:
        health = fit_health_baseline(train, y, target=target)
        scores[HEALTH] = predict_health_baseline(health, test, target=target)
    if previous is not None:
        scores[CHAMPION] = previous.predict_proba(test)
    return scores


def _metric_row(
    fold: TimeFold,
    model: str,
    test: pd.DataFrame,
    target: str,
    p: np.ndarray,
    previous: ModelBundle | None,
    gap_days: int,
) -> dict[str, Any]:
    spec = target_spec(target)
    metrics = score_metrics(
        test[spec.label].to_numpy(), p, value=test[spec.value].to_numpy(), as_of=test["as_of"]
    )
    in_sample = model == CHAMPION and _champion_in_sample(previous, fold, gap_days)
    return {
        "fold": fold.index,
        "model": model,
        "train_end": fold.train_end,
        "test_start": fold.test_start,
        "test_end": fold.test_end,
        "n_train": len(fold.train_rows),
        "champion_in_sample": bool(in_sample),
        **metrics,
    }


def _champion_in_sample(previous: ModelBundle | None, fold: TimeFold, gap_days: int) -> bool:
    """Whether the champion's booster trained on rows whose label windows reach into the test
    window (its calibrator, a monotone map, cannot change the ranking)."""
    if previous is None:
        return False
    fit_end = previous.params.get("booster_fit_end", previous.train_window[1])
    return pd.Timestamp(fit_end) >= fold.test_start - pd.Timedelta(days=gap_days)


def _prediction_rows(
    fold: TimeFold, model: str, test: pd.DataFrame, target: str, p: np.ndarray
) -> pd.DataFrame:
    spec = target_spec(target)
    segment = test[SEGMENT_COLUMN] if SEGMENT_COLUMN in test else pd.Series("all", index=test.index)
    return pd.DataFrame(
        {
            "fold": fold.index,
            "model": model,
            "account_id": test["account_id"].to_numpy(),
            "as_of": test["as_of"].to_numpy(),
            SEGMENT_COLUMN: segment.astype(object).fillna("unknown").to_numpy(),
            "y": test[spec.label].to_numpy(dtype=int),
            "p": p,
            "value": test[spec.value].to_numpy(dtype=float),
        }
    )


def _summary_metrics(backtest: pd.DataFrame) -> dict[str, float]:
    """The booster's latest-fold metrics and their spread over folds (mean, sd, min, max; sd
    is NaN with one fold), for the bundle and MLflow."""
    ours = backtest[backtest["model"] == MODEL].sort_values("fold")
    out = {f"latest_{n}": float(ours[n].iloc[-1]) for n in METRIC_NAMES}
    for stat in ("mean", "sd", "min", "max"):
        how = "std" if stat == "sd" else stat
        out |= {f"{stat}_{n}": float(getattr(ours[n], how)()) for n in METRIC_NAMES}
    out["n_folds"] = float(len(ours))
    return out


def _dataset_info(
    dataset: pd.DataFrame, label: str, features: list[str], folds: list[TimeFold]
) -> dict[str, Any]:
    return {
        "rows": len(dataset),
        "accounts": int(dataset["account_id"].nunique()),
        "as_of_dates": int(dataset["as_of"].nunique()),
        "as_of_start": str(pd.Timestamp(dataset["as_of"].min()).date()),
        "as_of_end": str(pd.Timestamp(dataset["as_of"].max()).date()),
        "positives": int(dataset[label].sum()),
        "positive_rate": float(dataset[label].mean()),
        "n_features": len(features),
        "features": list(features),
        "fingerprint": data_fingerprint(dataset),
        "folds": [
            {
                "fold": f.index,
                "train_end": str(f.train_end.date()),
                "test_start": str(f.test_start.date()),
                "test_end": str(f.test_end.date()),
                "n_train": len(f.train_rows),
                "n_test": len(f.test_rows),
            }
            for f in folds
        ],
    }
