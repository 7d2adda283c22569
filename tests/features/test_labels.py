"""Golden labels on hand-written contracts: late renewals, churn just after the window, lead
time, mid-term add-ons, contraction, inactivity, evergreen and zero-ARR contracts, expansion
at the next renewal and censoring."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from features.config import ActiveConfig, LabelConfig
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
        {  # late's only event is exactly at as_of: a feature-side event, never a label's
            "account_id": ["grow", "grow", "late"],
            "user_id": ["u", "u", "v"],
            "event_time": [datetime(2024, 3, 1), datetime(2024, 3, 31, 0, 0, 1), AS_OF],
            "event_type": ["login", "login", "login"],
            "quantity": [1.0, 1.0, 1.0],
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
    # longer than the window: the whole window (as_of, e], never the event at as_of itself
    long = _labels(staged, CONFIG.model_copy(update={"inactivity_days": 400}))
    assert not long.loc["grow", "churned_inactive"] and long.loc["late", "churned_inactive"]


def test_censoring_at_window_end_plus_grace(staged: Warehouse) -> None:
    known_end = datetime(2024, 3, 31) + pd.Timedelta(days=30)
    labelled = _labels(staged, data_end=known_end)
    assert labelled["churned"].notna().all()
    censored = _labels(staged, data_end=known_end - pd.Timedelta(seconds=1))
    assert censored[["churned", "expanded", "contracted"]].isna().all().all()
    assert censored["churned_arr"].isna().all() and censored["arr_at_as_of"].notna().all()
    summary = censoring_summary(censored)
    assert summary["rows"] == 7 and summary["censored"] == 7 and summary["labelled"] == 0
    # inactivity needs the usage up to the window end only (no grace)
    assert censored["churned_inactive"].notna().all()
    early = _labels(staged, data_end=datetime(2024, 3, 31) - pd.Timedelta(seconds=1))
    assert early["churned_inactive"].isna().all()


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


# Next-renewal expansion, evergreen and zero-ARR contracts: window (2024-01-01, 2024-03-31]
RENEWALS = [
    ("up", "r1", "core", date(2023, 3, 1), date(2024, 3, 1), 1000, 5),
    ("up", "r2", "core", date(2024, 3, 1), date(2025, 3, 1), 1300, 6),
    ("flat", "r3", "core", date(2023, 3, 1), date(2024, 3, 1), 1000, 5),
    ("flat", "r4", "core", date(2024, 3, 1), date(2025, 3, 1), 1050, 5),  # +5%: below 10%
    ("down", "r5", "core", date(2023, 3, 1), date(2024, 3, 1), 1000, 5),
    ("down", "r6", "core", date(2024, 3, 1), date(2025, 3, 1), 700, 3),
    ("churn", "r7", "core", date(2023, 2, 1), date(2024, 2, 1), 1000, 5),  # never renewed
    ("lateup", "r8", "core", date(2023, 2, 1), date(2024, 2, 1), 1000, 5),
    ("lateup", "r9", "core", date(2024, 2, 20), date(2025, 2, 20), 1500, 8),  # 19 days late
    # renewal after the window; a mid-term add-on inside it (a horizon expansion)
    ("far", "r10", "core", date(2023, 9, 1), date(2024, 9, 1), 1000, 5),
    ("far", "r11", "addon", date(2024, 2, 1), date(2024, 9, 1), 300, 1),
    # evergreen, with an evergreen add-on inside the window: never renews, never lapses
    ("ever", "r12", "core", date(2023, 1, 1), None, 1000, 5),
    ("ever", "r13", "addon", date(2024, 2, 1), None, 300, 1),
    # usage-priced at ARR 0, renewed 4 days late at ARR 0: active, not churn, no expansion
    ("zero", "r14", "usage", date(2023, 2, 1), date(2024, 2, 1), 0, None),
    ("zero", "r15", "usage", date(2024, 2, 5), None, 0, None),
]


@pytest.fixture
def renewals(duck: Warehouse) -> Warehouse:
    ids = sorted({c[0] for c in RENEWALS})
    accounts = _accounts([(a, a, "smb", "x", 10, "csm", datetime(2023, 1, 1)) for a in ids])
    usage = pd.DataFrame(
        {"account_id": ["up"], "user_id": ["u"], "event_time": [AS_OF], "event_type": ["login"],
         "quantity": [1.0]}
    )  # fmt: skip
    stage(duck, {"accounts": accounts, "contracts": _contracts(RENEWALS), "usage_events": usage})
    return duck


NEXT = CONFIG.model_copy(update={"expansion_definition": "next_renewal"})


def test_next_renewal_expansion_golden(renewals: Warehouse) -> None:
    labels = _labels(renewals, NEXT)
    assert labels["expanded"].astype(bool).to_dict() == {
        "churn": False,  # churned instead of renewing
        "down": False,
        "ever": False,  # no renewal
        "far": False,  # the renewal comes after the window
        "flat": False,
        "lateup": True,  # renewed within grace at 1500
        "up": True,
        "zero": False,
    }
    assert labels.loc["up", "expansion_arr"] == 300.0
    assert labels.loc["lateup", "expansion_arr"] == 500.0
    assert labels.loc["far", "expansion_arr"] == 0.0
    horizon = _labels(renewals)  # the ARR at the window end: the add-ons count
    assert horizon.loc["far", "expanded"] and horizon.loc["ever", "expanded"]
    assert horizon.loc["up", "expanded"] and not horizon.loc["flat", "expanded"]
    # the other labels do not depend on the expansion definition
    cols = ["churned", "contracted", "churned_inactive", "arr_at_horizon", "churned_arr"]
    pd.testing.assert_frame_equal(labels[cols], horizon[cols])


def test_evergreen_and_zero_arr_contracts_never_lapse(renewals: Warehouse) -> None:
    labels = _labels(renewals)
    assert labels["churned"].astype(bool).to_dict() == {
        "churn": True,
        "down": False,
        "ever": False,
        "far": False,
        "flat": False,
        "lateup": False,
        "up": False,
        "zero": False,
    }
    assert labels.loc["ever", "arr_at_horizon"] == 1300.0
    assert labels.loc["zero", "arr_at_as_of"] == 0.0 and not labels.loc["zero", "expanded"]
    assert labels.loc["down", "contracted"] and labels.loc["down", "contracted_arr"] == 300.0


def test_next_renewal_censoring_follows_the_renewal(renewals: Warehouse) -> None:
    # known once the renewal + grace has passed (2024-03-31 for the March renewals); without a
    # renewal in the window only at the window end + grace, like churn
    labels = _labels(renewals, NEXT, data_end=datetime(2024, 3, 31))
    assert labels.loc["up", "expanded"] and not labels.loc["churn", "expanded"]
    assert pd.isna(labels.loc["far", "expanded"]) and pd.isna(labels.loc["ever", "expanded"])
    assert pd.isna(labels.loc["far", "expansion_arr"])
    assert labels["churned"].isna().all()
    before = _labels(renewals, NEXT, data_end=datetime(2024, 3, 31) - pd.Timedelta(seconds=1))
    assert pd.isna(before.loc["up", "expanded"]) and not before.loc["churn", "expanded"]


@pytest.mark.parametrize(
    ("rule", "rows"),
    [
        ("contract", ["churn", "down", "ever", "far", "flat", "lateup", "up", "zero"]),
        ("activity", ["up"]),  # the only account with an event in the 28 days up to as_of
    ],
)
def test_labels_use_the_active_rule(renewals: Warehouse, rule: str, rows: list[str]) -> None:
    labels = build_labels(
        renewals, [AS_OF], config=CONFIG, data_end=DATA_END, active=ActiveConfig(rule=rule)
    )
    assert sorted(labels["account_id"]) == rows
