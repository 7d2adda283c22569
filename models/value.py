"""How much ARR an account is expected to gain, learned from the model's own training rows.

The expansion model gives P(expand within the horizon); the weekly list and the NDR forecast
need an *amount*. A fixed uplift misses it (docs/decisions/0005-expansion-amount-ratios.md):
the size of an expansion differs by segment, and ARR also grows on renewals that stay below the
expansion threshold (price uplifts), which the realised ARR bridge counts as expansion.

So the expansion bundle carries two ratios per segment, fitted on the labelled training rows:

- ``if_expanded``: sum of ARR gained / sum of ARR at ``as_of`` over rows that expanded;
- ``if_retained``: the same over rows retained without expanding (gains only, as the ARR
  bridge counts them);

and the expected gain of an account is
``ARR x (p_expand x if_expanded + max(0, 1 - p_expand - p_churn) x if_retained)``.
Ratios of sums weight big accounts as the ARR totals do. A segment with few rows is shrunk
towards the overall ratio with ``prior_rows`` pseudo-rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

OVERALL = "*"
KINDS = ("if_expanded", "if_retained")


def fit_expansion_value(
    dataset: pd.DataFrame, *, by: str = "segment", prior_rows: int = 20
) -> dict[str, dict[str, float]]:
    """``{"if_expanded": {group: ratio, "*": ratio}, "if_retained": {...}}`` from labelled rows.

    Rows need ``expanded``, ``churned``, ``arr_at_as_of`` and ``arr_at_horizon``; rows whose
    ``expanded`` label is missing (censored) or whose starting ARR is not positive are ignored.
    """
    return _fit_change_value(dataset, label="expanded", gain_sign=1.0, by=by, prior_rows=prior_rows)


def _fit_change_value(
    dataset: pd.DataFrame, *, label: str, gain_sign: float, by: str, prior_rows: int
) -> dict[str, dict[str, float]]:
    """Ratios of the ARR change ``gain_sign x (end - start)`` (clipped at 0) to the ARR at
    ``as_of``, over rows with the ``label`` event (``if_<label>``) and over rows retained
    without it (``if_retained``)."""
    needed = {label, "churned", "arr_at_as_of", "arr_at_horizon"}
    missing = needed - set(dataset.columns)
    if missing:
        raise ValueError(f"training rows lack the label column(s) {sorted(missing)}")
    start = pd.to_numeric(dataset["arr_at_as_of"], errors="coerce").to_numpy(dtype=float)
    end = pd.to_numeric(dataset["arr_at_horizon"], errors="coerce").to_numpy(dtype=float)
    labelled = dataset[label].notna().to_numpy() & (start > 0)
    happened = dataset[label].astype("boolean").fillna(False).to_numpy(dtype=bool)
    churned = dataset["churned"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    change = np.clip(np.nan_to_num(gain_sign * (end - start), nan=0.0), 0.0, None)
    groups = (
        dataset[by].astype("string").fillna("unknown").to_numpy()
        if by in dataset.columns
        else np.full(len(dataset), OVERALL)
    )
    masks = {f"if_{label}": labelled & happened, "if_retained": labelled & ~happened & ~churned}
    return {
        kind: _ratios(change[mask], start[mask], groups[mask], prior_rows)
        for kind, mask in masks.items()
    }


def _ratios(
    gain: np.ndarray, start: np.ndarray, groups: np.ndarray, prior_rows: int
) -> dict[str, float]:
    if len(gain) == 0 or start.sum() <= 0:
        return {}
    overall = float(gain.sum() / start.sum())
    out = {OVERALL: overall}
    frame = pd.DataFrame({"gain": gain, "start": start, "group": groups})
    for key, part in frame.groupby("group", sort=True):
        n, ratio = len(part), float(part["gain"].sum() / part["start"].sum())
        out[str(key)] = (n * ratio + prior_rows * overall) / (n + prior_rows)
    return out


def ratio_for(groups: pd.Series, ratios: Mapping[str, float], *, default: float) -> np.ndarray:
    """Each row's ratio: its group's, else the overall one, else ``default``."""
    fallback = ratios.get(OVERALL, default)
    keys = groups.astype("string").fillna("unknown")
    return keys.map(lambda g: ratios.get(g, fallback)).to_numpy(dtype=float)


def expected_gain(
    arr: np.ndarray,
    groups: pd.Series,
    *,
    expansion_probability: np.ndarray,
    churn_probability: np.ndarray,
    value: Mapping[str, Mapping[str, float]],
    default_uplift: float,
) -> np.ndarray:
    """Expected ARR gained over the horizon per account (see the module docstring).

    Without fitted ratios (an old bundle) this is ``p_expand x ARR x default_uplift``."""
    if_expanded = ratio_for(groups, value.get("if_expanded", {}), default=default_uplift)
    if_retained = ratio_for(groups, value.get("if_retained", {}), default=0.0)
    stay_flat = np.clip(1.0 - expansion_probability - churn_probability, 0.0, None)
    return arr * (expansion_probability * if_expanded + stay_flat * if_retained)


# --- contraction ------------------------------------------------------------------------------

CONTRACTION_KINDS = ("if_contracted", "if_retained")


def fit_contraction_value(
    dataset: pd.DataFrame, *, by: str = "segment", prior_rows: int = 20
) -> dict[str, dict[str, float]]:
    """The contraction bundle's ARR-loss ratios, the mirror of :func:`fit_expansion_value`:
    ``if_contracted`` = sum of ARR lost / sum of ARR at ``as_of`` over rows that contracted;
    ``if_retained`` = the same over rows retained without contracting (drops below the
    contraction threshold, which the ARR bridge counts as contraction all the same)."""
    return _fit_change_value(
        dataset, label="contracted", gain_sign=-1.0, by=by, prior_rows=prior_rows
    )


def expected_loss(
    arr: np.ndarray,
    groups: pd.Series,
    *,
    contraction_probability: np.ndarray,
    churn_probability: np.ndarray,
    value: Mapping[str, Mapping[str, float]],
) -> np.ndarray:
    """Expected ARR lost to contraction over the horizon per account:
    ``ARR x (p_contract x if_contracted + max(0, 1 - p_contract - p_churn) x if_retained)``.
    A bundle without fitted ratios contributes nothing (no amount to multiply by)."""
    if_contracted = ratio_for(groups, value.get("if_contracted", {}), default=0.0)
    if_retained = ratio_for(groups, value.get("if_retained", {}), default=0.0)
    stay = np.clip(1.0 - contraction_probability - churn_probability, 0.0, None)
    return arr * (contraction_probability * if_contracted + stay * if_retained)
