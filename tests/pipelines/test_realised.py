"""Earlier champions' latest-fold metrics beside what their matured weekly scores realised."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from models.metrics import score_metrics
from pipelines.config import Settings
from pipelines.report import gather
from pipelines.report.gather import ScoreHistory, realised_by_champion

RUN = date(2026, 6, 1)


@pytest.fixture
def history(monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    days = pd.to_datetime(["2026-01-05", "2026-01-12"])
    rows = pd.DataFrame(
        {
            "run_date": np.repeat(days, 40),
            "account_id": [f"a{i}" for i in range(40)] * 2,
            "churn_probability": rng.uniform(0.01, 0.6, 80),
            "arr": rng.uniform(1_000, 50_000, 80),
            "churn_model": ["churnlens-churn v1"] * 40 + ["churnlens-churn v2"] * 40,
        }
    )
    churned = rng.uniform(size=80) < rows["churn_probability"]
    labels = rows[["run_date", "account_id"]].rename(columns={"run_date": "as_of"})
    labels = labels.assign(churned=pd.array(churned, dtype="boolean"))
    logged = {
        "churnlens-churn v1": {"latest_pr_auc": 0.5, "latest_roc_auc": 0.8},
        "churnlens-churn v2": {"latest_pr_auc": 0.6},  # a metric it never logged is left out
    }
    monkeypatch.setattr(gather, "read_score_history", lambda *a, **k: ScoreHistory(rows))
    monkeypatch.setattr(gather, "_matured_outcomes", lambda *a, **k: labels)
    monkeypatch.setattr(gather, "version_metrics", lambda **k: logged[k["model"]])
    return rows.assign(churned=churned.astype(int))


def test_each_champion_gets_its_backtest_and_realised_metric(history: pd.DataFrame) -> None:
    got = realised_by_champion(None, Settings(), RUN, tracking=None)  # type: ignore[arg-type]
    assert list(zip(got["model"], got["metric"], strict=True)) == [
        ("churnlens-churn v1", "pr_auc"),
        ("churnlens-churn v1", "roc_auc"),
        ("churnlens-churn v2", "pr_auc"),
    ]
    v1 = history[history["churn_model"] == "churnlens-churn v1"]
    want = score_metrics(
        v1["churned"].to_numpy(),
        v1["churn_probability"].to_numpy(),
        value=(v1["churned"] * v1["arr"]).to_numpy(),
        as_of=v1["run_date"].to_numpy(),
    )
    row = got[(got["model"] == "churnlens-churn v1") & (got["metric"] == "roc_auc")].iloc[0]
    assert row["backtest"] == 0.8 and row["realised"] == pytest.approx(want["roc_auc"])


def test_no_matured_scores_means_no_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = ScoreHistory(pd.DataFrame(columns=["run_date", "account_id"]))
    monkeypatch.setattr(gather, "read_score_history", lambda *a, **k: empty)
    assert realised_by_champion(None, Settings(), RUN, tracking=None) is None  # type: ignore[arg-type]
