"""Synthetic features+labels panels for model tests: weekly as_of dates, segments, a rule health
score, string categoricals, missing values and a learnable churn/expansion signal."""

from __future__ import annotations

from datetime import datetime

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.bundle import ModelBundle, prepare_matrix
from models.calibration import SigmoidCalibrator

SEGMENTS = ["enterprise", "mid_market", "smb"]
INDUSTRIES = ["retail", "software", "finance", "health"]


def make_panel(
    *, n_accounts: int = 200, n_dates: int = 20, seed: int = 0, horizon_days: int = 28
) -> pd.DataFrame:
    """One row per (account, weekly as_of); labels are NA (censored) in the last
    ``horizon_days``."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(datetime(2025, 1, 6), periods=n_dates, freq="7D")
    accounts = pd.DataFrame(
        {
            "account_id": [f"A{i:04d}" for i in range(n_accounts)],
            "segment": rng.choice(SEGMENTS, n_accounts, p=[0.2, 0.3, 0.5]),
            "industry": rng.choice(INDUSTRIES, n_accounts),
            "latent": rng.normal(size=n_accounts),
            "arr": rng.lognormal(10, 1, n_accounts).round(2),
        }
    )
    panel = accounts.merge(pd.DataFrame({"as_of": dates}), how="cross")
    n = len(panel)
    drift = rng.normal(scale=0.5, size=n)
    state = panel["latent"] + drift
    panel["active_users_28d"] = np.maximum(0, 20 + 8 * state + rng.normal(scale=3, size=n)).round()
    panel["seat_utilization"] = 1 / (1 + np.exp(-state)) + rng.normal(scale=0.05, size=n)
    panel["p1_tickets_90d"] = rng.poisson(np.exp(-state))
    panel["days_since_last_login"] = rng.exponential(5 * np.exp(-state))
    panel["noise_feature"] = rng.normal(size=n)
    panel.loc[rng.random(n) < 0.1, "seat_utilization"] = np.nan
    panel["health_score"] = np.clip(
        60 + 15 * panel["latent"] + rng.normal(scale=15, size=n), 0, 100
    )
    panel["health_color"] = pd.cut(
        panel["health_score"], [-1, 40, 70, 101], labels=["red", "yellow", "green"]
    ).astype(str)
    panel["csm_owner"] = "csm_" + (panel.index % 7).astype(str)
    churn_logit = -2.2 - 1.6 * state + 0.4 * (panel["segment"] == "smb")
    expand_logit = -2.0 + 1.2 * state + 0.3 * (panel["segment"] == "enterprise")
    churned = rng.random(n) < 1 / (1 + np.exp(-churn_logit))
    expanded = ~churned & (rng.random(n) < 1 / (1 + np.exp(-expand_logit)))
    censored = panel["as_of"] > dates[-1] - pd.Timedelta(days=horizon_days)
    panel["churned"] = pd.array(churned.astype(int), dtype="Int64")
    panel["expanded"] = pd.array(expanded.astype(int), dtype="Int64")
    panel["contracted"] = pd.array(np.zeros(n, dtype=int), dtype="Int64")
    for col in ("churned", "expanded", "contracted"):
        panel.loc[censored, col] = pd.NA
    panel["arr_at_as_of"] = panel["arr"]
    panel["churned_arr"] = np.where(churned, panel["arr"], 0.0)
    panel["expansion_arr"] = np.where(expanded, (0.2 * panel["arr"]).round(2), 0.0)
    return panel.drop(columns="latent")


@pytest.fixture(scope="session")
def panel() -> pd.DataFrame:
    return make_panel()


@pytest.fixture(scope="session")
def tiny_bundle() -> ModelBundle:
    """A small churn bundle trained directly with LightGBM (categoricals + NaNs)."""
    frame = make_panel(n_accounts=120, n_dates=6, horizon_days=0).dropna(subset=["churned"])
    features = ["segment", "health_color", "active_users_28d", "seat_utilization", "p1_tickets_90d"]
    levels = {"segment": SEGMENTS, "health_color": ["green", "red", "yellow"]}
    X = prepare_matrix(frame, features, levels)
    y = frame["churned"].astype(int).to_numpy()
    params = {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1}
    params |= {"num_threads": 1, "seed": 1, "deterministic": True, "min_data_per_group": 5}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=20)
    margin = booster.predict(X, raw_score=True)
    return ModelBundle(
        target="churn",
        booster=booster,
        feature_names=features,
        categorical_levels=levels,
        calibrator=SigmoidCalibrator.fit(margin, y),
        train_window=(frame["as_of"].min().to_pydatetime(), frame["as_of"].max().to_pydatetime()),
        metrics={"pr_auc": 0.5},
        params=params,
    )
