from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models.config import ModelConfig, TrackingConfig


def test_unknown_key_is_named():
    with pytest.raises(ValidationError, match="num_boost_rounds"):
        ModelConfig(num_boost_rounds=10)


@pytest.mark.parametrize("param", ["is_unbalance", "scale_pos_weight", "seed", "objective"])
def test_reserved_lightgbm_params_are_refused(param):
    with pytest.raises(ValidationError, match=param):
        ModelConfig(params={param: 1})


def test_unknown_target_is_refused():
    with pytest.raises(ValidationError, match="renewal"):
        ModelConfig(targets=["churn", "renewal"])


def test_default_tracking_uri_is_absolute_under_data_dir(tmp_path: Path):
    uri = TrackingConfig().resolved_uri(tmp_path / "data")
    assert uri == f"sqlite:///{(tmp_path / 'data').resolve()}/mlflow.db"
    assert TrackingConfig(tracking_uri="http://mlflow:5000").resolved_uri(tmp_path) == (
        "http://mlflow:5000"
    )
    assert TrackingConfig().model_name("churn") == "churnlens-churn"
