"""Evaluation metrics for risk scores on a panel of (account, as_of) rows.

Ranking metrics that a CSM team acts on (top-decile lift, ARR captured) rank accounts **within
each as_of** (one weekly risk list per date) and pool the counts over dates.

The expected calibration error has one definition with two binnings, named wherever an ECE is
shown: the training backtest (evaluation report, MLflow metrics, the promotion gate) uses
equal-count bins, the board report's realised performance equal-width bins.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

TOP_SHARE = 0.10
METRIC_NAMES = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "observed_expected",
    "top_decile_lift",
    "arr_captured_top10",
)


# Bundle metric: the out-of-time spread of the model's level (:func:`level_spread`), which the
# forecast (models.forecast.LevelUncertainty) draws its level factor from.
LEVEL_SD_METRIC = "forecast_level_sd"

Binning = Literal["equal_count", "equal_width"]
# How each binning is named beside an ECE in a report, a table or a log line.
BINNING_NAMES: dict[str, str] = {
    "equal_count": "10 equal-count bins",
    "equal_width": "10 equal-width bins",
}
BACKTEST_ECE_BINNING: Binning = "equal_count"
REALISED_ECE_BINNING: Binning = "equal_width"


def expected_calibration_error(
    y: np.ndarray, p: np.ndarray, *, binning: Binning, n_bins: int = 10
) -> float:
    """Row-weighted mean |observed rate - mean probability| over ``n_bins`` bins of the
    predicted probability; NaN without rows.

    ``binning="equal_count"``: bins of (nearly) as many rows each, ordered by probability:
    they suit the skewed probabilities of churn, where most rows sit below 0.1.
    ``binning="equal_width"``: the probability range cut at 1/n_bins, 2/n_bins, ... (empty
    bins drop out): comparable from week to week whatever the spread of the scores."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    if binning == "equal_count":
        order = np.argsort(p, kind="stable")
        bins = np.array_split(order, min(n_bins, len(y)))
    elif binning == "equal_width":
        idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
        bins = [np.flatnonzero(idx == b) for b in np.unique(idx)]
    else:
        raise ValueError(f"binning must be 'equal_count' or 'equal_width', got {binning!r}")
    gap = 0.0
    for rows in bins:
        gap += len(rows) * abs(y[rows].mean() - p[rows].mean())
    return float(gap / len(y))


def ece_label(binning: Binning) -> str:
    """``ECE (10 equal-count bins)``: how a report heads an ECE column or figure."""
    return f"ECE ({BINNING_NAMES[binning]})"


def brier_score(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between probability and 0/1 outcome (lower is better)."""
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def top_share_mask(
    score: np.ndarray, groups: np.ndarray, *, share: float = TOP_SHARE
) -> np.ndarray:
    """True for the ceil(share * n) highest scores within each group (ties broken by position)."""
    score = np.asarray(score, dtype=float)
    mask = np.zeros(len(score), dtype=bool)
    for idx in pd.Series(np.arange(len(score))).groupby(np.asarray(groups)).indices.values():
        k = int(np.ceil(share * len(idx)))
        best = idx[np.argsort(-score[idx], kind="stable")[:k]]
        mask[best] = True
    return mask


def score_metrics(
    y: np.ndarray, p: np.ndarray, *, value: np.ndarray, as_of: np.ndarray
) -> dict[str, float]:
    """All metrics for probabilities ``p`` of binary outcomes ``y``; ``value`` is the ARR at stake
    per row (churned or expansion ARR), ``as_of`` groups rows into ranked lists."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    value = np.asarray(value, dtype=float)
    both = len(np.unique(y)) == 2
    top = top_share_mask(p, np.asarray(as_of))
    base_rate = y.mean() if len(y) else float("nan")
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": brier_score(y, p),
        "ece": expected_calibration_error(y, p, binning=BACKTEST_ECE_BINNING),
        # calibration in the large: 1 when the model expects as many events as happen; what a
        # forecast summed over accounts needs, and what a low ECE can hide when events are rare
        "observed_expected": float(y.sum() / p.sum()) if p.sum() > 0 else float("nan"),
        "top_decile_lift": float(y[top].mean() / base_rate) if base_rate > 0 else float("nan"),
        "arr_captured_top10": float(value[top].sum() / value.sum()) if value.sum() > 0 else np.nan,
        "n_rows": float(len(y)),
        "positive_rate": float(base_rate),
    }


def metrics_by_group(predictions: pd.DataFrame, *, by: str, metric: str) -> pd.DataFrame:
    """``metric`` per model and value of ``by`` over a predictions frame with columns
    ``model, y, p, value, as_of`` and ``by``."""
    rows = []
    for (model, level), part in predictions.groupby(["model", by], observed=True, sort=True):
        scores = score_metrics(
            part["y"].to_numpy(), part["p"].to_numpy(), value=part["value"], as_of=part["as_of"]
        )
        rows.append({"model": model, by: level, metric: scores[metric], "n_rows": len(part)})
    return pd.DataFrame(rows)


def level_spread(as_of: pd.Series, outcome: np.ndarray, probability: np.ndarray) -> float:
    """Out-of-time spread of the model's level, the sd of the log-odds factor
    :class:`models.forecast.LevelUncertainty` draws, from held-out predictions (the training
    backtest folds).

    Per observation date t with O_t events, E_t = sum p and V_t = sum p(1 - p) (its Bernoulli
    variance), E[(O_t - E_t)^2] = V_t + tau^2 E_t^2 when the level is off by a factor with
    variance tau^2; so tau^2 = mean_t ((O_t - E_t)^2 - V_t) / E_t^2, floored at 0 (method of
    moments, about 1, so a steady bias counts). Returned as a log-normal sd: sqrt(ln(1 + tau^2)).
    """
    frame = pd.DataFrame(
        {
            "as_of": pd.to_datetime(as_of).to_numpy(),
            "o": np.asarray(outcome, dtype=float),
            "p": np.asarray(probability, dtype=float),
        }
    )
    frame["v"] = frame["p"] * (1.0 - frame["p"])
    dates = frame.groupby("as_of").agg(o=("o", "sum"), e=("p", "sum"), v=("v", "sum"))
    dates = dates[dates["e"] > 0]
    if dates.empty:
        return 0.0
    excess = ((dates["o"] - dates["e"]) ** 2 - dates["v"]) / dates["e"] ** 2
    return float(np.sqrt(np.log1p(max(float(excess.mean()), 0.0))))
