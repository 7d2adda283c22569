from __future__ import annotations

import numpy as np
import pytest

from models.metrics import expected_calibration_error, score_metrics, top_share_mask


def test_top_share_is_taken_within_each_date():
    score = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.7])
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    assert top_share_mask(score, groups, share=0.3).tolist() == [1, 0, 0, 0, 1, 0]


def test_ranking_metrics_golden_values():
    # 20 rows on one date: the two riskiest rows are the two events worth 100 of 150 churned ARR
    y = np.array([1, 1] + [0] * 17 + [1])
    p = np.linspace(0.95, 0.05, 20)
    value = np.where(y == 1, [100.0] * 20, 0.0)
    value[-1] = 50.0
    m = score_metrics(y, p, value=value, as_of=np.zeros(20))
    assert m["top_decile_lift"] == pytest.approx(1.0 / (3 / 20))
    assert m["arr_captured_top10"] == pytest.approx(200 / 250)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_ece_is_zero_when_rates_match_and_positive_when_they_do_not():
    y = np.array([0, 1] * 50)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(100, 0.8)) == pytest.approx(0.3)


def test_observed_expected_is_events_over_summed_probabilities():
    y = np.array([1, 0, 0, 1, 0, 0])
    p = np.array([0.4, 0.4, 0.3, 0.3, 0.3, 0.3])  # expects 2.0 events, 2 happened
    as_of = np.zeros(6)
    got = score_metrics(y, p, value=np.ones(6), as_of=as_of)["observed_expected"]
    assert got == pytest.approx(1.0)
    # a model twice too pessimistic: 2 events against 4 expected
    got = score_metrics(y, 2 * p, value=np.ones(6), as_of=as_of)["observed_expected"]
    assert got == pytest.approx(0.5)
