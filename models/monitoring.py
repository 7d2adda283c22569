"""Monitoring a model whose labels arrive months late: drift now, realised performance later.

Drift (feature and prediction) compares this week's scoring frame with a reference frame from the
model's training window, using the population stability index (PSI). Realised performance joins
past weekly scores to outcomes only once their label window is complete, so a run date is never
judged on a half-observed horizon. Thresholds live in :class:`MonitoringConfig` (YAML section
``monitoring``); formulas and worked numbers are in ``docs/metrics.md``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.metrics import average_precision_score, roc_auc_score

from models.dataset import matured
from models.metrics import REALISED_ECE_BINNING, brier_score, expected_calibration_error

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
        description="features still measured but never warned about (status 'excluded'), "
        "besides those the feature catalog declares as drifting by construction (tenure, "
        "calendar-bound recency)",
    )
    estimate_samples: int = Field(
        400,
        ge=10,
        le=100_000,
        description="Monte-Carlo draws of the label-free performance "
        "estimate (models.performance_estimate); more narrows the noise of its bounds",
    )
    estimate_level: float = Field(
        0.95, gt=0, lt=1, description="coverage of the estimate's interval"
    )
    volume_weeks: int = Field(
        5,
        ge=2,
        le=26,
        description="weeks of rows per source counted: the last one and the "
        "weeks before it it is compared with",
    )
    volume_collapse_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="a source's rows (or accounts) in the last 7 days below "
        "this share of the previous weeks' median alert: the source probably broke",
    )
    volume_warn_ratio: float = Field(
        0.8, gt=0, lt=1, description="below this share of the previous weeks' median warns"
    )
    volume_min_rows: int = Field(
        50,
        ge=0,
        description="a source with a median below this many rows a week is measured "
        "but never alerted on (too few rows for a ratio to mean much)",
    )
    volume_exclude_sources: tuple[str, ...] = Field(
        ("surveys",),
        description="sources measured but never alerted on: ones that arrive in "
        "waves (NPS surveys), so a quiet week is normal",
    )

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringConfig:
        if self.psi_warn >= self.psi_alert:
            raise ValueError(
                f"monitoring.psi_warn ({self.psi_warn}) must be below "
                f"monitoring.psi_alert ({self.psi_alert})"
            )
        if self.volume_collapse_ratio >= self.volume_warn_ratio:
            raise ValueError(
                f"monitoring.volume_collapse_ratio ({self.volume_collapse_ratio}) must be below "
                f"monitoring.volume_warn_ratio ({self.volume_warn_ratio})"
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
    return _numeric_counts(e, edges), _numeric_counts(a, edges)


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


# --- drift reference: the training window's bins, stored with the model --------------------

REFERENCE_FORMAT = 1
MISSING_LEVEL = "__missing__"


@dataclass(frozen=True)
class FeatureReference:
    """One feature's distribution over the training window, binned as PSI bins it.

    Numeric: ``edges`` are the training window's quantile cut points (bins (-inf, e1], ...,
    (ek, inf) and a last bin for missing values), ``counts`` the training rows per bin.
    Categorical: ``levels`` (missing as ``__missing__``) and their counts."""

    kind: str  # "numeric" | "categorical"
    counts: tuple[float, ...]
    edges: tuple[float, ...] = ()
    levels: tuple[str, ...] = ()
    mean: float | None = None  # numeric only: the training window's mean

    @property
    def missing_rate(self) -> float:
        total = sum(self.counts)
        if self.kind == "numeric":
            missing = self.counts[-1]
        else:
            missing = dict(zip(self.levels, self.counts, strict=True)).get(MISSING_LEVEL, 0.0)
        return float(missing / total) if total else float("nan")


@dataclass(frozen=True)
class DriftReference:
    """What weekly drift is measured against: per-feature bins over the champion's training
    window (``window``: first and last as_of, ``rows``), and the bins of the model's own scores
    on those rows. Saved in the model bundle (``drift_reference.json``), so drift never depends
    on what today's warehouse says about the past."""

    window: tuple[str, str]
    rows: int
    bins: int
    features: dict[str, FeatureReference]
    scores: dict[str, FeatureReference] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able numbers (the bundle stores them; never a pickle)."""
        return {
            "format": REFERENCE_FORMAT,
            "window": list(self.window),
            "rows": self.rows,
            "bins": self.bins,
            "features": {k: asdict(v) for k, v in self.features.items()},
            "scores": {k: asdict(v) for k, v in self.scores.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DriftReference:
        if state.get("format") != REFERENCE_FORMAT:
            raise ValueError(
                f"drift reference format {state.get('format')!r} is not {REFERENCE_FORMAT}: "
                "retrain the model to store a current one"
            )

        def parse(entries: dict[str, Any]) -> dict[str, FeatureReference]:
            return {
                name: FeatureReference(
                    kind=e["kind"],
                    counts=tuple(float(c) for c in e["counts"]),
                    edges=tuple(float(x) for x in e.get("edges", ())),
                    levels=tuple(str(x) for x in e.get("levels", ())),
                    mean=e.get("mean"),
                )
                for name, e in entries.items()
            }

        return cls(
            window=(str(state["window"][0]), str(state["window"][1])),
            rows=int(state["rows"]),
            bins=int(state["bins"]),
            features=parse(state["features"]),
            scores=parse(state.get("scores", {})),
        )


def _as_float_array(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()


def _as_levels(values: pd.Series) -> pd.Series:
    return values.astype("object").where(values.notna(), MISSING_LEVEL).astype(str)


def reference_bins(values: pd.Series, *, bins: int) -> FeatureReference:
    """Bins and counts of one training-window column, as :func:`psi` would cut them."""
    if is_categorical(values):
        counts = _as_levels(values).value_counts().sort_index()
        return FeatureReference(
            kind="categorical",
            counts=tuple(float(c) for c in counts.to_numpy()),
            levels=tuple(counts.index),
        )
    x = _as_float_array(values)
    finite = x[~np.isnan(x)]
    probs = np.arange(1, bins) / bins
    edges = np.unique(np.quantile(finite, probs)) if finite.size else np.array([])
    return FeatureReference(
        kind="numeric",
        counts=tuple(float(c) for c in _numeric_counts(x, edges)),
        edges=tuple(float(e) for e in edges),
        mean=float(finite.mean()) if finite.size else None,
    )


def _numeric_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n_bins = len(edges) + 2  # the last bin holds NaN
    idx = np.where(np.isnan(x), n_bins - 1, np.searchsorted(edges, x, side="left"))
    return np.bincount(idx.astype(int), minlength=n_bins).astype(float)


def current_counts(reference: FeatureReference, values: pd.Series) -> tuple[np.ndarray, ...]:
    """(reference counts, current counts) over the same bins; a level the training window never
    saw gets a reference count of 0 (floored like any empty bin)."""
    if reference.kind == "numeric":
        counts = _numeric_counts(_as_float_array(values), np.asarray(reference.edges))
        return np.asarray(reference.counts), counts
    current = _as_levels(values).value_counts()
    levels = sorted(set(reference.levels) | set(current.index))
    ref = dict(zip(reference.levels, reference.counts, strict=True))
    return (
        np.array([ref.get(level, 0.0) for level in levels], dtype=float),
        current.reindex(levels, fill_value=0).to_numpy(dtype=float),
    )


def psi_from_reference(reference: FeatureReference, values: pd.Series) -> float:
    """PSI of ``values`` against a stored reference (equal to :func:`psi` on the raw rows)."""
    if len(values) == 0:
        raise ValueError("psi needs rows in both samples (the current sample has 0)")
    expected, actual = current_counts(reference, values)
    return _psi_from_counts(expected, actual)


def drift_reference(
    frame: pd.DataFrame,
    *,
    feature_names: Sequence[str],
    bins: int = 10,
    scores: dict[str, np.ndarray] | None = None,
) -> DriftReference:
    """The reference of a training frame (one row per account and as_of of the training window):
    bins per feature and, given ``scores`` (e.g. ``{"churn_probability": p}``), of the scores."""
    _require(frame, feature_names, "training frame")
    if frame.empty:
        raise ValueError("a drift reference needs training rows (the frame is empty)")
    as_of = pd.to_datetime(frame["as_of"]) if "as_of" in frame else pd.Series([pd.NaT])
    return DriftReference(
        window=(str(as_of.min().date()), str(as_of.max().date())),
        rows=len(frame),
        bins=bins,
        features={name: reference_bins(frame[name], bins=bins) for name in feature_names},
        scores={k: reference_bins(pd.Series(v), bins=bins) for k, v in (scores or {}).items()},
    )


# --- drift --------------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _status(value: float, warn: float, alert: float) -> str:
    if value >= alert:
        return "alert"
    return "warn" if value >= warn else "ok"


BY_CONSTRUCTION = "drifts by construction (features/catalog.py)"
BY_CONFIG = "excluded by monitoring.exclude_features"


def feature_drift(
    train_features: pd.DataFrame | DriftReference,
    current: pd.DataFrame,
    *,
    feature_names: Sequence[str],
    thresholds: MonitoringConfig,
    expected_drift: Collection[str] | None = None,
) -> pd.DataFrame:
    """One row per feature: PSI of ``current`` against the training window (a stored
    :class:`DriftReference`, or a frame of training rows binned here), missing rates, status.

    Status is ``alert`` when PSI >= psi_alert, ``warn`` when PSI >= psi_warn or the missing rate
    moved by at least ``missing_rate_change`` (absolute), else ``ok``; ``excluded`` (measured,
    never warned about) for features that drift by construction (``expected_drift``, by default
    the catalog's) and for ``monitoring.exclude_features``, with the reason in ``note``. Sorted
    worst first."""
    if isinstance(train_features, DriftReference):
        reference = train_features
        missing = [n for n in feature_names if n not in reference.features]
        if missing:
            raise KeyError(f"the stored drift reference lacks feature(s) {missing}")
    else:
        _require(train_features, feature_names, "reference (training-window) feature frame")
        reference = drift_reference(
            train_features, feature_names=feature_names, bins=thresholds.bins
        )
    _require(current, feature_names, "current feature frame")
    if expected_drift is None:
        from features.catalog import drifting_by_construction

        expected_drift = drifting_by_construction(feature_names)
    rows = [
        _drift_row(name, reference.features[name], current[name], thresholds, expected_drift)
        for name in feature_names
    ]
    return _sorted_by_status(pd.DataFrame(rows))


def _drift_row(
    name: str,
    ref: FeatureReference,
    cur: pd.Series,
    thresholds: MonitoringConfig,
    expected_drift: Collection[str],
) -> dict[str, Any]:
    value = psi_from_reference(ref, cur)
    miss_ref, miss_cur = ref.missing_rate, float(cur.isna().mean())
    status = _status(value, thresholds.psi_warn, thresholds.psi_alert)
    if status == "ok" and abs(miss_cur - miss_ref) >= thresholds.missing_rate_change:
        status = "warn"
    note = ""
    if name in expected_drift:
        status, note = "excluded", BY_CONSTRUCTION
    elif name in thresholds.exclude_features:
        status, note = "excluded", BY_CONFIG
    return {
        "feature": name,
        "kind": ref.kind,
        "psi": value,
        "missing_train": miss_ref,
        "missing_current": miss_cur,
        "missing_change": miss_cur - miss_ref,
        "status": status,
        "note": note,
    }


def _sorted_by_status(frame: pd.DataFrame) -> pd.DataFrame:
    rank = frame["status"].map({"alert": 0, "warn": 1, "ok": 2, "excluded": 3})
    order = np.lexsort((-frame["psi"].to_numpy(), rank.to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def prediction_drift(
    reference: pd.DataFrame | DriftReference,
    current: pd.DataFrame,
    *,
    thresholds: MonitoringConfig,
    columns: Sequence[str] = ("churn_probability", "expansion_probability"),
) -> pd.DataFrame:
    """PSI and mean shift of the model's scores against a reference: the scores the model gave
    its training window (a :class:`DriftReference`, whose absent scores are skipped) or a frame
    of earlier weeks' scores (columns absent from both frames are skipped; from one, an error)."""
    rows = []
    for col in columns:
        if isinstance(reference, DriftReference):
            if col not in reference.scores or col not in current.columns:
                continue
            ref = reference.scores[col]
        else:
            if col not in reference.columns and col not in current.columns:
                continue
            _require(reference, [col], "reference predictions")
            ref = reference_bins(reference[col], bins=thresholds.bins)
        _require(current, [col], "current predictions")
        value = psi_from_reference(ref, current[col])
        rows.append(
            {
                "score": col,
                "psi": value,
                "mean_reference": float("nan") if ref.mean is None else ref.mean,
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


# --- drift against the model's own reference ---------------------------------------------------


@dataclass(frozen=True)
class DriftCheck:
    """This week's drift against the champion's stored training-window reference; ``features``
    and ``scores`` are None when the model carries no reference (``note`` says so)."""

    features: pd.DataFrame | None
    scores: pd.DataFrame | None
    reference_window: tuple[str, str] | None
    note: str

    @property
    def alerts(self) -> int:
        """Rows (features and scores) past a threshold."""
        return sum(
            int(t["status"].isin(ALERTING).sum())
            for t in (self.features, self.scores)
            if t is not None
        )


NO_REFERENCE = (
    "{model} was trained before churnlens stored a drift reference with the model, so drift "
    "is not measured this week (it is not rebuilt from today's warehouse, which would hide a "
    "source that lost its history): retrain to monitor drift"
)


REFERENCE_MAX_ROWS = 200_000  # a seeded sample of a longer training window is binned


def reference_for_bundle(
    bundle: Any,
    frame: pd.DataFrame,
    *,
    bins: int,
    max_rows: int = REFERENCE_MAX_ROWS,
    seed: int = 0,
) -> DriftReference:
    """The drift reference of a freshly trained bundle on its training frame: bins per model
    feature and of the bundle's own calibrated scores on those rows (``<target>_probability``,
    the column scoring writes). A window of more than ``max_rows`` rows is binned on a seeded
    sample of that many (decile shares move by well under 1% point; ``rows`` records the
    window's full size)."""
    sample = frame if len(frame) <= max_rows else frame.sample(n=max_rows, random_state=seed)
    scores = {f"{bundle.target}_probability": bundle.predict_proba(sample)}
    reference = drift_reference(
        sample, feature_names=bundle.feature_names, bins=bins, scores=scores
    )
    as_of = pd.to_datetime(frame["as_of"])
    window = (str(as_of.min().date()), str(as_of.max().date()))
    return DriftReference(window, len(frame), bins, reference.features, reference.scores)


def drift_against_model(
    bundle: Any,
    features: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    thresholds: MonitoringConfig,
    model: str = "the model",
) -> DriftCheck:
    """Feature and score drift of this week's frames against ``bundle.drift_reference``."""
    if bundle.drift_reference is None:
        return DriftCheck(None, None, None, NO_REFERENCE.format(model=model))
    reference = DriftReference.from_state(bundle.drift_reference)
    table = feature_drift(
        reference, features, feature_names=bundle.feature_names, thresholds=thresholds
    )
    scores = prediction_drift(reference, predictions, thresholds=thresholds)
    start, end = reference.window
    note = (
        f"against {model}'s training window {start}..{end} ({reference.rows:,} rows), "
        "stored with the model"
    )
    return DriftCheck(table, scores, reference.window, note)


# --- source volumes -----------------------------------------------------------------------------

VOLUME_CHECK_COLUMNS = (
    "source",
    "rows_last_7d",
    "rows_typical",
    "rows_ratio",
    "accounts_last_7d",
    "accounts_typical",
    "accounts_ratio",
    "share_of_accounts",
    "status",
    "note",
)


def volume_checks(
    volumes: pd.DataFrame, *, thresholds: MonitoringConfig, accounts: int | None = None
) -> pd.DataFrame:
    """Per source: rows and distinct accounts of the last 7 days (week 0 of
    :func:`features.volumes.source_volumes`) against the median of the weeks before, and the
    share of the ``accounts`` scored that have a row. ``alert`` when either ratio falls below
    ``volume_collapse_ratio``, ``warn`` below ``volume_warn_ratio``; sources with fewer than
    ``volume_min_rows`` rows in a typical week, or listed in ``volume_exclude_sources``, are
    measured but ``excluded`` from alerts."""
    _require(volumes, ["source", "week", "rows", "accounts"], "source volumes")
    rows = [
        _volume_row(source, part, thresholds, accounts)
        for source, part in volumes.groupby("source", sort=False)
    ]
    return pd.DataFrame(rows, columns=list(VOLUME_CHECK_COLUMNS))


def _ratio(now: float, typical: float) -> float:
    return now / typical if typical > 0 else float("nan")


def _volume_row(
    source: str, part: pd.DataFrame, thresholds: MonitoringConfig, accounts: int | None
) -> dict[str, Any]:
    latest = part[part["week"] == 0]
    earlier = part[part["week"] > 0]
    rows_now = float(latest["rows"].sum())
    accounts_now = float(latest["accounts"].sum())
    rows_typical = float(earlier["rows"].median()) if len(earlier) else float("nan")
    accounts_typical = float(earlier["accounts"].median()) if len(earlier) else float("nan")
    rows_ratio, accounts_ratio = (
        _ratio(rows_now, rows_typical),
        _ratio(accounts_now, accounts_typical),
    )
    worst = np.nanmin([rows_ratio, accounts_ratio, np.inf])
    status, note = "ok", ""
    if worst < thresholds.volume_collapse_ratio:
        status = "alert"
        note = (
            f"{rows_now:,.0f} rows in the last 7 days against {rows_typical:,.0f} in a typical week"
        )
    elif worst < thresholds.volume_warn_ratio:
        status = "warn"
        note = (
            f"{rows_now:,.0f} rows in the last 7 days against {rows_typical:,.0f} in a typical week"
        )
    if source in thresholds.volume_exclude_sources:
        status, note = "excluded", "arrives in waves (monitoring.volume_exclude_sources)"
    elif not rows_typical >= thresholds.volume_min_rows:
        status, note = "excluded", f"fewer than {thresholds.volume_min_rows} rows in a typical week"
    return {
        "source": source,
        "rows_last_7d": rows_now,
        "rows_typical": rows_typical,
        "rows_ratio": rows_ratio,
        "accounts_last_7d": accounts_now,
        "accounts_typical": accounts_typical,
        "accounts_ratio": accounts_ratio,
        "share_of_accounts": accounts_now / accounts if accounts else float("nan"),
        "status": status,
        "note": note,
    }


def volume_warnings(checks: pd.DataFrame) -> list[str]:
    """One line per source past a threshold, for the flow's log and the report."""
    return [
        f"source volume {r.source} {r.status}: {r.note} (accounts with a row: "
        f"{r.accounts_last_7d:,.0f} vs {r.accounts_typical:,.0f})"
        for r in checks.itertuples()
        if r.status in ALERTING
    ]


# --- realised performance -----------------------------------------------------------------------


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def _pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(average_precision_score(y, score))


def _to_timestamp(value: date | datetime | pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def join_matured(
    past_predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    maturity_days: int,
    data_end: date | datetime | None = None,
) -> pd.DataFrame:
    """Past scores joined to their outcomes, keeping only matured rows.

    With ``data_end``, a run date is kept when it has matured by then
    (:func:`models.dataset.matured`: ``run_date + maturity_days <= data_end``, grace included);
    without it, the labels' NA marks are trusted alone. Within a run date a row is kept only if
    its label is known (labels use NA for censored rows). Predictions are keyed ``(run_date,
    account_id)``, labels ``(as_of, account_id)`` with ``as_of`` the run date.
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
    kept = preds
    if data_end is not None:
        by = _to_timestamp(data_end)
        kept = preds[matured(preds["run_date"], by=by, maturity_days=maturity_days)]
    joined = kept.merge(lab, on=["run_date", "account_id"], how="inner", validate="one_to_one")
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


# What :func:`realised_performance` returns, one row per run date, in this order.
REALISED_COLUMNS = (
    "run_date",
    "accounts",
    "churners",
    "auc",
    "pr_auc",
    "brier",
    "ece",
    "mean_probability",
    "observed_rate",
    "green_churned_arr",
    "green_churn_capture",
)


def realised_performance(
    past_predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    maturity_days: int,
    data_end: date | datetime | None = None,
) -> pd.DataFrame:
    """Per matured run date: rows, churners, AUC, Brier, ECE (equal-width bins,
    :data:`models.metrics.REALISED_ECE_BINNING`), predicted vs observed churn rate, churned
    ARR that was green at scoring time and the share of it flagged as green churn."""
    joined = join_matured(past_predictions, labels, maturity_days=maturity_days, data_end=data_end)
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
                "pr_auc": _pr_auc(y, p),
                "brier": brier_score(y, p),
                "ece": expected_calibration_error(y, p, binning=REALISED_ECE_BINNING),
                "mean_probability": float(p.mean()),
                "observed_rate": float(y.mean()),
                "green_churned_arr": green_arr,
                "green_churn_capture": capture,
            }
        )
    return pd.DataFrame(rows, columns=list(REALISED_COLUMNS))


# --- the weekly run's checks together -----------------------------------------------------------


@dataclass(frozen=True)
class WeeklyMonitoring:
    """Everything the weekly run checks without labels: drift against the model's training
    window, rows per source against earlier weeks, and the label-free performance estimate
    (``estimate``; None when the week has no churn scores)."""

    drift: DriftCheck
    volumes: pd.DataFrame  # volume_checks, one row per source
    estimate: Any  # models.performance_estimate.PerformanceEstimate | None

    @property
    def volume_alerts(self) -> int:
        return int(self.volumes["status"].isin(ALERTING).sum())

    def warnings(self) -> list[str]:
        """Lines worth a person's attention (drift and volume rows past a threshold, and a
        model without a stored reference)."""
        lines = [] if self.drift.features is not None else [self.drift.note]
        if self.drift.features is not None:
            lines += drift_warnings(self.drift.features, self.drift.scores)
        return lines + volume_warnings(self.volumes)

    def summary(self) -> str:
        parts = [
            f"{self.drift.alerts} drift row(s) past a threshold"
            if self.drift.features is not None
            else "drift not measured (no reference stored with the model)",
            f"{self.volume_alerts} source(s) with too few rows",
        ]
        if self.estimate is not None:
            e, lo, hi = self.estimate.expected, self.estimate.lower, self.estimate.upper
            parts.append(
                f"expected ROC-AUC {e['roc_auc']:.3f} ({lo['roc_auc']:.3f}-{hi['roc_auc']:.3f}), "
                f"PR-AUC {e['pr_auc']:.3f} ({lo['pr_auc']:.3f}-{hi['pr_auc']:.3f}), churners "
                f"{e['churners']:.1f} ({lo['churners']:.0f}-{hi['churners']:.0f})"
            )
        return "; ".join(parts)

    def run_record(self) -> dict[str, Any]:
        """What the scoring run record keeps (JSON in the runs table's ``meta_json``)."""
        record: dict[str, Any] = {
            "drift_reference": self.drift.note,
            "drift_alerts": self.drift.alerts,
            "source_volumes": _records(self.volumes),
        }
        if self.estimate is not None:
            record["performance_estimate"] = _records(self.estimate.table())
        return record


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")


def weekly_monitoring(
    features: pd.DataFrame,
    predictions: pd.DataFrame,
    bundle: Any,
    volumes: pd.DataFrame,
    *,
    thresholds: MonitoringConfig,
    model: str = "the model",
    seed: int = 0,
) -> WeeklyMonitoring:
    """The weekly checks of one scored week (``bundle``: the churn champion; ``volumes``:
    :func:`features.volumes.source_volumes`)."""
    from models.performance_estimate import estimate_performance

    drift = drift_against_model(bundle, features, predictions, thresholds=thresholds, model=model)
    checks = volume_checks(volumes, thresholds=thresholds, accounts=len(features))
    estimate = None
    if "churn_probability" in predictions and predictions["churn_probability"].notna().any():
        estimate = estimate_performance(
            predictions["churn_probability"].dropna().to_numpy(dtype=float),
            samples=thresholds.estimate_samples,
            level=thresholds.estimate_level,
            seed=seed,
        )
    return WeeklyMonitoring(drift=drift, volumes=checks, estimate=estimate)


def write_monitoring(result: WeeklyMonitoring, directory: Path, run_date: date) -> dict[str, Path]:
    """Keep one run's checks as CSV files named by run date (``drift-``, ``score-drift-``,
    ``volumes-``, ``estimate-``) and a ``monitoring-<run_date>.json`` summary; rewriting a run
    date replaces its files. Returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    day = run_date.isoformat()
    paths: dict[str, Path] = {}
    tables = {
        "drift": result.drift.features,
        "score-drift": result.drift.scores,
        "volumes": result.volumes,
        "estimate": None if result.estimate is None else result.estimate.table(),
    }
    for name, table in tables.items():
        path = directory / f"{name}-{day}.csv"
        if table is not None:
            table.assign(run_date=day).to_csv(path, index=False)
            paths[name] = path
        elif path.exists():
            path.unlink()
    summary = {
        "run_date": day,
        "summary": result.summary(),
        "warnings": result.warnings(),
        **result.run_record(),
    }
    paths["summary"] = directory / f"monitoring-{day}.json"
    paths["summary"].write_text(json.dumps(summary, indent=2, default=str))
    return paths


def read_monitoring(directory: Path, run_date: date) -> dict[str, Any]:
    """What :func:`write_monitoring` kept for ``run_date`` (for the report, which then needs no
    feature build of its own): frames ``drift``, ``score-drift``, ``volumes``, ``estimate``
    (None when absent) and the ``summary`` dict (None before the run)."""
    day = run_date.isoformat()
    out: dict[str, Any] = {}
    for name in ("drift", "score-drift", "volumes", "estimate"):
        path = Path(directory) / f"{name}-{day}.csv"
        out[name] = pd.read_csv(path, keep_default_na=True) if path.exists() else None
    summary = Path(directory) / f"monitoring-{day}.json"
    out["summary"] = json.loads(summary.read_text()) if summary.exists() else None
    return out


def estimate_history(directory: Path, *, until: date | None = None) -> pd.DataFrame | None:
    """Every weekly run's label-free estimate kept under ``directory`` (run dates up to
    ``until``), one row per run date and metric, for
    :func:`models.performance_estimate.estimate_vs_realised`; None before any."""
    frames = [pd.read_csv(p) for p in sorted(Path(directory).glob("estimate-*.csv"))]
    if not frames:
        return None
    table = pd.concat(frames, ignore_index=True)
    table["run_date"] = pd.to_datetime(table["run_date"])
    if until is not None:
        table = table[table["run_date"] <= pd.Timestamp(until)]
    return table.reset_index(drop=True)
