"""ARR at a date and churn with a grace period are written twice: in SQL for the labels
(``features/sql/labels.sql``) and in pandas for the board report's retention figures
(``features/retention.py``). On the golden book of ``test_labels.py`` (late renewals inside and
outside grace, a lapse exactly at the window end, add-ons, contraction, evergreen-free) both
must say the same for every labelled row and several observation dates."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from features.labels import build_labels
from features.retention import arr_at, arr_at_with_grace, churn_events, prepare_contracts
from features.warehouse import Warehouse
from tests.features.test_labels import CONFIG, DATA_END, staged  # noqa: F401 (fixture)

AS_OFS = [datetime(2023, 12, 1), datetime(2024, 1, 1), datetime(2024, 1, 20), datetime(2024, 2, 1)]


@pytest.fixture
def both(staged: Warehouse) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: F811
    labels = build_labels(staged, AS_OFS, config=CONFIG, data_end=DATA_END)
    return labels, prepare_contracts(staged)


def test_the_book_has_rows_on_every_date_and_churn_on_some(both):
    labels, _ = both
    assert labels["as_of"].nunique() == len(AS_OFS)
    assert labels["churned"].astype(bool).sum() >= 2


def test_arr_at_as_of_and_at_the_horizon_agree(both):
    labels, contracts = both
    at_as_of = arr_at(contracts, labels.assign(t=pd.to_datetime(labels["as_of"])))
    assert at_as_of.tolist() == labels["arr_at_as_of"].astype(float).tolist()
    # the horizon: ARR at the window end, or at a renewal signed within grace after a lapse
    ends = labels.assign(t=pd.to_datetime(labels["label_window_end"]))
    at_horizon = arr_at_with_grace(contracts, ends, CONFIG.grace_days)
    assert at_horizon.tolist() == labels["arr_at_horizon"].astype(float).tolist()


def test_churn_with_grace_agrees_with_the_churn_events(both):
    labels, contracts = both
    for as_of, rows in labels.groupby("as_of"):
        window_end = pd.Timestamp(as_of) + timedelta(days=CONFIG.lead_days + CONFIG.horizon_days)
        events = churn_events(
            contracts,
            start=pd.Timestamp(as_of) + timedelta(days=CONFIG.lead_days),
            end=window_end + timedelta(days=CONFIG.grace_days),
            grace_days=CONFIG.grace_days,
        )
        sql = set(rows.loc[rows["churned"].astype(bool), "account_id"])
        assert sql == set(events["account_id"]), as_of


def test_a_renewal_exactly_grace_days_late_is_the_same_in_both(duck: Warehouse):
    from datetime import date

    from tests.features.test_build import _accounts, _contracts, stage

    late = date(2024, 2, 1) + timedelta(days=CONFIG.grace_days)
    contracts = [
        ("edge", "c1", "core", date(2023, 2, 1), date(2024, 2, 1), 1000, 5),
        ("edge", "c2", "core", late, date(2025, 3, 2), 1000, 5),
    ]
    accounts = _accounts([("edge", "edge", "smb", "x", 10, "csm", datetime(2023, 1, 1))])
    usage = pd.DataFrame(
        {
            "account_id": ["edge"],
            "user_id": ["u"],
            "event_time": [datetime(2024, 1, 1)],
            "event_type": ["login"],
            "quantity": [1.0],
        }
    )
    stage(duck, {"accounts": accounts, "contracts": _contracts(contracts), "usage_events": usage})
    labels = build_labels(duck, [datetime(2024, 1, 1)], config=CONFIG, data_end=DATA_END)
    events = churn_events(
        prepare_contracts(duck),
        start=datetime(2024, 1, 1),
        end=datetime(2024, 3, 31) + timedelta(days=CONFIG.grace_days),
        grace_days=CONFIG.grace_days,
    )
    assert bool(labels["churned"].iloc[0]) == ("edge" in set(events["account_id"]))
