"""What changed since the previous run: accounts new on the list, risk up or down by more than
the configured threshold, and churn reasons that were not there before."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from serving.config import ServingConfig
from serving.playbook import band_edges, band_labels, risk_band_index
from serving.reasons import feature_label

CHANGE_COLUMNS = [
    "account_id",
    "name",
    "csm_owner",
    "segment",
    "arr",
    "churn_probability",
    "previous_probability",
    "probability_change",
    "churn_tier",
    "previous_tier",
    "new_on_list",
    "risk_up",
    "risk_down",
    "new_reasons",
    "change",
]


def week_over_week(
    current: pd.DataFrame,
    previous: pd.DataFrame | None,
    *,
    config: ServingConfig,
    bands: Sequence[float] | None = None,
) -> pd.DataFrame:
    """One row per account with at least one change (columns :data:`CHANGE_COLUMNS`), biggest
    probability moves first. Without a previous run there is nothing to compare: empty frame.

    ``probability_change`` is in probability points (0.12 = +12 points); an account absent from
    the previous run counts as new on the list when its tier is a listed one. With ``bands``
    (``risk_list.risk_bands``) the text names the risk bands the lists show ("20–30% ->
    50–70%"), else whole percentages that never read 0 % or 100 %."""
    if previous is None or previous.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CHANGE_COLUMNS})
    prev = previous.set_index("account_id")
    merged = current.assign(
        previous_probability=current["account_id"].map(prev["churn_probability"]),
        previous_tier=current["account_id"].map(prev["churn_tier"]),
        previous_features=current["account_id"].map(prev["churn_reason_features"]),
    )
    listed = config.changes.list_tiers
    threshold = config.changes.risk_change_threshold
    delta = merged["churn_probability"] - merged["previous_probability"]
    merged["probability_change"] = delta
    merged["new_on_list"] = merged["churn_tier"].isin(listed) & ~merged["previous_tier"].isin(
        listed
    )
    merged["risk_up"] = (delta > threshold).fillna(False).astype(bool)
    merged["risk_down"] = (delta < -threshold).fillna(False).astype(bool)
    merged["new_reasons"] = _new_reasons(merged)
    changed = merged["new_on_list"] | merged["risk_up"] | merged["risk_down"]
    changed |= merged["new_reasons"].notna() & merged["churn_tier"].isin(listed)
    out = merged[changed].copy()
    edges = None if bands is None else band_edges(bands, config.tiers)
    out["change"] = _describe(out, edges)
    order = out["probability_change"].abs().fillna(np.inf)
    out = out.assign(_order=order).sort_values("_order", ascending=False, kind="stable")
    return out[CHANGE_COLUMNS].reset_index(drop=True)


def _split(features: object) -> list[str]:
    if features is None or (isinstance(features, float) and np.isnan(features)):
        return []
    return [f for f in str(features).split("|") if f]


def _new_reasons(merged: pd.DataFrame) -> pd.Series:
    """Churn-raising reason features present now but not in the previous run (as labels)."""
    out = []
    for now, before, seen in zip(
        merged["churn_reason_features"],
        merged["previous_features"],
        merged["previous_tier"].notna(),
        strict=True,
    ):
        fresh = [f for f in _split(now) if f not in set(_split(before))] if seen else []
        out.append(", ".join(feature_label(f) for f in fresh) or None)
    return pd.Series(out, index=merged.index, dtype=object)


def share(probability: float) -> str:
    """A probability as a whole percentage that never reads as certain: "<1%", "36%", ">99%"."""
    if probability < 0.005:
        return "<1%"
    if probability >= 0.995:
        return ">99%"
    return f"{probability:.0%}"


def _describe(rows: pd.DataFrame, edges: np.ndarray | None = None) -> list[str]:
    """Plain-language summary per changed account."""
    shown: Callable[[float], str] = share
    if edges is not None:
        labels = band_labels(edges)

        def _band(p: float) -> str:
            return labels[int(risk_band_index(np.array([p]), edges)[0])]

        shown = _band
    texts = []
    for row in rows.itertuples(index=False):
        parts = []
        if pd.isna(row.previous_probability):
            parts.append("new this week (not scored last run)")
        elif row.new_on_list:
            parts.append(f"new on the list (was {row.previous_tier} risk)")
        if row.risk_up or row.risk_down:
            verb = "up" if row.risk_up else "down"
            parts.append(
                f"risk {verb} {abs(row.probability_change) * 100:.0f} points "
                f"({shown(row.previous_probability)} -> {shown(row.churn_probability)})"
            )
        if isinstance(row.new_reasons, str):
            parts.append(f"new reasons: {row.new_reasons}")
        texts.append("; ".join(parts))
    return texts
