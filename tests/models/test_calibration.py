from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from models.calibration import (
    ShiftedCalibrator,
    apply_calibrator,
    calibrator_from_state,
    calibrator_to_state,
    choose_calibrator,
    fit_calibrator,
    level_offset,
)
from models.metrics import brier_score


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
    raw = brier_score(held_y, 1 / (1 + np.exp(-held_margin)))
    calibrated = brier_score(held_y, calibrator.predict(held_margin))
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


def test_isotonic_puts_no_mass_at_a_clip_value_and_keeps_resolution():
    # a third of the slice sits far below any churner: plain isotonic clips it all to one value
    rng = np.random.default_rng(7)
    margin, y = _overconfident(3000, seed=7)
    margin = np.concatenate([margin, rng.uniform(-20, -12, 1500)])
    y = np.concatenate([y, np.zeros(1500, dtype=int)])
    p = fit_calibrator("isotonic", margin, y).predict(margin)
    assert p.min() > 0 and p.max() < 1
    assert np.mean(p == p.min()) < 0.001  # plain isotonic: 0.5 at y_min
    assert len(np.unique(p)) == len(np.unique(margin))


def test_smoothed_isotonic_tracks_the_isotonic_steps_where_they_have_rows():
    from sklearn.isotonic import IsotonicRegression

    margin, y = _overconfident(6000, seed=8)
    steps = IsotonicRegression(out_of_bounds="clip").fit(margin, y).predict(margin)
    p = fit_calibrator("isotonic", margin, y).predict(margin)
    assert np.mean(np.abs(p - steps)) < 0.01
    assert abs(p.mean() - y.mean()) < 0.005  # calibration in the large on the fitted slice


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrator_state_is_plain_json_and_round_trips(method):
    margin, y = _overconfident(2000, seed=9)
    for calibrator in (
        fit_calibrator(method, margin, y),
        ShiftedCalibrator(fit_calibrator(method, margin, y), 0.4),
        ShiftedCalibrator(None, -0.2),
    ):
        state = json.loads(json.dumps(calibrator_to_state(calibrator)))
        loaded = calibrator_from_state(state)
        assert loaded.method == calibrator.method
        np.testing.assert_array_equal(loaded.predict(margin), calibrator.predict(margin))
    assert calibrator_to_state(None) is None and calibrator_from_state(None) is None


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"kind": "pickle", "payload": "gASV"}, "unknown kind 'pickle'"),
        ("sigmoid", "unknown kind 'str'"),
        ({"kind": "sigmoid", "coef": "os.system", "intercept": 0.0}, "sigmoid.coef"),
        ({"kind": "sigmoid", "coef": float("nan"), "intercept": 0.0}, "sigmoid.coef"),
        ({"kind": "isotonic", "centres": [0.0], "logits": [], "tail_slope": 1.0}, "length"),
        ({"kind": "isotonic", "centres": {"a": 1}, "logits": [], "tail_slope": 1}, "centres"),
        ({"kind": "shifted", "offset": 0.1, "base": {"kind": "eval"}}, "unknown kind 'eval'"),
    ],
)
def test_unknown_or_malformed_calibrator_state_is_refused(state, message):
    with pytest.raises(ValueError, match=message):
        calibrator_from_state(state)


def test_an_unknown_calibrator_class_cannot_be_stored():
    class Custom:
        method = "custom"

    with pytest.raises(TypeError, match="Custom"):
        calibrator_to_state(Custom())


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
