"""The training frame: features joined to labels, censored rows dropped, the feature list explicit.

Targets map onto label columns and onto the ARR that the top-decile "ARR captured" metric counts:

| target         | label column     | value column (fallback)                                |
|----------------|------------------|--------------------------------------------------------|
| churn          | churned          | churned_arr (churned * arr_at_as_of)                   |
| churn_inactive | churned_inactive | churned_inactive_value (churned_inactive * value)      |
| expansion      | expanded         | expansion_arr (max(arr_at_horizon - arr_at_as_of, 0))  |
| contraction    | contracted       | contracted_arr (max(arr_at_as_of - arr_at_horizon, 0)) |

The value of an inactivity churn is ``arr_at_as_of``, or where that is 0 (usage-priced and
transactional accounts) ``quantity_90d``, the summed quantity of the 90 days up to as_of.
``quantity_90d`` is a feature (seen at or before as_of), so the value never looks ahead; without
it (no usage table) a zero-ARR account's value is 0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY_COLUMNS = ("account_id", "as_of")
LABEL_COLUMNS = ("churned", "expanded", "contracted", "churned_inactive")
# The only label-side columns a training frame carries: the targets and the ARR they move.
OUTCOME_COLUMNS = (
    *LABEL_COLUMNS,
    "arr_at_as_of",
    "arr_at_horizon",
    "churned_arr",
    "expansion_arr",
    "contracted_arr",
)
# Columns that describe the outcome, identify the account or only serve reporting: never features.
NON_FEATURE_COLUMNS = frozenset(
    {
        *KEY_COLUMNS,
        *LABEL_COLUMNS,
        "arr_at_as_of",
        "arr_at_horizon",
        "churned_arr",
        "expansion_arr",
        "contracted_arr",
        "churned_inactive_value",
        "label_window_end",
        "csm_owner",
        "name",
        "account_name",
    }
)
SEGMENT_COLUMN = "segment"


@dataclass(frozen=True)
class TargetSpec:
    name: str
    label: str
    value: str


TARGET_SPECS = {
    "churn": TargetSpec("churn", "churned", "churned_arr"),
    "churn_inactive": TargetSpec("churn_inactive", "churned_inactive", "churned_inactive_value"),
    "expansion": TargetSpec("expansion", "expanded", "expansion_arr"),
    "contraction": TargetSpec("contraction", "contracted", "contracted_arr"),
}


def target_spec(target: str) -> TargetSpec:
    if target not in TARGET_SPECS:
        raise ValueError(f"unknown target {target!r}; choose from {sorted(TARGET_SPECS)}")
    return TARGET_SPECS[target]


def matured(run_dates: pd.Series, *, by: pd.Timestamp, maturity_days: int) -> pd.Series:
    """Whether each run date's label is fully known at ``by``: ``run_date + maturity_days <=
    by``, with ``maturity_days`` = lead + horizon + grace
    (``features.config.LabelConfig.maturity_days``; a renewal signed within grace after the
    window still counts, so the outcome is only final once grace has passed too). The one copy
    of the label-maturity rule: realised performance, the forecast's level correction and the
    report's matured outcomes all use it."""
    return pd.to_datetime(run_dates) + pd.Timedelta(days=maturity_days) <= pd.Timestamp(by)


def training_frame(features: pd.DataFrame, labels: pd.DataFrame, *, target: str) -> pd.DataFrame:
    """Features joined to labels on ``(account_id, as_of)``; rows whose label for ``target`` is
    censored (NA) are dropped. Adds the value column the ARR-captured metric uses. Sorted by
    ``as_of, account_id``."""
    spec = target_spec(target)
    for name, frame in (("features", features), ("labels", labels)):
        missing = [c for c in (*KEY_COLUMNS,) if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} frame lacks key column(s) {missing}")
    if spec.label not in labels.columns:
        raise ValueError(f"labels frame lacks column {spec.label!r} needed for target {target!r}")
    _check_unique_keys(features, "features")
    _check_unique_keys(labels, "labels")
    # Keep only known outcome columns: any other column of the labels frame (a new label, a
    # window bound) must never reach the model as a feature.
    label_cols = [
        c
        for c in labels.columns
        if c in KEY_COLUMNS or (c in OUTCOME_COLUMNS and c not in features.columns)
    ]
    joined = features.merge(labels[label_cols], on=list(KEY_COLUMNS), how="inner")
    joined = joined[joined[spec.label].notna()].copy()
    joined[spec.label] = joined[spec.label].astype(int)
    joined[spec.value] = target_value(joined, target)
    return joined.sort_values(["as_of", "account_id"], kind="stable").reset_index(drop=True)


def _check_unique_keys(frame: pd.DataFrame, name: str) -> None:
    dup = frame.duplicated(list(KEY_COLUMNS), keep=False)
    if dup.any():
        examples = frame.loc[dup, list(KEY_COLUMNS)].head(3).to_dict("records")
        raise ValueError(
            f"{name} frame has {int(dup.sum())} rows with duplicate (account_id, as_of), "
            f"e.g. {examples}"
        )


def target_value(frame: pd.DataFrame, target: str) -> pd.Series:
    """ARR at stake per row for ``target`` (0 where the event did not happen)."""
    spec = target_spec(target)
    if spec.value in frame.columns:
        return frame[spec.value].astype(float).fillna(0.0)
    if "arr_at_as_of" not in frame.columns:
        raise ValueError(
            f"cannot compute {spec.value!r} for target {target!r}: the frame has neither "
            f"{spec.value!r} nor 'arr_at_as_of'"
        )
    start = frame["arr_at_as_of"].astype(float).fillna(0.0)
    event = frame[spec.label].astype(float).fillna(0.0)
    if target == "churn":
        return event * start
    if target == "churn_inactive":
        quantity = frame.get("quantity_90d", pd.Series(0.0, index=frame.index))
        return event * start.where(start > 0, quantity.astype(float).fillna(0.0))
    if "arr_at_horizon" not in frame.columns:
        raise ValueError(
            f"cannot compute {spec.value!r} for target {target!r}: the frame has neither "
            f"{spec.value!r} nor 'arr_at_horizon'"
        )
    end = frame["arr_at_horizon"].astype(float).fillna(0.0)
    if target == "expansion":
        return event * np.maximum(end - start, 0.0)
    return event * np.maximum(start - end, 0.0)


def feature_columns(frame: pd.DataFrame, *, exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Every column except keys, labels, label values and reporting columns (and ``exclude``),
    in frame order. Raises if a remaining column is neither numeric, boolean nor text."""
    excluded = NON_FEATURE_COLUMNS | set(exclude)
    names = [c for c in frame.columns if c not in excluded]
    bad = [
        f"{c} ({frame[c].dtype})"
        for c in names
        if not (
            pd.api.types.is_numeric_dtype(frame[c])
            or pd.api.types.is_bool_dtype(frame[c])
            or _is_text(frame[c])
        )
    ]
    if bad:
        raise ValueError(
            f"columns {bad} are neither numeric nor categorical text; convert them in the "
            "feature SQL or list them in model.exclude_features"
        )
    if not names:
        raise ValueError("the training frame has no feature columns")
    return names


def categorical_columns(frame: pd.DataFrame, feature_names: list[str]) -> list[str]:
    return [c for c in feature_names if _is_text(frame[c])]


def _is_text(values: pd.Series) -> bool:
    return (
        pd.api.types.is_string_dtype(values)
        or isinstance(values.dtype, pd.CategoricalDtype)
        or values.dtype == object
    )


def categorical_levels(frame: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    """Sorted observed levels of each categorical column (the bundle fixes them for scoring)."""
    return {c: sorted({str(v) for v in frame[c].dropna().unique()}) for c in columns}


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A SHA-256 over the frame's rows and columns, stable across runs for identical data."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update("|".join(map(str, frame.columns)).encode())
    return digest.hexdigest()
