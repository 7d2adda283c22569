"""Next-period NDR/GRR forecast from calibrated per-account probabilities, and its backtest.

Each scored account is an independent draw over the horizon: it churns with probability
``churn_probability`` (losing its ``arr``), otherwise it expands with probability
``expansion_probability`` (gaining ``expected_expansion_arr / expansion_probability``, so the
expected gain is the scored ``expected_expansion_arr``), otherwise it stays. Optional
``contraction_probability`` and ``expected_contraction_arr`` columns add contraction the same
way. Intervals are quantiles of the simulated sums (seeded Monte Carlo); the expectations are
exact sums; the churned-logo interval is exact (the Poisson-binomial kernel of
``models.poisson_binomial``, mixed over the level spread). Formulas and choices:
``docs/metrics.md``.

Model-level uncertainty (:class:`LevelUncertainty`): the probabilities themselves can be off
as a whole (a model that over-predicts churn next quarter). With a level spread, each simulation
also draws one factor on the odds of churn (and one on the odds of expansion) shared by all
accounts, so the interval carries the Bernoulli part and the level part. The spread is fitted
out of time on the training backtest folds (:func:`models.metrics.level_spread`) and travels in
the bundle's metrics; :func:`level_from_matured` shrinks a level correction from matured past
run dates of the same model towards none. Without it the interval is the pure Bernoulli one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.dataset import matured
from models.poisson_binomial import (
    DIRECT_PMF_MAX,
    central_interval,
    pmf_direct,
    pmf_fft,
    poisson_binomial_interval,
)

TOTAL = "all"
_CHUNK_CELLS = 2_000_000  # accounts x simulations held in memory at once
_OUTPUTS = ("churned_arr", "contraction", "expansion", "ndr", "grr", "logos_churned")
_LEVEL_NODES = 31  # Gauss-Hermite nodes for the churned-logo interval under a level spread


@dataclass(frozen=True)
class LevelUncertainty:
    """How far the probabilities may be off as a whole, on the log-odds scale.

    Every simulation multiplies the churn odds of all accounts by ``exp(churn_shift + churn_sd
    * z)`` with one standard normal ``z`` per simulation (expansion likewise, independently).
    A shift is a level correction: it moves the expectations too. All zero: pure Bernoulli.
    """

    churn_sd: float = 0.0
    expansion_sd: float = 0.0
    churn_shift: float = 0.0
    expansion_shift: float = 0.0

    def __post_init__(self) -> None:
        for name in ("churn_sd", "expansion_sd", "churn_shift", "expansion_shift"):
            value = getattr(self, name)
            if not np.isfinite(value) or (name.endswith("_sd") and value < 0):
                raise ValueError(f"LevelUncertainty.{name} must be finite (sd >= 0), got {value}")

    @property
    def used(self) -> bool:
        return any((self.churn_sd, self.expansion_sd, self.churn_shift, self.expansion_shift))


def scale_odds(p: np.ndarray, log_factor: np.ndarray | float) -> np.ndarray:
    """Probabilities whose odds are multiplied by ``exp(log_factor)``; 0 and 1 stay put."""
    factor = np.exp(log_factor)
    return p * factor / (1.0 - p + p * factor)


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
    outcomes: pd.DataFrame,
    membership: np.ndarray,
    *,
    n_sims: int,
    seed: int,
    churn_sd: float = 0.0,
    expansion_sd: float = 0.0,
) -> dict[str, np.ndarray]:
    """Row x simulation sums of churned ARR, contraction, expansion and churned logos, where
    ``membership`` (rows x accounts, 0/1) says which accounts each output row adds up. With a
    level sd, simulation j scales all churn (expansion) odds by ``exp(sd * z_j)``."""
    rng = np.random.default_rng(seed)
    z_churn, z_exp = np.random.default_rng([seed, 1]).standard_normal((2, n_sims))
    n = len(outcomes)
    keys = ("churned_arr", "contraction", "expansion", "logos_churned")
    sums = {k: np.zeros((membership.shape[0], n_sims)) for k in keys}
    p_churn = outcomes["p_churn"].to_numpy()[:, None]
    p_contraction = outcomes["p_contraction"].to_numpy()[:, None]
    p_expansion = outcomes["p_expansion"].to_numpy()[:, None]
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
        cut_c, cut_k, cut_e = _cuts(
            p_churn,
            p_contraction,
            p_expansion,
            churn_sd * z_churn[lo:hi],
            expansion_sd * z_exp[lo:hi],
        )
        happened = {
            "churned_arr": u < cut_c,
            "contraction": (u >= cut_c) & (u < cut_k),
            "expansion": (u >= cut_k) & (u < cut_e),
        }
        happened["logos_churned"] = happened["churned_arr"]
        for key in keys:
            sums[key][:, lo:hi] = membership @ (happened[key] * moved[key])
    return sums


def _cuts(
    p_churn: np.ndarray,
    p_contraction: np.ndarray,
    p_expansion: np.ndarray,
    churn_level: np.ndarray,
    expansion_level: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative thresholds of churn / contraction / expansion on a uniform draw, per account
    (rows) and simulation (columns); expansion still fits in what churn and contraction leave."""
    if not churn_level.any() and not expansion_level.any():
        cut_k = p_churn + p_contraction
        return p_churn, cut_k, cut_k + p_expansion
    if churn_level.any():
        p_churn = scale_odds(p_churn, churn_level[None, :])
    if expansion_level.any():
        p_expansion = scale_odds(p_expansion, expansion_level[None, :])
    cut_k = p_churn + p_contraction
    return p_churn, cut_k, cut_k + np.minimum(p_expansion, np.clip(1.0 - cut_k, 0.0, None))


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
    level: LevelUncertainty | None = None,
) -> pd.DataFrame:
    """Expected next-period churned ARR, contraction, expansion, NDR and GRR with a central
    ``interval`` prediction interval, per ``by`` group plus a total row (``by`` value ``"all"``).

    The period is the horizon the probabilities were scored for. ``expected_*`` columns are exact
    expectations (e.g. churned ARR = sum of churn_probability x arr); ``*_lo``/``*_hi`` are the
    simulated quantiles at (1 - interval)/2 and (1 + interval)/2. Without ``level`` the interval
    carries only the Bernoulli noise of the accounts; with it, also the model-level spread, and a
    level shift moves the probabilities (so the expectations) before anything is summed.
    """
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval}")
    if n_sims < 100:
        raise ValueError(f"n_sims must be at least 100 for stable quantiles, got {n_sims}")
    if predictions.empty:
        raise ValueError("predictions is empty: nothing to forecast")
    level = level or LevelUncertainty()
    outcomes = shift_levels(account_outcomes(predictions), level)
    codes, labels = _group_codes(predictions, by)
    membership = np.zeros((len(labels) + 1, len(outcomes)))
    membership[codes, np.arange(len(outcomes))] = 1.0
    membership[-1] = 1.0  # the total row
    sims = _simulate_sums(
        outcomes,
        membership,
        n_sims=n_sims,
        seed=seed,
        churn_sd=level.churn_sd,
        expansion_sd=level.expansion_sd,
    )
    return _summarise(outcomes, membership, sims, [*labels, TOTAL], by, interval, level.churn_sd)


def shift_levels(outcomes: pd.DataFrame, level: LevelUncertainty) -> pd.DataFrame:
    """``account_outcomes`` with churn and expansion odds moved by the level shifts; expansion
    still fits in what churn and contraction leave. No shift: ``outcomes`` unchanged."""
    if not (level.churn_shift or level.expansion_shift):
        return outcomes
    out = outcomes.copy()
    out["p_churn"] = scale_odds(out["p_churn"].to_numpy(), level.churn_shift)
    room = np.clip(1.0 - out["p_churn"] - out["p_contraction"], 0.0, None)
    expansion = scale_odds(out["p_expansion"].to_numpy(), level.expansion_shift)
    out["p_expansion"] = np.minimum(expansion, room)
    return out


def _summarise(
    outcomes: pd.DataFrame,
    membership: np.ndarray,
    sims: dict[str, np.ndarray],
    labels: list[str],
    by: str | None,
    interval: float,
    churn_sd: float,
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
        if key == "logos_churned":  # a count of Bernoullis: exact quantiles (mixed over levels)
            p = outcomes["p_churn"].to_numpy()
            exact = [count_interval(p[row > 0], interval, level_sd=churn_sd) for row in membership]
            lo, hi = np.array(exact, dtype=float).T
        columns.update({f"expected_{key}": exp[key], f"{key}_lo": lo, f"{key}_hi": hi})
    columns["interval"] = interval
    return pd.DataFrame(columns)


def count_interval(
    probabilities: np.ndarray, interval: float, *, level_sd: float = 0.0
) -> tuple[int, int]:
    """Central ``interval`` of the churned-logo count when all odds share one factor
    ``exp(level_sd * z)``, z standard normal: the Poisson-binomial mixed over z by
    Gauss-Hermite quadrature. ``level_sd`` 0: exactly
    :func:`models.poisson_binomial.poisson_binomial_interval`."""
    if level_sd == 0:
        return poisson_binomial_interval(probabilities, interval)
    nodes, weights = np.polynomial.hermite_e.hermegauss(_LEVEL_NODES)
    weights = weights / weights.sum()
    p = np.asarray(probabilities, dtype=float)
    if len(p) <= DIRECT_PMF_MAX:
        pmfs = np.array([pmf_direct(scale_odds(p, level_sd * z)) for z in nodes])
    else:  # all nodes in one batch of FFT products
        pmfs = pmf_fft(scale_odds(p[None, :], level_sd * nodes[:, None]))
    return central_interval(weights @ pmfs, interval)


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
    level_sd: Mapping[str, float] | None = None,
    matured_after_days: int | None = None,
) -> pd.DataFrame:
    """Forecast made at each past run date vs what happened over its (matured) horizon.

    Only accounts whose outcome is known are kept. Per run date and quantity (churned ARR,
    contraction, expansion, churned logos, NDR, GRR): expected, interval, actual,
    error = actual - expected, ``covered`` (actual inside the interval) and the level
    uncertainty the forecast used.

    ``level_sd`` maps a model name (the ``churn_model`` / ``expansion_model`` columns) to the
    level spread fitted with it; a model not in it gets none. With ``matured_after_days`` (days
    from a run date until its outcomes are known), each forecast also takes the shrunk level
    correction of :func:`level_from_matured` from the same models' earlier run dates matured by
    its own run date, and nothing later.
    """
    joined = _join_outcomes(past_predictions, outcomes)
    rows = []
    for i, (run_date, group) in enumerate(joined.groupby("run_date", sort=True)):
        level = _level_at(joined, group, run_date, level_sd or {}, matured_after_days)
        fc = forecast_next_period(
            group, by=None, n_sims=n_sims, seed=seed + i, interval=interval, level=level
        )
        rows += [r | _level_columns(level) for r in _compare(run_date, fc.iloc[0], group)]
    return pd.DataFrame(rows)


def _join_outcomes(past_predictions: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Past scores with their realised outcomes; accounts without a known outcome are dropped."""
    _require(past_predictions, ["run_date", "account_id"], "past_predictions")
    preds = past_predictions.assign(
        run_date=pd.to_datetime(past_predictions["run_date"]).dt.normalize(),
        account_id=past_predictions["account_id"].astype(str),
    )
    return preds.merge(
        realised_outcomes(outcomes),
        on=["run_date", "account_id"],
        how="inner",
        validate="one_to_one",
    )


def forecast_level(
    current: pd.DataFrame,
    past_predictions: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    *,
    run_date: pd.Timestamp,
    level_sd: Mapping[str, float],
    matured_after_days: int,
) -> LevelUncertainty:
    """The level uncertainty of a forecast from ``current`` scores made at ``run_date``: the
    spread fitted with its models, shrunk-corrected by their past run dates matured by then."""
    if outcomes is None or outcomes.empty:
        return model_level_sd(current, level_sd)
    joined = _join_outcomes(past_predictions, outcomes)
    return _level_at(joined, current, pd.Timestamp(run_date), level_sd, matured_after_days)


def model_level_sd(group: pd.DataFrame, level_sd: Mapping[str, float]) -> LevelUncertainty:
    """The fitted spreads of the models that scored ``group`` (one model per column), or 0."""
    spread = {}
    for target in ("churn", "expansion"):
        names = group[f"{target}_model"].dropna().unique() if f"{target}_model" in group else []
        spread[target] = float(level_sd.get(str(names[0]), 0.0)) if len(names) == 1 else 0.0
    return LevelUncertainty(churn_sd=spread["churn"], expansion_sd=spread["expansion"])


def _level_at(
    joined: pd.DataFrame,
    group: pd.DataFrame,
    run_date: pd.Timestamp,
    level_sd: Mapping[str, float],
    matured_after_days: int | None,
) -> LevelUncertainty:
    prior = model_level_sd(group, level_sd)
    if matured_after_days is None:
        return prior
    known = matured(joined["run_date"], by=run_date, maturity_days=matured_after_days)
    return level_from_matured(
        same_models(joined[known], group), prior=prior, window_days=matured_after_days
    )


def same_models(history: pd.DataFrame, group: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``history`` scored by the same churn and expansion models as ``group``."""
    keep = np.ones(len(history), dtype=bool)
    for column in ("churn_model", "expansion_model"):
        if column in history and column in group:
            keep &= history[column].isin(group[column].dropna().unique()).to_numpy()
    return history[keep]


def _level_columns(level: LevelUncertainty) -> dict[str, object]:
    return {
        "level_uncertainty": level.used,
        "churn_level_sd": level.churn_sd,
        "churn_level_shift": level.churn_shift,
        "expansion_level_sd": level.expansion_sd,
        "expansion_level_shift": level.expansion_shift,
    }


def level_from_matured(
    matured: pd.DataFrame, *, prior: LevelUncertainty, window_days: int
) -> LevelUncertainty:
    """Level correction from matured past run dates of the same models, shrunk towards none.

    ``matured`` holds scored accounts with their realised outcomes (as in the backtest). The
    log of observed / expected over all its run dates measures the level with Bernoulli variance
    v (per date V / E^2, divided by the number of non-overlapping ``window_days`` the dates
    span, since overlapping windows share their outcomes). With the prior level N(0, sd^2):
    shift = y sd^2 / (sd^2 + v), sd' = sd sqrt(v / (sd^2 + v)). Churn is measured on logos,
    expansion on ARR. No matured dates or a zero prior sd: ``prior`` unchanged.
    """
    if matured.empty:
        return prior
    outcomes = account_outcomes(matured)
    days = (matured["run_date"].max() - matured["run_date"].min()).days
    periods = min(matured["run_date"].nunique(), 1.0 + days / window_days)
    churn = _posterior(
        matured["run_date"],
        matured["churned"].astype(float).to_numpy(),
        outcomes["p_churn"].to_numpy(),
        np.ones(len(matured)),
        prior.churn_sd,
        periods,
    )
    expansion = _posterior(
        matured["run_date"],
        matured["expansion_arr"].to_numpy(dtype=float),
        outcomes["p_expansion"].to_numpy(),
        outcomes["amount_expansion"].to_numpy(),
        prior.expansion_sd,
        periods,
    )
    return LevelUncertainty(
        churn_sd=churn[1],
        expansion_sd=expansion[1],
        churn_shift=churn[0],
        expansion_shift=expansion[0],
    )


def _posterior(
    run_date: pd.Series,
    actual: np.ndarray,
    p: np.ndarray,
    amount: np.ndarray,
    sd: float,
    periods: float,
) -> tuple[float, float]:
    """(shift, sd) of the log level given matured outcomes: a normal prior N(0, sd^2) and the
    log ratio of observed to expected with its Bernoulli variance."""
    frame = pd.DataFrame(
        {
            "run_date": run_date.to_numpy(),
            "o": actual,
            "e": p * amount,
            "v": p * (1 - p) * amount**2,
        }
    )
    dates = frame.groupby("run_date").sum()
    observed, expected = float(dates["o"].sum()), float(dates["e"].sum())
    if sd == 0 or expected <= 0 or observed <= 0:
        return 0.0, sd
    noise = float((dates["v"] / dates["e"] ** 2).mean()) / periods
    weight = sd**2 / (sd**2 + noise)
    return weight * float(np.log(observed / expected)), sd * float(np.sqrt(1 - weight))


def _compare(run_date: pd.Timestamp, fc: pd.Series, group: pd.DataFrame) -> list[dict]:
    start = float(group["arr"].sum())
    actual = {
        "churned_arr": float(group["churned_arr"].sum()),
        "contraction": float(group["contraction_arr"].sum()),
        "expansion": float(group["expansion_arr"].sum()),
        "logos_churned": float(group["churned"].sum()),
    }
    lost = actual["churned_arr"] + actual["contraction"]
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
    """Per quantity: run dates, interval coverage, mean error (bias), mean absolute error and
    the share of run dates whose interval carried level uncertainty (0: pure Bernoulli)."""
    aggregates = {
        "run_dates": ("run_date", "nunique"),
        "coverage": ("covered", "mean"),
        "mean_error": ("error", "mean"),
        "mean_abs_error": ("error", lambda e: float(np.abs(e).mean())),
    }
    if "level_uncertainty" in backtest:
        aggregates["with_level_uncertainty"] = ("level_uncertainty", "mean")
    return backtest.groupby("quantity", sort=False).agg(**aggregates).reset_index()
