from __future__ import annotations

import numpy as np
import pytest

from models.calibration import brier, choose_calibrator, fit_calibrator


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


def test_calibrators_are_monotone():
    margin, y = _overconfident(2000, seed=3)
    grid = np.linspace(-10, 10, 201)
    for method in ("sigmoid", "isotonic"):
        assert np.all(np.diff(fit_calibrator(method, margin, y).predict(grid)) >= 0)


def test_single_class_slice_is_refused_with_advice():
    with pytest.raises(ValueError, match=r"only one class.*calibration: none"):
        fit_calibrator("sigmoid", np.zeros(10), np.zeros(10))
