"""Baselines evaluated on the same folds as the booster: the exported rule health score and a
regularised logistic regression. Both are fitted on the fold's training window only."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.calibration import SigmoidCalibrator

HEALTH_COLUMN = "health_score"


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


def fit_logistic(
    frame: pd.DataFrame,
    y: np.ndarray,
    *,
    numeric: list[str],
    categorical: list[str],
    c: float,
    seed: int,
) -> Pipeline:
    """L2 logistic regression on median-imputed (+ missing indicators), standardised numerics
    and one-hot categoricals (unseen levels ignored)."""
    numeric_steps = make_pipeline(
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
            ("logistic", LogisticRegression(C=c, max_iter=2000, random_state=seed)),
        ]
    )
    model.fit(_logistic_input(frame, numeric, categorical), np.asarray(y, dtype=int))
    return model


def predict_logistic(
    model: Pipeline, frame: pd.DataFrame, *, numeric: list[str], categorical: list[str]
) -> np.ndarray:
    return model.predict_proba(_logistic_input(frame, numeric, categorical))[:, 1]


def _logistic_input(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> pd.DataFrame:
    out = {c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in numeric}
    for c in categorical:
        out[c] = frame[c].astype(object).where(frame[c].notna(), np.nan)
    return pd.DataFrame(out, index=frame.index)
