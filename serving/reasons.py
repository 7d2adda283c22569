"""Per-account SHAP contributions turned into reasons a CSM can read.

For each account and target the ``top_k`` features pushing the score up ("raises") and the
``top_k`` pulling it down ("lowers") are kept, each with a sentence carrying the account's own
numbers ("3 urgent tickets in the last 90 days", "Champion left 63 days ago") and one category
of the fixed taxonomy in :data:`serving.config.REASON_CATEGORIES`.

Top-k selection is one ``argpartition`` over the whole contribution matrix; sentences are built
per feature over all the accounts that feature explains, so the cost grows with the number of
reasons kept, not with a Python loop per account.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from serving.config import REASON_CATEGORIES

EXPECTED_VALUE_COLUMN = "_expected_value"
REASON_COLUMNS = [
    "account_id",
    "target",
    "direction",
    "rank",
    "feature",
    "category",
    "value",
    "contribution",
    "sentence",
]
_WINDOW = re.compile(r"_(\d+)d$")
_ACRONYMS = {
    "p1": "P1",
    "p2": "P2",
    "nps": "NPS",
    "csat": "CSAT",
    "arr": "ARR",
    "qbr": "QBR",
    "ebr": "EBR",
    "csm": "CSM",
    "mrr": "MRR",
    "api": "API",
    "id": "ID",
}
_CHANGE_TOKENS = ("_pct_change", "_change", "_trend", "_growth")


class FeatureSpecLike(Protocol):
    """What reasons need from ``features.catalog.FeatureSpec``."""

    name: str
    group: str
    unit: str
    window_days: int | None


@dataclass(frozen=True)
class InferredSpec:
    """A feature absent from the catalog, described from its name (e.g. ``segment``)."""

    name: str
    group: str
    unit: str
    window_days: int | None


# --- taxonomy ----------------------------------------------------------------------------------

_CATEGORY_BY_NAME: tuple[tuple[str, str], ...] = (
    ("champion", "relationship"),
    ("sponsor", "relationship"),
    ("exec", "relationship"),
    ("contact", "relationship"),
    ("nps", "sentiment"),
    ("csat", "sentiment"),
    ("survey", "sentiment"),
    ("health", "sentiment"),
    ("ticket", "support"),
    ("escalat", "support"),
    ("outcome", "engagement"),
)
_CATEGORY_BY_GROUP = {
    "usage": "adoption",
    "engagement": "engagement",
    "support": "support",
    "commercial": "commercial",
    "health": "sentiment",
    "sentiment": "sentiment",
    "relationship": "relationship",
    "outcomes": "engagement",
}


LEVER_CATEGORIES: tuple[str, ...] = (
    "adoption",
    "engagement",
    "relationship",
    "support",
    "sentiment",
)
"""Reason categories a CSM can act on ("levers"); ``commercial`` (industry, size, term, tenure,
ARR) is context: it explains the risk but no call changes it."""
_CONTEXT_FRAGMENTS = ("health", "days_since_first_activity", "tenure")
"""Features outside ``commercial`` that are still context: the exported health score (shown in
its own column; a CSM moves it only through its inputs) and account age."""


def is_lever(feature: str, category: str) -> bool:
    """Whether a reason on ``feature`` of ``category`` names something a CSM can act on."""
    name = feature.lower()
    return category in LEVER_CATEGORIES and not any(f in name for f in _CONTEXT_FRAGMENTS)


def split_reasons(reasons: pd.DataFrame, *, target: str = "churn") -> pd.DataFrame:
    """Per account (index ``account_id``): the churn-raising reasons a CSM can act on
    (``levers``, rank order, "; "-joined), those that are context (``context``), what lowers the
    risk (``helps``), and the top lever's ``lever_feature`` and ``lever_category``.

    A reason whose feature value is missing ("no data", "none on record") is dropped: the model
    may lean on a gap in the data, but a gap is not something to tell a CSM to fix."""
    rows = reasons[(reasons["target"] == target) & reasons["value"].notna()]
    rows = rows.sort_values(["account_id", "rank"], kind="stable")
    lever = np.array(
        [is_lever(f, c) for f, c in zip(rows["feature"], rows["category"], strict=True)],
        dtype=bool,
    )
    raises = (rows["direction"] == "raises").to_numpy()
    levers = rows[raises & lever]
    top = levers.groupby("account_id", sort=False).head(1).set_index("account_id")
    return pd.DataFrame(
        {
            "levers": _join(levers),
            "context": _join(rows[raises & ~lever]),
            "helps": _join(rows[~raises]),
            "lever_feature": top["feature"],
            "lever_category": top["category"],
            "lever_features": levers.groupby("account_id", sort=False)["feature"].agg("|".join),
        }
    ).rename_axis("account_id")


def _join(rows: pd.DataFrame) -> pd.Series:
    return rows.groupby("account_id", sort=False)["sentence"].agg("; ".join)


def category_for(spec: FeatureSpecLike) -> str:
    """The taxonomy category of one feature: by what its name measures, else by its group."""
    name = spec.name.lower()
    for fragment, category in _CATEGORY_BY_NAME:
        if fragment in name:
            return category
    return _CATEGORY_BY_GROUP.get(spec.group, "commercial")


def infer_spec(name: str, values: pd.Series | None = None) -> InferredSpec:
    """A spec for a feature the catalog does not list, from its name and dtype. A per-event-type
    column (``events_28d__<type>``, ``quantity_28d__<type>``) is a usage count whatever its
    type's name says ("share_report" is a kind of event, not a share)."""
    if "__" in name:
        base = name.split("__", 1)[0]
        window = _WINDOW.search(base)
        return InferredSpec(name, "usage", "count", int(window.group(1)) if window else None)
    window = _WINDOW.search(name)
    lowered = name.lower()
    if values is not None and not pd.api.types.is_numeric_dtype(values):
        unit = "category"
    elif lowered.startswith("days_") or lowered.endswith("_days"):
        unit = "days"
    elif "arr" in lowered.split("_") or lowered.endswith("_amount"):
        unit = "currency"
    elif any(t in lowered for t in ("ratio", "utilization", "share", *_CHANGE_TOKENS)):
        unit = "ratio"
    elif "score" in lowered:
        unit = "score"
    else:
        unit = "count"
    group = "commercial" if unit in ("category", "currency") else "usage"
    return InferredSpec(name, group, unit, int(window.group(1)) if window else None)


def resolve_specs(
    feature_names: list[str], catalog: Mapping[str, Any], frame: pd.DataFrame
) -> dict[str, Any]:
    """The catalog spec of every model feature, inferred from the name where it has none."""
    return {name: catalog.get(name) or infer_spec(name, frame.get(name)) for name in feature_names}


# --- sentences ---------------------------------------------------------------------------------


_LABELS = {
    "p1_tickets": "urgent (P1) tickets",
    "nps_latest": "latest NPS",
    "days_since_last_ebr_qbr": "days since last EBR/QBR",
    "last_ebr_qbr": "last EBR/QBR",
    # usage quantities: plain words for what a CSM sees in the product (units of work done)
    "quantity": "usage volume",
    "quantity_mean": "average usage volume per action",
    "quantity_max": "largest single usage volume",
    "quantity_per_day": "usage volume per day",
    "events": "product actions",
    "events_prev": "product actions",
    "events_per_day": "product actions per day",
    "events_per_active_user": "product actions per active user",
    "event_types": "product features used",
    "stickiness": "stickiness (daily users / monthly users)",
    "seat_utilization": "share of paid seats in use",
    "active_days": "days with any use",
    "median_hours_to_close": "median hours to close a ticket",
    "ticket_csat": "ticket satisfaction (CSAT)",
}


def feature_label(name: str) -> str:
    """``csm_touches_90d`` -> ``CSM touches``: the name without its window (and a trailing
    ``_days`` unit), as words."""
    if "__" in name:  # events_28d__share_report -> "share report events"
        base, event_type = name.split("__", 1)
        what = _WINDOW.sub("", base)
        words = " ".join(w for w in event_type.split("_") if w)
        return f"{words} {what}" if what == "events" else f"usage volume of {words} events"
    core = _WINDOW.sub("", name)
    if core in _LABELS:
        return _LABELS[core]
    if core.endswith("_days") and not core.startswith("days_"):
        core = core[: -len("_days")]
    return " ".join(_ACRONYMS.get(w.lower(), w) for w in core.split("_") if w)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _number(value: float) -> str:
    """Plain rounding: 3, 22, 1,250, 0.4, 12.5."""
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 1 else f"{value:.2g}"


def format_money(value: float) -> str:
    """$1,234,567 / $12,300 / $950: whole currency units, thousands separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"-${-value:,.0f}" if value < 0 else f"${value:,.0f}"


def _plural(label: str, value: float) -> str:
    if value == 1 and label.endswith("s") and not label.endswith("ss"):
        return label[:-1]
    return label


def _change_base(name: str) -> str | None:
    core = _WINDOW.sub("", name)
    for token in _CHANGE_TOKENS:
        if token in core:
            return core.replace(token, "")
    return None


def _companions(base: str, window: int | None, frame: pd.DataFrame) -> tuple[str, str] | None:
    """Columns holding the current and prior window of a %-change feature, if present."""
    if window is None:
        return None
    for current in (f"{base}_{window}d", base):
        for prior in (f"{base}_prev_{window}d", f"{base}_prior_{window}d"):
            if current in frame.columns and prior in frame.columns:
                return current, prior
    return None


def _sentences_change(spec: FeatureSpecLike, values: np.ndarray, rows: pd.DataFrame) -> list[str]:
    label = feature_label(_change_base(spec.name) or spec.name)
    window = spec.window_days
    pair = _companions(_change_base(spec.name) or "", window, rows)
    prior_text = f" vs the prior {window} days" if window else ""
    now = rows[pair[0]].to_numpy(float) if pair else np.full(len(values), np.nan)
    before = rows[pair[1]].to_numpy(float) if pair else np.full(len(values), np.nan)
    show = format_money if "arr" in label.lower().split(" ") else _number
    out = []
    for v, a, b in zip(values, now, before, strict=True):
        if math.isnan(v):
            out.append(f"{_capital(label)}: no earlier period to compare with")
            continue
        verb = "fell" if v < 0 else "rose" if v > 0 else "was flat"
        pct = "" if v == 0 else f" {abs(v) * 100:.0f}%"
        numbers = "" if math.isnan(a) or math.isnan(b) else f" ({show(b)} -> {show(a)})"
        out.append(f"{_capital(label)} {verb}{pct}{prior_text}{numbers}")
    return out


def _sentences_days(spec: FeatureSpecLike, values: np.ndarray) -> list[str]:
    core = _WINDOW.sub("", spec.name)
    if core.startswith("days_since_"):
        event = _capital(feature_label(core[len("days_since_") :]))
        return [
            f"{event}: none on record" if math.isnan(v) else f"{event} {_number(v)} days ago"
            for v in values
        ]
    if "renewal" in core:
        return [
            "No renewal date on record"
            if math.isnan(v)
            else f"Renewal in {_number(v)} days"
            if v >= 0
            else f"Renewal date passed {_number(-v)} days ago"
            for v in values
        ]
    label = _capital(feature_label(core))
    return [f"{label}: no data" if math.isnan(v) else f"{label}: {_number(v)} days" for v in values]


def _sentences_count(spec: FeatureSpecLike, values: np.ndarray) -> list[str]:
    noun = feature_label(spec.name)  # lower-case words, acronyms kept: "P1 tickets"
    window = spec.window_days
    if window and "_prev_" in spec.name:
        noun = feature_label(spec.name.replace("_prev", ""))
        return [
            f"{_capital(noun)}: no data for the earlier {window} days"
            if math.isnan(v)
            else f"{_number(v)} {_plural(noun, v)} in the {window} days before the last {window}"
            for v in values
        ]
    if window:
        return [
            f"{_capital(noun)}: no data for the last {window} days"
            if math.isnan(v)
            else f"{_number(v)} {_plural(noun, v)} in the last {window} days"
            for v in values
        ]
    return [
        f"{_capital(noun)}: no data" if math.isnan(v) else f"{_capital(noun)}: {_number(v)}"
        for v in values
    ]


def _render_value(unit: str, v: float, *, per: bool = False) -> str:
    if unit == "ratio" and per:  # a rate such as events per active user, not a share
        return f"is {_number(v)}"
    if unit == "ratio":
        return f"is {v * 100:.0f}%"
    if unit == "currency":
        return f"is {format_money(v)}"
    if unit == "flag":
        return "yes" if v else "no"
    if unit == "score" and abs(v) >= 10:
        return f"is {v:.0f}"
    return f"is {_number(v)}"


def _sentences_simple(spec: FeatureSpecLike, values: np.ndarray) -> list[str]:
    label = _capital(feature_label(spec.name))
    window = f" (last {spec.window_days} days)" if spec.window_days else ""
    if "_prev_" in spec.name and spec.window_days:
        label = _capital(feature_label(spec.name.replace("_prev", "")))
        window = f" {spec.window_days} days ago"
    sep = ": " if spec.unit == "flag" else " "
    return [
        f"{label}{window}: no data"
        if math.isnan(v)
        else f"{label}{window}{sep}{_render_value(spec.unit, v, per='_per_' in spec.name)}"
        for v in values
    ]


def sentences_for(spec: FeatureSpecLike, values: pd.Series, rows: pd.DataFrame) -> list[str]:
    """One sentence per value of one feature, with the account's own numbers.

    ``rows`` are the accounts' full feature rows (for companion columns such as the prior
    window of a %-change feature)."""
    if spec.unit == "category":
        label = _capital(feature_label(spec.name.replace("_prev", "")))
        if "_prev_" in spec.name and spec.window_days:
            label = f"{label} {spec.window_days} days ago"
        return [
            f"{label}: not recorded" if pd.isna(v) else f"{label}: {str(v).replace('_', ' ')}"
            for v in values.astype(object)
        ]
    numeric = (
        pd.to_numeric(values, errors="coerce").astype("Float64").to_numpy(float, na_value=np.nan)
    )
    if spec.unit == "ratio" and _change_base(spec.name) is not None:
        return _sentences_change(spec, numeric, rows)
    if spec.unit == "days":
        return _sentences_days(spec, numeric)
    if spec.unit == "count" and not spec.name.startswith("quantity"):
        return _sentences_count(spec, numeric)
    return _sentences_simple(spec, numeric)  # summed quantities are amounts, not things counted


# --- selection ---------------------------------------------------------------------------------


def top_k_indices(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the ``k`` largest strictly positive entries of each row, ranked.

    Returns ``(row, column, rank)`` arrays (rank 1 = largest); rows with fewer than ``k``
    positive entries contribute fewer items, so no reason is ever of the wrong sign."""
    n_rows, n_cols = matrix.shape
    k = min(k, n_cols)
    if n_rows == 0 or k == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    part = np.argpartition(-matrix, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(matrix, part, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(picked, order, axis=1)
    rows = np.repeat(np.arange(n_rows), k).reshape(n_rows, k)
    ranks = np.tile(np.arange(1, k + 1), (n_rows, 1))
    keep = vals > 0
    return rows[keep], cols[keep], ranks[keep]


def explain(
    contributions: pd.DataFrame,
    features: pd.DataFrame,
    *,
    target: str,
    top_k: int,
    specs: Mapping[str, FeatureSpecLike],
) -> pd.DataFrame:
    """Long frame of reasons (columns :data:`REASON_COLUMNS`) for one target.

    ``contributions`` are SHAP log-odds (one column per feature, ``_expected_value`` ignored),
    row-aligned with ``features`` (which must hold ``account_id`` and the raw feature values)."""
    names = [c for c in contributions.columns if c != EXPECTED_VALUE_COLUMN]
    matrix = contributions[names].to_numpy(dtype=float)
    parts = []
    for direction, signed in (("raises", matrix), ("lowers", -matrix)):
        rows, cols, ranks = top_k_indices(signed, top_k)
        parts.append(
            _reason_rows(rows, cols, ranks, matrix, names, features, specs, target, direction)
        )
    reasons = pd.concat(parts, ignore_index=True)
    return reasons.sort_values(
        ["account_id", "direction", "rank"], kind="stable", ignore_index=True
    )


def _reason_rows(
    rows: np.ndarray,
    cols: np.ndarray,
    ranks: np.ndarray,
    matrix: np.ndarray,
    names: list[str],
    features: pd.DataFrame,
    specs: Mapping[str, FeatureSpecLike],
    target: str,
    direction: str,
) -> pd.DataFrame:
    """Build the reason rows feature by feature (one vectorised pass per feature)."""
    frames = []
    account_ids = features["account_id"].astype(str).to_numpy()
    for col in np.unique(cols):
        sel = cols == col
        idx = rows[sel]
        name = names[col]
        spec = specs[name]
        subset = features.iloc[idx]
        values = subset[name]
        frames.append(
            pd.DataFrame(
                {
                    "account_id": account_ids[idx],
                    "target": target,
                    "direction": direction,
                    "rank": ranks[sel].astype("int64"),
                    "feature": name,
                    "category": category_for(spec),
                    "value": _value_text(values, spec),
                    "contribution": matrix[idx, col],
                    "sentence": sentences_for(spec, values, subset),
                }
            )
        )
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in REASON_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def _dtype(column: str) -> str:
    return {"rank": "int64", "contribution": "float64"}.get(column, "object")


def _value_text(values: pd.Series, spec: FeatureSpecLike) -> list[str | None]:
    """The raw feature value as text (the reasons table holds numbers and categories alike)."""
    if spec.unit == "category" or not pd.api.types.is_numeric_dtype(values):
        return [None if pd.isna(v) else str(v) for v in values.astype(object)]
    numeric = (
        pd.to_numeric(values, errors="coerce").astype("Float64").to_numpy(float, na_value=np.nan)
    )
    return [None if math.isnan(v) else f"{v:.6g}" for v in numeric]


def assert_taxonomy(reasons: pd.DataFrame) -> None:
    """Fail loudly if a reason falls outside the fixed taxonomy (a programming error)."""
    unknown = sorted(set(reasons["category"]) - set(REASON_CATEGORIES))
    if unknown:
        raise ValueError(f"reason categories outside the taxonomy: {unknown}")
