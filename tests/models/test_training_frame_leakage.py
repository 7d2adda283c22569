"""A label-side column that is not a known outcome must never become a feature."""

import pandas as pd

from models.dataset import feature_columns, training_frame


def test_unknown_label_columns_do_not_leak_into_features() -> None:
    keys = {"account_id": ["a", "b"], "as_of": pd.to_datetime(["2026-01-05"] * 2)}
    features = pd.DataFrame({**keys, "active_users_28d": [3.0, 9.0]})
    labels = pd.DataFrame(
        {**keys, "churned": [1, 0], "arr_at_as_of": [10.0, 20.0], "future_only_flag": [1, 0]}
    )
    frame = training_frame(features, labels, target="churn")
    assert "future_only_flag" not in frame.columns
    assert feature_columns(frame) == ["active_users_28d"]


def test_every_configurable_target_has_a_label_and_value() -> None:
    from models.config import TARGETS, ModelConfig
    from models.dataset import TARGET_SPECS

    assert set(TARGETS) == set(TARGET_SPECS)
    assert ModelConfig(targets=["churn_inactive"]).targets == ["churn_inactive"]


def test_churn_inactive_value_is_arr_or_trailing_quantity() -> None:
    keys = {"account_id": ["a", "b", "c"], "as_of": pd.to_datetime(["2026-01-05"] * 3)}
    features = pd.DataFrame({**keys, "quantity_90d": [50.0, 7.0, 9.0]})
    labels = pd.DataFrame(
        {
            **keys,
            "churned": [False, False, False],
            "churned_inactive": pd.array([True, True, False], dtype="boolean"),
            "arr_at_as_of": [100.0, 0.0, 0.0],
        }
    )
    frame = training_frame(features, labels, target="churn_inactive")
    assert frame["churned_inactive"].tolist() == [1, 1, 0]
    # ARR where there is some, else the 90 days' quantity (a usage-priced account)
    assert frame["churned_inactive_value"].tolist() == [100.0, 7.0, 0.0]
    assert feature_columns(frame) == ["quantity_90d"]
