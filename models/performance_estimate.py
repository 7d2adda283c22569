"""This week's model performance before its labels exist: confidence-based performance estimation.

Churn labels mature 90+ days after a score, so realised performance always describes a model
as it was a quarter ago. Confidence-based performance estimation (CBPE, as NannyML names it)
reads the expected performance off the calibrated probabilities themselves: if each account
churns with its probability ``p``, the outcomes are independent Bernoulli(p) draws, and the
metrics of the week's ranking against those draws have a distribution. We sample it by Monte
Carlo (seeded): expected ROC-AUC, PR-AUC and churn count with a percentile interval. Once the
week's labels mature, the realised figures should fall inside the intervals; when they
repeatedly do not, the probabilities are no longer calibrated for today's book.

What it assumes: calibration holds on this week's rows (no concept drift; the estimate sees
covariate shift through the scores, not a changed relation between features and churn).

Why not a library: NannyML 0.13.1 (the latest) requires ``lightgbm>=3.3,<4.6`` and Python
< 3.13, and churnlens pins lightgbm 4.7.0; Evidently 0.7 offers drift presets as the proxy for
performance without labels, no confidence-based estimate. The method is 60 lines of numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ESTIMATED_METRICS = ("roc_auc", "pr_auc", "churners")
_CHUNK = 64  # Monte-Carlo samples evaluated at once (memory: chunk x rows floats)


@dataclass(frozen=True)
class PerformanceEstimate:
    """Expected metrics of one week's scores, each with a central ``level`` interval."""

    rows: int
    samples: int
    level: float
    expected: dict[str, float]
    lower: dict[str, float]
    upper: dict[str, float]

    def table(self) -> pd.DataFrame:
        """One row per metric: expected, lower, upper."""
        return pd.DataFrame(
            [
                {
                    "metric": m,
                    "expected": self.expected[m],
                    "lower": self.lower[m],
                    "upper": self.upper[m],
                }
                for m in ESTIMATED_METRICS
            ]
        )

    def contains(self, metric: str, value: float) -> bool:
        return bool(self.lower[metric] <= value <= self.upper[metric])


def _ranks_and_groups(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average ranks of ``p`` (ties share one, as in the Mann-Whitney AUC), and for the order of
    descending ``p`` the position after each group of tied scores (for average precision)."""
    ranks = pd.Series(p).rank(method="average").to_numpy()
    order = np.argsort(-p, kind="stable")
    ordered = p[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])  # last index of each tie
    return ranks, order, ends


def _auc(y: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """ROC-AUC per row of ``y`` (samples x rows) from the scores' average ranks."""
    positives = y.sum(axis=1, dtype=np.float64)
    negatives = y.shape[1] - positives
    rank_sum = y @ ranks
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _average_precision(y: np.ndarray, order: np.ndarray | None, ends: np.ndarray) -> np.ndarray:
    """Average precision (sklearn's step-wise PR-AUC) per row of ``y``, thresholds at each
    distinct score from the highest down (``order``: descending-score order of the columns, or
    None when ``y`` is already in it)."""
    ordered = y if order is None else y[:, order]
    hits = np.cumsum(ordered, axis=1, dtype=np.int32)[:, ends]  # true positives per threshold
    seen = ends + 1.0
    positives = hits[:, -1:].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = hits / seen
        recall_step = np.diff(hits, axis=1, prepend=0) / positives
        ap = np.sum(precision * recall_step, axis=1)
    return np.where(positives[:, 0] > 0, ap, np.nan)


def estimate_performance(
    p: np.ndarray, *, samples: int = 1000, level: float = 0.95, seed: int = 0
) -> PerformanceEstimate:
    """Expected ROC-AUC, PR-AUC and number of churners of calibrated probabilities ``p`` (one
    per account scored this week), with the central ``level`` percentile interval over
    ``samples`` Monte-Carlo draws of outcomes ``y ~ Bernoulli(p)``. Seeded: same inputs, same
    figures. The expected churn count is ``sum(p)`` exactly; the others are sample means."""
    p = np.asarray(p, dtype=float)
    if p.size == 0 or np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(
            f"performance estimation needs probabilities in [0, 1] for at least one account "
            f"(got {p.size} values, {int(np.isnan(p).sum())} missing)"
        )
    if not 0 < level < 1 or samples < 10:
        raise ValueError(f"level must be in (0, 1) and samples >= 10 (got {level}, {samples})")
    rng = np.random.default_rng(seed)
    ranks, order, ends = _ranks_and_groups(p)
    # outcomes are drawn in descending-score order, so average precision needs no reordering
    p_sorted, ranks_sorted = p[order], ranks[order].astype(np.float32)
    draws: dict[str, list[np.ndarray]] = {m: [] for m in ESTIMATED_METRICS}
    for start in range(0, samples, _CHUNK):
        u = rng.random((min(_CHUNK, samples - start), p.size), dtype=np.float32)
        y = (u < p_sorted).astype(np.float32)
        draws["roc_auc"].append(_auc(y, ranks_sorted))
        draws["pr_auc"].append(_average_precision(y, None, ends))
        draws["churners"].append(y.sum(axis=1, dtype=np.float64))
    tail = (1 - level) / 2 * 100
    values = {m: np.concatenate(v) for m, v in draws.items()}
    expected = {m: float(np.nanmean(v)) for m, v in values.items()}
    expected["churners"] = float(p.sum())
    return PerformanceEstimate(
        rows=int(p.size),
        samples=samples,
        level=level,
        expected=expected,
        lower={m: float(np.nanpercentile(v, tail)) for m, v in values.items()},
        upper={m: float(np.nanpercentile(v, 100 - tail)) for m, v in values.items()},
    )


def estimate_vs_realised(estimates: pd.DataFrame, realised: pd.DataFrame) -> pd.DataFrame:
    """Each run date's estimate beside what its matured labels gave, and whether the realised
    figure fell inside the interval. ``estimates``: rows ``run_date, metric, expected, lower,
    upper`` (what the weekly flow wrote); ``realised``: :func:`models.monitoring.
    realised_performance` (``auc``, ``pr_auc``, ``churners`` per run date). Run dates whose
    labels have not matured keep NaN in ``realised``."""
    names = {"roc_auc": "auc", "pr_auc": "pr_auc", "churners": "churners"}
    long = realised.melt(
        id_vars=["run_date"],
        value_vars=[c for c in names.values() if c in realised.columns],
        var_name="column",
        value_name="realised",
    )
    long["metric"] = long["column"].map({v: k for k, v in names.items()})
    table = estimates.assign(run_date=pd.to_datetime(estimates["run_date"])).merge(
        long.assign(run_date=pd.to_datetime(long["run_date"]))[["run_date", "metric", "realised"]],
        on=["run_date", "metric"],
        how="left",
    )
    inside = (table["realised"] >= table["lower"]) & (table["realised"] <= table["upper"])
    table["within_interval"] = inside.where(table["realised"].notna())
    return table.sort_values(["run_date", "metric"]).reset_index(drop=True)
