"""The logistic and recency/RFM baselines (models.baselines) on inputs that broke the old one:
heavy-tailed counts, infinities, an all-missing column, many-level categoricals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from models.baselines import fit_logistic, fit_rfm, predict_logistic, rfm_columns


def _heavy_tailed(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn falls with log(events); events are lognormal with a few enormous accounts."""
    rng = np.random.default_rng(seed)
    log_events = rng.normal(3, 2, n)
    events = np.round(np.exp(log_events))
    events[:5] = 1e9  # a bot account or a unit error
    y = (rng.random(n) < 1 / (1 + np.exp(1.5 + 0.8 * (log_events - 3)))).astype(int)
    frame = pd.DataFrame(
        {
            "events_28d": events,
            "events_90d": events * 3 + rng.poisson(5, n),
            "days_since_last_activity": np.where(
                rng.random(n) < 0.1, np.nan, rng.exponential(9, n)
            ),
            "tenure_days": rng.integers(1, 2000, n).astype(float),
            "ratio": np.where(rng.random(n) < 0.01, np.inf, rng.normal(size=n)),
            "never_filled": np.nan,
            "industry": rng.choice([f"i{k}" for k in range(40)], n),
            "segment": rng.choice(["smb", "mid", "ent"], n),
        }
    )
    return frame, y


def test_logistic_baseline_ranks_and_calibrates_heavy_tailed_counts():
    train, y = _heavy_tailed(4000, seed=1)
    test, y_test = _heavy_tailed(4000, seed=2)
    numeric = [
        "events_28d",
        "events_90d",
        "days_since_last_activity",
        "tenure_days",
        "ratio",
        "never_filled",
    ]
    model = fit_logistic(
        train, y, numeric=numeric, categorical=["industry", "segment"], c=0.1, seed=0
    )
    p = predict_logistic(model, test)
    assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))
    oracle = roc_auc_score(y_test, -np.log1p(test["events_28d"]))
    assert roc_auc_score(y_test, p) > oracle - 0.02
    assert log_loss(y_test, p) < log_loss(y_test, np.full(len(y_test), y.mean()))


def test_many_level_categoricals_are_left_out_of_the_one_hot():
    train, y = _heavy_tailed(500, seed=3)
    model = fit_logistic(
        train, y, numeric=["tenure_days"], categorical=["industry", "segment"], c=0.1, seed=0
    )
    assert model.input_columns == (["tenure_days"], ["segment"])


def test_rfm_baseline_uses_the_recency_frequency_tenure_columns_present():
    train, y = _heavy_tailed(2000, seed=4)
    assert rfm_columns(train) == [
        "days_since_last_activity",
        "events_28d",
        "events_90d",
        "tenure_days",
    ]
    assert rfm_columns(train.assign(arr_at_as_of=1.0, arr=2.0))[-1] == "arr"
    assert rfm_columns(train[["tenure_days"]]) == []
    assert fit_rfm(train[["tenure_days"]], y, c=0.1, seed=0) is None
    test, y_test = _heavy_tailed(2000, seed=5)
    p = predict_logistic(fit_rfm(train, y, c=0.1, seed=0), test)
    assert roc_auc_score(y_test, p) > 0.7


@pytest.mark.parametrize("seed", [0, 1])
def test_transforms_are_fitted_on_training_rows_only(seed):
    train, y = _heavy_tailed(1000, seed=seed)
    model = fit_logistic(train, y, numeric=["events_28d"], categorical=[], c=0.1, seed=0)
    extreme = train.head(3).assign(events_28d=[1e12, 1e15, 1e18])
    p = predict_logistic(model, extreme)
    assert len(np.unique(p)) == 1  # clipped to the training range, not extrapolated


def test_a_window_past_the_row_cap_is_fitted_on_a_seeded_sample(monkeypatch):
    import models.baselines as baselines

    train, y = _heavy_tailed(3000, seed=6)
    test, _ = _heavy_tailed(500, seed=7)
    numeric = ["events_28d", "tenure_days", "days_since_last_activity"]

    def fitted(frame, labels, seed=0):
        model = fit_logistic(
            frame, labels, numeric=numeric, categorical=["segment"], c=0.1, seed=seed
        )
        return predict_logistic(model, test)

    uncapped = fitted(train, y)
    monkeypatch.setattr(baselines, "MAX_LOGISTIC_ROWS", 1000)
    rows = np.sort(np.random.default_rng(0).choice(3000, 1000, replace=False))
    capped = fitted(train, y)
    np.testing.assert_array_equal(capped, fitted(train.iloc[rows], y[rows]))  # under the cap
    np.testing.assert_array_equal(capped, fitted(train, y))  # seeded: the same sample
    assert not np.array_equal(capped, uncapped)
    assert not np.array_equal(capped, fitted(train, y, seed=1))
    monkeypatch.setattr(baselines, "MAX_LOGISTIC_ROWS", 3000)
    np.testing.assert_array_equal(fitted(train, y), uncapped)  # at the cap: every row
