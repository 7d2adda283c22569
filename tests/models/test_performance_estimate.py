"""Confidence-based performance estimation (models.performance_estimate): exact metrics per
draw, and realised figures of calibrated scores inside the intervals (not of miscalibrated ones)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models.performance_estimate import (
    _auc,
    _average_precision,
    _ranks_and_groups,
    estimate_performance,
    estimate_vs_realised,
)


def test_vectorised_metrics_equal_sklearn_with_tied_scores():
    rng = np.random.default_rng(3)
    p = np.round(rng.beta(1, 6, 400), 2)  # many ties
    y = (rng.random((4, p.size)) < p).astype(float)
    ranks, order, ends = _ranks_and_groups(p)
    np.testing.assert_allclose(_auc(y, ranks), [roc_auc_score(v, p) for v in y], rtol=1e-12)
    np.testing.assert_allclose(
        _average_precision(y, order, ends), [average_precision_score(v, p) for v in y], rtol=1e-12
    )


def test_a_draw_without_churners_has_no_ranking_metric():
    ranks, order, ends = _ranks_and_groups(np.array([0.1, 0.2, 0.3]))
    y = np.zeros((1, 3))
    assert np.isnan(_auc(y, ranks)[0]) and np.isnan(_average_precision(y, order, ends)[0])


def _calibrated_week(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.8, 9, n)
    return p, (rng.random(n) < p).astype(int)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_realised_figures_of_calibrated_scores_lie_within_the_intervals(seed):
    p, y = _calibrated_week(600, seed)  # demo-sized week
    estimate = estimate_performance(p, samples=400, seed=0)
    assert estimate.expected["churners"] == pytest.approx(p.sum())
    assert estimate.contains("churners", y.sum())
    assert estimate.contains("roc_auc", roc_auc_score(y, p))
    assert estimate.contains("pr_auc", average_precision_score(y, p))
    assert estimate.lower["roc_auc"] < estimate.expected["roc_auc"] < estimate.upper["roc_auc"]


def test_probabilities_that_halve_the_risk_miss_the_realised_churn_count():
    p, y = _calibrated_week(600, 1)
    estimate = estimate_performance(p / 2, samples=400, seed=0)
    assert not estimate.contains("churners", y.sum())
    assert y.sum() > estimate.upper["churners"]


def test_same_seed_same_estimate_and_bad_input_is_refused():
    p, _ = _calibrated_week(200, 5)
    first, again = (estimate_performance(p, samples=50, seed=7) for _ in range(2))
    assert first == again
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        estimate_performance(np.array([0.2, np.nan]))
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        estimate_performance(np.array([1.2]))


def test_estimates_sit_beside_realised_performance_once_matured():
    estimates = pd.DataFrame(
        {
            "run_date": ["2026-01-05"] * 3 + ["2026-01-12"] * 3,
            "metric": ["roc_auc", "pr_auc", "churners"] * 2,
            "expected": [0.8, 0.3, 12.0, 0.8, 0.3, 12.0],
            "lower": [0.7, 0.2, 6.0, 0.7, 0.2, 6.0],
            "upper": [0.9, 0.4, 19.0, 0.9, 0.4, 19.0],
        }
    )
    realised = pd.DataFrame(
        {"run_date": [pd.Timestamp("2026-01-05")], "auc": [0.85], "pr_auc": [0.45], "churners": [9]}
    )
    table = estimate_vs_realised(estimates, realised).set_index(["run_date", "metric"])
    first = table.loc[pd.Timestamp("2026-01-05")]
    assert first["within_interval"].to_dict() == {
        "churners": True,
        "pr_auc": False,
        "roc_auc": True,
    }
    assert table.loc[pd.Timestamp("2026-01-12"), "realised"].isna().all()


def test_on_the_demo_ground_truth_the_realised_figures_lie_within_the_intervals():
    """The demo generator records the churn probability each renewal decision was drawn with:
    perfectly calibrated scores. Each half-year of renewals, estimated from those probabilities
    alone, must contain what the decisions then realised."""
    from datetime import date

    from pipelines.demo.data import generate_demo

    renewals = generate_demo(n_accounts=250, seed=7, end=date(2026, 6, 1), years=1.2).truth[
        "renewals"
    ]
    halves = [(date(2025, 6, 1), date(2025, 12, 1)), (date(2025, 12, 1), date(2026, 6, 1))]
    for start, end in halves:
        part = renewals[(renewals["end_date"] >= start) & (renewals["end_date"] < end)]
        p = part["churn_probability"].to_numpy(dtype=float)
        y = (part["decision"] == "churn").to_numpy(dtype=int)
        assert len(part) > 100 and y.sum() > 5
        estimate = estimate_performance(p, samples=400, seed=0)
        assert estimate.contains("churners", y.sum())
        assert estimate.contains("roc_auc", roc_auc_score(y, p))
        assert estimate.contains("pr_auc", average_precision_score(y, p))
