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
