"""Holdouts and uplift: does acting on the risk list save accounts?

Each week a random share of the *flagged* accounts (churn tier in ``serving.changes.list_tiers``)
is held out: scored and recorded like the others, but kept off the CSMs' lists. Once their label
windows close, the churn of flagged-and-listed accounts is compared with that of held-out ones;
the difference, with an interval, is what the list is worth (uplift).

The draw is seeded and stratified by tier: within each tier, the ``round(share * n)`` accounts
with the smallest ``u = hash(seed, account_id)`` are held out. ``u`` does not depend on the run
date, so an account held out one week stays held out the next while it stays flagged (a holdout
that changed every week would be listed a week later and measure nothing); reruns of a run date
pick exactly the same accounts. Only an account close to its tier's cut-off can change group
when the flagged set changes; the uplift estimate counts each account once, at its first flag.

``holdout`` (boolean) is the column on the scored predictions that the risk list honours; the
warehouse keeps every flagged account with its group in ``list_holdouts`` (key ``run_date,
account_id``), written in the write-back transaction.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.warehouse import Warehouse, qualified

if TYPE_CHECKING:  # the report's types; imported where used, so loading the config stays light
    from serving.render import Section

HOLDOUT_COLUMN = "holdout"
HOLDOUTS_SCHEMA: dict[str, str] = {
    "run_date": "DATE",
    "account_id": "VARCHAR",
    "churn_tier": "VARCHAR",
    "segment": "VARCHAR",
    "arr": "DOUBLE",
    "churn_probability": "DOUBLE",
    "holdout": "BOOLEAN",
    "holdout_share": "DOUBLE",
    "holdout_seed": "BIGINT",
}
"""``list_holdouts``: one row per flagged account and run date, listed or held out."""
HOLDOUTS_KEY = ("run_date", "account_id")


class HoldoutConfig(BaseModel):
    """``serving.holdout``: the share of flagged accounts kept off the list each week, and the
    seed of the draw. Off by default (``share: 0``): withholding at-risk accounts from CSMs is a
    decision for the CS leader, taken on purpose; 0.10 is a common choice (enough held-out
    accounts for an interval within a few quarters, 90 % still worked)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(0.0, ge=0, le=0.5, description="share of flagged accounts held out")
    seed: int = Field(0, ge=0, description="seed of the draw; change it to start a new holdout")


def holdout_draw(account_ids: Sequence[str], seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per account, fixed by (seed, account_id) alone."""
    out = np.empty(len(account_ids), dtype=float)
    for i, account in enumerate(account_ids):
        digest = hashlib.blake2b(f"{seed}:{account}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def assign_holdout(
    predictions: pd.DataFrame, *, config: HoldoutConfig, flagged_tiers: Sequence[str]
) -> pd.DataFrame:
    """``predictions`` with a boolean ``holdout`` column: True for the flagged accounts (tier in
    ``flagged_tiers``) drawn into the holdout, stratified by ``churn_tier``; False otherwise."""
    out = predictions.copy()
    held = pd.Series(False, index=out.index)
    flagged = out["churn_tier"].isin(list(flagged_tiers))
    if config.share > 0 and flagged.any():
        rows = out.loc[flagged, ["account_id", "churn_tier"]].copy()
        rows["u"] = holdout_draw(rows["account_id"].astype(str).tolist(), config.seed)
        for _, tier in rows.groupby("churn_tier", sort=True):
            k = math.floor(config.share * len(tier) + 0.5)
            held.loc[tier.sort_values(["u", "account_id"]).index[:k]] = True
    out[HOLDOUT_COLUMN] = held.astype(bool)
    return out


def holdout_rows(
    predictions: pd.DataFrame, *, config: HoldoutConfig, flagged_tiers: Sequence[str]
) -> pd.DataFrame:
    """The ``list_holdouts`` rows of one run: every flagged account with its group. Empty when
    the predictions carry no ``holdout`` column (holdouts not assigned)."""
    if HOLDOUT_COLUMN not in predictions:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in HOLDOUTS_SCHEMA})
    flagged = predictions[predictions["churn_tier"].isin(list(flagged_tiers))]
    rows = flagged[[c for c in HOLDOUTS_SCHEMA if c in flagged.columns]].copy()
    rows["holdout_share"] = float(config.share)
    rows["holdout_seed"] = int(config.seed)
    return rows[list(HOLDOUTS_SCHEMA)].reset_index(drop=True)


# --- uplift ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Uplift:
    """Churn of flagged accounts, held out vs listed, each counted once (at its first flag).

    ``difference`` = held-out churn rate - listed churn rate (positive: the list saves
    accounts), with a Newcombe hybrid-score interval; ``arr_difference`` the same on churned
    ARR / ARR, with a bootstrap percentile interval. ``saved_accounts`` and ``saved_arr`` apply
    the differences to the listed group: what acting on the list kept, by this estimate."""

    n_listed: int
    n_holdout: int
    churned_listed: int
    churned_holdout: int
    rate_listed: float
    rate_holdout: float
    difference: float
    interval: tuple[float, float]
    arr_listed: float
    arr_holdout: float
    arr_rate_listed: float
    arr_rate_holdout: float
    arr_difference: float
    arr_interval: tuple[float, float]
    level: float

    @property
    def saved_accounts(self) -> float:
        return self.difference * self.n_listed

    @property
    def saved_arr(self) -> float:
        return self.arr_difference * self.arr_listed

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.interval[0] > 0 or self.interval[1] < 0


def first_flags(flags: pd.DataFrame) -> pd.DataFrame:
    """Each account's earliest flagged run date (the group it was first assigned to)."""
    ordered = flags.sort_values(["run_date", "account_id"], kind="stable")
    return ordered.drop_duplicates("account_id", keep="first").reset_index(drop=True)


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    x1: int, n1: int, x2: int, n2: int, *, level: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for ``x1/n1 - x2/n2``."""
    z = _z(level)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def estimate_uplift(
    outcomes: pd.DataFrame, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> Uplift:
    """Uplift from flagged accounts with matured labels: columns ``account_id``, ``run_date``,
    ``holdout`` (bool), ``arr`` (ARR at the run date), ``churned`` (bool, NA = not matured) and
    ``churned_arr``. Rows without a label are left out; each account counts once, at its first
    flag. Raises ``ValueError`` when either group is empty."""
    rows = first_flags(outcomes[outcomes["churned"].notna()])
    held = rows["holdout"].astype(bool).to_numpy()
    churned = rows["churned"].astype(bool).to_numpy()
    arr = rows["arr"].to_numpy(dtype=float)
    lost = rows["churned_arr"].fillna(0).to_numpy(dtype=float)
    n_h, n_l = int(held.sum()), int((~held).sum())
    if n_h == 0 or n_l == 0:
        raise ValueError(
            f"uplift needs matured flagged accounts in both groups (listed {n_l}, held out {n_h})"
        )
    x_h, x_l = int(churned[held].sum()), int(churned[~held].sum())
    arr_diff, arr_int = _arr_uplift(held, arr, lost, level=level, n_boot=n_boot, seed=seed)
    return Uplift(
        n_listed=n_l,
        n_holdout=n_h,
        churned_listed=x_l,
        churned_holdout=x_h,
        rate_listed=x_l / n_l,
        rate_holdout=x_h / n_h,
        difference=x_h / n_h - x_l / n_l,
        interval=newcombe_interval(x_h, n_h, x_l, n_l, level=level),
        arr_listed=float(arr[~held].sum()),
        arr_holdout=float(arr[held].sum()),
        arr_rate_listed=_ratio(lost[~held], arr[~held]),
        arr_rate_holdout=_ratio(lost[held], arr[held]),
        arr_difference=arr_diff,
        arr_interval=arr_int,
        level=level,
    )


def _arr_uplift(
    held: np.ndarray, arr: np.ndarray, lost: np.ndarray, *, level: float, n_boot: int, seed: int
) -> tuple[float, tuple[float, float]]:
    """Difference of churned-ARR rates (held out - listed), bootstrap within each group."""
    rng = np.random.default_rng(seed)
    point = _ratio(lost[held], arr[held]) - _ratio(lost[~held], arr[~held])
    h, li = np.flatnonzero(held), np.flatnonzero(~held)
    bh = rng.choice(h, size=(n_boot, h.size))
    bl = rng.choice(li, size=(n_boot, li.size))
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = lost[bh].sum(1) / arr[bh].sum(1) - lost[bl].sum(1) / arr[bl].sum(1)
    diffs = diffs[np.isfinite(diffs)]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha]) if diffs.size else (np.nan, np.nan)
    return point, (float(lo), float(hi))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    total = float(denominator.sum())
    return float(numerator.sum()) / total if total > 0 else float("nan")


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - level) / 2))


# --- reading and reporting ---------------------------------------------------------------------


def read_holdouts(wh: Warehouse, *, schema: str, table: str = "list_holdouts") -> pd.DataFrame:
    """Every recorded flagged account and its group (empty when nothing was recorded yet)."""
    if not wh.table_exists(table, schema):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in HOLDOUTS_SCHEMA})
    frame = wh.query(f"SELECT * FROM {qualified(table, schema)} ORDER BY run_date, account_id")
    frame["run_date"] = pd.to_datetime(frame["run_date"])
    return frame


def holdout_outcomes(holdouts: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Recorded flags joined to their labels (``features.labels.build_labels`` at the run dates'
    ``as_of``): ``churned`` NA where the label has not matured or is missing."""
    flags = holdouts.assign(
        account_id=holdouts["account_id"].astype(str),
        as_of=pd.to_datetime(holdouts["run_date"]).astype("datetime64[us]"),
    )
    lab = labels[["account_id", "as_of", "churned", "churned_arr"]].assign(
        account_id=labels["account_id"].astype(str),
        as_of=pd.to_datetime(labels["as_of"]).astype("datetime64[us]"),
    )
    out = flags.merge(lab, on=["account_id", "as_of"], how="left").drop(columns="as_of")
    out["churned"] = out["churned"].astype("boolean")
    return out


def uplift_section(outcomes: pd.DataFrame | None, *, horizon_days: int, seed: int = 0) -> Section:
    """The report section: does the list work? Listed vs held-out churn with intervals."""
    from serving.render import Section, Table

    section = Section("Does acting on the list save accounts? (holdout uplift)", "uplift")
    if outcomes is None or outcomes.empty or not outcomes["holdout"].astype(bool).any():
        section.missing = (
            "No holdout recorded yet: set serving.holdout.share (e.g. 0.10) to keep a random "
            "tenth of flagged accounts off the list and measure what the list is worth."
        )
        return section
    try:
        u = estimate_uplift(outcomes, seed=seed)
    except ValueError:
        waiting = int(first_flags(outcomes)["account_id"].nunique())
        section.missing = (
            f"{waiting} flagged account(s) recorded, listed or held out; their {horizon_days}-day "
            "outcomes have not matured yet in both groups."
        )
        return section
    verdict = (
        "The list made a measurable difference"
        if u.interval[0] > 0
        else "Held-out accounts churned less: look at what the list asks CSMs to do"
        if u.interval[1] < 0
        else "No difference can be told apart from chance yet"
    )
    saved = (
        f"applied to the listed accounts, about {u.saved_accounts:.1f} account(s) and "
        f"${u.saved_arr:,.0f} ARR saved"
        if u.saved_accounts > 0 and u.saved_arr > 0
        else "by this estimate the list has saved nothing yet"
    )
    section.notes.append(
        "Flagged accounts are those the model put in a listed risk tier; a random share of them "
        "is held out (kept off the CSMs' lists, otherwise treated alike) so that the two groups "
        "can be compared."
    )
    section.notes.append(
        f"{verdict}. Of the flagged accounts whose {horizon_days}-day outcome is known (each "
        f"counted once, at its first flag), {u.churned_listed} of {u.n_listed} listed churned "
        f"({u.rate_listed:.0%}) against {u.churned_holdout} of {u.n_holdout} held out "
        f"({u.rate_holdout:.0%}). Uplift = held-out rate minus listed rate: "
        f"{u.difference:+.1%} ({u.level:.0%} interval {u.interval[0]:+.1%} to "
        f"{u.interval[1]:+.1%}); {saved}."
    )
    rows = [
        _group_row("Listed (worked by CSMs)", u.n_listed, u.rate_listed, u.arr_listed,
                   u.arr_rate_listed),
        _group_row("Held out (not listed)", u.n_holdout, u.rate_holdout, u.arr_holdout,
                   u.arr_rate_holdout),
        {"cells": ["Uplift (held out - listed)", "", _interval(u.difference, u.interval), "",
                   _interval(u.arr_difference, u.arr_interval)]},
    ]  # fmt: skip
    columns = ["Group", "Accounts", "Churn rate", "ARR at flag", "Churned ARR share"]
    section.tables.append(Table(columns, rows, caption="Flagged accounts by group"))
    return section


def _group_row(label: str, n: int, rate: float, arr: float, arr_rate: float) -> dict:
    return {"cells": [label, f"{n:,}", f"{rate:.1%}", f"${arr:,.0f}", f"{arr_rate:.1%}"]}


def _interval(point: float, interval: tuple[float, float]) -> str:
    return f"{point:+.1%} ({interval[0]:+.1%} to {interval[1]:+.1%})"
