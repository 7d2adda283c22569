"""Scoring: tiers, ARR at risk, the green-churn rule, the expansion 2x2, frame checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.config import ExpansionConfig, GreenChurnConfig, ServingConfig, TierConfig
from serving.score import (
    PREDICTION_COLUMNS,
    churn_tier,
    expansion_quadrant,
    feature_snapshot_id,
    green_churn_drivers,
    green_churn_flag,
    score_accounts,
)
from tests.serving.conftest import CATALOG, RUN_DATE


@pytest.fixture(scope="module")
def scored(features, churn_bundle, expansion_bundle):
    return score_accounts(
        features,
        churn=churn_bundle,
        expansion=expansion_bundle,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={"churn": "churn v2", "expansion": "expansion v1"},
        catalog=CATALOG,
    )


def test_predictions_one_row_per_account_with_tiers_and_arr_at_risk(scored, features):
    p = scored.predictions
    assert list(p.columns) == PREDICTION_COLUMNS
    assert len(p) == len(features) and p["account_id"].is_unique
    assert p["churn_probability"].between(0, 1).all()
    np.testing.assert_allclose(p["arr_at_risk"], p["churn_probability"] * p["arr"])
    np.testing.assert_allclose(
        p["expected_expansion_arr"], p["expansion_probability"] * p["arr"] * 0.2
    )
    high = p["churn_probability"] >= 0.30
    assert (p.loc[high, "churn_tier"] == "high").all()
    assert set(p["churn_tier"]) == {"high", "medium", "low"}
    assert set(scored.reasons["target"]) == {"churn", "expansion"}
    assert (p["churn_model"] == "churn v2").all()
    assert len(scored.feature_snapshot_id) == 16


def test_top_reasons_text_matches_the_reason_rows(scored):
    row = scored.predictions.iloc[0]
    mine = scored.reasons[
        (scored.reasons["account_id"] == row["account_id"])
        & (scored.reasons["target"] == "churn")
        & (scored.reasons["direction"] == "raises")
    ].sort_values("rank")
    assert row["top_reasons"] == "; ".join(mine["sentence"])
    assert row["churn_reason_features"] == "|".join(mine["feature"])


@pytest.mark.parametrize(
    ("p", "tier"),
    [(0.0, "low"), (0.1499, "low"), (0.15, "medium"), (0.2999, "medium"), (0.3, "high")],
)
def test_tier_thresholds_come_from_config(p, tier):
    assert churn_tier(np.array([p]), TierConfig(high=0.3, medium=0.15))[0] == tier


def test_tier_config_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match=r"tiers\.medium"):
        TierConfig(high=0.2, medium=0.4)


def test_green_churn_rule_and_unweighed_drivers():
    predictions = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "health_color": ["green", "green", "red", None],
            "churn_tier": ["high", "medium", "high", "high"],
        }
    )
    flags = green_churn_flag(predictions, GreenChurnConfig())
    assert flags.tolist() == [True, False, False, False]
    reasons = pd.DataFrame(
        {
            "account_id": ["a", "a", "a", "a", "a"],
            "direction": ["raises", "raises", "raises", "raises", "lowers"],
            "rank": [1, 2, 3, 4, 1],
            "feature": [
                "active_users_28d",
                "days_since_champion_left",
                "days_to_renewal",
                "health_score",
                "contract_months",
            ],
            "category": ["adoption", "relationship", "commercial", "sentiment", "commercial"],
            "sentence": ["usage", "Champion left 63 days ago", "Renewal in 30 days", "h", "x"],
        }
    )
    drivers = green_churn_drivers(reasons, GreenChurnConfig())
    assert drivers["a"] == "Champion left 63 days ago; Renewal in 30 days"


def test_green_churn_flags_reach_the_predictions(scored):
    p = scored.predictions
    expected = (p["health_color"] == "green") & (p["churn_tier"] == "high")
    assert p["green_churn"].tolist() == expected.tolist()
    assert expected.any()
    assert p.loc[~p["green_churn"], "green_churn_drivers"].isna().all()


def test_expansion_quadrants():
    predictions = pd.DataFrame(
        {
            "expansion_probability": [0.6, 0.6, 0.1, 0.1, np.nan],
            "health_score": [80, 80, 20, 20, 80],
            "penetration_vs_segment": [0.5, 1.5, 0.5, 1.5, 0.5],
        }
    )
    quadrants = expansion_quadrant(predictions, ExpansionConfig())
    assert quadrants.tolist() == ["expand", "sustain", "stabilise", "defend", "unknown"]
    by_health = expansion_quadrant(predictions, ExpansionConfig(readiness="health_score"))
    assert by_health.tolist() == ["expand", "sustain", "stabilise", "defend", "expand"]


def test_penetration_is_relative_to_the_segment_median(scored):
    p = scored.predictions.dropna(subset=["segment"])
    medians = p.groupby("segment")["penetration_vs_segment"].median()
    np.testing.assert_allclose(medians, 1.0)
    assert (scored.predictions["expansion_quadrant"] == "expand").any()


def test_without_expansion_model_readiness_falls_back_to_health(features, churn_bundle):
    scored = score_accounts(
        features,
        churn=churn_bundle,
        expansion=None,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={"churn": "churn v2"},
        catalog=CATALOG,
    )
    p = scored.predictions
    assert p["expansion_probability"].isna().all()
    ready = p["health_score"] >= 70
    assert set(p.loc[ready, "expansion_quadrant"]) <= {"expand", "sustain", "unknown"}
    assert set(scored.reasons["target"]) == {"churn"}


def test_snapshot_id_ignores_row_order_and_sees_values(features):
    shuffled = features.sample(frac=1.0, random_state=3)
    assert feature_snapshot_id(shuffled) == feature_snapshot_id(features)
    changed = features.copy()
    changed.loc[0, "urgent_tickets_90d"] += 1
    assert feature_snapshot_id(changed) != feature_snapshot_id(features)


def test_duplicate_accounts_and_missing_columns_are_named(features, churn_bundle):
    kwargs = dict(
        churn=churn_bundle,
        expansion=None,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={},
        catalog=CATALOG,
    )
    with pytest.raises(ValueError, match=r"duplicate account_id.*A0000"):
        score_accounts(pd.concat([features.head(2), features.head(1)]), **kwargs)
    with pytest.raises(ValueError, match=r"\['csm_owner'\]"):
        score_accounts(features.drop(columns="csm_owner"), **kwargs)


def test_config_rejects_unknown_keys_and_bad_table_names():
    with pytest.raises(ValueError, match="top_reason"):
        ServingConfig.model_validate({"top_reason": 3})
    with pytest.raises(ValueError, match="invalid table name"):
        ServingConfig.model_validate({"tables": {"predictions": "p; drop table x"}})


def test_a_contraction_model_gives_probability_and_expected_contraction_arr(
    features, churn_bundle, expansion_bundle
):
    from dataclasses import replace

    contraction = replace(
        churn_bundle,
        target="contraction",
        outcome_value={"if_contracted": {"*": 0.3}, "if_retained": {"*": 0.01}},
    )
    scored = score_accounts(
        features,
        churn=churn_bundle,
        expansion=expansion_bundle,
        contraction=contraction,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={"churn": "churn v2", "contraction": "contraction v1"},
        catalog=CATALOG,
    )
    p = scored.predictions
    assert list(p.columns) == PREDICTION_COLUMNS
    q = contraction.predict_proba(features.reset_index(drop=True))
    np.testing.assert_allclose(p["contraction_probability"], q)
    stay = np.clip(1 - q - p["churn_probability"], 0, None)
    np.testing.assert_allclose(p["expected_contraction_arr"], p["arr"] * (0.3 * q + 0.01 * stay))
    assert (p["contraction_model"] == "contraction v1").all()


def test_without_a_contraction_model_its_columns_are_empty(scored):
    p = scored.predictions
    assert p["contraction_probability"].isna().all()
    assert p["expected_contraction_arr"].isna().all()
    assert p["contraction_model"].isna().all()
