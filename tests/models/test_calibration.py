from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from models.calibration import (
    ShiftedCalibrator,
    apply_calibrator,
    brier,
    choose_calibrator,
    fit_calibrator,
    level_offset,
)


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True log-odds z; the 'booster' reports 3z - 1 (overconfident and shifted)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.5, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return 3 * z - 1, y


@pytest.mark.parametrize("method", ["sigmoid", "isotonic", "auto"])
def test_calibration_improves_brier_on_held_out_data(method):
    margin, y = _overconfident(4000, seed=1)
    held_margin, held_y = _overconfident(4000, seed=2)
    calibrator, _ = choose_calibrator(margin, y, method=method)
    raw = brier(held_y, 1 / (1 + np.exp(-held_margin)))
    calibrated = brier(held_y, calibrator.predict(held_margin))
    assert calibrated < raw - 0.005
    p = calibrator.predict(held_margin)
    assert np.all((p >= 0) & (p <= 1))


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrators_are_strictly_increasing(method):
    margin, y = _overconfident(2000, seed=3)
    grid = np.linspace(-10, 10, 201)  # reaches past the fitted range on both sides
    assert np.all(np.diff(fit_calibrator(method, margin, y).predict(grid)) > 0)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic", "auto"])
def test_calibration_keeps_the_ranking_of_held_out_scores(method):
    margin, y = _overconfident(3000, seed=4)
    held_margin, held_y = _overconfident(3000, seed=5)
    calibrator, _ = choose_calibrator(margin, y, method=method)
    p = calibrator.predict(held_margin)
    assert len(np.unique(p)) == len(np.unique(held_margin))
    np.testing.assert_array_equal(
        np.argsort(p, kind="stable"), np.argsort(held_margin, kind="stable")
    )
    assert average_precision_score(held_y, p) == average_precision_score(held_y, held_margin)


def test_isotonic_tie_break_moves_probabilities_by_at_most_1e_7():
    margin, y = _overconfident(2000, seed=6)
    calibrator = fit_calibrator("isotonic", margin, y)
    steps = calibrator.model.predict(margin)
    assert np.max(np.abs(calibrator.predict(margin) - steps)) <= 1e-7


def test_single_class_slice_is_refused_with_advice():
    with pytest.raises(ValueError, match=r"only one class.*calibration: none"):
        fit_calibrator("sigmoid", np.zeros(10), np.zeros(10))


@pytest.mark.parametrize("method", ["sigmoid", "isotonic", "none"])
def test_level_offset_aligns_a_shifted_booster_with_the_calibrated_level(method):
    margin, y = _overconfident(4000, seed=3)
    calibrator = fit_calibrator(method, margin, y)
    retrained = margin + 0.7  # a booster whose margins run 0.7 log-odds higher
    offset = level_offset(calibrator, margin, retrained)
    assert offset == pytest.approx(0.7, abs=0.05)
    shifted = ShiftedCalibrator(calibrator, offset)
    np.testing.assert_allclose(
        shifted.predict(retrained).mean(), apply_calibrator(calibrator, margin).mean(), atol=1e-5
    )
    assert np.all(np.diff(shifted.predict(np.sort(retrained))) >= 0)  # ranking kept


def test_level_offset_is_zero_for_the_same_margins():
    margin, y = _overconfident(2000, seed=5)
    calibrator = fit_calibrator("sigmoid", margin, y)
    assert level_offset(calibrator, margin, margin) == pytest.approx(0.0, abs=1e-5)
