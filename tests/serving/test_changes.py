"""Week-over-week changes: new on the list, risk up/down beyond the threshold, new reasons."""

from __future__ import annotations

import pandas as pd

from serving.changes import CHANGE_COLUMNS, week_over_week
from serving.config import ServingConfig


def _frame(rows):
    cols = ["account_id", "churn_probability", "churn_tier", "churn_reason_features"]
    frame = pd.DataFrame(rows, columns=cols)
    return frame.assign(name=frame["account_id"], csm_owner="csm", segment="smb", arr=1000.0)


def test_changes_on_known_inputs():
    previous = _frame(
        [
            ("a", 0.10, "low", "urgent_tickets_90d"),
            ("b", 0.50, "high", "urgent_tickets_90d"),
            ("c", 0.40, "high", "urgent_tickets_90d"),
            ("d", 0.35, "high", "urgent_tickets_90d"),
        ]
    )
    current = _frame(
        [
            ("a", 0.45, "high", "urgent_tickets_90d"),  # new on list, +35 points
            ("b", 0.30, "high", "urgent_tickets_90d"),  # -20 points
            ("c", 0.42, "high", "days_since_champion_left|urgent_tickets_90d"),  # new reason
            ("d", 0.36, "high", "urgent_tickets_90d"),  # nothing
            ("e", 0.60, "high", "urgent_tickets_90d"),  # not scored last week
        ]
    )
    changes = week_over_week(current, previous, config=ServingConfig()).set_index("account_id")
    assert list(changes.reset_index().columns) == CHANGE_COLUMNS
    assert sorted(changes.index) == ["a", "b", "c", "e"]
    assert changes.loc["a", "new_on_list"] and changes.loc["a", "risk_up"]
    assert changes.loc["a", "change"] == (
        "new on the list (was low risk); risk up 35 points (10% -> 45%)"
    )
    assert changes.loc["b", "risk_down"] and not changes.loc["b", "new_on_list"]
    assert changes.loc["c", "new_reasons"] == "days since champion left"
    assert changes.loc["e", "change"] == "new this week (not scored last run)"
    assert changes.index[0] == "e"  # unknown move first, then the largest


def test_threshold_is_strict_and_configurable():
    previous = _frame([("a", 0.20, "medium", "")])
    current = _frame([("a", 0.25, "medium", "")])
    assert week_over_week(current, previous, config=ServingConfig()).empty
    tight = ServingConfig.model_validate({"changes": {"risk_change_threshold": 0.04}})
    assert week_over_week(current, previous, config=tight)["risk_up"].tolist() == [True]


def test_no_previous_run_means_no_changes():
    current = _frame([("a", 0.9, "high", "x")])
    assert week_over_week(current, None, config=ServingConfig()).empty


def test_moves_read_in_the_lists_bands_and_never_as_certain():
    previous = _frame([("a", 0.001, "low", ""), ("b", 0.12, "low", "")])
    current = _frame([("a", 0.9991, "high", ""), ("b", 0.31, "high", "")])
    plain = week_over_week(current, previous, config=ServingConfig()).set_index("account_id")
    assert plain.loc["a", "change"].endswith("risk up 100 points (<1% -> >99%)")
    banded = week_over_week(
        current, previous, config=ServingConfig(), bands=[0.02, 0.05, 0.10, 0.20, 0.50, 0.90]
    ).set_index("account_id")
    assert banded.loc["a", "change"].endswith("(<2% -> >90%)")
    assert banded.loc["b", "change"].endswith("risk up 19 points (10–15% -> 30–50%)")
