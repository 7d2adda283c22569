"""Retention analytics from ``contracts``: ARR movements, NDR/GRR, logo churn and cohorts.

Time semantics follow the rest of churnlens: ARR at time t is the sum of ``arr`` over contracts
with ``start_date <= t < end_date`` (end exclusive; ``end_date`` NULL is an evergreen contract,
in force from ``start_date`` until ended, which never lapses). A period
``[period_start, period_end)`` is measured at its two ends: accounts with ARR > 0 at
``period_start`` are the period's existing customers; each one's ending ARR decides whether it
expanded, contracted or churned. New logos (ARR 0 at the start, > 0 at the end) are reported as
``new_arr`` and kept out of NDR and GRR.
Formulas, choices and worked numbers: ``docs/metrics.md``.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.warehouse import Warehouse

Period = Literal["month", "quarter", "ttm"]
PERIODS: tuple[str, ...] = ("month", "quarter", "ttm")
_SQL_DIR = Path(__file__).parent / "sql"
_REQUIRED = ("account_id", "start_date", "end_date", "arr")
_MISSING_GROUP = "(missing)"
MOVEMENT_COLUMNS = [
    "period",
    "period_start",
    "period_end",
    "starting_arr",
    "expansion",
    "contraction",
    "churned_arr",
    "new_arr",
    "ending_arr",
    "ndr",
    "grr",
    "logos_start",
    "logos_churned",
    "logos_new",
    "logo_churn_rate",
]


CATEGORY_NAMES = {1: "hit hard", 2: "neutral", 3: "benefits"}
CATEGORY_COLUMN = "industry_category"


class RetentionConfig(BaseModel):
    """How retention is measured for the report.

    ``history_start``: the first day from which the contracts table is complete (every contract
    in force from then on is in it). Before it a warehouse often holds only the survivors, which
    shows as 100% GRR and 100% cohort retention; periods starting earlier are greyed and kept out
    of headlines and cohorts. Default: detected (:func:`detect_history_start`).
    ``industry_categories``: an optional ``industry -> 1 | 2 | 3`` mapping for a downturn view
    (1 hit hard, 2 neutral, 3 benefits); industries not in it are reported as unmapped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    history_start: date | None = None
    industry_categories: dict[str, int] = Field(default_factory=dict)

    @field_validator("industry_categories")
    @classmethod
    def _known_categories(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if v not in CATEGORY_NAMES}
        if bad:
            raise ValueError(f"categories must be 1, 2 or 3 ({CATEGORY_NAMES}); got {bad}")
        return value


def detect_history_start(contracts: pd.DataFrame | Warehouse) -> pd.Timestamp | None:
    """The first day a contract ends in the data: before it no loss can show, and an export that
    begins mid-history (only the contracts still in force, however early they started) ends its
    first contracts soon after it begins. None when no contract ever ends."""
    prepared = prepare_contracts(contracts)
    ends = prepared["end_date"].dropna()
    return None if ends.empty else pd.Timestamp(ends.min()).normalize()


def mark_history(frame: pd.DataFrame, history_start: date | datetime | None) -> pd.DataFrame:
    """``frame`` (an ARR bridge) with ``complete_history``: the period starts on or after
    ``history_start`` (all True without one)."""
    start = None if history_start is None else _timestamp(history_start)
    complete = True if start is None else frame["period_start"] >= start
    return frame.assign(complete_history=complete)


def with_industry_category(contracts: pd.DataFrame, mapping: dict[str, int]) -> pd.DataFrame:
    """``contracts`` with ``industry_category`` ("1 hit hard", ..., or "unmapped")."""
    labels = {k: f"{v} {CATEGORY_NAMES[v]}" for k, v in mapping.items()}
    industry = (
        contracts["industry"] if "industry" in contracts else pd.Series(None, contracts.index)
    )
    category = industry.map(labels).astype(object).where(industry.map(labels).notna(), "unmapped")
    return contracts.assign(**{CATEGORY_COLUMN: category})


# --- inputs -------------------------------------------------------------------------------------


def load_contracts(wh: Warehouse) -> pd.DataFrame:
    """Contracts with segment, csm_owner and industry, read from the staging views."""
    return wh.query((_SQL_DIR / "retention_contracts.sql").read_text())


def _example_rows(frame: pd.DataFrame, mask: pd.Series) -> str:
    return frame.loc[mask, list(_REQUIRED)].head(3).to_string(index=False)


def prepare_contracts(contracts: pd.DataFrame | Warehouse) -> pd.DataFrame:
    """Validate a contracts frame (or read it from the warehouse) and normalise its types."""
    frame = load_contracts(contracts) if isinstance(contracts, Warehouse) else contracts
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise KeyError(f"contracts lacks column(s) {missing}; it has {list(frame.columns)}")
    out = frame.copy()
    out["account_id"] = out["account_id"].astype(str)
    out["start_date"] = pd.to_datetime(out["start_date"]).astype("datetime64[ns]")
    out["end_date"] = pd.to_datetime(out["end_date"]).astype("datetime64[ns]")
    out["arr"] = pd.to_numeric(out["arr"]).astype(float)
    checks = {
        "null start_date or arr": out[["start_date", "arr"]].isna().any(axis=1),
        "negative arr": out["arr"] < 0,
        "end_date before start_date": out["end_date"] < out["start_date"],
    }
    for problem, mask in checks.items():
        if mask.any():
            raise ValueError(
                f"contracts: {int(mask.sum())} row(s) with {problem}, e.g.\n"
                f"{_example_rows(out, mask)}"
            )
    return out


def _timestamp(value: date | datetime | str) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def arr_at(contracts: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """ARR of each ``(account_id, t)`` pair: contracts with ``start_date <= t < end_date``
    (``end_date`` NaT: evergreen, in force from its start)."""
    keyed = pairs[["account_id", "t"]].reset_index(drop=True)
    merged = keyed.reset_index().merge(
        contracts[["account_id", "start_date", "end_date", "arr"]], on="account_id"
    )
    in_force = merged["end_date"].isna() | (merged["t"] < merged["end_date"])
    live = merged[(merged["start_date"] <= merged["t"]) & in_force]
    sums = live.groupby("index")["arr"].sum()
    return sums.reindex(keyed.index, fill_value=0.0).rename("arr")


def arr_at_with_grace(contracts: pd.DataFrame, pairs: pd.DataFrame, grace_days: int) -> pd.Series:
    """Like :func:`arr_at`, but an account with no ARR at t whose next contract starts within
    ``grace_days`` after t (a late renewal) counts with the ARR it has on that start day."""
    base = arr_at(contracts, pairs)
    if grace_days <= 0:
        return base
    keyed = pairs[["account_id", "t"]].reset_index(drop=True)
    gaps = keyed[base.to_numpy() <= 0].reset_index()
    starts = gaps.merge(contracts[["account_id", "start_date"]], on="account_id")
    window = (starts["start_date"] > starts["t"]) & (
        starts["start_date"] <= starts["t"] + pd.Timedelta(days=grace_days)
    )
    nxt = starts[window].groupby("index")["start_date"].min()
    if nxt.empty:
        return base
    probe = keyed.loc[nxt.index, ["account_id"]].assign(t=nxt.to_numpy())
    filled = base.copy()
    filled.loc[nxt.index] = arr_at(contracts, probe).to_numpy()
    return filled


def account_attributes(contracts: pd.DataFrame) -> pd.DataFrame:
    """One row per account: grouping attributes and ``signup_cohort`` (quarter of first start)."""
    first = contracts.groupby("account_id")["start_date"].min()
    attrs = pd.DataFrame({"first_start": first})
    attrs["signup_cohort"] = first.dt.to_period("Q").astype(str)
    extra = [c for c in contracts.columns if c not in (*_REQUIRED, "contract_id")]
    if extra:
        latest = contracts.sort_values("start_date").groupby("account_id")[extra].last()
        attrs = attrs.join(latest)
    return attrs


def _exclude(contracts: pd.DataFrame, segments: list[str] | None) -> pd.DataFrame:
    if not segments:
        return contracts
    if "segment" not in contracts.columns:
        raise KeyError("exclude_segments needs a 'segment' column in contracts (or stg_accounts)")
    return contracts[~contracts["segment"].isin(segments)]


# --- periods ------------------------------------------------------------------------------------


def period_bounds(period: Period, start: date | datetime, end: date | datetime) -> pd.DataFrame:
    """Complete periods inside ``[start, end]``: month and quarter on calendar boundaries; ttm is
    the trailing 12 months ending at each month boundary."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    lo, hi = _timestamp(start), _timestamp(end)
    if hi <= lo:
        raise ValueError(f"end ({hi.date()}) must be after start ({lo.date()})")
    if period == "ttm":
        ends = pd.date_range(lo + pd.DateOffset(months=12), hi, freq="MS")
        ends = ends[ends - pd.DateOffset(months=12) >= lo]
        starts = ends - pd.DateOffset(months=12)
        labels = [f"TTM to {(e - pd.DateOffset(months=1)):%Y-%m}" for e in ends]
    else:
        freq = "MS" if period == "month" else "QS"
        edges = pd.date_range(lo, hi, freq=freq)
        starts, ends = edges[:-1], edges[1:]
        fmt = (lambda t: f"{t:%Y-%m}") if period == "month" else (lambda t: f"{t.year}Q{t.quarter}")
        labels = [fmt(s) for s in starts]
    return pd.DataFrame({"period": labels, "period_start": starts, "period_end": ends})


# --- movements ----------------------------------------------------------------------------------


def account_movements(
    contracts: pd.DataFrame, bounds: pd.DataFrame, *, grace_days: int = 0
) -> pd.DataFrame:
    """Per account and period: starting/ending ARR and the movement it makes."""
    accounts = pd.Index(contracts["account_id"].unique(), name="account_id")
    grid = bounds.merge(accounts.to_frame(index=False), how="cross")
    for col, at in (("starting_arr", "period_start"), ("ending_arr", "period_end")):
        pairs = grid.rename(columns={at: "t"})
        grid[col] = arr_at_with_grace(contracts, pairs, grace_days).to_numpy()
    s, e = grid["starting_arr"], grid["ending_arr"]
    existing, churned = s > 0, (s > 0) & (e <= 0)
    retained = existing & ~churned
    grid["expansion"] = np.where(retained, (e - s).clip(lower=0), 0.0)
    grid["contraction"] = np.where(retained, (s - e).clip(lower=0), 0.0)
    grid["churned_arr"] = np.where(churned, s, 0.0)
    grid["new_arr"] = np.where(~existing & (e > 0), e, 0.0)
    grid["logos_start"] = existing.astype(int)
    grid["logos_churned"] = churned.astype(int)
    grid["logos_new"] = (~existing & (e > 0)).astype(int)
    return grid[(s > 0) | (e > 0)].reset_index(drop=True)


def _rates(frame: pd.DataFrame) -> pd.DataFrame:
    start = frame["starting_arr"].where(frame["starting_arr"] > 0)
    kept = frame["starting_arr"] - frame["contraction"] - frame["churned_arr"]
    frame["ndr"] = (kept + frame["expansion"]) / start
    frame["grr"] = kept / start
    frame["logo_churn_rate"] = frame["logos_churned"] / frame["logos_start"].where(
        frame["logos_start"] > 0
    )
    return frame


def _rolling(frame: pd.DataFrame, by: list[str], window: int) -> pd.DataFrame:
    ordered = frame.sort_values([*by, "period_start"])
    grouped = ordered.groupby(by, sort=False) if by else ordered
    for col in ("ndr", "grr"):
        series = grouped[col].rolling(window, min_periods=window).mean()
        values = series.reset_index(level=list(range(len(by))), drop=True) if by else series
        ordered[f"{col}_rolling"] = values
    return ordered.sort_index()


def arr_movements(
    contracts: pd.DataFrame | Warehouse,
    *,
    period: Period = "quarter",
    start: date | datetime,
    end: date | datetime,
    by: list[str] | None = None,
    exclude_segments: list[str] | None = None,
    rolling: int | None = None,
    grace_days: int = 0,
) -> pd.DataFrame:
    """ARR bridge per complete period in ``[start, end]`` (and per group in ``by``).

    Columns: ``period, period_start, period_end`` (the ``by`` columns first when given),
    ``starting_arr, expansion, contraction, churned_arr, new_arr, ending_arr`` (currency),
    ``ndr, grr`` (ratios over accounts existing at ``period_start``; NaN without any),
    ``logos_start, logos_churned, logos_new, logo_churn_rate``. ``by`` may name ``segment``,
    ``csm_owner``, ``industry`` or ``signup_cohort`` (quarter of the account's first contract);
    attributes are the account's latest. ``rolling=n`` adds ``ndr_rolling``/``grr_rolling``, the
    mean of the last n periods' rates (``rolling=4`` with quarters: the 4-quarter average).
    ``grace_days`` treats a renewal that starts up to that many days late as continuous (the
    account keeps the renewed ARR through the gap); periods then need ``period_end +
    grace_days <= end`` to be reported, so a late renewal is never mistaken for churn.
    """
    by = list(by or [])
    prepared = _exclude(prepare_contracts(contracts), exclude_segments)
    attrs = account_attributes(prepared)
    unknown = [c for c in by if c not in attrs.columns]
    if unknown:
        raise KeyError(
            f"arr_movements by={unknown}: not an account attribute {list(attrs.columns)}"
        )
    bounds = period_bounds(period, start, end)
    cutoff = _timestamp(end) - pd.Timedelta(days=grace_days)
    bounds = bounds[bounds["period_end"] <= cutoff].reset_index(drop=True)
    if bounds.empty:
        raise ValueError(
            f"arr_movements: no complete {period} period between {start} and {end} "
            f"(with grace_days={grace_days}, a period must end by {cutoff.date()})"
        )
    moves = account_movements(prepared, bounds, grace_days=grace_days)
    if by:
        groups = attrs[by].astype("object").fillna(_MISSING_GROUP)
        moves = moves.join(groups, on="account_id")
    sums = ["starting_arr", "expansion", "contraction", "churned_arr", "new_arr", "ending_arr"]
    counts = ["logos_start", "logos_churned", "logos_new"]
    keys = [*by, "period", "period_start", "period_end"]
    out = moves.groupby(keys, sort=True)[sums + counts].sum().reset_index()
    out = _rates(out)
    if rolling:
        out = _rolling(out, by, rolling)
    extra = ["ndr_rolling", "grr_rolling"] if rolling else []
    return out[[*by, *MOVEMENT_COLUMNS, *extra]].sort_values(
        [*by, "period_start"], ignore_index=True
    )


# --- cohorts ------------------------------------------------------------------------------------


def cohort_retention(
    contracts: pd.DataFrame | Warehouse,
    *,
    end: date | datetime,
    cohort: Literal["month", "quarter"] = "quarter",
    step_months: int = 3,
    exclude_segments: list[str] | None = None,
    start: date | datetime | None = None,
    grace_days: int = 0,
) -> pd.DataFrame:
    """Signup cohort x months since each account's first contract start.

    An account's starting ARR is its ARR on the day its first contract starts; at ``k`` months
    later its ARR is measured again (0 once churned, more after expansion, again > 0 if it came
    back). ``arr_retention`` = cohort ARR at k / cohort starting ARR (NDR-style, can exceed 1);
    ``logo_retention`` = share of the cohort's accounts with ARR > 0 at k. A (cohort, k) cell is
    shown only when every account in the cohort has reached k months by ``end``. With ``start``
    (the first day the contract history is complete), accounts whose first contract began before
    it are left out: the warehouse only holds the survivors of those cohorts. ``grace_days``, as
    in :func:`arr_movements`: a renewal starting up to that many days after k months counts
    (with its ARR on its start day), so an anniversary renewed a few days late is not a lost logo;
    a cell is then shown only once k months + ``grace_days`` have passed by ``end``.
    """
    if cohort not in ("month", "quarter"):
        raise ValueError(f"cohort must be 'month' or 'quarter', got {cohort!r}")
    if step_months < 1:
        raise ValueError(f"step_months must be >= 1, got {step_months}")
    prepared = _exclude(prepare_contracts(contracts), exclude_segments)
    first = account_attributes(prepared)["first_start"]
    if start is not None:
        first = first[first >= _timestamp(start)]
    label = first.dt.to_period("Q" if cohort == "quarter" else "M").astype(str)
    limit = _timestamp(end) - pd.Timedelta(days=max(grace_days, 0))
    grid = _cohort_grid(first, step_months, limit)
    grid["arr"] = arr_at_with_grace(prepared, grid, grace_days).to_numpy()
    grid["cohort"] = grid["account_id"].map(label)
    base = grid[grid["months_since_start"] == 0].set_index("account_id")["arr"]
    grid["starting_arr"] = grid["account_id"].map(base)
    grid["retained"] = (grid["arr"] > 0).astype(int)
    out = grid.groupby(["cohort", "months_since_start"], sort=True).agg(
        observed=("account_id", "size"),
        starting_arr=("starting_arr", "sum"),
        arr=("arr", "sum"),
        logos_retained=("retained", "sum"),
    )
    out = out.reset_index()
    out["accounts"] = out["cohort"].map(label.value_counts())
    out = out[out["observed"] == out["accounts"]].drop(columns="observed")
    out["arr_retention"] = out["arr"] / out["starting_arr"].where(out["starting_arr"] > 0)
    out["logo_retention"] = out["logos_retained"] / out["accounts"]
    columns = [
        "cohort",
        "months_since_start",
        "accounts",
        "starting_arr",
        "arr",
        "arr_retention",
        "logos_retained",
        "logo_retention",
    ]
    return out[columns].reset_index(drop=True)


def _cohort_grid(first: pd.Series, step_months: int, limit: pd.Timestamp) -> pd.DataFrame:
    """(account_id, months_since_start, t = first start + k months) for every t <= limit."""
    parts, k = [], 0
    while True:
        t = first + pd.DateOffset(months=k)
        seen = t[t <= limit]
        if seen.empty:
            break
        parts.append(
            pd.DataFrame({"account_id": seen.index, "months_since_start": k, "t": seen.to_numpy()})
        )
        k += step_months
    if not parts:
        raise ValueError(f"cohort_retention: no contract starts on or before end ({limit.date()})")
    return pd.concat(parts, ignore_index=True)


# --- churn events -------------------------------------------------------------------------------


def churn_events(
    contracts: pd.DataFrame | Warehouse,
    *,
    start: date | datetime,
    end: date | datetime,
    grace_days: int = 0,
) -> pd.DataFrame:
    """Logo churn events with ``start < churn_date <= end``: the day an account's ARR falls to 0
    (a contract end with no contract covering it) and no new contract starts within
    ``grace_days`` (one starting exactly ``grace_days`` late renews, as in ``labels.sql``).
    ``churned_arr`` is the ARR the day before. Needs ``churn_date + grace_days <= end`` so that
    a late renewal could still have been seen."""
    prepared = prepare_contracts(contracts)
    lo, hi = _timestamp(start), _timestamp(end)
    cand = prepared[["account_id", "end_date"]].dropna().drop_duplicates()  # evergreen: no end
    cand = cand[(cand["end_date"] > lo) & (cand["end_date"] + pd.Timedelta(days=grace_days) <= hi)]
    cand = cand.rename(columns={"end_date": "t"}).reset_index(drop=True)
    cand["arr_on"] = arr_at(prepared, cand).values
    before = cand.assign(t=cand["t"] - pd.Timedelta(days=1))
    cand["churned_arr"] = arr_at(prepared, before).values
    cand = cand[(cand["arr_on"] <= 0) & (cand["churned_arr"] > 0)]
    starts = prepared[["account_id", "start_date"]].merge(cand[["account_id", "t"]])
    back = starts[
        (starts["start_date"] >= starts["t"])
        & (starts["start_date"] <= starts["t"] + pd.Timedelta(days=grace_days))
    ]
    renewed = pd.MultiIndex.from_frame(back[["account_id", "t"]])
    keep = ~pd.MultiIndex.from_frame(cand[["account_id", "t"]]).isin(renewed)
    events = cand[keep].rename(columns={"t": "churn_date"})
    return events[["account_id", "churn_date", "churned_arr"]].sort_values(
        ["churn_date", "account_id"], ignore_index=True
    )
