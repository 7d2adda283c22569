"""Audit of the exported rule health score against the churn model, on matured outcomes.

Three questions a CS leader asks: does the health score rank churners as well as the model
(AUC and top-decile churned-ARR capture of each, on the same rows), how much churned ARR was
green 30/60/90 days before it churned, and on which signals the two disagree (the features the
model leans on that the health score does not weigh). Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

COLORS = ("green", "yellow", "red")


@dataclass(frozen=True)
class HealthAudit:
    """``ranking``: per run date plus an ``all`` row; ``green_before_churn``: one row per lag;
    ``disagreement``: one row per feature, largest disagreement first; ``summary``: headline
    numbers for the report."""

    ranking: pd.DataFrame
    green_before_churn: pd.DataFrame
    disagreement: pd.DataFrame
    summary: dict[str, float] = field(default_factory=dict)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def top_decile_capture(churned: np.ndarray, arr: np.ndarray, risk: np.ndarray) -> float:
    """Share of churned ARR held by the 10% of accounts (rounded up) ranked riskiest."""
    lost = arr * churned
    if lost.sum() <= 0:
        return float("nan")
    k = int(np.ceil(0.1 * len(risk)))
    top = np.argsort(-risk, kind="stable")[:k]
    return float(lost[top].sum() / lost.sum())


def _rank_row(group: pd.DataFrame) -> dict[str, float]:
    y = group["churned"].to_numpy(dtype=float)
    health_risk = -group["health_score"].to_numpy(dtype=float)  # low health = high risk
    model_risk = group["churn_probability"].to_numpy(dtype=float)
    arr = group["arr"].to_numpy(dtype=float) if "arr" in group else np.ones(len(group))
    return {
        "accounts": len(group),
        "churners": int(y.sum()),
        "auc_health": _auc(y, health_risk),
        "auc_model": _auc(y, model_risk),
        "capture_health": top_decile_capture(y, arr, health_risk),
        "capture_model": top_decile_capture(y, arr, model_risk),
    }


def health_ranking(scored: pd.DataFrame) -> pd.DataFrame:
    """AUC and top-decile churned-ARR capture of health score vs model on rows with a score."""
    _require(scored, ["run_date", "churned", "churn_probability", "health_score"], "scored")
    rows = scored[scored["health_score"].notna()].copy()
    rows["churned"] = rows["churned"].astype(bool)
    out = [{"run_date": d, **_rank_row(g)} for d, g in rows.groupby("run_date", sort=True)]
    if len(rows):
        out.append({"run_date": "all", **_rank_row(rows)})
    columns = [
        "run_date",
        "accounts",
        "churners",
        "auc_health",
        "auc_model",
        "capture_health",
        "capture_model",
    ]
    return pd.DataFrame(out, columns=columns)


def green_before_churn(
    churn_events: pd.DataFrame,
    health_history: pd.DataFrame,
    *,
    days_before: Sequence[int] = (30, 60, 90),
) -> pd.DataFrame:
    """For each lag d: churned ARR and the share of it whose latest health color on or before
    ``churn_date - d days`` was green / yellow / red / unscored (weighted by churned ARR)."""
    _require(churn_events, ["account_id", "churn_date", "churned_arr"], "churn_events")
    _require(health_history, ["account_id", "scored_at", "color"], "health_history")
    history = health_history.assign(
        account_id=health_history["account_id"].astype(str),
        scored_at=pd.to_datetime(health_history["scored_at"]).astype("datetime64[ns]"),
        color=health_history["color"].astype("object").str.lower(),
    ).sort_values("scored_at")
    events = churn_events.assign(account_id=churn_events["account_id"].astype(str))
    rows = []
    for days in days_before:
        probe = events.assign(
            t=(pd.to_datetime(events["churn_date"]) - pd.Timedelta(days=days)).astype(
                "datetime64[ns]"
            )
        ).sort_values("t")
        seen = pd.merge_asof(
            probe,
            history[["account_id", "scored_at", "color"]],
            left_on="t",
            right_on="scored_at",
            by="account_id",
        )
        total = float(seen["churned_arr"].sum())
        row = {"days_before": days, "churn_events": len(seen), "churned_arr": total}
        for color in (*COLORS, None):
            mask = seen["color"].isna() if color is None else seen["color"] == color
            share = float(seen.loc[mask, "churned_arr"].sum()) / total if total else np.nan
            row[f"{color or 'unscored'}_share"] = share
        row["green_arr"] = row["green_share"] * total if total else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def _oriented_corr(values: pd.Series, target: pd.Series) -> float:
    ok = values.notna() & target.notna()
    if ok.sum() < 3 or values[ok].nunique() < 2 or target[ok].nunique() < 2:
        return float("nan")
    return float(values[ok].corr(target[ok], method="spearman"))


def _effect_size(values: pd.Series, churned: pd.Series) -> float:
    """Standardised mean difference, churned minus retained, among the given rows."""
    a, b = values[churned].dropna(), values[~churned].dropna()
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    pooled = np.sqrt((a.var() + b.var()) / 2)
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def feature_disagreement(
    scored: pd.DataFrame, features: pd.DataFrame, *, feature_names: Sequence[str]
) -> pd.DataFrame:
    """Per numeric feature: Spearman correlation with the health score and with the model's
    safety (1 - churn probability), both oriented so positive means "healthier"; ``gap`` =
    model - health; and, among accounts that were green, how churners differed (effect size)."""
    keyed = scored.assign(
        account_id=scored["account_id"].astype(str),
        as_of=pd.to_datetime(scored["run_date"]).dt.normalize(),
    )
    feats = features.assign(
        account_id=features["account_id"].astype(str),
        as_of=pd.to_datetime(features["as_of"]).dt.normalize(),
    )
    names = [n for n in feature_names if n in feats and pd.api.types.is_numeric_dtype(feats[n])]
    names = [n for n in names if n not in ("health_score", "churn_probability")]
    both = keyed[
        [
            "account_id",
            "as_of",
            "churned",
            "churn_probability",
            "health_score",
            *(["health_color"] if "health_color" in keyed else []),
        ]
    ].merge(feats[["account_id", "as_of", *names]], on=["account_id", "as_of"])
    churned = both["churned"].astype(bool)
    green = both["health_color"] == "green" if "health_color" in both else both["churned"] & False
    rows = []
    for name in names:
        x = both[name].astype(float)
        corr_health = _oriented_corr(x, both["health_score"].astype(float))
        corr_model = _oriented_corr(x, 1 - both["churn_probability"].astype(float))
        rows.append(
            {
                "feature": name,
                "corr_health": corr_health,
                "corr_model": corr_model,
                "gap": corr_model - corr_health,
                "green_churner_effect": _effect_size(x[green], churned[green]),
            }
        )
    out = pd.DataFrame(
        rows, columns=["feature", "corr_health", "corr_model", "gap", "green_churner_effect"]
    )
    order = out["gap"].abs().fillna(-1).sort_values(ascending=False).index
    return out.loc[order].reset_index(drop=True)


def audit_health_score(
    scored: pd.DataFrame,
    *,
    churn_events: pd.DataFrame | None = None,
    health_history: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    feature_names: Sequence[str] = (),
    days_before: Sequence[int] = (30, 60, 90),
) -> HealthAudit:
    """Run the three parts of the audit; parts whose inputs are absent come back empty.

    ``scored``: matured past predictions joined to outcomes (``monitoring.join_matured``) with
    ``run_date, account_id, churned, churn_probability, health_score`` (+ ``arr``,
    ``health_color``); ``churn_events``: ``features.retention.churn_events``; ``health_history``:
    the exported ``health_scores`` table; ``features``: the feature frames at those run dates.
    """
    ranking = health_ranking(scored)
    greens = (
        green_before_churn(churn_events, health_history, days_before=days_before)
        if churn_events is not None and health_history is not None
        else pd.DataFrame()
    )
    disagreement = (
        feature_disagreement(scored, features, feature_names=feature_names)
        if features is not None and feature_names
        else pd.DataFrame()
    )
    summary: dict[str, float] = {}
    overall = ranking[ranking["run_date"] == "all"]
    if len(overall):
        summary["auc_health"] = float(overall["auc_health"].iloc[0])
        summary["auc_model"] = float(overall["auc_model"].iloc[0])
    for row in greens.itertuples() if len(greens) else ():
        summary[f"green_share_{row.days_before}d"] = float(row.green_share)
    return HealthAudit(ranking, greens, disagreement, summary)
