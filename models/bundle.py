"""The model bundle: everything fitted for one target travels together, saved as one directory.

The bundle owns the one path from a feature frame to the model matrix (:meth:`ModelBundle.prepare`),
so training, evaluation, batch scoring and explanations all see the same columns, dtypes and
categorical levels.

On disk (``save``/``load``)::

    <directory>/model.txt          LightGBM text model (booster.save_model)
    <directory>/bundle.json        target, feature list, categorical levels, window, metrics,
                                   params, churnlens and library versions
    <directory>/calibrator.json    the fitted calibrator as plain numbers (absent when there is
                                   none; models.calibration.calibrator_to_state, never a pickle)
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.calibration import (
    Calibrator,
    apply_calibrator,
    calibrator_from_state,
    calibrator_to_state,
)

BUNDLE_FORMAT = 1
MODEL_FILE = "model.txt"
META_FILE = "bundle.json"
CALIBRATOR_FILE = "calibrator.json"
EXPECTED_VALUE_COLUMN = "_expected_value"
_TRACKED_LIBRARIES = ("lightgbm", "scikit-learn", "numpy", "pandas")


class FeatureMismatchError(ValueError):
    """The frame handed to a model does not carry the features the model was trained with."""


class LibraryVersionError(RuntimeError):
    """A saved bundle was written by a LightGBM major/minor version other than the installed one."""


def churnlens_version() -> str:
    try:
        return importlib.metadata.version("churnlens")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def current_library_versions() -> dict[str, str]:
    """Versions of the libraries whose formats the bundle depends on, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in _TRACKED_LIBRARIES:
        versions[name] = importlib.metadata.version(name)
    return versions


def check_library_versions(recorded: dict[str, str], *, strict: bool = True) -> list[str]:
    """Compare recorded library versions with the installed ones.

    A LightGBM major/minor difference raises :class:`LibraryVersionError` (a warning when
    ``strict`` is False); any other major/minor difference warns. Returns the warning messages.
    """
    installed = current_library_versions()
    messages: list[str] = []
    for name, was in sorted(recorded.items()):
        now = installed.get(name)
        if now is None or _major_minor(was) == _major_minor(now):
            continue
        message = f"model bundle was saved with {name} {was}, but {now} is installed"
        if name == "lightgbm" and strict:
            raise LibraryVersionError(
                message + ": retrain the model or install the recorded LightGBM version"
            )
        warnings.warn(message, stacklevel=2)
        messages.append(message)
    return messages


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def prepare_matrix(
    frame: pd.DataFrame, feature_names: list[str], categorical_levels: dict[str, list[str]]
) -> pd.DataFrame:
    """Select exactly ``feature_names`` in order; categoricals get the fixed levels (an unseen
    level becomes NaN); every other feature becomes float64 (missing -> NaN). Index is kept."""
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise FeatureMismatchError(
            f"the frame lacks {len(missing)} feature column(s) the model was trained with: "
            f"{missing}; rebuild features with the same feature groups as in training"
        )
    columns: dict[str, Any] = {}
    for name in feature_names:
        if name in categorical_levels:
            columns[name] = _as_categorical(frame[name], categorical_levels[name])
        else:
            columns[name] = _as_float(frame[name])
    return pd.DataFrame(columns, index=frame.index)


def _as_categorical(values: pd.Series, levels: list[str]) -> pd.Categorical:
    text = values.astype("string")
    return pd.Categorical(text.where(text.isin(levels)), categories=levels)


def _as_float(values: pd.Series) -> np.ndarray:
    if values.dtype == bool or pd.api.types.is_bool_dtype(values):
        values = values.astype("Float64")
    try:
        return (
            pd.to_numeric(values, errors="raise")
            .astype("Float64")
            .to_numpy(dtype=float, na_value=np.nan)
        )
    except (ValueError, TypeError) as exc:
        bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        raise FeatureMismatchError(
            f"feature column {values.name!r} should be numeric but holds {bad.head(3).tolist()} "
            f"({len(bad)} non-numeric rows)"
        ) from exc


@dataclass
class ModelBundle:
    """A trained model for one target ("churn" | "expansion" | ...) and all it needs to score."""

    target: str
    booster: lgb.Booster
    feature_names: list[str]
    categorical_levels: dict[str, list[str]]
    calibrator: Calibrator | None
    train_window: tuple[datetime, datetime]
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    churnlens_version: str = field(default_factory=churnlens_version)
    library_versions: dict[str, str] = field(default_factory=current_library_versions)
    # ARR-gain ratios fitted on the training rows (models.value); expansion bundles only.
    outcome_value: dict[str, dict[str, float]] = field(default_factory=dict)

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model matrix for ``frame``: the one path used in training and scoring."""
        return prepare_matrix(frame, self.feature_names, self.categorical_levels)

    def predict_margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw log-odds from the booster (uncalibrated)."""
        return np.asarray(self.booster.predict(self.prepare(frame), raw_score=True), dtype=float)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the target event within the label horizon."""
        return apply_calibrator(self.calibrator, self.predict_margin(frame))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Exact TreeSHAP values in log-odds, one column per feature plus ``_expected_value``;
        each row sums to :meth:`predict_margin`."""
        values = self.booster.predict(self.prepare(frame), pred_contrib=True)
        columns = [*self.feature_names, EXPECTED_VALUE_COLUMN]
        return pd.DataFrame(np.asarray(values, dtype=float), columns=columns, index=frame.index)

    def save(self, directory: Path | str) -> Path:
        """Write the bundle into ``directory`` (created if needed); returns the directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / MODEL_FILE))
        calibrator_path = directory / CALIBRATOR_FILE
        if self.calibrator is not None:
            calibrator_path.write_text(json.dumps(calibrator_to_state(self.calibrator)))
        elif calibrator_path.exists():
            calibrator_path.unlink()
        meta = {
            "bundle_format": BUNDLE_FORMAT,
            "target": self.target,
            "feature_names": list(self.feature_names),
            "categorical_levels": {k: list(v) for k, v in self.categorical_levels.items()},
            "calibration": None if self.calibrator is None else self.calibrator.method,
            "train_window": [t.isoformat() for t in self.train_window],
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "params": self.params,
            "churnlens_version": self.churnlens_version,
            "library_versions": self.library_versions,
            "outcome_value": self.outcome_value,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path | str, *, strict_versions: bool = True) -> ModelBundle:
        """Read a bundle written by :meth:`save`; checks the recorded library versions."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"no model bundle in {directory}: {META_FILE} is missing")
        meta = json.loads(meta_path.read_text())
        if meta.get("bundle_format") != BUNDLE_FORMAT:
            raise ValueError(
                f"{meta_path}: bundle_format {meta.get('bundle_format')!r}, "
                f"expected {BUNDLE_FORMAT}"
            )
        check_library_versions(meta["library_versions"], strict=strict_versions)
        booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        if list(booster.feature_name()) != list(meta["feature_names"]):
            raise FeatureMismatchError(
                f"{directory}: model file features {booster.feature_name()} differ from the "
                f"bundle's feature list {meta['feature_names']}"
            )
        calibrator_path = directory / CALIBRATOR_FILE
        calibrator = (
            calibrator_from_state(json.loads(calibrator_path.read_text()))
            if meta["calibration"]
            else None
        )
        start, end = (datetime.fromisoformat(t) for t in meta["train_window"])
        return cls(
            target=meta["target"],
            booster=booster,
            feature_names=list(meta["feature_names"]),
            categorical_levels={k: list(v) for k, v in meta["categorical_levels"].items()},
            calibrator=calibrator,
            train_window=(start, end),
            metrics=dict(meta["metrics"]),
            params=dict(meta["params"]),
            churnlens_version=meta["churnlens_version"],
            library_versions=dict(meta["library_versions"]),
            outcome_value=dict(meta.get("outcome_value", {})),
        )
