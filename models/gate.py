"""Whether a newly trained model earns its place: it must beat the product's own baselines.

A booster that cannot out-rank a logistic regression, a recency/RFM model or the exported health
score on the latest backtest fold adds complexity and SHAP reasons without adding skill, so the
promotion gate refuses it (it stays a challenger) and the run says so. The decision is a pure
function of the backtest table that :func:`models.train.train_model` returns, and so is the
whole promotion decision (:func:`promotion_decision`); ``models.registry`` only reads the
champion's metrics from MLflow and moves the aliases.

The comparison uses the metric the promotion gate uses, averaged over the backtest folds (each
out of time); the gate's champion comparison stays on the latest fold, where challenger and
champion are scored on the same rows (:func:`champion_decision`: calibration within a small
tolerance first, then PR-AUC, and on a PR-AUC tie the churned ARR captured in the top decile,
which is what a CS leader's list of the riskiest tenth of accounts is worth).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.config import PromotionConfig

BOOSTER = "lightgbm"
CHAMPION = "champion"  # the current champion, rescored on the backtest folds
# The models a champion must beat (whichever the backtest holds).
BASELINES = ("logistic", "rfm", "health_score")
# Below this many positive test rows (over the folds) the verdict says its evidence is weak.
WEAK_EVIDENCE_POSITIVES = 50
# Metrics where lower is better; every metric the promotion gate accepts is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def baseline_verdict(backtest: pd.DataFrame, metric: str) -> Verdict:
    """Pass when the booster's ``metric``, averaged over the backtest folds, beats every
    baseline's average over the same folds (a tie is not a win); a baseline whose metric is
    undefined (NaN) is not counted. With no baseline in the backtest the verdict passes and
    says so.

    Averaged over folds, not read on the latest fold alone: every fold is out of time, and one
    four-week fold holds a handful of churned accounts (on the 600-account demo the latest-fold
    PR-AUC of the same booster moved by 0.02 with a change of categorical settings, while its
    mean over three folds stayed 0.06 above the logistic regression's)."""
    if backtest.empty or BOOSTER not in set(backtest["model"]):
        return Verdict(False, f"no {BOOSTER} rows in the backtest: nothing to compare")
    folds = backtest[backtest["model"] == BOOSTER]["fold"]
    table = backtest[backtest["fold"].isin(folds)].pivot_table(
        index="fold", columns="model", values=metric, aggfunc="first", dropna=False
    )
    ours = float(table[BOOSTER].mean(skipna=False))
    if not np.isfinite(ours):
        return Verdict(False, f"{BOOSTER} {metric} is undefined on a backtest fold")
    rivals = {
        name: float(table[name].mean(skipna=False))
        for name in BASELINES
        if name in table.columns and np.isfinite(table[name].mean(skipna=False))
    }
    where = f"averaged over {len(table)} backtest fold(s)" + _evidence(backtest)
    if not rivals:
        return Verdict(True, f"no baseline to compare ({metric} {ours:.4f} {where})")
    better = (lambda a, b: a < b) if metric in LOWER_IS_BETTER else (lambda a, b: a > b)
    beaten = [name for name, value in rivals.items() if not better(ours, value)]
    listed = ", ".join(f"{name} {value:.4f}" for name, value in rivals.items())
    if beaten:
        return Verdict(
            False,
            f"does not beat the baseline(s) {beaten} on {metric} {where}: {BOOSTER} "
            f"{ours:.4f} vs {listed}",
        )
    return Verdict(True, f"beats every baseline on {metric} {where}: {ours:.4f} vs {listed}")


def _evidence(backtest: pd.DataFrame) -> str:
    """A warning when the folds hold few positive test rows (needs n_rows and positive_rate)."""
    if not {"n_rows", "positive_rate"} <= set(backtest.columns):
        return ""
    ours = backtest[backtest["model"] == BOOSTER]
    positives = round(float((ours["n_rows"] * ours["positive_rate"]).sum()))
    if positives >= WEAK_EVIDENCE_POSITIVES:
        return ""
    return f" (weak evidence: {positives} positive test rows, fewer than {WEAK_EVIDENCE_POSITIVES})"


# --- challenger against champion on the same latest fold ---------------------------------------

# Criteria a champion decision can be decided by (GateDecision.criterion).
CRITERIA = ("first", "baselines", "ece", "metric", "secondary", "tie", "no_comparison")


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger replaces the champion, the criterion that decided it (one of
    ``CRITERIA``), and the sentence that says why with the numbers."""

    promote: bool
    criterion: str
    reason: str


def _value(row: Mapping[str, float], name: str) -> float:
    value = row.get(name, float("nan"))
    return float("nan") if value is None else float(value)


def champion_decision(
    new: Mapping[str, float],
    old: Mapping[str, float],
    *,
    metric: str = "pr_auc",
    secondary: str = "arr_captured_top10",
    min_improvement: float = 0.0,
    tie_tolerance: float = 0.005,
    max_ece_increase: float = 0.005,
    max_secondary_decrease: float = 0.05,
    champion: str = "the champion",
    where: str = "",
) -> GateDecision:
    """Challenger ``new`` against champion ``old``, both scored on the same latest fold.

    In order: (1) calibration: the challenger's ECE may exceed the champion's by at most
    ``max_ece_increase``, else it is refused whatever it ranks (criterion ``ece``); (2) the
    ranking metric (PR-AUC): a gain above ``tie_tolerance`` and at least ``min_improvement``
    promotes it, unless it captures ``max_secondary_decrease`` less churned ARR in its top
    decile (``secondary``); a loss beyond the tolerance refuses it (criterion ``metric``);
    (3) a tie on the metric (within ``tie_tolerance``) is decided by the churned ARR captured
    in the top decile: more promotes it (criterion ``secondary``), else the champion stays
    (criterion ``tie``)."""
    m_new, m_old = _value(new, metric), _value(old, metric)
    s_new, s_old = _value(new, secondary), _value(old, secondary)
    e_new, e_old = _value(new, "ece"), _value(old, "ece")
    gain, s_gain = m_new - m_old, s_new - s_old
    facts = (
        f"{metric} {m_new:.4f} vs {champion} {m_old:.4f} ({gain:+.4f}; ties within "
        f"{tie_tolerance}, a win needs >= {min_improvement}), {secondary} {s_new:.4f} vs "
        f"{s_old:.4f} ({s_gain:+.4f}), ece {e_new:.4f} vs {e_old:.4f} (allowed "
        f"+{max_ece_increase}){where}"
    )
    if not e_new <= e_old + max_ece_increase:
        return GateDecision(False, "ece", f"not promoted on ece (calibration worse): {facts}")
    if not np.isfinite(gain):
        return GateDecision(False, "no_comparison", f"not promoted: {metric} undefined: {facts}")
    if gain > tie_tolerance and gain >= min_improvement:
        if s_gain < -max_secondary_decrease:
            reason = (
                f"not promoted on {secondary} (captures {-s_gain:.1%} less churned ARR in "
                f"its top decile, allowed {max_secondary_decrease:.1%}): {facts}"
            )
            return GateDecision(False, "secondary", reason)
        return GateDecision(True, "metric", f"promoted on {metric}: {facts}")
    if abs(gain) > tie_tolerance:
        return GateDecision(False, "metric", f"not promoted on {metric}: {facts}")
    if s_gain > 0:
        reason = f"promoted on {secondary} ({metric} ties within {tie_tolerance}): {facts}"
        return GateDecision(True, "secondary", reason)
    reason = f"not promoted: {metric} ties and {secondary} is not higher: {facts}"
    return GateDecision(False, "tie", reason)


def latest_fold(backtest: pd.DataFrame) -> pd.DataFrame:
    """Metrics of every model on the latest backtest fold, indexed by model."""
    latest = backtest["fold"].max()
    return backtest[backtest["fold"] == latest].set_index("model")


def promotion_decision(
    backtest: pd.DataFrame,
    *,
    champion_version: str | None,
    champion_metrics: Mapping[str, float] | None,
    promotion: PromotionConfig,
) -> GateDecision:
    """Whether the new model (``BOOSTER`` rows of ``backtest``) becomes champion: it must beat
    the baselines (when ``promotion.require_beats_baselines``), and then the champion on the
    latest backtest fold (:func:`champion_decision`).

    The champion's scores come from the backtest (``CHAMPION`` rows: it was rescored on the
    same rows) when present, else from its own logged latest-fold metrics
    (``champion_metrics``: ``latest_<metric>``, a different fold, said in the reason). No
    champion (``champion_version`` None): the first version becomes champion."""
    verdict = baseline_verdict(backtest, promotion.metric)
    if promotion.require_beats_baselines and not verdict.passed:
        return GateDecision(False, "baselines", f"not promoted: {verdict.reason}")
    if champion_version is None:
        return GateDecision(True, "first", "first registered version: becomes champion")
    metric, secondary = promotion.metric, promotion.secondary_metric
    latest = latest_fold(backtest)
    new = latest.loc[BOOSTER]
    if CHAMPION in latest.index:
        old = latest.loc[CHAMPION].to_dict()
        where = f" on the latest backtest fold (test from {new['test_start']:%Y-%m-%d})"
        if bool(old["champion_in_sample"]):
            where += "; the champion saw part of this window in training, so it is favoured"
    elif champion_metrics and f"latest_{metric}" in champion_metrics:
        where = " against the champion's own logged latest-fold metrics (not rescored here)"
        old = {
            name: champion_metrics.get(f"latest_{name}", float("nan"))
            for name in (metric, secondary)
        }
        old["ece"] = champion_metrics.get("latest_ece", float("inf"))
    else:
        return GateDecision(
            False,
            "no_comparison",
            f"champion v{champion_version} has no comparable {metric}: stays champion",
        )
    return champion_decision(
        new.to_dict(),
        old,
        metric=metric,
        secondary=secondary,
        min_improvement=promotion.min_improvement,
        tie_tolerance=promotion.tie_tolerance,
        max_ece_increase=promotion.max_ece_increase,
        max_secondary_decrease=promotion.max_secondary_decrease,
        champion=f"champion v{champion_version}",
        where=where,
    )
