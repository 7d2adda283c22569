"""Monitoring a model whose labels arrive months late: drift now, realised performance later.

Drift (feature and prediction) compares this week's scoring frame with a reference frame from the
model's training window, using the population stability index (PSI). Realised performance joins
past weekly scores to outcomes only once their label window is complete, so a run date is never
judged on a half-observed horizon. Thresholds live in :class:`MonitoringConfig` (YAML section
``monitoring``); formulas and worked numbers are in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.metrics import roc_auc_score

_EPS = 1e-4  # floor for an empty bin's share, so PSI stays finite


ALERTING = ("warn", "alert")  # statuses that warn; "ok" and "excluded" do not


class MonitoringConfig(BaseModel):
    """Thresholds that turn drift numbers into ok / warn / alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    psi_warn: float = Field(0.1, gt=0, description="feature PSI at or above this warns")
    psi_alert: float = Field(0.25, gt=0, description="feature PSI at or above this alerts")
    missing_rate_change: float = Field(
        0.1, gt=0, le=1, description="absolute change in a feature's missing rate that warns"
    )
    prediction_psi_warn: float = Field(0.1, gt=0, description="PSI of the scores that warns")
    prediction_psi_alert: float = Field(0.25, gt=0, description="PSI of the scores that alerts")
    bins: int = Field(10, ge=2, le=100, description="quantile bins for numeric PSI")
    exclude_features: tuple[str, ...] = Field(
        (),
        description="features still measured but never warned about (status 'excluded'): "
        "ones that drift by construction, such as tenure as the book ages",
    )

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringConfig:
        if self.psi_warn >= self.psi_alert:
            raise ValueError(
                f"monitoring.psi_warn ({self.psi_warn}) must be below "
                f"monitoring.psi_alert ({self.psi_alert})"
            )
        if self.prediction_psi_warn >= self.prediction_psi_alert:
            raise ValueError(
                f"monitoring.prediction_psi_warn ({self.prediction_psi_warn}) must be below "
                f"monitoring.prediction_psi_alert ({self.prediction_psi_alert})"
            )
        return self


# --- PSI ----------------------------------------------------------------------------------------


def is_categorical(values: pd.Series) -> bool:
    """Strings, categories and booleans are binned by level; everything else by quantile."""
    return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def _psi_from_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(expected / expected.sum(), _EPS)
    a = np.maximum(actual / actual.sum(), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _numeric_bins(expected: pd.Series, actual: pd.Series, bins: int) -> tuple[np.ndarray, ...]:
    """Counts per bin: (-inf, q1], (q1, q2], ..., (qk, inf) from expected's quantiles, + NaN bin."""
    e = pd.to_numeric(expected, errors="coerce").astype("float64").to_numpy()
    a = pd.to_numeric(actual, errors="coerce").astype("float64").to_numpy()
    finite = e[~np.isnan(e)]
    probs = np.arange(1, bins) / bins
    edges = np.unique(np.quantile(finite, probs)) if finite.size else np.array([])
    n_bins = len(edges) + 2  # the last bin holds NaN

    def counts(x: np.ndarray) -> np.ndarray:
        idx = np.where(np.isnan(x), n_bins - 1, np.searchsorted(edges, x, side="left"))
        return np.bincount(idx.astype(int), minlength=n_bins).astype(float)

    return counts(e), counts(a)


def _categorical_bins(expected: pd.Series, actual: pd.Series) -> tuple[np.ndarray, ...]:
    e = expected.astype("object").where(expected.notna(), "__missing__").astype(str)
    a = actual.astype("object").where(actual.notna(), "__missing__").astype(str)
    levels = sorted(set(e) | set(a))
    return (
        e.value_counts().reindex(levels, fill_value=0).to_numpy(dtype=float),
        a.value_counts().reindex(levels, fill_value=0).to_numpy(dtype=float),
    )


def psi(expected: pd.Series, actual: pd.Series, *, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``.

    Numeric values: bins at the deciles (by default) of ``expected``; missing values form their
    own bin. Categorical values: one bin per level seen in either sample, missing included. An
    empty bin counts as a share of 1e-4. PSI = sum((a - e) * ln(a / e)) over bins.
    """
    if len(expected) == 0 or len(actual) == 0:
        raise ValueError(
            f"psi needs rows in both samples (expected has {len(expected)}, "
            f"actual has {len(actual)})"
        )
    if bins < 2:
        raise ValueError(f"psi bins must be >= 2, got {bins}")
    if is_categorical(expected) or is_categorical(actual):
        e, a = _categorical_bins(expected, actual)
    else:
        e, a = _numeric_bins(expected, actual, bins)
    return _psi_from_counts(e, a)


# --- drift --------------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _status(value: float, warn: float, alert: float) -> str:
    if value >= alert:
        return "alert"
    return "warn" if value >= warn else "ok"


def feature_drift(
    train_features: pd.DataFrame,
    current: pd.DataFrame,
    *,
    feature_names: Sequence[str],
    thresholds: MonitoringConfig,
) -> pd.DataFrame:
    """One row per feature: PSI of ``current`` against ``train_features``, missing rates, status.

    Status is ``alert`` when PSI >= psi_alert, ``warn`` when PSI >= psi_warn or the missing rate
    moved by at least ``missing_rate_change`` (absolute), else ``ok``. Sorted worst first.
    """
    _require(train_features, feature_names, "reference (training-window) feature frame")
    _require(current, feature_names, "current feature frame")
    rows = []
    for name in feature_names:
        ref, cur = train_features[name], current[name]
        value = psi(ref, cur, bins=thresholds.bins)
        miss_ref, miss_cur = float(ref.isna().mean()), float(cur.isna().mean())
        status = _status(value, thresholds.psi_warn, thresholds.psi_alert)
        missing_moved = abs(miss_cur - miss_ref) >= thresholds.missing_rate_change
        if status == "ok" and missing_moved:
            status = "warn"
        if name in thresholds.exclude_features:
            status = "excluded"
        rows.append(
            {
                "feature": name,
                "kind": "categorical" if is_categorical(ref) else "numeric",
                "psi": value,
                "missing_train": miss_ref,
                "missing_current": miss_cur,
                "missing_change": miss_cur - miss_ref,
                "status": status,
            }
        )
    return _sorted_by_status(pd.DataFrame(rows))


def _sorted_by_status(frame: pd.DataFrame) -> pd.DataFrame:
    rank = frame["status"].map({"alert": 0, "warn": 1, "ok": 2, "excluded": 3})
    order = np.lexsort((-frame["psi"].to_numpy(), rank.to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def prediction_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    thresholds: MonitoringConfig,
    columns: Sequence[str] = ("churn_probability", "expansion_probability"),
) -> pd.DataFrame:
    """PSI and mean shift of the model's scores (reference: scores over the training window or
    earlier weeks). Columns absent from both frames are skipped; absent from one is an error."""
    rows = []
    for col in columns:
        if col not in reference.columns and col not in current.columns:
            continue
        _require(reference, [col], "reference predictions")
        _require(current, [col], "current predictions")
        value = psi(reference[col], current[col], bins=thresholds.bins)
        rows.append(
            {
                "score": col,
                "psi": value,
                "mean_reference": float(reference[col].mean()),
                "mean_current": float(current[col].mean()),
                "status": _status(
                    value, thresholds.prediction_psi_warn, thresholds.prediction_psi_alert
                ),
            }
        )
    return pd.DataFrame(rows, columns=["score", "psi", "mean_reference", "mean_current", "status"])


def drift_warnings(feature: pd.DataFrame, prediction: pd.DataFrame | None = None) -> list[str]:
    """Human-readable lines for every drift row that is not ``ok`` (for the flow's log)."""
    lines = [
        f"feature drift {r.status}: {r.feature} PSI {r.psi:.3f}, missing "
        f"{r.missing_train:.1%} -> {r.missing_current:.1%}"
        for r in feature.itertuples()
        if r.status in ALERTING
    ]
    if prediction is not None:
        lines += [
            f"prediction drift {r.status}: {r.score} PSI {r.psi:.3f}, mean "
            f"{r.mean_reference:.3f} -> {r.mean_current:.3f}"
            for r in prediction.itertuples()
            if r.status in ALERTING
        ]
    return lines


# --- realised performance -----------------------------------------------------------------------


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> float:
    """Share-weighted mean |observed rate - mean probability| over equal-width probability bins."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if y.size == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        mask = idx == b
        total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / y.size)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def _to_timestamp(value: date | datetime | pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def join_matured(
    past_predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    horizon_days: int,
    data_end: date | datetime | None = None,
    lead_days: int = 0,
) -> pd.DataFrame:
    """Past scores joined to their outcomes, keeping only matured rows.

    A run date has matured when ``run_date + lead_days + horizon_days <= data_end`` (without
    ``data_end``, the labels' NA marks are trusted alone); within it a
    row is kept only if its label is known (labels use NA for censored rows). Predictions are
    keyed ``(run_date, account_id)``, labels ``(as_of, account_id)`` with ``as_of`` the run date.
    """
    _require(past_predictions, ["run_date", "account_id", "churn_probability"], "past_predictions")
    _require(labels, ["as_of", "account_id", "churned"], "labels")
    preds = past_predictions.assign(
        run_date=pd.to_datetime(past_predictions["run_date"]).dt.normalize(),
        account_id=past_predictions["account_id"].astype(str),
    )
    lab = labels.assign(
        run_date=pd.to_datetime(labels["as_of"]).dt.normalize(),
        account_id=labels["account_id"].astype(str),
    ).drop(columns=["as_of"])
    lab = lab[[c for c in lab.columns if c not in preds.columns or c in ("run_date", "account_id")]]
    matured = preds
    if data_end is not None:
        cutoff = _to_timestamp(data_end) - timedelta(days=horizon_days + lead_days)
        matured = preds[preds["run_date"] <= cutoff]
    joined = matured.merge(lab, on=["run_date", "account_id"], how="inner", validate="one_to_one")
    joined = joined[joined["churned"].notna()].copy()
    joined["churned"] = joined["churned"].astype(bool)
    return joined.reset_index(drop=True)


def _green_capture(group: pd.DataFrame) -> tuple[float, float]:
    """Churned ARR that was green at the run date, and the share of it the model flagged."""
    if "health_color" not in group.columns:
        return float("nan"), float("nan")
    green_churn = group[group["churned"] & (group["health_color"] == "green")]
    green_arr = float(green_churn["arr"].sum()) if "arr" in group.columns else float("nan")
    if "green_churn" in group.columns:
        flagged = green_churn["green_churn"].fillna(False).astype(bool)
    elif "churn_tier" in group.columns:
        flagged = green_churn["churn_tier"] == "high"
    else:
        return green_arr, float("nan")
    captured = float(green_churn.loc[flagged, "arr"].sum())
    return green_arr, (captured / green_arr if green_arr > 0 else float("nan"))


def realised_performance(
    past_predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    horizon_days: int,
    data_end: date | datetime | None = None,
    lead_days: int = 0,
) -> pd.DataFrame:
    """Per matured run date: rows, churners, AUC, Brier, ECE, predicted vs observed churn rate,
    churned ARR that was green at scoring time and the share of it flagged as green churn."""
    joined = join_matured(
        past_predictions, labels, horizon_days=horizon_days, data_end=data_end, lead_days=lead_days
    )
    rows = []
    for run_date, g in joined.groupby("run_date", sort=True):
        y = g["churned"].to_numpy(dtype=float)
        p = g["churn_probability"].to_numpy(dtype=float)
        green_arr, capture = _green_capture(g)
        rows.append(
            {
                "run_date": run_date,
                "accounts": len(g),
                "churners": int(y.sum()),
                "auc": _auc(y, p),
                "brier": float(np.mean((p - y) ** 2)),
                "ece": expected_calibration_error(y, p),
                "mean_probability": float(p.mean()),
                "observed_rate": float(y.mean()),
                "green_churned_arr": green_arr,
                "green_churn_capture": capture,
            }
        )
    columns = [
        "run_date",
        "accounts",
        "churners",
        "auc",
        "brier",
        "ece",
        "mean_probability",
        "observed_rate",
        "green_churned_arr",
        "green_churn_capture",
    ]
    return pd.DataFrame(rows, columns=columns)
