"""The model bundle: everything fitted for one target travels together, saved as one directory.

The bundle owns the one path from a feature frame to the model matrix (:meth:`ModelBundle.prepare`),
so training, evaluation, batch scoring and explanations all see the same columns, dtypes and
categorical levels.

On disk (``save``/``load``)::

    <directory>/model.txt          LightGBM text model (booster.save_model)
    <directory>/bundle.json        target, feature list, categorical levels, window, metrics,
                                   params, churnlens and library versions, and the SHA-256 of
                                   every other file of the bundle (``artifacts_sha256``)
    <directory>/calibrator.json    the fitted calibrator as plain numbers (absent when there is
                                   none; models.calibration.calibrator_to_state, never a pickle)
    <directory>/drift_reference.json  bins per feature (and of the scores) over the training
                                   window, what weekly drift is measured against
                                   (models.monitoring.DriftReference; absent in bundles saved
                                   before it existed, which then have no drift reference)

:meth:`ModelBundle.load` refuses a bundle before anything in it is parsed when a file's hash
differs from the recorded one (or from hashes recorded elsewhere, such as the registry's), when
the folder holds a pickle (no current format uses one), when ``model.txt`` is not a complete
LightGBM model file (LightGBM crashes the process on a truncated one), or when a library whose
objects it rebuilds differs in major/minor version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
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
DRIFT_REFERENCE_FILE = "drift_reference.json"
EXPECTED_VALUE_COLUMN = "_expected_value"
_TRACKED_LIBRARIES = ("lightgbm", "scikit-learn", "numpy", "pandas")
MANIFEST_KEY = "artifacts_sha256"
# Files in these formats run code when loaded; a bundle holds none of them.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".cloudpickle", ".pt")


class FeatureMismatchError(ValueError):
    """The frame handed to a model does not carry the features the model was trained with."""


class LibraryVersionError(RuntimeError):
    """A saved bundle was written by a major/minor version, other than the installed one, of a
    library whose objects loading it rebuilds."""


class ArtifactIntegrityError(LibraryVersionError):
    """A bundle's files are not the ones recorded when it was saved (changed, missing, extra,
    truncated, or a pickle), so it is refused before anything in it is parsed or unpickled.

    A :class:`LibraryVersionError`, so every caller that refuses a bundle it cannot load safely
    (the CLI's one-line message, the flows' no-retry rule) refuses this one the same way."""


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


def check_library_versions(
    recorded: dict[str, str],
    *,
    loaded: frozenset[str] | set[str] = frozenset({"lightgbm"}),
    strict: bool = True,
    source: str = "model bundle",
) -> list[str]:
    """Compare recorded library versions with the installed ones.

    A major/minor difference of a library in ``loaded`` (whose objects loading rebuilds) raises
    :class:`LibraryVersionError`, as does a ``loaded`` library with no recorded version (both
    only warn when ``strict`` is False); any other major/minor difference warns. ``source``
    names the bundle in messages. Returns the warning messages.
    """
    installed = current_library_versions()
    messages: list[str] = []
    for name in sorted(set(recorded) | set(loaded)):
        was, now = recorded.get(name), installed.get(name)
        if now is None or (was is not None and _major_minor(was) == _major_minor(now)):
            continue
        if was is None:
            message = f"{source}: records no {name} version ({now} is installed)"
            fix = "retrain the model"
        else:
            message = f"{source}: saved with {name} {was}, but {now} is installed"
            fix = f"retrain the model or install {name} {'.'.join(_major_minor(was))}.x"
        if name in loaded and strict:
            raise LibraryVersionError(
                f"{message}; its {name} objects are not loaded across versions: {fix}"
            )
        warnings.warn(message, stacklevel=2)
        messages.append(message)
    return messages


def _libraries_loaded(meta: dict[str, Any]) -> frozenset[str]:
    """Libraries whose own objects are rebuilt from the bundle's files: only LightGBM's booster
    (the calibrator and the value tables are plain numbers in JSON)."""
    return frozenset({"lightgbm"})


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_hashes(directory: Path | str, *, include_meta: bool = False) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` by its relative POSIX path; ``bundle.json``
    only with ``include_meta`` (it holds the other files' hashes)."""
    directory = Path(directory)
    return {
        path.relative_to(directory).as_posix(): file_sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and (include_meta or path.relative_to(directory).as_posix() != META_FILE)
    }


def verify_artifacts(
    directory: Path | str,
    expected: dict[str, str],
    *,
    source: str,
    include_meta: bool = False,
) -> None:
    """Raise :class:`ArtifactIntegrityError` unless the files under ``directory`` are exactly
    ``expected`` (relative path -> SHA-256): none changed, none missing, none added."""
    found = artifact_hashes(directory, include_meta=include_meta)
    problems = [
        f"{name} changed (recorded sha256 {expected[name][:12]}..., found {found[name][:12]}...)"
        for name in sorted(set(expected) & set(found))
        if found[name] != expected[name]
    ]
    problems += [f"{name} is missing" for name in sorted(set(expected) - set(found))]
    problems += [f"{name} was not part of it" for name in sorted(set(found) - set(expected))]
    if problems:
        raise ArtifactIntegrityError(
            f"{source}: the bundle's files differ from the SHA-256 recorded when it was saved: "
            f"{'; '.join(problems)}. It may have been damaged or tampered with and was not "
            "loaded: restore the artifact or retrain the model"
        )


def refuse_pickles(directory: Path | str, *, source: str) -> None:
    """Raise :class:`ArtifactIntegrityError` when ``directory`` holds a pickle-format file
    (which would run code when loaded) other than the current format's calibrator file."""
    directory = Path(directory)
    pickles = sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.suffix.lower() in PICKLE_SUFFIXES
        and path.relative_to(directory).as_posix() != CALIBRATOR_FILE
    )
    if pickles:
        raise ArtifactIntegrityError(
            f"{source}: the bundle holds pickle file(s) {pickles}, which can run code when "
            "loaded and are not part of the current bundle format; it was not loaded: the "
            "model must be retrained with this churnlens version"
        )


_MODEL_HEADER = b"tree\nversion="
_FIRST_TREE = b"\nTree=0\n"
_TREE_SIZES = re.compile(rb"^tree_sizes=([0-9 ]*)$", re.MULTILINE)
_TREE_END = re.compile(rb"\n*end of trees\n")
_TRAILER = re.compile(rb"\nend of parameters\n\npandas_categorical:[^\n]*\n\Z")


def check_model_file(path: Path | str, *, source: str) -> int:
    """Check that ``path`` is a complete LightGBM text model before LightGBM parses it
    (LightGBM aborts or segfaults the process on a truncated or damaged file): the header, a
    ``Tree=i`` block at each offset its ``tree_sizes`` give, ``end of trees`` right after the
    last one (so the tree count matches the header), and the ``end of parameters`` /
    ``pandas_categorical`` trailer that ``Booster.save_model`` writes. Returns the number of
    trees; raises :class:`ArtifactIntegrityError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise _bad_model_file(path, source, "the file is missing")
    data = path.read_bytes()
    if not data.startswith(_MODEL_HEADER):
        raise _bad_model_file(path, source, "it does not start with a LightGBM model header")
    first = data.find(_FIRST_TREE) + 1
    sizes = _TREE_SIZES.search(data, 0, first or len(data))
    if sizes is None:
        raise _bad_model_file(path, source, "its header lists no tree_sizes")
    tree_sizes = [int(size) for size in sizes.group(1).split()]
    offset = first
    for index, size in enumerate(tree_sizes):
        if not first or not data.startswith(f"Tree={index}\n".encode(), offset):
            reason = f"tree {index} of {len(tree_sizes)} is not where its header puts it"
            raise _bad_model_file(path, source, f"it is truncated or damaged: {reason}")
        offset += size
    if _TREE_END.match(data, offset) is None:
        reason = f"no end of trees right after the {len(tree_sizes)} trees its header lists"
        raise _bad_model_file(path, source, f"it is truncated or damaged: {reason}")
    if _TRAILER.search(data, offset) is None:
        reason = "the end of parameters / pandas_categorical trailer is missing"
        raise _bad_model_file(path, source, f"it is truncated: {reason}")
    return len(tree_sizes)


def _bad_model_file(path: Path, source: str, reason: str) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(
        f"{source}: {path.name} is not a complete LightGBM model file ({reason}); it was not "
        "parsed: restore the artifact or retrain the model"
    )


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
    # the training window's bins (models.monitoring.DriftReference.to_state); None: not stored
    drift_reference: dict[str, Any] | None = None

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
        reference_path = directory / DRIFT_REFERENCE_FILE
        if self.drift_reference is not None:
            reference_path.write_text(json.dumps(self.drift_reference, default=float))
        elif reference_path.exists():
            reference_path.unlink()
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
            MANIFEST_KEY: artifact_hashes(directory),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(
        cls,
        directory: Path | str,
        *,
        strict_versions: bool = True,
        source: str | None = None,
        expected_sha256: dict[str, str] | None = None,
    ) -> ModelBundle:
        """Read a bundle written by :meth:`save`, after checking, before anything is parsed or
        unpickled, its files against ``expected_sha256`` (every file including ``bundle.json``,
        recorded outside the folder, e.g. by the registry) and its own manifest, that it holds no
        stray pickle, that ``model.txt`` is complete, and the recorded library versions.
        ``source`` names the bundle in messages (``churnlens-churn v3 at <uri>``)."""
        directory = Path(directory)
        source = source or str(directory)
        meta = _verified_meta(directory, source=source, expected_sha256=expected_sha256)
        check_library_versions(
            meta["library_versions"],
            loaded=_libraries_loaded(meta),
            strict=strict_versions,
            source=source,
        )
        check_model_file(directory / MODEL_FILE, source=source)
        booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        if list(booster.feature_name()) != list(meta["feature_names"]):
            raise FeatureMismatchError(
                f"{source}: model file features {booster.feature_name()} differ from the "
                f"bundle's feature list {meta['feature_names']}"
            )
        calibrator_path = directory / CALIBRATOR_FILE
        calibrator = (
            calibrator_from_state(json.loads(calibrator_path.read_text()))
            if meta["calibration"]
            else None
        )
        reference_path = directory / DRIFT_REFERENCE_FILE
        reference = json.loads(reference_path.read_text()) if reference_path.is_file() else None
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
            drift_reference=reference,
        )


def _verified_meta(
    directory: Path, *, source: str, expected_sha256: dict[str, str] | None
) -> dict[str, Any]:
    """``bundle.json`` of a bundle folder whose files all match the recorded SHA-256 (the
    caller's ``expected_sha256`` first, then the bundle's own manifest) and hold no pickle
    outside the current format."""
    if not directory.is_dir():
        raise ArtifactIntegrityError(f"{source}: the bundle folder {directory} does not exist")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise ArtifactIntegrityError(
            f"{source}: no model bundle in {directory}: {META_FILE} is missing"
        )
    refuse_pickles(directory, source=source)
    if expected_sha256 is not None:
        verify_artifacts(directory, expected_sha256, source=source, include_meta=True)
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactIntegrityError(f"{source}: {META_FILE} is not valid JSON ({exc})") from None
    if meta.get("bundle_format") != BUNDLE_FORMAT:
        raise ValueError(
            f"{source}: {META_FILE} has bundle_format {meta.get('bundle_format')!r}, "
            f"expected {BUNDLE_FORMAT}"
        )
    manifest = meta.get(MANIFEST_KEY)
    if not isinstance(manifest, dict) or MODEL_FILE not in manifest:
        raise ArtifactIntegrityError(
            f"{source}: {META_FILE} records no SHA-256 of the bundle's files (saved by an older "
            "churnlens), so its files cannot be checked and it was not loaded: retrain the model"
        )
    verify_artifacts(directory, manifest, source=source)
    return meta
