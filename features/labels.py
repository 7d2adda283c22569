"""Outcome labels at each observation date: churn, expansion, contraction, inactivity.

Observe, wait, label: for an account active at ``as_of`` the label window is ``(s, e]`` with
``s = as_of + lead`` and ``e = s + horizon``. ``sql/labels.sql`` finds, from ``contracts`` only,
whether a lapse (no contract in force; an evergreen contract, ``end_date`` NULL, never lapses)
that was not covered again within ``grace_days`` overlaps the window (churn), the ARR at the
window end (a renewal signed up to ``grace_days`` late counts at its ARR) and, for the
``next_renewal`` expansion, the ARR just after the first contract end in ``(as_of, e]`` of the
dated contracts in force at ``as_of`` (late renewals likewise). Expansion and contraction
compare those with ARR at ``as_of`` here, in pandas, with the thresholds of
:class:`features.config.LabelConfig`.

``churned_inactive``: no usage event in ``(max(s, e - inactivity_days), e]``, the last
``inactivity_days`` of the window (the whole window when that is shorter): never a row at or
before ``as_of``.

Censoring (NA: not known yet, training drops the row): churn and contraction when ``e + grace``
is after ``data_end``; ``churned_inactive`` when ``e`` is; expansion by the horizon definition
like churn, by ``next_renewal`` when the renewal (``e`` when none falls in the window) + grace
is after ``data_end``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from features.build import prepare_active_accounts, read_sql
from features.config import ActiveConfig, LabelConfig
from features.warehouse import Warehouse

LABELS = ("churned", "expanded", "contracted", "churned_inactive")
COLUMNS = [
    "account_id",
    "as_of",
    "label_window_end",
    *LABELS,
    "arr_at_as_of",
    "arr_at_horizon",
    "churned_arr",
    "expansion_arr",
    "contracted_arr",
]


def build_labels(
    wh: Warehouse,
    as_of_dates: Sequence[datetime],
    *,
    config: LabelConfig,
    data_end: datetime,
    active: ActiveConfig | None = None,
) -> pd.DataFrame:
    """Labels of every account active at each ``as_of`` by ``active`` (default: a contract in
    force; the same rule as the features), see the module docstring.

    Label columns are nullable booleans, NA where censored; the ARR columns (``churned_arr``,
    ``expansion_arr``, ``contracted_arr``) are 0 where the event did not happen and NA where
    censored. Sorted by as_of, account_id."""
    prepare_active_accounts(wh, as_of_dates, active=active)
    raw = wh.query(
        read_sql("labels"),
        [config.lead_days, config.horizon_days, config.grace_days, config.inactivity_days],
    )
    return label_frame(raw, config=config, data_end=data_end)


def label_frame(raw: pd.DataFrame, *, config: LabelConfig, data_end: datetime) -> pd.DataFrame:
    """Apply thresholds and censoring to the rows of ``sql/labels.sql``."""
    out = pd.DataFrame(
        {
            "account_id": raw["account_id"].astype(str),
            "as_of": pd.to_datetime(raw["as_of"]).astype("datetime64[us]"),
            "label_window_end": pd.to_datetime(raw["label_window_end"]).astype("datetime64[us]"),
        }
    )
    start = raw["arr_at_as_of"].astype(float).to_numpy()
    end = raw["arr_at_horizon"].astype(float).to_numpy()
    churned = raw["churned"].astype(bool).to_numpy()
    expanded, contracted = movement_flags(start, end, churned, config=config)
    grace = timedelta(days=config.grace_days)
    data_end = pd.Timestamp(data_end)
    known = ((out["label_window_end"] + grace) <= data_end).to_numpy()
    expansion_end, expansion_known = end, known
    if config.expansion_definition == "next_renewal":
        expansion_end, expanded, expansion_known = _next_renewal(raw, start, config, data_end)
    flags = {
        "churned": (churned, known),
        "expanded": (expanded, expansion_known),
        "contracted": (contracted, known),
        "churned_inactive": (
            raw["inactive"].astype(bool).to_numpy(),
            (out["label_window_end"] <= data_end).to_numpy(),
        ),
    }
    for name, (values, settled) in flags.items():
        out[name] = pd.array(values, dtype="boolean")
        out.loc[~settled, name] = pd.NA
    out["arr_at_as_of"] = start
    out["arr_at_horizon"] = np.where(known, end, np.nan)
    amounts = {
        "churned_arr": (np.where(churned, start, 0.0), known),
        "expansion_arr": (np.where(expanded, expansion_end - start, 0.0), expansion_known),
        "contracted_arr": (np.where(contracted, start - end, 0.0), known),
    }
    for name, (values, settled) in amounts.items():
        out[name] = np.where(settled, values, np.nan)
    out = out.sort_values(["as_of", "account_id"], kind="stable").reset_index(drop=True)
    return out[COLUMNS]


def _next_renewal(
    raw: pd.DataFrame, start: np.ndarray, config: LabelConfig, data_end: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ARR after the next renewal (NaN: no renewal in the window), whether it is an expansion,
    and whether it is known by ``data_end``. No renewal in the window (an evergreen or a long
    contract) is FALSE, decided at the window end; an account that does not renew (ARR 0
    after the renewal and its grace) is FALSE too."""
    renewal_at = pd.to_datetime(raw["renewal_at"]).astype("datetime64[us]")
    after = raw["arr_at_renewal"].astype(float).to_numpy()
    renews = renewal_at.notna().to_numpy()
    lapsed = ~renews | ~(np.nan_to_num(after) > 0)
    expanded, _ = movement_flags(start, np.nan_to_num(after), lapsed, config=config)
    decided = renewal_at.fillna(pd.to_datetime(raw["label_window_end"]).astype("datetime64[us]"))
    known = (decided + timedelta(days=config.grace_days) <= data_end).to_numpy()
    return after, expanded & renews, known


def movement_flags(
    start: np.ndarray, end: np.ndarray, churned: np.ndarray, *, config: LabelConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Expanded / contracted per row: ARR at the window end vs at ``as_of`` for retained
    accounts. Expansion: growth >= ``expansion_min_ratio`` x start, or >= ``expansion_min_arr``
    when that is set. Contraction: still > 0 but fell by more than ``contraction_min_ratio``."""
    retained = ~churned & (end > 0)
    growth = end - start
    by_ratio = growth >= config.expansion_min_ratio * start
    by_amount = (config.expansion_min_arr > 0) & (growth >= config.expansion_min_arr)
    expanded = retained & (growth > 0) & (by_ratio | by_amount)
    contracted = retained & (-growth > config.contraction_min_ratio * start)
    return expanded, contracted


def censoring_summary(labels: pd.DataFrame) -> dict[str, int]:
    """Row counts: all rows, labelled, censored (label window + grace past data_end), and the
    positives of each label among the labelled rows."""
    known = labels["churned"].notna()
    summary = {
        "rows": len(labels),
        "labelled": int(known.sum()),
        "censored": int((~known).sum()),
    }
    for name in LABELS:
        if name in labels.columns:
            summary[name] = int(labels.loc[known, name].fillna(False).astype(bool).sum())
    return summary
