import numpy as np
import pandas as pd
import pytest

from models.health_audit import (
    audit_health_score,
    feature_disagreement,
    green_before_churn,
    health_ranking,
    top_decile_capture,
)


def scored() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_date": pd.to_datetime(["2025-01-06"] * 5),
            "account_id": ["a", "b", "c", "d", "e"],
            "churned": [True, True, False, False, False],
            # the model ranks both churners first; health ranks churner b as the healthiest
            "churn_probability": [0.9, 0.8, 0.3, 0.2, 0.1],
            "health_score": [20.0, 95.0, 60.0, 70.0, 80.0],
            "health_color": ["red", "green", "yellow", "green", "green"],
            "arr": [100.0, 300.0, 50.0, 50.0, 50.0],
        }
    )


def test_ranking_hand_computed():
    out = health_ranking(scored()).set_index("run_date")
    row = out.loc["all"]
    assert row["auc_model"] == 1.0
    # pairs (churner, non-churner) where lower health: a beats c, d, e; b beats none -> 3/6
    assert row["auc_health"] == pytest.approx(0.5)
    assert row["capture_model"] == pytest.approx(0.25)  # top 10% = 1 account: a (100 of 400)
    assert row["capture_health"] == pytest.approx(0.25)
    assert len(out) == 2  # the run date and "all"


def test_ranking_ignores_rows_without_a_health_score():
    frame = scored()
    frame.loc[0, "health_score"] = np.nan
    assert health_ranking(frame).set_index("run_date").loc["all", "accounts"] == 4


def test_top_decile_capture():
    churned = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=float)
    arr = np.array([10, 1, 1, 1, 1, 1, 1, 1, 1, 30, 1, 1], dtype=float)
    risk = np.linspace(1, 0, 12)  # account 0 riskiest; top ceil(1.2) = 2 accounts: 0 and 1
    assert top_decile_capture(churned, arr, risk) == pytest.approx(10 / 40)


def test_green_before_churn_hand_computed():
    events = pd.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "churn_date": pd.to_datetime(["2025-04-01", "2025-04-01", "2025-04-01"]),
            "churned_arr": [100.0, 300.0, 600.0],
        }
    )
    history = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "b", "c"],
            "scored_at": pd.to_datetime(
                ["2024-12-01", "2025-02-20", "2024-12-01", "2025-03-02", "2025-02-15"]
            ),
            "color": ["green", "red", "green", "green", "Yellow"],
        }
    )
    out = green_before_churn(events, history).set_index("days_before")
    # 30 days before (2025-03-02): a red, b green (scored exactly that day), c yellow
    assert out.loc[30, "green_share"] == pytest.approx(0.3)
    assert out.loc[30, "red_share"] == pytest.approx(0.1)
    assert out.loc[30, "yellow_share"] == pytest.approx(0.6)
    # 60 days before (2025-01-31): a and b green, c not yet scored
    assert out.loc[60, "green_share"] == pytest.approx(0.4)
    assert out.loc[60, "unscored_share"] == pytest.approx(0.6)
    assert out.loc[90, "green_arr"] == pytest.approx(400.0)


def test_feature_disagreement_finds_the_signal_the_health_score_misses():
    rng = np.random.default_rng(0)
    n = 400
    usage = rng.normal(size=n)
    champion_left = rng.random(n) < 0.2
    health = 60 + 10 * usage  # the rule weighs usage only
    risk = 1 / (1 + np.exp(-(-2 - usage + 3 * champion_left)))
    churned = rng.random(n) < risk
    sc = pd.DataFrame(
        {
            "run_date": pd.Timestamp("2025-01-06"),
            "account_id": [str(i) for i in range(n)],
            "churned": churned,
            "churn_probability": risk,
            "health_score": health,
            "health_color": np.where(health > 55, "green", "red"),
        }
    )
    feats = pd.DataFrame(
        {
            "account_id": sc["account_id"],
            "as_of": sc["run_date"],
            "active_users_28d": usage,
            "champion_left_90d": champion_left.astype(float),
            "segment": "smb",
        }
    )
    names = ["active_users_28d", "champion_left_90d", "segment"]
    out = feature_disagreement(sc, feats, feature_names=names)
    assert list(out["feature"]) == ["champion_left_90d", "active_users_28d"]  # text skipped
    top = out.iloc[0]
    assert top["corr_model"] < -0.5 and abs(top["corr_health"]) < 0.15
    assert top["green_churner_effect"] > 0.5  # green churners lost their champion more often


def test_audit_assembles_parts_and_summary():
    audit = audit_health_score(scored())
    assert audit.summary["auc_model"] == 1.0 and audit.summary["auc_health"] == 0.5
    assert audit.green_before_churn.empty and audit.disagreement.empty


def test_missing_columns_are_named():
    with pytest.raises(KeyError, match=r"scored lacks column\(s\) \['health_score'\]"):
        health_ranking(scored().drop(columns="health_score"))
