"""Next-period NDR/GRR forecast from calibrated per-account probabilities, and its backtest.

Each scored account is an independent draw over the horizon: it churns with probability
``churn_probability`` (losing its ``arr``), otherwise it expands with probability
``expansion_probability`` (gaining ``expected_expansion_arr / expansion_probability``, so the
expected gain is the scored ``expected_expansion_arr``), otherwise it stays. Optional
``contraction_probability`` and ``expected_contraction_arr`` columns add contraction the same
way. Intervals are quantiles of the simulated sums (seeded Monte Carlo); the expectations are
exact sums. Formulas and choices: ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

TOTAL = "all"
_CHUNK_CELLS = 2_000_000  # accounts x simulations held in memory at once
_OUTPUTS = ("churned_arr", "contraction", "expansion", "ndr", "grr", "logos_churned")


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _check_probability(
    frame: pd.DataFrame, column: str, *, missing_is_zero: bool = False
) -> np.ndarray:
    values = pd.to_numeric(frame[column]).to_numpy(dtype=float)
    if missing_is_zero:  # no model for this outcome (e.g. expansion not trained): no movement
        values = np.nan_to_num(values, nan=0.0)
    bad = np.isnan(values) | (values < 0) | (values > 1)
    if bad.any():
        examples = frame.loc[bad, [c for c in ("account_id", column) if c in frame]].head(3)
        raise ValueError(
            f"predictions.{column}: {int(bad.sum())} value(s) outside [0, 1] or missing, e.g.\n"
            f"{examples.to_string(index=False)}"
        )
    return values


def account_outcomes(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per account: ``arr``, probabilities of churn / contraction / expansion (made mutually
    exclusive in that order) and the ARR moved if each happens."""
    _require(predictions, ["arr", "churn_probability"], "predictions")
    out = pd.DataFrame(index=predictions.index)
    out["arr"] = pd.to_numeric(predictions["arr"]).astype(float)
    if (out["arr"] < 0).any() or out["arr"].isna().any():
        raise ValueError("predictions.arr must be a non-negative number for every account")
    out["p_churn"] = _check_probability(predictions, "churn_probability")
    room = 1.0 - out["p_churn"]
    for kind in ("contraction", "expansion"):
        p_col, amount_col = f"{kind}_probability", f"expected_{kind}_arr"
        if p_col in predictions and amount_col in predictions:
            raw = _check_probability(predictions, p_col, missing_is_zero=True)
            expected = pd.to_numeric(predictions[amount_col]).fillna(0.0).to_numpy(dtype=float)
            amount = np.divide(expected, raw, out=np.zeros_like(expected), where=raw > 0)
            if kind == "contraction":
                amount = np.minimum(amount, out["arr"].to_numpy())
            p, out[f"amount_{kind}"] = np.minimum(raw, room), amount
        else:
            p, out[f"amount_{kind}"] = np.zeros(len(out)), 0.0
        out[f"p_{kind}"] = p
        room = room - p
    return out


def _simulate_sums(
    outcomes: pd.DataFrame, membership: np.ndarray, *, n_sims: int, seed: int
) -> dict[str, np.ndarray]:
    """Row x simulation sums of churned ARR, contraction, expansion and churned logos, where
    ``membership`` (rows x accounts, 0/1) says which accounts each output row adds up."""
    rng = np.random.default_rng(seed)
    n = len(outcomes)
    keys = ("churned_arr", "contraction", "expansion", "logos_churned")
    sums = {k: np.zeros((membership.shape[0], n_sims)) for k in keys}
    cut_c = outcomes["p_churn"].to_numpy()[:, None]
    cut_k = cut_c + outcomes["p_contraction"].to_numpy()[:, None]
    cut_e = cut_k + outcomes["p_expansion"].to_numpy()[:, None]
    moved = {
        "churned_arr": outcomes["arr"].to_numpy()[:, None],
        "contraction": outcomes["amount_contraction"].to_numpy()[:, None],
        "expansion": outcomes["amount_expansion"].to_numpy()[:, None],
        "logos_churned": np.ones((n, 1)),
    }
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for lo in range(0, n_sims, chunk):
        hi = min(n_sims, lo + chunk)
        u = rng.random((n, hi - lo))
        happened = {
            "churned_arr": u < cut_c,
            "contraction": (u >= cut_c) & (u < cut_k),
            "expansion": (u >= cut_k) & (u < cut_e),
        }
        happened["logos_churned"] = happened["churned_arr"]
        for key in keys:
            sums[key][:, lo:hi] = membership @ (happened[key] * moved[key])
    return sums


def _group_codes(predictions: pd.DataFrame, by: str | None) -> tuple[np.ndarray, list[str]]:
    if by is None:
        return np.zeros(len(predictions), dtype=int), []
    _require(predictions, [by], "predictions")
    values = predictions[by].astype("object").fillna("(missing)").astype(str)
    codes, labels = pd.factorize(values, sort=True)
    return codes, list(labels)


def forecast_next_period(
    predictions: pd.DataFrame,
    *,
    by: str | None = "segment",
    n_sims: int = 10_000,
    seed: int,
    interval: float = 0.9,
) -> pd.DataFrame:
    """Expected next-period churned ARR, contraction, expansion, NDR and GRR with a central
    ``interval`` prediction interval, per ``by`` group plus a total row (``by`` value ``"all"``).

    The period is the horizon the probabilities were scored for. ``expected_*`` columns are exact
    expectations (e.g. churned ARR = sum of churn_probability x arr); ``*_lo``/``*_hi`` are the
    simulated quantiles at (1 - interval)/2 and (1 + interval)/2.
    """
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval}")
    if n_sims < 100:
        raise ValueError(f"n_sims must be at least 100 for stable quantiles, got {n_sims}")
    if predictions.empty:
        raise ValueError("predictions is empty: nothing to forecast")
    outcomes = account_outcomes(predictions)
    codes, labels = _group_codes(predictions, by)
    membership = np.zeros((len(labels) + 1, len(outcomes)))
    membership[codes, np.arange(len(outcomes))] = 1.0
    membership[-1] = 1.0  # the total row
    sims = _simulate_sums(outcomes, membership, n_sims=n_sims, seed=seed)
    return _summarise(outcomes, membership, sims, [*labels, TOTAL], by, interval)


def _summarise(
    outcomes: pd.DataFrame,
    membership: np.ndarray,
    sims: dict[str, np.ndarray],
    labels: list[str],
    by: str | None,
    interval: float,
) -> pd.DataFrame:
    start = membership @ outcomes["arr"].to_numpy()
    expected = {
        "churned_arr": outcomes["p_churn"] * outcomes["arr"],
        "contraction": outcomes["p_contraction"] * outcomes["amount_contraction"],
        "expansion": outcomes["p_expansion"] * outcomes["amount_expansion"],
        "logos_churned": outcomes["p_churn"],
    }
    exp = {k: membership @ v.to_numpy() for k, v in expected.items()}
    safe = np.where(start > 0, start, np.nan)[:, None]
    sims = dict(sims)
    sims["grr"] = (safe - sims["churned_arr"] - sims["contraction"]) / safe
    sims["ndr"] = sims["grr"] + sims["expansion"] / safe
    exp["grr"] = (start - exp["churned_arr"] - exp["contraction"]) / safe[:, 0]
    exp["ndr"] = exp["grr"] + exp["expansion"] / safe[:, 0]
    q = [(1 - interval) / 2, (1 + interval) / 2]
    columns: dict[str, object] = {
        by or "group": labels,
        "accounts": membership.sum(axis=1).astype(int),
        "starting_arr": start,
    }
    for key in _OUTPUTS:
        lo, hi = np.quantile(sims[key], q, axis=1)
        if key == "logos_churned":  # a count of independent Bernoullis: exact quantiles
            p = outcomes["p_churn"].to_numpy()
            exact = [poisson_binomial_interval(p[row > 0], interval) for row in membership]
            lo, hi = np.array(exact, dtype=float).T
        columns.update({f"expected_{key}": exp[key], f"{key}_lo": lo, f"{key}_hi": hi})
    columns["interval"] = interval
    return pd.DataFrame(columns)


def poisson_binomial_pmf(probabilities: np.ndarray) -> np.ndarray:
    """Exact distribution of the number of successes among independent Bernoulli(p_i):
    element k is P(count = k). O(n^2) by dynamic programming, vectorised per account."""
    p = np.asarray(probabilities, dtype=float)
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, pi in enumerate(p):
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - pi) + pmf[: i + 1] * pi
        pmf[0] *= 1 - pi
    return pmf


def poisson_binomial_interval(probabilities: np.ndarray, interval: float) -> tuple[int, int]:
    """Central ``interval`` of the success count: the (1 - interval)/2 and (1 + interval)/2
    quantiles (smallest k whose cumulative probability reaches each level)."""
    cdf = np.cumsum(poisson_binomial_pmf(probabilities))
    levels = np.array([(1 - interval) / 2, (1 + interval) / 2]) - 1e-12
    lo, hi = np.searchsorted(cdf, levels, side="left")
    return int(lo), int(hi)


# --- backtest -----------------------------------------------------------------------------------


def realised_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per (as_of, account): churned (bool) and the ARR churned / expanded / contracted over the
    horizon, from a labels frame. With ``arr_at_as_of`` and ``arr_at_horizon`` every ARR change
    counts (an expansion below the label's threshold too); otherwise the frame must carry
    ``churned_arr``, ``expansion_arr`` and ``contraction_arr`` (or ``contracted_arr``)."""
    _require(outcomes, ["account_id", "as_of", "churned"], "outcomes")
    out = outcomes[outcomes["churned"].notna()].copy()
    out["churned"] = out["churned"].astype(bool)
    if {"arr_at_as_of", "arr_at_horizon"} <= set(out.columns):
        start = out["arr_at_as_of"].astype(float)
        end = out["arr_at_horizon"].astype(float).fillna(0.0).where(~out["churned"], 0.0)
        out["churned_arr"] = start.where(out["churned"], 0.0)
        out["expansion_arr"] = (end - start).clip(lower=0)
        out["contraction_arr"] = (start - end).clip(lower=0).where(~out["churned"], 0.0)
    else:
        out = out.rename(columns={"contracted_arr": "contraction_arr"})
        _require(
            out,
            ["churned_arr", "expansion_arr", "contraction_arr"],
            "outcomes (without arr_at_as_of/arr_at_horizon)",
        )
        for col in ("churned_arr", "expansion_arr", "contraction_arr"):
            out[col] = out[col].astype(float).fillna(0.0)
    out["account_id"] = out["account_id"].astype(str)
    out["run_date"] = pd.to_datetime(out["as_of"]).dt.normalize()
    columns = [
        "run_date",
        "account_id",
        "churned",
        "churned_arr",
        "expansion_arr",
        "contraction_arr",
    ]
    return out[columns]


def backtest_forecast(
    past_predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    n_sims: int = 10_000,
    seed: int,
    interval: float = 0.9,
) -> pd.DataFrame:
    """Forecast made at each past run date vs what happened over its (matured) horizon.

    Only accounts whose outcome is known are kept. Per run date and quantity (churned ARR,
    expansion, churned logos, NDR, GRR): expected, interval, actual, error = actual - expected,
    and ``covered`` (actual inside the interval)."""
    _require(past_predictions, ["run_date", "account_id"], "past_predictions")
    preds = past_predictions.assign(
        run_date=pd.to_datetime(past_predictions["run_date"]).dt.normalize(),
        account_id=past_predictions["account_id"].astype(str),
    )
    joined = preds.merge(
        realised_outcomes(outcomes),
        on=["run_date", "account_id"],
        how="inner",
        validate="one_to_one",
    )
    rows = []
    for i, (run_date, group) in enumerate(joined.groupby("run_date", sort=True)):
        fc = forecast_next_period(group, by=None, n_sims=n_sims, seed=seed + i, interval=interval)
        rows += _compare(run_date, fc.iloc[0], group)
    return pd.DataFrame(rows)


def _compare(run_date: pd.Timestamp, fc: pd.Series, group: pd.DataFrame) -> list[dict]:
    start = float(group["arr"].sum())
    actual = {
        "churned_arr": float(group["churned_arr"].sum()),
        "expansion": float(group["expansion_arr"].sum()),
        "logos_churned": float(group["churned"].sum()),
    }
    lost = actual["churned_arr"] + float(group["contraction_arr"].sum())
    actual["grr"] = (start - lost) / start if start > 0 else np.nan
    actual["ndr"] = actual["grr"] + actual["expansion"] / start if start > 0 else np.nan
    rows = []
    for key, value in actual.items():
        lo, hi, expected = fc[f"{key}_lo"], fc[f"{key}_hi"], fc[f"expected_{key}"]
        rows.append(
            {
                "run_date": run_date,
                "quantity": key,
                "accounts": int(fc["accounts"]),
                "expected": float(expected),
                "lo": float(lo),
                "hi": float(hi),
                "actual": value,
                "error": value - float(expected),
                "covered": bool(lo <= value <= hi),
            }
        )
    return rows


def backtest_summary(backtest: pd.DataFrame) -> pd.DataFrame:
    """Per quantity: run dates, interval coverage, mean error (bias) and mean absolute error."""
    return (
        backtest.groupby("quantity", sort=False)
        .agg(
            run_dates=("run_date", "nunique"),
            coverage=("covered", "mean"),
            mean_error=("error", "mean"),
            mean_abs_error=("error", lambda e: float(np.abs(e).mean())),
        )
        .reset_index()
    )
