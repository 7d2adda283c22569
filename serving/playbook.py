"""What the risk list promises and asks: risk bands the model can honestly tell apart, and the
next step a CSM takes for an account, from a configurable playbook keyed by reason category.

Bands: a calibrated model separates "about 1 %" from "about 3 %" far less well than its decimals
suggest, so the list shows the band an account falls in ("<2%", "2-5%", ">90%"), never a bare
0 % or 100 %. The band edges come from config, and the churn tier thresholds are always edges
too, so a band never straddles two tiers: an account shown "15-20%" is medium risk, never low.

Playbook: each account on the list gets one next step, chosen by its top *lever* (the highest
ranked churn-raising reason a CSM can act on, :func:`serving.reasons.split_reasons`). A step
for a feature-name fragment ("champion", "exec_sponsor") wins over its category's step.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.config import Tier, TierConfig
from serving.reasons import LEVER_CATEGORIES

_NEXT_STEP_TIERS: tuple[Tier, ...] = ("high", "medium")
DEFAULT_BANDS = (0.02, 0.05, 0.10, 0.20, 0.50, 0.70, 0.90)
DEFAULT_PLAYBOOK = {
    "adoption": "Run an adoption workshop with the teams that stopped using the product",
    "engagement": "Book a check-in call and put the next business review in the calendar",
    "relationship": "Re-establish the executive sponsor and map who now owns the decision",
    "support": "Walk through the open tickets with support and agree a fix date",
    "sentiment": "Call the people who scored low and ask what would change their answer",
}
DEFAULT_BY_FEATURE = {
    "champion": "Find and onboard a new champion before the renewal conversation",
    "exec_sponsor": "Re-establish the executive sponsor",
    "seat_utilization": "Plan a seat roll-out with the admin: unused seats invite a downsize",
}
DEFAULT_STEP = "Review the account: the model sees no driver a CSM can act on directly"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RiskListConfig(_Strict):
    """How risk lists show risk and which next step each listed account gets.

    ``risk_bands``: inner band edges as probabilities (the tier thresholds are added);
    ``playbook``: lever category -> next step; ``playbook_by_feature``: feature-name fragment ->
    next step (more specific, wins); ``next_step_tiers``: tiers that get a next step;
    ``renewal_soon_days``: the renewal filter's preset in the HTML list."""

    risk_bands: list[float] = Field(default_factory=lambda: list(DEFAULT_BANDS))
    playbook: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PLAYBOOK))
    playbook_by_feature: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_BY_FEATURE))
    default_next_step: str = DEFAULT_STEP
    next_step_tiers: list[Tier] = Field(default_factory=lambda: list(_NEXT_STEP_TIERS))
    renewal_soon_days: int = Field(90, gt=0)

    @field_validator("risk_bands")
    @classmethod
    def _bands(cls, value: list[float]) -> list[float]:
        bad = [v for v in value if not 0 < v < 1]
        if bad:
            raise ValueError(f"risk_bands must lie strictly between 0 and 1, got {bad}")
        return sorted(set(value))

    @field_validator("playbook")
    @classmethod
    def _categories(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(LEVER_CATEGORIES))
        if unknown:
            raise ValueError(
                f"playbook has unknown lever categories {unknown}; use {list(LEVER_CATEGORIES)}"
            )
        return value


# --- bands ---------------------------------------------------------------------------------------


def band_edges(bands: Sequence[float], tiers: TierConfig) -> np.ndarray:
    """Sorted inner edges: the configured bands plus both tier thresholds."""
    return np.array(sorted({*map(float, bands), tiers.medium, tiers.high}))


def _percent(edge: float) -> str:
    return f"{edge * 100:.3g}"


def band_labels(edges: np.ndarray) -> list[str]:
    """One label per band, lowest first: ``<2%``, ``2–5%``, ..., ``>90%``."""
    if len(edges) == 0:
        return ["0–100%"]
    inner = [f"{_percent(a)}–{_percent(b)}%" for a, b in pairwise(edges)]
    return [f"<{_percent(edges[0])}%", *inner, f">{_percent(edges[-1])}%"]


def risk_band_index(probability: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band of each probability (0 = lowest). A probability equal to an edge belongs to the band
    above it, as ``p >= threshold`` is the tier rule."""
    return np.searchsorted(edges, np.asarray(probability, dtype=float), side="right")


def risk_bands(probability: pd.Series, edges: np.ndarray) -> pd.Series:
    """The band label of each probability (missing stays missing)."""
    labels = np.array(band_labels(edges), dtype=object)
    values = pd.to_numeric(probability, errors="coerce").to_numpy(float)
    out = labels[np.minimum(risk_band_index(np.nan_to_num(values), edges), len(labels) - 1)]
    return pd.Series(np.where(np.isnan(values), None, out), index=probability.index, dtype=object)


def band_bounds(probability: pd.Series, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper probability of each account's band (0 and 1 at the open ends)."""
    full = np.concatenate([[0.0], edges, [1.0]])
    index = risk_band_index(pd.to_numeric(probability, errors="coerce").fillna(0), edges)
    return full[index], full[index + 1]


# --- next steps ----------------------------------------------------------------------------------


def next_steps(
    predictions: pd.DataFrame, top_levers: pd.DataFrame, config: RiskListConfig
) -> pd.Series:
    """One next step per account whose tier is in ``config.next_step_tiers`` (None elsewhere).

    ``top_levers``: per account (index ``account_id``) its top lever's ``lever_feature`` and
    ``lever_category`` (:func:`serving.reasons.split_reasons`); an account without a lever
    gets ``config.default_next_step``."""
    ids = predictions["account_id"].astype(str)
    feature = ids.map(top_levers["lever_feature"]) if len(top_levers) else ids.map(lambda _: None)
    category = ids.map(top_levers["lever_category"]) if len(top_levers) else feature
    steps = [
        step_for(f, c, config) for f, c in zip(feature.tolist(), category.tolist(), strict=True)
    ]
    listed = predictions["churn_tier"].isin(config.next_step_tiers).tolist()
    shown = [step if keep else None for step, keep in zip(steps, listed, strict=True)]
    return pd.Series(shown, index=predictions.index, dtype=object)


def step_for(feature: object, category: object, config: RiskListConfig) -> str:
    """The playbook step for one lever: a matching feature fragment first, then its category,
    else the default step."""
    if isinstance(feature, str):
        for fragment, step in config.playbook_by_feature.items():
            if fragment.lower() in feature.lower():
                return step
    if isinstance(category, str) and category in config.playbook:
        return config.playbook[category]
    return config.default_next_step
