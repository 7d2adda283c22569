from datetime import date

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from models.monitoring import (
    MonitoringConfig,
    drift_warnings,
    feature_drift,
    join_matured,
    prediction_drift,
    psi,
    realised_performance,
)

# --- PSI golden numbers (worked in docs/metrics.md) ---------------------------------------------


def test_psi_numeric_hand_computed():
    # expected 1..10 split at its median 5.5: shares 0.5 / 0.5; actual has 8 of 10 at or below it
    expected = pd.Series(range(1, 11))
    actual = pd.Series([1, 2, 3, 4, 5, 1, 2, 3, 9, 10])
    assert psi(expected, actual, bins=2) == pytest.approx(
        0.3 * np.log(0.8 / 0.5) + 0.3 * np.log(0.5 / 0.2)
    )
    assert psi(expected, actual, bins=2) == pytest.approx(0.415888, abs=1e-6)


def test_psi_categorical_hand_computed():
    assert psi(pd.Series(list("aabb")), pd.Series(list("abbb"))) == pytest.approx(
        0.274653, abs=1e-6
    )


def test_psi_missing_values_are_their_own_bin():
    # no NaN in expected (share floored at 1e-4), half NaN in actual
    value = psi(pd.Series([1.0, 2, 3, 4]), pd.Series([1, 3, np.nan, np.nan]), bins=2)
    assert value == pytest.approx(0.4999 * np.log(0.5 / 1e-4) + 2 * 0.25 * np.log(2))


def test_psi_is_zero_for_identical_samples_and_grows_with_shift():
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(size=2000))
    assert psi(x, x) == 0.0
    small, large = psi(x, x + 0.1), psi(x, x + 1.0)
    assert 0 < small < 0.1 < 0.25 < large


def test_psi_unseen_category_counts():
    assert psi(pd.Series(["a"] * 10), pd.Series(["a"] * 5 + ["new"] * 5)) > 0.25


@pytest.mark.parametrize("expected,actual", [([], [1.0]), ([1.0], [])])
def test_psi_rejects_empty_samples(expected, actual):
    with pytest.raises(ValueError, match="needs rows in both samples"):
        psi(pd.Series(expected, dtype=float), pd.Series(actual, dtype=float))


# --- config -------------------------------------------------------------------------------------


def test_config_defaults_and_strictness():
    cfg = MonitoringConfig()
    assert (cfg.psi_warn, cfg.psi_alert) == (0.1, 0.25)
    with pytest.raises(ValidationError, match="psi_warnn"):
        MonitoringConfig(psi_warnn=0.2)
    with pytest.raises(ValidationError, match="must be below"):
        MonitoringConfig(psi_warn=0.3, psi_alert=0.2)


# --- drift --------------------------------------------------------------------------------------


def _frames():
    rng = np.random.default_rng(1)
    n = 1000
    train = pd.DataFrame(
        {
            "stable": rng.normal(size=n),
            "shifted": rng.normal(size=n),
            "holes": rng.normal(size=n),
            "segment": rng.choice(["smb", "ent"], size=n),
        }
    )
    current = pd.DataFrame(
        {
            "stable": rng.normal(size=n),
            "shifted": rng.normal(loc=1.5, size=n),
            "holes": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "segment": rng.choice(["smb", "ent"], size=n),
        }
    )
    return train, current


def test_feature_drift_statuses():
    train, current = _frames()
    drift = feature_drift(
        train, current, feature_names=list(train.columns), thresholds=MonitoringConfig()
    ).set_index("feature")
    assert drift.loc["shifted", "status"] == "alert"
    assert drift.loc["stable", "status"] == "ok"
    assert drift.loc["segment", "kind"] == "categorical"
    assert drift.loc["holes", "missing_current"] == pytest.approx(0.2, abs=0.04)
    # 20% missing is a 0.2 change in missing rate: at least a warning
    assert drift.loc["holes", "status"] in {"warn", "alert"}
    lines = drift_warnings(drift.reset_index())
    assert any(line.startswith("feature drift alert: shifted") for line in lines)
    assert not any("stable" in line for line in lines)


def test_excluded_features_are_measured_but_never_warn():
    train, current = _frames()
    cfg = MonitoringConfig(exclude_features=("shifted",))
    drift = feature_drift(train, current, feature_names=list(train.columns), thresholds=cfg)
    row = drift.set_index("feature").loc["shifted"]
    assert row["status"] == "excluded" and row["psi"] > cfg.psi_alert
    assert drift["feature"].iloc[-1] == "shifted"  # listed after every other status
    assert not any("shifted" in line for line in drift_warnings(drift))


def test_feature_drift_missing_rate_alone_warns():
    train = pd.DataFrame({"x": [1.0, 2.0] * 50})
    current = pd.DataFrame({"x": [1.0, 2.0] * 45 + [np.nan] * 10})
    cfg = MonitoringConfig(missing_rate_change=0.05, psi_warn=5.0, psi_alert=10.0)
    row = feature_drift(train, current, feature_names=["x"], thresholds=cfg).iloc[0]
    assert row["status"] == "warn" and row["missing_change"] == pytest.approx(0.1)


def test_feature_drift_names_missing_columns():
    train, current = _frames()
    with pytest.raises(KeyError, match=r"current feature frame lacks column\(s\) \['nope'\]"):
        feature_drift(
            train.assign(nope=1), current, feature_names=["nope"], thresholds=MonitoringConfig()
        )


def test_prediction_drift():
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"churn_probability": rng.beta(1, 9, 2000)})
    cur = pd.DataFrame({"churn_probability": rng.beta(3, 7, 2000)})
    out = prediction_drift(ref, cur, thresholds=MonitoringConfig())
    assert list(out["score"]) == ["churn_probability"]  # expansion absent from both: skipped
    assert out.loc[0, "status"] == "alert"
    assert out.loc[0, "mean_current"] > out.loc[0, "mean_reference"]


# --- realised performance -----------------------------------------------------------------------


def test_realised_ece_uses_equal_width_bins():
    # bin [0.1,0.2): p=0.1,0.1 observed 0,1 -> |0.5-0.1|; bin [0.9,1]: p=0.9 observed 1 -> 0.1
    preds = pd.DataFrame(
        {
            "run_date": [date(2025, 1, 6)] * 3,
            "account_id": ["a", "b", "c"],
            "churn_probability": [0.1, 0.1, 0.9],
        }
    )
    labels = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2025-01-06"] * 3),
            "account_id": ["a", "b", "c"],
            "churned": [False, True, True],
        }
    )
    perf = realised_performance(preds, labels, maturity_days=120)
    assert perf.loc[0, "ece"] == pytest.approx((2 * 0.4 + 1 * 0.1) / 3)


def _past():
    preds = pd.DataFrame(
        {
            "run_date": [date(2025, 1, 6)] * 4 + [date(2025, 3, 3)] * 2 + [date(2025, 6, 2)],
            "account_id": ["a", "b", "c", "d", "a", "b", "a"],
            "churn_probability": [0.9, 0.2, 0.1, 0.6, 0.3, 0.4, 0.5],
            "arr": [100.0, 200.0, 300.0, 400.0, 100.0, 200.0, 100.0],
            "health_color": ["green", "green", "red", "green", "red", "green", "green"],
            "green_churn": [True, False, False, False, False, False, False],
        }
    )
    labels = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2025-01-06"] * 4 + ["2025-03-03"] * 2 + ["2025-06-02"]),
            "account_id": ["a", "b", "c", "d", "a", "b", "a"],
            # d's label is censored (NA); 2025-06-02 has not matured by data_end
            "churned": pd.array([True, False, False, pd.NA, False, True, False], dtype="boolean"),
        }
    )
    return preds, labels


def test_join_matured_keeps_only_complete_label_windows():
    preds, labels = _past()
    joined = join_matured(preds, labels, maturity_days=90, data_end=date(2025, 6, 10))
    # 2025-01-06 and 2025-03-03 matured (+90d <= 2025-06-10); 2025-06-02 did not; d is censored
    assert sorted(joined["run_date"].dt.strftime("%Y-%m-%d").unique()) == [
        "2025-01-06",
        "2025-03-03",
    ]
    assert set(joined.loc[joined["run_date"] == "2025-01-06", "account_id"]) == {"a", "b", "c"}
    # an earlier data_end matures the 2025-03-03 run only when +90 days fit
    early = join_matured(preds, labels, maturity_days=90, data_end=date(2025, 5, 31))
    assert set(early["run_date"].dt.strftime("%Y-%m-%d")) == {"2025-01-06"}
    # the grace period counts: lead 0 + horizon 90 + grace 30 leaves 2025-03-03 out on 06-10
    graced = join_matured(preds, labels, maturity_days=120, data_end=date(2025, 6, 10))
    assert set(graced["run_date"].dt.strftime("%Y-%m-%d")) == {"2025-01-06"}


def test_realised_performance_per_run_date():
    preds, labels = _past()
    perf = realised_performance(preds, labels, maturity_days=90, data_end=date(2025, 6, 10))
    first = perf.iloc[0]
    assert first["accounts"] == 3 and first["churners"] == 1
    assert first["auc"] == 1.0  # a (0.9) churned, b (0.2) and c (0.1) did not
    assert first["brier"] == pytest.approx((0.1**2 + 0.2**2 + 0.1**2) / 3)
    assert first["green_churned_arr"] == 100.0 and first["green_churn_capture"] == 1.0
    second = perf.iloc[1]
    assert second["auc"] == 1.0 and second["green_churn_capture"] == 0.0
    assert len(perf) == 2


def test_join_matured_without_data_end_trusts_the_label_na_marks():
    preds, labels = _past()
    joined = join_matured(preds, labels, maturity_days=90)
    assert len(joined) == 6  # every labelled row; only d's censored label is dropped
    assert "d" not in set(joined["account_id"])


# --- drift against the reference stored with the model ------------------------------------------


def test_psi_against_a_stored_reference_equals_psi_on_the_raw_training_rows():
    from models.monitoring import DriftReference, drift_reference, psi_from_reference

    train, current = _frames()
    names = list(train.columns)
    stored = DriftReference.from_state(drift_reference(train, feature_names=names).to_state())
    for name in names:
        assert psi_from_reference(stored.features[name], current[name]) == pytest.approx(
            psi(train[name], current[name]), abs=1e-12
        )
    direct = feature_drift(train, current, feature_names=names, thresholds=MonitoringConfig())
    stored_drift = feature_drift(
        stored, current, feature_names=names, thresholds=MonitoringConfig()
    )
    pd.testing.assert_frame_equal(direct, stored_drift)


def test_features_that_drift_by_construction_come_from_the_catalog():
    from features.catalog import FEATURES, drifting_by_construction

    assert {"tenure_days", "days_since_last_nps"} <= drifting_by_construction(FEATURES)
    assert "events_28d" not in drifting_by_construction(FEATURES)
    train = pd.DataFrame({"tenure_days": np.arange(100.0), "events_28d": np.arange(100.0)})
    current = train + 365.0  # a year older, and (say) far more usage
    drift = feature_drift(
        train, current, feature_names=["tenure_days", "events_28d"], thresholds=MonitoringConfig()
    ).set_index("feature")
    assert drift.loc["tenure_days", "status"] == "excluded"
    assert drift.loc["tenure_days", "note"].startswith("drifts by construction")
    assert drift.loc["tenure_days", "psi"] > 0.25  # measured all the same
    assert drift.loc["events_28d", "status"] == "alert"


def test_a_model_without_a_stored_reference_is_said_so_not_rebuilt():
    from types import SimpleNamespace

    from models.monitoring import drift_against_model

    bundle = SimpleNamespace(drift_reference=None, feature_names=["x"])
    check = drift_against_model(
        bundle,
        pd.DataFrame({"x": [1.0]}),
        pd.DataFrame(),
        thresholds=MonitoringConfig(),
        model="churnlens-churn v1",
    )
    assert check.features is None and check.alerts == 0
    assert check.note.startswith("churnlens-churn v1 was trained before churnlens stored")
    assert "not rebuilt from today's warehouse" in check.note


def test_score_drift_against_the_training_window_scores():
    from models.monitoring import drift_reference

    rng = np.random.default_rng(2)
    train = pd.DataFrame({"x": rng.normal(size=500)})
    p_train = rng.beta(1, 9, 500)
    reference = drift_reference(train, feature_names=["x"], scores={"churn_probability": p_train})
    same = prediction_drift(
        reference, pd.DataFrame({"churn_probability": p_train}), thresholds=MonitoringConfig()
    )
    assert same["psi"].tolist() == [0.0] and same["status"].tolist() == ["ok"]
    assert same["mean_reference"].iloc[0] == pytest.approx(p_train.mean())
    doubled = prediction_drift(
        reference,
        pd.DataFrame({"churn_probability": np.minimum(2 * p_train, 1)}),
        thresholds=MonitoringConfig(),
    )
    assert doubled["status"].tolist() == ["alert"]


def test_weekly_monitoring_is_kept_per_run_date(tmp_path):
    from types import SimpleNamespace

    from models.monitoring import drift_reference, weekly_monitoring, write_monitoring

    train, current = _frames()
    names = list(train.columns)
    p = np.random.default_rng(4).beta(1, 9, len(current))
    bundle = SimpleNamespace(
        feature_names=names,
        drift_reference=drift_reference(
            train, feature_names=names, scores={"churn_probability": p}
        ).to_state(),
    )
    volumes = pd.DataFrame(
        {
            "source": "usage_events",
            "week": range(5),
            "rows": [0, 900, 1000, 1100, 950],
            "accounts": [0, 90, 95, 99, 91],
        }
    )
    result = weekly_monitoring(
        current,
        pd.DataFrame({"churn_probability": p}),
        bundle,
        volumes,
        thresholds=MonitoringConfig(estimate_samples=50),
        model="m v1",
    )
    assert result.volume_alerts == 1 and result.drift.alerts >= 1
    assert result.estimate.expected["churners"] == pytest.approx(p.sum())
    record = result.run_record()
    assert record["source_volumes"][0]["status"] == "alert"
    assert {r["metric"] for r in record["performance_estimate"]} == {
        "roc_auc",
        "pr_auc",
        "churners",
    }
    paths = write_monitoring(result, tmp_path, date(2026, 1, 5))
    assert sorted(p.name for p in paths.values()) == [
        "drift-2026-01-05.csv",
        "estimate-2026-01-05.csv",
        "monitoring-2026-01-05.json",
        "score-drift-2026-01-05.csv",
        "volumes-2026-01-05.csv",
    ]
    assert any("usage_events alert" in w for w in result.warnings())
