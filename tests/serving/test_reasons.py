"""Reason sentences on known inputs, sign discipline, top-k selection and the taxonomy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shap

from serving.config import REASON_CATEGORIES
from serving.reasons import category_for, explain, resolve_specs, sentences_for, top_k_indices
from tests.serving.conftest import CATALOG, Spec


def _one(spec: Spec, value, **companions) -> str:
    rows = pd.DataFrame({spec.name: [value], **{k: [v] for k, v in companions.items()}})
    return sentences_for(spec, rows[spec.name], rows)[0]


@pytest.mark.parametrize(
    ("spec", "value", "companions", "expected"),
    [
        (
            CATALOG["active_users_change_28d"],
            22 / 38 - 1,
            {"active_users_28d": 22.0, "active_users_prev_28d": 38.0},
            "Active users fell 42% vs the prior 28 days (38 -> 22)",
        ),
        (
            CATALOG["active_users_change_28d"],
            0.5,
            {},
            "Active users rose 50% vs the prior 28 days",
        ),
        (CATALOG["days_since_champion_left"], 63.0, {}, "Champion left 63 days ago"),
        (CATALOG["days_since_champion_left"], np.nan, {}, "Champion left: none on record"),
        (CATALOG["urgent_tickets_90d"], 3.0, {}, "3 urgent tickets in the last 90 days"),
        (CATALOG["urgent_tickets_90d"], 1.0, {}, "1 urgent ticket in the last 90 days"),
        (
            Spec("p1_tickets_90d", "support", "", "count", 90),
            2.0,
            {},
            "2 urgent (P1) tickets in the last 90 days",
        ),
        (CATALOG["seat_utilization"], 0.456, {}, "Share of paid seats in use is 46%"),
        (CATALOG["nps_score"], 6.0, {}, "NPS score is 6"),
        (CATALOG["nps_score"], np.nan, {}, "NPS score: no data"),
        (CATALOG["health_score"], 81.6, {}, "Health score is 82"),
        (CATALOG["segment"], "mid_market", {}, "Segment: mid market"),
        (Spec("arr", "commercial", "", "currency", None), 125000.4, {}, "ARR is $125,000"),
        (Spec("days_to_renewal", "commercial", "", "days", None), 45.0, {}, "Renewal in 45 days"),
        (
            Spec("champion_left_90d", "engagement", "", "flag", 90),
            1.0,
            {},
            "Champion left (last 90 days): yes",
        ),
    ],
)
def test_sentences_carry_the_accounts_numbers(spec, value, companions, expected):
    assert _one(spec, value, **companions) == expected


@pytest.mark.parametrize(
    ("name", "group", "category"),
    [
        ("days_since_champion_left", "engagement", "relationship"),
        ("exec_sponsor_left_90d", "engagement", "relationship"),
        ("nps_score", "engagement", "sentiment"),
        ("health_score", "health", "sentiment"),
        ("urgent_tickets_90d", "support", "support"),
        ("active_users_28d", "usage", "adoption"),
        ("csm_meetings_90d", "engagement", "engagement"),
        ("days_to_renewal", "commercial", "commercial"),
    ],
)
def test_categories_come_from_the_fixed_taxonomy(name, group, category):
    assert category_for(Spec(name, group, "", "count", None)) == category
    assert category in REASON_CATEGORIES


def test_top_k_keeps_only_positive_entries_in_rank_order():
    matrix = np.array([[0.5, -1.0, 2.0, 0.1], [-0.2, -0.3, 0.0, 0.4], [-1.0, -2.0, -3.0, -4.0]])
    rows, cols, ranks = top_k_indices(matrix, 3)
    assert rows.tolist() == [0, 0, 0, 1]
    assert cols.tolist() == [2, 0, 3, 3]
    assert ranks.tolist() == [1, 2, 3, 1]


def test_explain_has_no_reason_of_the_wrong_sign(features, churn_bundle):
    specs = resolve_specs(churn_bundle.feature_names, CATALOG, features)
    contributions = churn_bundle.contributions(features)
    reasons = explain(contributions, features, target="churn", top_k=3, specs=specs)
    raises = reasons[reasons["direction"] == "raises"]
    lowers = reasons[reasons["direction"] == "lowers"]
    assert (raises["contribution"] > 0).all() and (lowers["contribution"] < 0).all()
    assert reasons.groupby(["account_id", "direction"]).size().max() == 3
    assert set(reasons["category"]) <= set(REASON_CATEGORIES)
    # the top raising reason is each account's largest positive contribution
    first = raises[raises["rank"] == 1].set_index("account_id")["feature"]
    values = contributions.drop(columns="_expected_value")
    values.index = features["account_id"]
    assert (first == values.loc[first.index].idxmax(axis=1)).all()


def test_contributions_equal_shap_tree_explainer_with_categoricals_and_nans(features, churn_bundle):
    X = churn_bundle.prepare(features)
    assert X["segment"].isna().any() and X["nps_score"].isna().any()
    ours = churn_bundle.contributions(features)
    theirs = shap.TreeExplainer(churn_bundle.booster).shap_values(X)
    np.testing.assert_allclose(ours[churn_bundle.feature_names].to_numpy(), theirs, atol=1e-9)
    np.testing.assert_allclose(ours.sum(axis=1), churn_bundle.predict_margin(features), atol=1e-9)


def test_every_catalog_feature_gets_a_sentence_with_its_value():
    from features.catalog import FEATURES

    samples = {"count": 7.0, "ratio": 0.25, "days": 41.0, "currency": 1234.0, "score": 8.0}
    for spec in FEATURES.values():
        value = "red" if spec.unit == "category" else samples.get(spec.unit, 1.0)
        rows = pd.DataFrame({spec.name: [value]})
        sentence = sentences_for(spec, rows[spec.name], rows)[0]
        shown = {"ratio": "25%", "currency": "$1,234", "flag": "yes", "category": "red"}
        expected = shown.get(spec.unit, f"{value:.0f}" if spec.unit != "category" else "")
        if spec.unit == "ratio" and "_per_" in spec.name:
            expected = "0.25"  # a rate, not a share
        if spec.unit == "ratio" and "_change" in spec.name:
            expected = "rose 25%"
        assert expected in sentence, (spec.name, sentence)
        assert category_for(spec) in REASON_CATEGORIES


@pytest.mark.parametrize(
    ("name", "value", "sentence"),
    [
        # an event type named like a share is still a count of events, never "800%"
        ("events_90d__share_report", 8.0, "8 share report events in the last 90 days"),
        (
            "quantity_28d__win_opportunity",
            1250.0,
            "Usage volume of win opportunity events (last 28 days) is 1,250",
        ),
    ],
)
def test_per_event_type_columns_read_as_counts_and_amounts(name, value, sentence) -> None:
    from serving.reasons import infer_spec, sentences_for

    spec = infer_spec(name)
    assert (spec.unit, spec.group) == ("count", "usage")
    assert sentences_for(spec, pd.Series([value]), pd.DataFrame({name: [value]})) == [sentence]


def test_a_mean_quantity_is_an_amount_not_a_percentage() -> None:
    from features.catalog import FEATURES
    from serving.reasons import sentences_for

    spec = FEATURES["quantity_mean_90d"]
    got = sentences_for(spec, pd.Series([1.0]), pd.DataFrame({spec.name: [1.0]}))
    assert got == ["Average usage volume per action (last 90 days) is 1"]
