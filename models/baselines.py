"""Baselines evaluated on the same folds as the booster, each fitted on the fold's training
window only: the exported rule health score, a regularised logistic regression on every feature,
and a recency/RFM logistic regression on a handful of columns a notebook would start from.

The logistic inputs are made well-conditioned before scaling: counts and amounts (any column
that is never negative and spans more than two orders of magnitude) enter as ``log1p``, every
numeric is clipped to its training 0.5-99.5 % quantiles (so a new extreme cannot dominate), then
median-imputed with missing indicators and standardised, all fitted on the training rows: a
baseline that fails numerically says nothing about the booster
(docs/decisions/0004-logistic-baseline-inputs.md).

The logistic fits are bounded in cost: a window of more than ``MAX_LOGISTIC_ROWS`` rows is
fitted (transforms and regression) on a seeded random sample of that many of its rows. Weekly
rows of one account are near-duplicates, so a few tens of thousands of rows hold what an L2
regression on ~100 inputs can learn; below the cap nothing changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from models.calibration import SigmoidCalibrator

HEALTH_COLUMN = "health_score"
# The recency/RFM baseline: recency, frequency over two windows, tenure and money (ARR).
RFM_COLUMNS = (
    "days_since_last_activity",
    "events_28d",
    "events_90d",
    "tenure_days",
    "arr",
    "current_arr",
    "arr_at_as_of",
)
# Fewest RFM columns present for the RFM baseline to run.
MIN_RFM_COLUMNS = 2
# Categorical levels beyond this many are left to the booster (one-hot would over-fit).
MAX_ONE_HOT_LEVELS = 12
# Most training rows a logistic baseline is fitted on (a seeded sample of a larger window).
MAX_LOGISTIC_ROWS = 50_000


def health_available(frame: pd.DataFrame) -> bool:
    """True when the frame carries at least one exported health score."""
    return HEALTH_COLUMN in frame.columns and bool(frame[HEALTH_COLUMN].notna().any())


def health_risk(frame: pd.DataFrame, *, target: str) -> np.ndarray:
    """The health score read as a risk on the 0-100 scale: ``100 - score`` for churn and
    contraction, the score itself for expansion; accounts without a score get the neutral 50."""
    score = pd.to_numeric(frame[HEALTH_COLUMN], errors="coerce").astype(float).fillna(50.0)
    risk = score if target == "expansion" else 100.0 - score
    return risk.to_numpy(dtype=float)


def fit_health_baseline(frame: pd.DataFrame, y: np.ndarray, *, target: str) -> SigmoidCalibrator:
    """Platt-scale the health risk on training rows so it is compared as a probability too."""
    return SigmoidCalibrator.fit(health_risk(frame, target=target) / 10.0, y)


def predict_health_baseline(
    calibrator: SigmoidCalibrator, frame: pd.DataFrame, *, target: str
) -> np.ndarray:
    return calibrator.predict(health_risk(frame, target=target) / 10.0)


def rfm_columns(frame: pd.DataFrame) -> list[str]:
    """The RFM baseline's columns present in ``frame`` (empty when fewer than
    ``MIN_RFM_COLUMNS``); ``arr_at_as_of`` only stands in when no ARR feature exists."""
    present = [c for c in RFM_COLUMNS if c in frame.columns]
    if "arr_at_as_of" in present and len([c for c in present if "arr" in c]) > 1:
        present.remove("arr_at_as_of")
    return present if len(present) >= MIN_RFM_COLUMNS else []


def fit_logistic(
    frame: pd.DataFrame,
    y: np.ndarray,
    *,
    numeric: list[str],
    categorical: list[str],
    c: float,
    seed: int,
) -> Pipeline:
    """L2 logistic regression on log1p'd counts, clipped, median-imputed (+ missing
    indicators), standardised numerics and one-hot low-cardinality categoricals (unseen levels
    ignored); every transform is fitted on ``frame``, the training rows (at most
    ``MAX_LOGISTIC_ROWS`` of them, a sample seeded by ``seed``)."""
    frame, y = _bounded_rows(frame, np.asarray(y), seed)
    X = _logistic_input(frame, numeric, categorical)
    logged = [name for name in numeric if _is_count_like(X[name])]
    categorical = [name for name in categorical if X[name].nunique() <= MAX_ONE_HOT_LEVELS]
    bounds = {name: _bounds(X[name], log=name in logged) for name in numeric}
    numeric_steps = make_pipeline(
        FunctionTransformer(_clipped_log1p, kw_args={"bounds": bounds, "logged": logged}),
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
    )
    categorical_steps = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore", min_frequency=5),
    )
    columns = ColumnTransformer(
        [("numeric", numeric_steps, numeric), ("categorical", categorical_steps, categorical)]
    )
    model = Pipeline(
        [
            ("columns", columns),
            ("logistic", LogisticRegression(C=c, max_iter=5000, random_state=seed)),
        ]
    )
    model.fit(X[numeric + categorical], np.asarray(y, dtype=int))
    model.input_columns = (numeric, categorical)
    return model


def _bounded_rows(frame: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``frame`` and ``y``, or a seeded sample of ``MAX_LOGISTIC_ROWS`` of their rows (in
    their order) when there are more."""
    if len(frame) <= MAX_LOGISTIC_ROWS:
        return frame, y
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), MAX_LOGISTIC_ROWS, replace=False))
    return frame.iloc[rows], y[rows]


def _is_count_like(values: pd.Series) -> bool:
    """Never negative and spread over more than two orders of magnitude (counts, amounts)."""
    finite = values[np.isfinite(values)]
    if finite.empty or finite.min() < 0:
        return False
    high = finite.quantile(0.99)
    low = max(finite[finite > 0].quantile(0.05) if (finite > 0).any() else 0.0, 1.0)
    return bool(high > 100 * low)


def _bounds(values: pd.Series, *, log: bool) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if log:
        finite = np.log1p(finite)
    if finite.empty:
        return (-np.inf, np.inf)
    return (float(finite.quantile(0.005)), float(finite.quantile(0.995)))


def _clipped_log1p(
    X: pd.DataFrame, *, bounds: dict[str, tuple[float, float]], logged: list[str]
) -> pd.DataFrame:
    out = X.copy()
    for name in out.columns:
        column = out[name].where(np.isfinite(out[name]))
        if name in logged:
            column = np.log1p(column.clip(lower=0))
        low, high = bounds[name]
        out[name] = column.clip(low, high)
    return out


def fit_rfm(frame: pd.DataFrame, y: np.ndarray, *, c: float, seed: int) -> Pipeline | None:
    """The recency/RFM baseline (None when the frame lacks its columns)."""
    columns = rfm_columns(frame)
    if not columns:
        return None
    return fit_logistic(frame, y, numeric=columns, categorical=[], c=c, seed=seed)


def predict_logistic(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """Probabilities of a model from :func:`fit_logistic` or :func:`fit_rfm`."""
    numeric, categorical = model.input_columns
    return model.predict_proba(_logistic_input(frame, numeric, categorical))[:, 1]


def _logistic_input(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> pd.DataFrame:
    out = {c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in numeric}
    for c in categorical:
        out[c] = frame[c].astype(object).where(frame[c].notna(), np.nan)
    return pd.DataFrame(out, index=frame.index)
