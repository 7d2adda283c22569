"""Outcome labels at each observation date: churn, expansion, contraction, inactivity.

Observe, wait, label: for an account active at ``as_of`` the label window is ``(as_of + lead,
as_of + lead + horizon]``. ``sql/labels.sql`` finds, from ``contracts`` only, whether a lapse
(no contract in force) that was not covered again within ``grace_days`` overlaps the window
(churn), and the ARR at the window end (a renewal signed up to ``grace_days`` late counts at its
ARR). Expansion and contraction compare that ARR with ARR at ``as_of`` here, in pandas, with the
thresholds of :class:`features.config.LabelConfig`. Rows whose window end + grace lies after
``data_end`` cannot be known yet: their labels are NA (censored) and training drops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from features.build import prepare_active_accounts, read_sql
from features.config import LabelConfig
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
    wh: Warehouse, as_of_dates: Sequence[datetime], *, config: LabelConfig, data_end: datetime
) -> pd.DataFrame:
    """Labels of every account active at each ``as_of`` (see the module docstring).

    Label columns are nullable booleans, NA where the window end + grace is after ``data_end``;
    the ARR columns (``churned_arr``, ``expansion_arr``, ``contracted_arr``) are 0 where the
    event did not happen and NA where censored. Sorted by as_of, account_id."""
    prepare_active_accounts(wh, as_of_dates)
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
    known = (out["label_window_end"] + timedelta(days=config.grace_days)) <= pd.Timestamp(data_end)
    flags = {
        "churned": churned,
        "expanded": expanded,
        "contracted": contracted,
        "churned_inactive": raw["inactive"].astype(bool).to_numpy(),
    }
    for name, values in flags.items():
        out[name] = pd.array(values, dtype="boolean")
        out.loc[~known, name] = pd.NA
    out["arr_at_as_of"] = start
    out["arr_at_horizon"] = np.where(known, end, np.nan)
    amounts = {
        "churned_arr": np.where(churned, start, 0.0),
        "expansion_arr": np.where(expanded, end - start, 0.0),
        "contracted_arr": np.where(contracted, start - end, 0.0),
    }
    for name, values in amounts.items():
        out[name] = np.where(known, values, np.nan)
    out = out.sort_values(["as_of", "account_id"], kind="stable").reset_index(drop=True)
    return out[COLUMNS]


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
