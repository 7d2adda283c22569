"""The baseline gate (models.gate): a booster that does not beat the product's own baselines on
the promotion metric is refused, whatever the champion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.config import ModelConfig, PromotionConfig
from models.gate import baseline_verdict, champion_decision, promotion_decision
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
        _result({"lightgbm": 0.30, "logistic": 0.35}).backtest,
        champion_version=champion,
        champion_metrics={"latest_pr_auc": 0.1, "latest_ece": 0.5},
        promotion=PromotionConfig(),
    )
    assert not decision.promote
    assert decision.reason.startswith("not promoted: does not beat the baseline(s) ['logistic']")


def test_the_first_version_that_beats_the_baselines_becomes_champion():
    decision = promotion_decision(
        _result({"lightgbm": 0.40, "logistic": 0.35}).backtest,
        champion_version=None,
        champion_metrics=None,
        promotion=PromotionConfig(),
    )
    assert decision.promote and "first" in decision.reason


def test_the_baseline_requirement_can_be_switched_off_knowingly():
    decision = promotion_decision(
        _result({"lightgbm": 0.30, "logistic": 0.35}).backtest,
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


# --- challenger against champion (models.gate.champion_decision) -------------------------------


def _row(pr_auc: float, arr: float, ece: float) -> dict[str, float]:
    return {"pr_auc": pr_auc, "arr_captured_top10": arr, "ece": ece}


@pytest.mark.parametrize(
    ("new", "old", "promote", "criterion", "starts"),
    [
        # wins on PR-AUC
        (_row(0.42, 0.55, 0.020), _row(0.38, 0.55, 0.020), True, "metric", "promoted on pr_auc"),
        # PR-AUC ties (within 0.005): the churned ARR captured in the top decile decides
        (
            _row(0.381, 0.65, 0.020),
            _row(0.383, 0.51, 0.020),
            True,
            "secondary",
            "promoted on arr_captured_top10 (pr_auc ties within 0.005)",
        ),
        (
            _row(0.381, 0.50, 0.020),
            _row(0.383, 0.51, 0.020),
            False,
            "tie",
            "not promoted: pr_auc ties",
        ),
        # loses on PR-AUC beyond the tie, whatever it captures
        (
            _row(0.30, 0.70, 0.020),
            _row(0.38, 0.51, 0.020),
            False,
            "metric",
            "not promoted on pr_auc",
        ),
        # ECE beyond the tolerance refuses even a better ranker
        (
            _row(0.45, 0.70, 0.031),
            _row(0.38, 0.51, 0.020),
            False,
            "ece",
            "not promoted on ece (calibration worse)",
        ),
        # ... within the tolerance it passes
        (_row(0.45, 0.70, 0.024), _row(0.38, 0.51, 0.020), True, "metric", "promoted on pr_auc"),
        # a PR-AUC win that gives up more than 5 points of churned ARR captured is refused
        (
            _row(0.45, 0.40, 0.020),
            _row(0.38, 0.51, 0.020),
            False,
            "secondary",
            "not promoted on arr",
        ),
    ],
)
def test_each_decision_path_of_the_champion_gate(new, old, promote, criterion, starts):
    decision = champion_decision(new, old, champion="champion v3")
    assert (decision.promote, decision.criterion) == (promote, criterion)
    assert decision.reason.startswith(starts), decision.reason
    assert "champion v3" in decision.reason and "arr_captured_top10" in decision.reason


def test_the_ece_tolerance_is_a_config_key_with_a_small_non_zero_default():
    assert PromotionConfig().max_ece_increase == 0.005
    assert PromotionConfig().tie_tolerance == 0.005
    strict = champion_decision(
        _row(0.45, 0.70, 0.024), _row(0.38, 0.51, 0.020), max_ece_increase=0.0
    )
    assert (strict.promote, strict.criterion) == (False, "ece")


def _result_with_champion(new: dict, old: dict) -> TrainResult:
    base = {"fold": 2, "test_start": pd.Timestamp("2025-06-02")}
    backtest = pd.DataFrame(
        [
            {**base, "model": "lightgbm", "champion_in_sample": False, **new},
            {**base, "model": "champion", "champion_in_sample": False, **old},
            {**base, "model": "logistic", "champion_in_sample": False, **_row(0.1, 0.1, 0.1)},
        ]
    )
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


def test_the_registry_gate_compares_on_the_same_latest_fold_and_names_the_criterion():
    # the case: 65% vs 51% of churned ARR in the top decile, PR-AUC a hair lower
    decision = promotion_decision(
        _result_with_champion(_row(0.381, 0.65, 0.0204), _row(0.383, 0.51, 0.0201)).backtest,
        champion_version="4",
        champion_metrics=None,
        promotion=PromotionConfig(),
    )
    assert decision.promote and decision.criterion == "secondary"
    assert "on the latest backtest fold (test from 2025-06-02)" in decision.reason
