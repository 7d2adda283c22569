"""The churn-reason loop: the contract table (a bad category is an error naming the row), the
last score in time before each churn, the agreement matrix and rate, and the escaped list."""

from __future__ import annotations

import pandas as pd
import pytest

from features.config import WarehouseConfig
from features.validation import ContractError, prepare_sources
from serving.churn_reasons import (
    NO_DRIVER,
    NOT_RECORDED,
    STATED_CATEGORIES,
    agreement_matrix,
    churn_reasons_section,
    read_stated_reasons,
    review_churn_reasons,
    scores_before_churn,
)
from tests.features.test_validation import REF, good_frames, load


def test_a_category_outside_the_taxonomy_is_an_error_naming_the_row(duck) -> None:
    frames = good_frames()
    frames["churn_reasons"] = pd.DataFrame(
        {
            "account_id": ["a1", "a2"],
            "recorded_at": [pd.Timestamp("2025-03-02"), pd.Timestamp("2025-04-01")],
            "reason_category": ["budget", "Pricing"],
            "reason_text": [None, "too expensive"],
        }
    )
    load(duck, frames)
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    text = str(info.value)
    assert "churn_reasons.reason_category: bad_value" in text
    assert "Pricing" in text and "a2" in text and "a1" not in text.split("bad_value")[1]


def test_stated_reasons_are_staged_lower_case_and_cut_at_the_run_date(duck) -> None:
    frames = good_frames()
    frames["churn_reasons"] = pd.DataFrame(
        {
            "account_id": ["a1", "a2"],
            "recorded_at": [pd.Timestamp("2025-03-02"), pd.Timestamp("2025-07-01")],
            "reason_category": [" Budget", "adoption"],
            "reason_text": ["cost cutting", None],
        }
    )
    load(duck, frames)
    report = prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    assert report.exclusions == {"churn_reasons": {"after_run_date": 1}}
    stated = read_stated_reasons(duck)
    assert stated["reason_category"].tolist() == ["budget"]
    assert stated["account_id"].tolist() == ["a1"]


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e"],
            "churn_date": pd.to_datetime(
                ["2026-03-01", "2026-03-01", "2026-04-01", "2026-04-01", "2026-02-10"]
            ),
            "churned_arr": [10_000.0, 50_000.0, 20_000.0, 5_000.0, 1_000.0],
        }
    )


def _predictions() -> pd.DataFrame:
    rows = [
        # account, run_date, p, tier
        ("a", "2026-01-19", 0.60, "high"),
        ("a", "2026-01-26", 0.70, "high"),  # last at least 30 days before 2026-03-01
        ("a", "2026-02-16", 0.05, "low"),  # too late to act: not used
        ("b", "2026-01-26", 0.004, "low"),
        ("c", "2026-02-23", 0.20, "medium"),
        ("d", "2026-02-23", 0.01, "low"),
        ("e", "2026-02-02", 0.90, "high"),  # only 8 days before: e is left out
    ]
    return pd.DataFrame(
        {
            "run_date": pd.to_datetime([r[1] for r in rows]),
            "account_id": [r[0] for r in rows],
            "churn_probability": [r[2] for r in rows],
            "churn_tier": [r[3] for r in rows],
            "name": [f"Acct {r[0].upper()}" for r in rows],
        }
    )


def _reasons() -> pd.DataFrame:
    rows = [
        ("a", "2026-01-26", 1, "relationship"),
        ("a", "2026-01-26", 2, "adoption"),
        ("a", "2026-02-16", 1, "support"),
        ("b", "2026-01-26", 1, "commercial"),
        ("c", "2026-02-23", 1, "adoption"),
    ]
    return pd.DataFrame(
        {
            "run_date": pd.to_datetime([r[1] for r in rows]),
            "account_id": [r[0] for r in rows],
            "target": "churn",
            "direction": "raises",
            "rank": [r[2] for r in rows],
            "category": [r[3] for r in rows],
        }
    )


def _stated() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a", "b", "b", "c"],
            "recorded_at": pd.to_datetime(["2026-03-05", "2026-02-01", "2026-03-10", "2026-04-02"]),
            "reason_category": ["relationship", "other", "budget", "competitor"],
            "reason_text": ["champion left", None, "budget cut", "moved to a rival"],
        }
    )


def test_the_last_score_at_least_the_notice_before_the_churn_is_used() -> None:
    out = scores_before_churn(_events(), _predictions(), notice_days=30)
    assert out["account_id"].tolist() == ["a", "b", "c", "d"]
    assert out.set_index("account_id").loc["a", "churn_probability"] == 0.70
    assert out.set_index("account_id").loc["a", "run_date"] == pd.Timestamp("2026-01-26")


def test_agreement_matrix_rate_and_escaped_on_a_hand_made_frame() -> None:
    review = review_churn_reasons(_events(), _predictions(), _reasons(), _stated())
    m = review.matrix
    assert list(m.index) == [*STATED_CATEGORIES, NOT_RECORDED]
    assert m.loc["relationship", "relationship"] == 1  # a: said and modelled the same
    assert m.loc["budget", "commercial"] == 1  # b: latest stated reason, budget = commercial
    assert m.loc["competitor", "adoption"] == 1  # c
    assert m.loc[NOT_RECORDED, NO_DRIVER] == 1  # d: no reason, no driver row
    assert int(m.to_numpy().sum()) == 4
    # comparable: a (relationship) and b (budget); both agree
    assert (review.agreement_rate, review.comparable) == (1.0, 2)
    # escaped: low tier, largest churned ARR first, with what they said
    assert review.escaped["account_id"].tolist() == ["b", "d"]
    assert review.escaped["reason_category"].tolist()[0] == "budget"
    assert pd.isna(review.escaped["reason_category"].tolist()[1])


def test_disagreement_lowers_the_rate() -> None:
    stated = _stated().assign(reason_category=["adoption", "other", "support", "competitor"])
    review = review_churn_reasons(_events(), _predictions(), _reasons(), stated)
    assert (review.agreement_rate, review.comparable) == (0.0, 2)
    assert review.matrix.loc["adoption", "relationship"] == 1


def test_section_shows_matrix_and_escaped_in_plain_words() -> None:
    review = review_churn_reasons(_events(), _predictions(), _reasons(), _stated())
    section = churn_reasons_section(review)
    assert "4 churned account(s)" in section.notes[0] and "100%" in section.notes[0]
    matrix, escaped = section.tables
    assert [r["cells"][0] for r in matrix.rows] == ["relationship", "budget", "competitor",
                                                     NOT_RECORDED]  # fmt: skip
    first = escaped.rows[0]["cells"]
    assert first == ["Acct B (b)", "2026-03-01", "$50,000", "<1%", "budget", "budget cut"]
    assert escaped.rows[1]["cells"][4] == NOT_RECORDED


def test_section_without_churns_says_what_is_missing() -> None:
    assert "No churned account" in churn_reasons_section(None).missing


def test_matrix_keeps_categories_outside_the_reason_taxonomy() -> None:
    churns = pd.DataFrame(
        {"reason_category": ["adoption", None], "model_category": ["context", None]}
    )
    m = agreement_matrix(churns)
    assert m.loc["adoption", "context"] == 1 and m.loc[NOT_RECORDED, NO_DRIVER] == 1
