from __future__ import annotations

import numpy as np
import pytest

from models.metrics import (
    brier_score,
    expected_calibration_error,
    score_metrics,
    top_share_mask,
)


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


@pytest.mark.parametrize("binning", ["equal_count", "equal_width"])
def test_ece_is_zero_when_rates_match_and_positive_when_they_do_not(binning):
    y = np.array([0, 1] * 50)
    assert expected_calibration_error(y, np.full(100, 0.5), binning=binning) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(100, 0.8), binning=binning) == pytest.approx(0.3)


def test_ece_binnings_differ_as_documented():
    # equal-width: [0.1, 0.2) holds p=0.1, 0.1 (observed 0, 1) -> |0.5 - 0.1|, [0.9, 1] holds
    # p=0.9 (observed 1) -> 0.1. Equal-count with 2 bins: {0.1, 0.1} and {0.9}: the same bins.
    y, p = np.array([0, 1, 1]), np.array([0.1, 0.1, 0.9])
    width = expected_calibration_error(y, p, binning="equal_width")
    assert width == pytest.approx((2 * 0.4 + 1 * 0.1) / 3)
    assert expected_calibration_error(y, p, binning="equal_count", n_bins=2) == width
    # ten skewed probabilities below 0.1: one equal-width bin, ten equal-count bins of one row
    y, p = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]), np.linspace(0.01, 0.1, 10, endpoint=False)
    assert expected_calibration_error(y, p, binning="equal_width") == pytest.approx(
        abs(0.1 - p.mean())
    )
    assert expected_calibration_error(y, p, binning="equal_count") == pytest.approx(
        (abs(1 - p[0]) + np.sum(p[1:])) / 10
    )


def test_ece_refuses_an_unknown_binning():
    with pytest.raises(ValueError, match="equal_count"):
        expected_calibration_error(np.array([1]), np.array([0.5]), binning="quantile")  # type: ignore[arg-type]


def test_score_metrics_reports_equal_count_ece_and_one_brier():
    y = np.array([1, 0, 0, 1, 0, 0])
    p = np.array([0.4, 0.4, 0.3, 0.3, 0.3, 0.3])
    m = score_metrics(y, p, value=np.ones(6), as_of=np.zeros(6))
    assert m["ece"] == expected_calibration_error(y, p, binning="equal_count")
    assert m["brier"] == brier_score(y, p)


def test_observed_expected_is_events_over_summed_probabilities():
    y = np.array([1, 0, 0, 1, 0, 0])
    p = np.array([0.4, 0.4, 0.3, 0.3, 0.3, 0.3])  # expects 2.0 events, 2 happened
    as_of = np.zeros(6)
    got = score_metrics(y, p, value=np.ones(6), as_of=as_of)["observed_expected"]
    assert got == pytest.approx(1.0)
    # a model twice too pessimistic: 2 events against 4 expected
    got = score_metrics(y, 2 * p, value=np.ones(6), as_of=as_of)["observed_expected"]
    assert got == pytest.approx(0.5)
