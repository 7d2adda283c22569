"""The demo's stated churn reasons: one per interviewed churn, mostly its true driver, with
the noise interviews have, never dated on or after the run date."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from pipelines.demo.data import generate_demo
from pipelines.demo.reasons import TRUE_DRIVER_TO_STATED
from serving.churn_reasons import STATED_CATEGORIES

END = date(2026, 11, 16)


@pytest.fixture(scope="module")
def demo():
    return generate_demo(n_accounts=600, seed=7, end=END, years=2.0)


def _churns_with_reasons(demo) -> pd.DataFrame:
    churns = demo.truth["renewals"]
    churns = churns[churns["decision"] == "churn"]
    stated = demo.tables["churn_reasons"]
    return churns.merge(stated, on="account_id", how="left")


def test_reasons_follow_the_true_driver_with_interview_noise(demo) -> None:
    stated = demo.tables["churn_reasons"]
    assert set(stated["reason_category"]) <= set(STATED_CATEGORIES)
    assert stated["reason_text"].notna().all()
    joined = _churns_with_reasons(demo)
    recorded = joined[joined["reason_category"].notna()]
    share_recorded = len(recorded) / len(joined)
    assert 0.5 < share_recorded < 0.85  # some churns are never interviewed
    honest = recorded["primary_driver"].map(TRUE_DRIVER_TO_STATED)
    known = recorded[honest.notna()]
    agree = (known["reason_category"] == honest[honest.notna()]).mean()
    assert 0.65 < agree < 0.9  # 78 % expected: 10 % 'other', 12 % a wrong category
    other = (recorded["reason_category"] == "other").mean()
    assert 0.04 < other < 0.2
    # churns without a stand-out driver are explained by what the data cannot show
    noise = recorded[recorded["primary_driver"] == "noise"]["reason_category"]
    assert (noise.isin(["product_fit", "competitor", "business_change", "support"])).mean() > 0.6


def test_reasons_are_recorded_around_the_churn_and_before_the_run_date(demo) -> None:
    joined = _churns_with_reasons(demo).dropna(subset=["reason_category"])
    lag = (joined["recorded_at"] - pd.to_datetime(joined["end_date"])).dt.days
    assert lag.between(-29, 28).all()
    assert demo.tables["churn_reasons"]["recorded_at"].max() < pd.Timestamp(END)
