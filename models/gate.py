"""Whether a newly trained model earns its place: it must beat the product's own baselines.

A booster that cannot out-rank a logistic regression, a recency/RFM model or the exported health
score on the latest backtest fold adds complexity and SHAP reasons without adding skill, so the
promotion gate refuses it (it stays a challenger) and the run says so. The decision is a pure
function of the backtest table that :func:`models.train.train_model` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BOOSTER = "lightgbm"
# The models a champion must beat (whichever the backtest holds).
BASELINES = ("logistic", "rfm", "health_score")
# Metrics where lower is better; every metric the promotion gate accepts is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def baseline_verdict(backtest: pd.DataFrame, metric: str) -> Verdict:
    """Pass when the booster's ``metric`` on the latest fold beats every baseline's there (a tie
    is not a win); a baseline whose metric is undefined (NaN) is not counted. With no baseline
    in the backtest the verdict passes and says so."""
    if backtest.empty or BOOSTER not in set(backtest["model"]):
        return Verdict(False, f"no {BOOSTER} rows in the backtest: nothing to compare")
    latest = backtest[backtest["fold"] == backtest["fold"].max()].set_index("model")
    ours = float(latest.loc[BOOSTER, metric])
    rivals = {
        name: float(latest.loc[name, metric])
        for name in BASELINES
        if name in latest.index and np.isfinite(float(latest.loc[name, metric]))
    }
    if not np.isfinite(ours):
        return Verdict(False, f"{BOOSTER} {metric} is undefined on the latest fold")
    if not rivals:
        return Verdict(True, f"no baseline to compare on the latest fold ({metric} {ours:.4f})")
    better = (lambda a, b: a < b) if metric in LOWER_IS_BETTER else (lambda a, b: a > b)
    beaten = [name for name, value in rivals.items() if not better(ours, value)]
    table = ", ".join(f"{name} {value:.4f}" for name, value in rivals.items())
    fold = int(backtest["fold"].max())
    if beaten:
        return Verdict(
            False,
            f"does not beat the baseline(s) {beaten} on {metric} in the latest backtest fold "
            f"{fold}: {BOOSTER} {ours:.4f} vs {table}",
        )
    return Verdict(True, f"beats every baseline on {metric} in fold {fold}: {ours:.4f} vs {table}")
