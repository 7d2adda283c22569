"""Probability calibration of a booster's raw scores, fitted on a time slice the booster never saw.

A calibrator maps raw log-odds (``booster.predict(X, raw_score=True)``) to a probability. Two
methods: Platt scaling (a one-feature logistic regression on the log-odds) and isotonic
regression. ``choose_calibrator`` fits both on the earlier part of the calibration slice and keeps
the one with the lower Brier score on its later part, then refits the winner on the whole slice.

Both maps are strictly increasing, so a calibrated score ranks accounts exactly as the booster
does: plain isotonic regression is a step function whose flat steps tie accounts, so the
isotonic map here is smoothed (:class:`IsotonicCalibrator`;
docs/decisions/0003-smoothed-isotonic-calibration.md).

Calibrators are stored as JSON, never pickled (:func:`calibrator_to_state` /
:func:`calibrator_from_state`): a state is a dict of plain floats and lists with a ``kind`` from
an allow-list, so loading an artifact cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.metrics import brier_score

CalibrationMethod = Literal["auto", "isotonic", "sigmoid", "none"]
# Pseudo-rows pulling each isotonic step towards the Platt fit at its centre: a step of 200
# accounts with no churner reads about 0.5 / 200 * Platt instead of exactly 0.
PRIOR_ROWS = 1.0
# Lowest log-odds slope of the smoothed isotonic map past its outer steps (keeps it increasing
# when the Platt fit is flat).
MIN_TAIL_SLOPE = 0.05


class Calibrator(Protocol):
    method: str

    def predict(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probability for each raw log-odds value."""
        ...


def sigmoid(margin: np.ndarray) -> np.ndarray:
    """Logistic function, numerically stable for large |margin|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(margin, dtype=float)))


@dataclass
class SigmoidCalibrator:
    """Platt scaling: p = sigmoid(a * margin + b), fitted by (almost unpenalised) logistic loss."""

    coef: float
    intercept: float
    method: str = "sigmoid"

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> SigmoidCalibrator:
        _check_fit_inputs(margin, y)
        model = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000)
        model.fit(np.asarray(margin, dtype=float).reshape(-1, 1), np.asarray(y, dtype=int))
        return cls(coef=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return sigmoid(self.coef * np.asarray(margin, dtype=float) + self.intercept)


@dataclass
class IsotonicCalibrator:
    """Smoothed isotonic regression: the isotonic steps of the outcome on the log-odds, each
    step read at its centre (mean margin) with a value shrunk towards a Platt fit by
    ``PRIOR_ROWS`` pseudo-rows (so no step says exactly 0 or 1), joined linearly in log-odds
    between centres and continued past the outer centres with the Platt slope.

    The map is continuous and strictly increasing, so it keeps the booster's ranking, puts no
    mass at a clip value, and keeps resolution inside a step (plain isotonic gave 76 % of demo
    accounts exactly 1e-6). State is plain floats: ``centres`` and ``logits`` (strictly
    increasing) and ``tail_slope`` > 0."""

    centres: list[float]
    logits: list[float]
    tail_slope: float
    method: str = "isotonic"

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        _check_fit_inputs(margin, y)
        margin, y = np.asarray(margin, dtype=float), np.asarray(y, dtype=float)
        platt = SigmoidCalibrator.fit(margin, y)
        steps = IsotonicRegression(out_of_bounds="clip").fit(margin, y).predict(margin)
        frame = pd.DataFrame({"m": margin, "y": y, "step": steps})
        blocks = frame.groupby("step", sort=True).agg(
            m=("m", "mean"), y=("y", "sum"), n=("y", "size")
        )
        prior = platt.predict(blocks["m"].to_numpy())
        value = (blocks["y"].to_numpy() + PRIOR_ROWS * prior) / (
            blocks["n"].to_numpy() + PRIOR_ROWS
        )
        centres, values = _strictly_increasing(
            blocks["m"].to_numpy(), value, blocks["n"].to_numpy()
        )
        return cls(
            centres=[float(c) for c in centres],
            logits=[float(v) for v in _logit(values)],
            tail_slope=float(max(platt.coef, MIN_TAIL_SLOPE)),
        )

    def predict(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=float)
        x, z = np.asarray(self.centres), np.asarray(self.logits)
        inside = np.interp(margin, x, z)
        below = z[0] + self.tail_slope * (margin - x[0])
        above = z[-1] + self.tail_slope * (margin - x[-1])
        return sigmoid(np.where(margin < x[0], below, np.where(margin > x[-1], above, inside)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


def _strictly_increasing(
    centres: np.ndarray, values: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pool adjacent knots until values strictly increase (weighted means of centre and value),
    so the interpolated map has no flat stretch that would tie accounts."""
    pooled = IsotonicRegression().fit(centres, values, sample_weight=weights).predict(centres)
    frame = pd.DataFrame({"c": centres * weights, "v": pooled, "w": weights})
    knots = frame.groupby("v", sort=True).agg(c=("c", "sum"), w=("w", "sum"))
    x = (knots["c"] / knots["w"]).to_numpy()
    return x, knots.index.to_numpy(dtype=float)


def _check_fit_inputs(margin: np.ndarray, y: np.ndarray) -> None:
    if len(margin) != len(y):
        raise ValueError(f"calibration: {len(margin)} scores but {len(y)} labels")
    classes = np.unique(np.asarray(y))
    if len(classes) < 2:
        raise ValueError(
            f"calibration slice has only one class ({classes.tolist()}) in {len(y)} rows: "
            "widen the calibration window or set calibration: none"
        )


def fit_calibrator(method: str, margin: np.ndarray, y: np.ndarray) -> Calibrator | None:
    """Fit one calibrator by name; ``none`` returns None (the booster's own sigmoid is used)."""
    if method == "none":
        return None
    if method == "isotonic":
        return IsotonicCalibrator.fit(margin, y)
    if method == "sigmoid":
        return SigmoidCalibrator.fit(margin, y)
    raise ValueError(f"calibration: unknown method {method!r}; use auto, isotonic, sigmoid or none")


def choose_calibrator(
    margin: np.ndarray, y: np.ndarray, *, method: CalibrationMethod
) -> tuple[Calibrator | None, dict[str, float]]:
    """Fit the calibrator on a slice ordered by time (earliest first).

    With ``auto``, isotonic and sigmoid are both fitted on the first half of the slice and scored
    by Brier on the second half (the uncalibrated booster is scored too, for the report); the
    winner is refitted on the whole slice. Returns the calibrator and the held-out Brier of
    each candidate.
    """
    margin = np.asarray(margin, dtype=float)
    y = np.asarray(y, dtype=int)
    if method != "auto":
        return fit_calibrator(method, margin, y), {}
    half = len(y) // 2
    fit_m, fit_y, eval_m, eval_y = margin[:half], y[:half], margin[half:], y[half:]
    scores = {"uncalibrated": brier_score(eval_y, sigmoid(eval_m))}
    if len(np.unique(fit_y)) < 2:
        return fit_calibrator("sigmoid", margin, y), scores
    candidates: dict[str, type[IsotonicCalibrator] | type[SigmoidCalibrator]] = {
        "sigmoid": SigmoidCalibrator,
        "isotonic": IsotonicCalibrator,
    }
    for name, kind in candidates.items():
        scores[name] = brier_score(eval_y, kind.fit(fit_m, fit_y).predict(eval_m))
    best = "isotonic" if scores["isotonic"] < scores["sigmoid"] else "sigmoid"
    return fit_calibrator(best, margin, y), scores


@dataclass
class ShiftedCalibrator:
    """A calibrator read at ``margin - offset``: how a calibrator fitted on one booster's margins
    is carried to a booster retrained on more rows (``model.refit``), whose margins run higher or
    lower by a near-constant amount (see :func:`level_offset`)."""

    base: Calibrator | None
    offset: float
    method: str = "shifted"

    def __post_init__(self) -> None:
        self.method = f"{self.base.method if self.base else 'none'}, level-aligned"

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return apply_calibrator(self.base, np.asarray(margin, dtype=float) - self.offset)


def level_offset(
    calibrator: Calibrator | None, reference_margin: np.ndarray, margin: np.ndarray
) -> float:
    """The margin offset ``d`` at which the calibrated mean of ``margin - d`` equals that of
    ``reference_margin`` (the same rows scored by the booster the calibrator was fitted on):
    aligns a retrained booster's level of predicted risk with the calibrated one's. Bisection on
    [-10, 10] log-odds, to 1e-6."""
    target = float(np.mean(apply_calibrator(calibrator, reference_margin)))
    margin = np.asarray(margin, dtype=float)
    lo, hi = -10.0, 10.0  # the calibrated mean falls as the offset grows
    while hi - lo > 1e-6:
        mid = 0.5 * (lo + hi)
        if np.mean(apply_calibrator(calibrator, margin - mid)) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def apply_calibrator(calibrator: Calibrator | None, margin: np.ndarray) -> np.ndarray:
    """Probability from raw log-odds: the calibrator's, or the plain sigmoid without one."""
    if calibrator is None:
        return sigmoid(margin)
    return np.clip(calibrator.predict(margin), 0.0, 1.0)


_KINDS = ("sigmoid", "isotonic", "shifted")


def calibrator_to_state(calibrator: Calibrator | None) -> dict | None:
    """A JSON-ready dict of plain floats and lists that :func:`calibrator_from_state` reads."""
    if calibrator is None:
        return None
    if isinstance(calibrator, SigmoidCalibrator):
        return {"kind": "sigmoid", "coef": calibrator.coef, "intercept": calibrator.intercept}
    if isinstance(calibrator, IsotonicCalibrator):
        return {
            "kind": "isotonic",
            "centres": list(calibrator.centres),
            "logits": list(calibrator.logits),
            "tail_slope": calibrator.tail_slope,
        }
    if isinstance(calibrator, ShiftedCalibrator):
        return {
            "kind": "shifted",
            "offset": calibrator.offset,
            "base": calibrator_to_state(calibrator.base),
        }
    raise TypeError(f"cannot store calibrator {type(calibrator).__name__}: not one of {_KINDS}")


def calibrator_from_state(state: dict | None) -> Calibrator | None:
    """Rebuild a calibrator from :func:`calibrator_to_state`'s dict; refuses an unknown kind
    and any value that is not a finite number (or list of them) where one is expected."""
    if state is None:
        return None
    if not isinstance(state, dict) or state.get("kind") not in _KINDS:
        kind = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"calibrator state: unknown kind {kind!r}; expected one of {_KINDS}")
    kind = state["kind"]
    if kind == "sigmoid":
        return SigmoidCalibrator(coef=_number(state, "coef"), intercept=_number(state, "intercept"))
    if kind == "isotonic":
        centres, logits = _numbers(state, "centres"), _numbers(state, "logits")
        if len(centres) != len(logits) or not centres:
            raise ValueError("calibrator state: isotonic centres and logits differ in length")
        return IsotonicCalibrator(centres, logits, tail_slope=_number(state, "tail_slope"))
    return ShiftedCalibrator(calibrator_from_state(state.get("base")), _number(state, "offset"))


def _number(state: dict, key: str) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"calibrator state: {state['kind']}.{key} is {value!r}, not a number")
    return float(value)


def _numbers(state: dict, key: str) -> list[float]:
    values = state.get(key)
    if not isinstance(values, list):
        raise ValueError(f"calibrator state: {state['kind']}.{key} is not a list of numbers")
    return [_number({"kind": state["kind"], key: v}, key) for v in values]
