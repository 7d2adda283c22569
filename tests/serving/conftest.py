"""Small synthetic scoring inputs: a feature frame like ``build_features`` returns, a catalog
with units and windows, and churn/expansion bundles trained directly with LightGBM."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.bundle import ModelBundle, prepare_matrix

RUN_DATE = date(2026, 11, 23)
SEGMENTS = ["enterprise", "mid_market", "smb"]
FEATURES = [
    "segment",
    "active_users_28d",
    "active_users_change_28d",
    "days_since_champion_left",
    "urgent_tickets_90d",
    "seat_utilization",
    "nps_score",
    "health_score",
]


@dataclass(frozen=True)
class Spec:
    name: str
    group: str
    description: str
    unit: str
    window_days: int | None
    source: str = "test"


CATALOG = {
    s.name: s
    for s in [
        Spec("segment", "commercial", "Customer segment", "category", None),
        Spec("active_users_28d", "usage", "Active users", "count", 28),
        Spec("active_users_prev_28d", "usage", "Active users, prior window", "count", 28),
        Spec("active_users_change_28d", "usage", "Change in active users", "ratio", 28),
        Spec("days_since_champion_left", "engagement", "Days since champion left", "days", None),
        Spec("urgent_tickets_90d", "support", "Urgent tickets", "count", 90),
        Spec("seat_utilization", "usage", "Active users / seats", "ratio", None),
        Spec("nps_score", "engagement", "Latest NPS", "score", None),
        Spec("health_score", "health", "Exported health score", "score", None),
    ]
}


def make_features(n: int = 300, *, seed: int = 0) -> pd.DataFrame:
    """One row per account at RUN_DATE with a learnable churn signal."""
    rng = np.random.default_rng(seed)
    state = rng.normal(size=n)
    prev = np.maximum(1, 30 + 10 * rng.normal(size=n)).round()
    now = np.maximum(0, prev * (1 + 0.3 * state + 0.1 * rng.normal(size=n))).round()
    champion = np.where(rng.random(n) < 0.3, rng.integers(1, 200, n).astype(float), np.nan)
    health = np.clip(60 + 15 * state + rng.normal(scale=10, size=n), 0, 100)
    frame = pd.DataFrame(
        {
            "account_id": [f"A{i:04d}" for i in range(n)],
            "as_of": pd.Timestamp(RUN_DATE),
            "name": [f"Account {i}" for i in range(n)],
            "csm_owner": [f"csm_{i % 4}" for i in range(n)],
            "segment": rng.choice(SEGMENTS, n),
            "industry": "software",
            "arr": rng.lognormal(10, 0.8, n).round(2),
            "employees": rng.integers(20, 2000, n).astype(float),
            "active_users_28d": now,
            "active_users_prev_28d": prev,
            "active_users_change_28d": now / prev - 1,
            "days_since_champion_left": champion,
            "urgent_tickets_90d": rng.poisson(np.exp(-state)).astype(float),
            "seat_utilization": np.where(rng.random(n) < 0.1, np.nan, 1 / (1 + np.exp(-state))),
            "nps_score": np.where(rng.random(n) < 0.4, np.nan, np.clip(7 + 2 * state, 0, 10)),
            "health_score": health,
            "health_color": np.select([health >= 70, health >= 40], ["green", "yellow"], "red"),
        }
    )
    frame.loc[frame.index % 50 == 7, "segment"] = None
    return frame


def train_bundle(frame: pd.DataFrame, target: str, *, seed: int = 0) -> ModelBundle:
    rng = np.random.default_rng(seed)
    levels = {"segment": SEGMENTS}
    X = prepare_matrix(frame, FEATURES, levels)
    state = -frame["active_users_change_28d"].fillna(0) * 3 + frame["urgent_tickets_90d"] * 0.5
    state += frame["days_since_champion_left"].notna() * 1.0
    logit = (state - 1.0) if target == "churn" else (1.0 - state)
    y = (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "min_data_in_leaf": 5,
        "learning_rate": 0.2,
        "num_threads": 1,
        "verbose": -1,
        "seed": seed,
        "cat_smooth": 1,
        "min_data_per_group": 5,
    }
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=["segment"]), 25)
    return ModelBundle(
        target=target,
        booster=booster,
        feature_names=list(FEATURES),
        categorical_levels=levels,
        calibrator=None,
        train_window=(datetime(2025, 1, 6), datetime(2026, 6, 1)),
        params=params,
    )


@pytest.fixture(scope="session")
def features() -> pd.DataFrame:
    return make_features()


@pytest.fixture(scope="session")
def churn_bundle(features: pd.DataFrame) -> ModelBundle:
    return train_bundle(features, "churn")


@pytest.fixture(scope="session")
def expansion_bundle(features: pd.DataFrame) -> ModelBundle:
    return train_bundle(features, "expansion", seed=1)
