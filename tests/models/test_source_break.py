"""A source that silently stops arriving is caught twice: its row count collapses against the
weeks before (features.volumes + models.monitoring.volume_checks), and the usage features drift
against the reference stored from the training window instead of reading as 0."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from features.build import build_features
from features.volumes import source_volumes
from features.warehouse import DuckDBWarehouse
from models.monitoring import (
    DriftReference,
    MonitoringConfig,
    drift_reference,
    feature_drift,
    volume_checks,
    volume_warnings,
)

END = datetime(2026, 6, 1)
TRAIN_DATES = [datetime(2026, 4, 6), datetime(2026, 4, 13), datetime(2026, 4, 20)]


@pytest.fixture(scope="module")
def broken_world():
    from pipelines.config import Settings, stage_sources
    from pipelines.demo.data import generate_demo, write_demo

    settings = Settings()
    data = generate_demo(n_accounts=60, seed=3, end=date(2026, 6, 1), years=0.8)
    with DuckDBWarehouse() as wh:
        write_demo(wh, data)
        report = stage_sources(wh, settings, reference_time=END)
        training = build_features(
            wh, TRAIN_DATES, available_tables=report.available, config=settings.features
        )
        healthy = source_volumes(wh, available_tables=report.available, end=END, weeks=5)
        # the usage export silently stops ten days before the run date
        wh.execute("DELETE FROM usage_events WHERE event_time > ?", [END - timedelta(days=10)])
        report = stage_sources(wh, settings, reference_time=END)
        broken = source_volumes(wh, available_tables=report.available, end=END, weeks=5)
        current = build_features(
            wh, [END], available_tables=report.available, config=settings.features
        )
    names = [c for c in training.columns if c not in ("account_id", "as_of")]
    return {
        "training": training,
        "current": current,
        "healthy": healthy,
        "broken": broken,
        "names": names,
    }


def test_a_source_that_lost_its_recent_rows_raises_the_volume_alert(broken_world):
    cfg = MonitoringConfig()
    accounts = len(broken_world["current"])
    healthy = volume_checks(broken_world["healthy"], thresholds=cfg, accounts=accounts)
    broken = volume_checks(broken_world["broken"], thresholds=cfg, accounts=accounts)
    assert healthy.set_index("source").loc["usage_events", "status"] == "ok"
    row = broken.set_index("source").loc["usage_events"]
    assert row["status"] == "alert"
    assert (row["rows_last_7d"], row["accounts_last_7d"], row["share_of_accounts"]) == (0, 0, 0)
    assert row["rows_typical"] > 500  # the weeks before still had their rows
    assert [line.split(":")[0] for line in volume_warnings(broken)] == [
        "source volume usage_events alert"
    ]
    # the other sources were untouched, so they are not flagged
    assert (broken.set_index("source").drop(index="usage_events")["status"] != "alert").all()


def test_usage_drift_against_the_stored_reference_is_not_read_as_zero(broken_world):
    names = broken_world["names"]
    cfg = MonitoringConfig()
    stored = drift_reference(broken_world["training"], feature_names=names, bins=cfg.bins)
    reference = DriftReference.from_state(stored.to_state())  # as the bundle stores it
    drift = feature_drift(
        reference, broken_world["current"], feature_names=names, thresholds=cfg
    ).set_index("feature")
    for usage in ("events_7d", "active_users_7d", "days_since_last_activity"):
        assert drift.loc[usage, "status"] == "alert", drift.loc[usage]
        assert drift.loc[usage, "psi"] > 1.0
    # tenure drifts by construction: measured, never alerted on
    assert drift.loc["tenure_days", "status"] == "excluded"
