"""The baseline gate (models.gate): a booster that does not beat the product's own baselines on
the promotion metric is refused, whatever the champion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.config import ModelConfig, PromotionConfig
from models.gate import baseline_verdict
from models.registry import promotion_decision
from models.train import TrainResult


def _backtest(latest: dict[str, float], *, metric: str = "pr_auc") -> pd.DataFrame:
    """Fold 1 gives every model the same 0.9, so the fold means rank as ``latest`` does."""
    earlier = [{"fold": 1, "model": m, "ece": 0.01, metric: 0.9} for m in latest]
    rows = [{"fold": 2, "model": m, "ece": 0.01, metric: v} for m, v in latest.items()]
    return pd.DataFrame(earlier + rows)


@pytest.mark.parametrize(
    ("latest", "passed", "named"),
    [
        ({"lightgbm": 0.30, "logistic": 0.25, "rfm": 0.20, "health_score": 0.05}, True, "beats"),
        ({"lightgbm": 0.30, "logistic": 0.31, "rfm": 0.20}, False, "['logistic']"),
        ({"lightgbm": 0.30, "logistic": 0.30}, False, "['logistic']"),  # a tie is not a win
        ({"lightgbm": 0.30, "rfm": 0.40, "health_score": 0.50}, False, "['rfm', 'health_score']"),
        ({"lightgbm": 0.30, "logistic": np.nan}, True, "no baseline"),  # NaN on a fold
        ({"lightgbm": 0.30, "champion": 0.90}, True, "no baseline"),  # the champion is not one
    ],
)
def test_verdict_on_the_latest_fold(latest, passed, named):
    verdict = baseline_verdict(_backtest(latest), "pr_auc")
    assert verdict.passed is passed
    assert named in verdict.reason
    if not passed:
        assert "does not beat" in verdict.reason and "lightgbm 0.6000" in verdict.reason
        assert "averaged over 2 backtest fold(s)" in verdict.reason


def test_one_noisy_fold_does_not_decide_alone():
    frame = pd.DataFrame(
        [
            {"fold": f, "model": m, "pr_auc": v}
            for f, values in {1: (0.30, 0.20), 2: (0.28, 0.18), 3: (0.20, 0.21)}.items()
            for m, v in zip(("lightgbm", "logistic"), values, strict=True)
        ]
    )
    assert baseline_verdict(frame, "pr_auc").passed
    assert not baseline_verdict(frame[frame["fold"] == 3], "pr_auc").passed


def test_lower_is_better_metrics_are_compared_the_other_way():
    frame = _backtest({"lightgbm": 0.02, "logistic": 0.03}, metric="ece")
    assert baseline_verdict(frame, "ece").passed


def test_undefined_booster_metric_fails():
    assert not baseline_verdict(_backtest({"lightgbm": np.nan, "logistic": 0.2}), "pr_auc").passed


def _result(latest: dict[str, float]) -> TrainResult:
    backtest = _backtest(latest).assign(test_start=pd.Timestamp("2025-06-02"))
    return TrainResult(
        target="churn",
        bundle=None,
        backtest=backtest,
        predictions=pd.DataFrame(),
        tuning={},
        dataset_info={},
        gap_days=28,
        config=ModelConfig(),
    )


@pytest.mark.parametrize("champion", [None, "4"])
def test_the_promotion_gate_refuses_a_booster_the_baselines_beat(champion):
    decision = promotion_decision(
        _result({"lightgbm": 0.30, "logistic": 0.35}),
        champion_version=champion,
        champion_metrics={"latest_pr_auc": 0.1, "latest_ece": 0.5},
        promotion=PromotionConfig(),
    )
    assert not decision.promote
    assert decision.reason.startswith("not promoted: does not beat the baseline(s) ['logistic']")


def test_the_first_version_that_beats_the_baselines_becomes_champion():
    decision = promotion_decision(
        _result({"lightgbm": 0.40, "logistic": 0.35}),
        champion_version=None,
        champion_metrics=None,
        promotion=PromotionConfig(),
    )
    assert decision.promote and "first" in decision.reason


def test_the_baseline_requirement_can_be_switched_off_knowingly():
    decision = promotion_decision(
        _result({"lightgbm": 0.30, "logistic": 0.35}),
        champion_version=None,
        champion_metrics=None,
        promotion=PromotionConfig(require_beats_baselines=False),
    )
    assert decision.promote


def test_few_positive_test_rows_are_called_weak_evidence():
    frame = _backtest({"lightgbm": 0.4, "logistic": 0.3}).assign(n_rows=100.0, positive_rate=0.1)
    assert "weak evidence: 20 positive test rows" in baseline_verdict(frame, "pr_auc").reason
    frame = frame.assign(n_rows=1000.0)
    assert "weak evidence" not in baseline_verdict(frame, "pr_auc").reason
