from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shap

from models.bundle import (
    EXPECTED_VALUE_COLUMN,
    META_FILE,
    FeatureMismatchError,
    LibraryVersionError,
    ModelBundle,
)
from tests.models.conftest import make_panel


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_panel(n_accounts=40, n_dates=2, seed=5)


def test_prepare_selects_exact_features_and_fixes_levels(tiny_bundle, frame):
    frame = frame.copy()
    frame.loc[frame.index[0], "segment"] = "startup"
    X = tiny_bundle.prepare(frame)
    assert list(X.columns) == tiny_bundle.feature_names
    assert list(X["segment"].cat.categories) == ["enterprise", "mid_market", "smb"]
    assert pd.isna(X["segment"].iloc[0])
    assert X["p1_tickets_90d"].dtype == np.float64
    assert X.index.equals(frame.index)


def test_prepare_names_missing_columns(tiny_bundle, frame):
    with pytest.raises(FeatureMismatchError, match=r"\['seat_utilization', 'p1_tickets_90d'\]"):
        tiny_bundle.prepare(frame.drop(columns=["seat_utilization", "p1_tickets_90d"]))


def test_prepare_names_a_non_numeric_feature(tiny_bundle, frame):
    frame = frame.astype({"active_users_28d": object})
    frame.loc[frame.index[3], "active_users_28d"] = "many"
    with pytest.raises(FeatureMismatchError, match=r"'active_users_28d'.*'many'"):
        tiny_bundle.prepare(frame)


def test_probabilities_in_unit_interval(tiny_bundle, frame):
    p = tiny_bundle.predict_proba(frame)
    assert p.shape == (len(frame),)
    assert np.all((p >= 0) & (p <= 1))


def test_contributions_equal_tree_explainer_and_sum_to_margin(tiny_bundle, frame):
    frame = frame.copy()
    frame.loc[frame.index[:5], "segment"] = None
    contrib = tiny_bundle.contributions(frame)
    assert list(contrib.columns) == [*tiny_bundle.feature_names, EXPECTED_VALUE_COLUMN]
    assert contrib.index.equals(frame.index)
    X = tiny_bundle.prepare(frame)
    assert X.isna().any().any()
    explained = shap.TreeExplainer(tiny_bundle.booster).shap_values(X)
    np.testing.assert_allclose(contrib[tiny_bundle.feature_names].to_numpy(), explained, atol=1e-9)
    np.testing.assert_allclose(contrib.sum(axis=1), tiny_bundle.predict_margin(frame), atol=1e-9)


def test_save_load_round_trip(tiny_bundle, frame, tmp_path):
    tiny_bundle.outcome_value = {"if_expanded": {"*": 0.25, "smb": 0.3}, "if_retained": {}}
    tiny_bundle.save(tmp_path / "b")
    loaded = ModelBundle.load(tmp_path / "b")
    assert loaded.feature_names == tiny_bundle.feature_names
    assert loaded.categorical_levels == tiny_bundle.categorical_levels
    assert loaded.train_window == tiny_bundle.train_window
    assert loaded.calibrator.method == "sigmoid"
    assert loaded.outcome_value == tiny_bundle.outcome_value
    np.testing.assert_array_equal(loaded.predict_proba(frame), tiny_bundle.predict_proba(frame))
    pd.testing.assert_frame_equal(loaded.contributions(frame), tiny_bundle.contributions(frame))


def test_load_refuses_other_lightgbm_minor(tiny_bundle, tmp_path):
    directory = tiny_bundle.save(tmp_path / "b")
    meta = json.loads((directory / META_FILE).read_text())
    meta["library_versions"]["lightgbm"] = "3.3.5"
    (directory / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(LibraryVersionError, match=r"lightgbm 3\.3\.5"):
        ModelBundle.load(directory)
    with pytest.warns(UserWarning, match="lightgbm 3.3.5"):
        ModelBundle.load(directory, strict_versions=False)


def test_the_drift_reference_travels_in_the_bundle_under_its_manifest(tiny_bundle, frame, tmp_path):
    import dataclasses

    from models.bundle import DRIFT_REFERENCE_FILE, ArtifactIntegrityError
    from models.monitoring import DriftReference, reference_for_bundle

    reference = reference_for_bundle(tiny_bundle, frame, bins=10)
    bundle = dataclasses.replace(tiny_bundle, drift_reference=reference.to_state())
    directory = bundle.save(tmp_path / "b")
    manifest = json.loads((directory / META_FILE).read_text())["artifacts_sha256"]
    assert DRIFT_REFERENCE_FILE in manifest
    loaded = ModelBundle.load(directory)
    assert DriftReference.from_state(loaded.drift_reference) == reference
    assert set(reference.scores) == {"churn_probability"}
    # a changed reference is refused like any other file of the bundle
    (directory / DRIFT_REFERENCE_FILE).write_text(json.dumps({"format": 1}))
    with pytest.raises(ArtifactIntegrityError, match=r"drift_reference\.json changed"):
        ModelBundle.load(directory)
    # a bundle saved without one (older churnlens) loads with none, and says nothing is stored
    old = tiny_bundle.save(tmp_path / "old")
    assert not (old / DRIFT_REFERENCE_FILE).exists()
    assert ModelBundle.load(old).drift_reference is None
