"""Golden labels on hand-written contracts: late renewals, churn just after the window, lead
time, mid-term add-ons, contraction, inactivity and censoring."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from features.config import LabelConfig
from features.labels import build_labels, censoring_summary, movement_flags
from features.warehouse import Warehouse
from tests.features.test_build import _accounts, _contracts, stage

AS_OF = datetime(2024, 1, 1)  # default window (2024-01-01, 2024-03-31]
DATA_END = datetime(2025, 1, 1)
CONFIG = LabelConfig(horizon_days=90, lead_days=0, grace_days=30)

CONTRACTS = [
    # late renewal 19 days after the lapse: within grace, not churn
    ("late", "c1", "core", date(2023, 2, 1), date(2024, 2, 1), 1000, 5),
    ("late", "c2", "core", date(2024, 2, 20), date(2025, 2, 20), 1000, 5),
    # renewal 43 days late: churn
    ("lost", "c3", "core", date(2023, 2, 1), date(2024, 2, 1), 1000, 5),
    ("lost", "c4", "core", date(2024, 3, 15), date(2025, 3, 15), 1000, 5),
    # ends the day after the window: still in force at its end, not churn in the window
    ("after", "c5", "core", date(2023, 4, 1), date(2024, 4, 1), 1000, 5),
    # ends exactly at the window end: ARR 0 there, churn
    ("edge", "c6", "core", date(2023, 3, 31), date(2024, 3, 31), 1000, 5),
    # mid-term add-on: expansion of 20%
    ("grow", "c7", "core", date(2023, 6, 1), date(2025, 6, 1), 1000, 5),
    ("grow", "c8", "addon", date(2024, 2, 1), date(2025, 6, 1), 200, 1),
    # renewed on time at 800: contraction of 20%
    ("shrink", "c9", "core", date(2023, 2, 1), date(2024, 2, 1), 1000, 5),
    ("shrink", "c10", "core", date(2024, 2, 1), date(2025, 2, 1), 800, 4),
    # lapse at the window end, renewed 10 days late at 1500: not churn, expansion
    ("lateup", "c11", "core", date(2023, 3, 20), date(2024, 3, 20), 1000, 5),
    ("lateup", "c12", "core", date(2024, 3, 30), date(2025, 3, 30), 1500, 8),
    # not active at as_of: no row
    ("future", "c13", "core", date(2024, 1, 2), date(2025, 1, 2), 1000, 5),
]


@pytest.fixture
def staged(duck: Warehouse) -> Warehouse:
    ids = sorted({c[0] for c in CONTRACTS})
    accounts = _accounts([(a, a, "smb", "x", 10, "csm", datetime(2023, 1, 1)) for a in ids])
    usage = pd.DataFrame(
        {
            "account_id": ["grow", "grow"],
            "user_id": ["u", "u"],
            "event_time": [datetime(2024, 3, 1), datetime(2024, 3, 31, 0, 0, 1)],
            "event_type": ["login", "login"],
            "quantity": [1.0, 1.0],
        }
    )
    stage(duck, {"accounts": accounts, "contracts": _contracts(CONTRACTS), "usage_events": usage})
    return duck


def _labels(wh: Warehouse, config: LabelConfig = CONFIG, **kw: object) -> pd.DataFrame:
    kw.setdefault("data_end", DATA_END)
    return build_labels(wh, [AS_OF], config=config, **kw).set_index("account_id")


def test_churn_golden(staged: Warehouse) -> None:
    labels = _labels(staged)
    assert "future" not in labels.index
    churned = labels["churned"].astype(bool).to_dict()
    assert churned == {
        "after": False,
        "edge": True,
        "grow": False,
        "late": False,
        "lateup": False,
        "lost": True,
        "shrink": False,
    }
    assert labels.loc["lost", "churned_arr"] == 1000.0
    assert labels.loc["late", "churned_arr"] == 0.0


def test_expansion_and_contraction_golden(staged: Warehouse) -> None:
    labels = _labels(staged)
    assert labels.loc["grow", "expanded"] and labels.loc["grow", "expansion_arr"] == 200.0
    assert labels.loc["grow", "arr_at_horizon"] == 1200.0
    assert labels.loc["shrink", "contracted"] and labels.loc["shrink", "contracted_arr"] == 200.0
    assert not labels.loc["shrink", "expanded"]
    # a late renewal at the window end counts at its ARR
    assert labels.loc["lateup", "arr_at_horizon"] == 1500.0 and labels.loc["lateup", "expanded"]
    assert not labels.loc["late", "expanded"] and not labels.loc["late", "contracted"]
    assert not labels.loc["lost", "contracted"]  # churned accounts neither expand nor contract


def test_thresholds_come_from_config(staged: Warehouse) -> None:
    strict = CONFIG.model_copy(update={"expansion_min_ratio": 0.25, "contraction_min_ratio": 0.25})
    labels = _labels(staged, strict)
    assert not labels.loc["grow", "expanded"] and not labels.loc["shrink", "contracted"]
    by_amount = strict.model_copy(update={"expansion_min_arr": 150.0})
    assert _labels(staged, by_amount).loc["grow", "expanded"]


def test_shorter_grace_turns_a_late_renewal_into_churn(staged: Warehouse) -> None:
    labels = _labels(staged, CONFIG.model_copy(update={"grace_days": 10}))
    assert labels.loc["late", "churned"]


def test_lead_time_moves_the_window(staged: Warehouse) -> None:
    # window (2024-04-01, 2024-06-30]: 'after' lapses on 2024-04-01 (inside, churn);
    # 'edge' lapsed in the lead and stays lapsed (churn); 'lost' renewed before the window
    labels = _labels(staged, CONFIG.model_copy(update={"lead_days": 91}))
    assert labels.loc["after", "churned"] and labels.loc["edge", "churned"]
    assert not labels.loc["lost", "churned"]


def test_inactivity(staged: Warehouse) -> None:
    # grow's events: exactly 31 days before the window end, and a second after it
    labels = _labels(staged, CONFIG.model_copy(update={"inactivity_days": 31}))
    assert not labels.loc["grow", "churned_inactive"]
    assert labels.loc["late", "churned_inactive"]
    short = _labels(staged, CONFIG.model_copy(update={"inactivity_days": 30}))
    assert short.loc["grow", "churned_inactive"]


def test_censoring_at_window_end_plus_grace(staged: Warehouse) -> None:
    known_end = datetime(2024, 3, 31) + pd.Timedelta(days=30)
    labelled = _labels(staged, data_end=known_end)
    assert labelled["churned"].notna().all()
    censored = _labels(staged, data_end=known_end - pd.Timedelta(seconds=1))
    assert censored[["churned", "expanded", "contracted", "churned_inactive"]].isna().all().all()
    assert censored["churned_arr"].isna().all() and censored["arr_at_as_of"].notna().all()
    summary = censoring_summary(censored)
    assert summary["rows"] == 7 and summary["censored"] == 7 and summary["labelled"] == 0


def test_censoring_summary_counts_positives(staged: Warehouse) -> None:
    summary = censoring_summary(_labels(staged).reset_index())
    assert summary == {
        "rows": 7,
        "labelled": 7,
        "censored": 0,
        "churned": 2,
        "expanded": 2,
        "contracted": 1,
        "churned_inactive": 6,
    }


@pytest.mark.parametrize(
    ("start", "end", "churned", "expanded", "contracted"),
    [
        (100.0, 110.0, False, True, False),
        (100.0, 109.0, False, False, False),
        (100.0, 90.0, False, False, False),  # exactly 10%: not more than the threshold
        (100.0, 89.0, False, False, True),
        (100.0, 0.0, True, False, False),
        (100.0, 200.0, True, False, False),
    ],
)
def test_movement_flags(
    start: float, end: float, churned: bool, expanded: bool, contracted: bool
) -> None:
    got = movement_flags(
        pd.Series([start]).to_numpy(),
        pd.Series([end]).to_numpy(),
        pd.Series([churned]).to_numpy(),
        config=CONFIG,
    )
    assert (bool(got[0][0]), bool(got[1][0])) == (expanded, contracted)
