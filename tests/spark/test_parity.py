"""Spark runs the same feature, label and validation SQL as DuckDB (transpiled by sqlglot) and
gets the same values on the same warehouse written as Parquet: every feature column, labels,
the validation report, and the no-look-ahead property on a few random examples."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.catalog import FEATURES
from features.config import ActiveConfig, FeatureConfig, WarehouseConfig
from features.labels import build_labels
from features.validation import prepare_sources
from features.warehouse import DuckDBWarehouse, Warehouse
from tests.features.test_no_lookahead import AS_OF, _disturb, random_tables
from tests.features.test_parity import DATES, LABELS, assert_same
from tests.spark.conftest import stage_parquet


def _both(spark_wh: Warehouse, tables: dict, folder: Path) -> Iterator[tuple[Warehouse, list]]:
    """DuckDB then Spark, each with ``tables`` staged from the same Parquet files."""
    duck = DuckDBWarehouse()
    try:
        yield duck, stage_parquet(duck, tables, folder / "duck")
        yield spark_wh, stage_parquet(spark_wh, tables, folder / "spark")
    finally:
        duck.close()


def _features(wh: Warehouse, available: list, rule: str = "contract") -> pd.DataFrame:
    config = FeatureConfig(active=ActiveConfig(rule=rule))
    return build_features(wh, DATES, available_tables=available, config=config)


def test_spark_and_duckdb_agree_on_every_feature(spark_wh: Warehouse, tmp_path: Path) -> None:
    tables = random_tables(11, n_accounts=14)
    frames = [_features(wh, available) for wh, available in _both(spark_wh, tables, tmp_path)]
    assert len(frames[0]) > 10
    assert set(FEATURES) <= set(frames[0].columns)
    assert [c for c in frames[0].columns if c.startswith("events_28d__")]
    # every feature takes a non-NULL value somewhere, so the comparison means something
    assert not [c for c in FEATURES if frames[0][c].isna().all()]
    assert_same(*frames)


@pytest.mark.slow
def test_spark_and_duckdb_agree_under_the_both_rule(spark_wh: Warehouse, tmp_path: Path) -> None:
    tables = random_tables(12, n_accounts=14)
    frames = [
        _features(wh, available, "both") for wh, available in _both(spark_wh, tables, tmp_path)
    ]
    assert_same(*frames)


@pytest.mark.parametrize(
    "definition", ["horizon", pytest.param("next_renewal", marks=pytest.mark.slow)]
)
def test_spark_and_duckdb_agree_on_labels(
    spark_wh: Warehouse, tmp_path: Path, definition: str
) -> None:
    tables = random_tables(13, n_accounts=14)
    config = LABELS.model_copy(update={"expansion_definition": definition})
    end = AS_OF + timedelta(days=90)
    frames = [
        build_labels(wh, DATES, config=config, data_end=end)
        for wh, _ in _both(spark_wh, tables, tmp_path)
    ]
    assert frames[0]["churned"].notna().any() and frames[0]["churned"].isna().any()
    assert frames[0]["expanded"].notna().any()
    assert_same(*frames)


def test_spark_validates_and_excludes_like_duckdb(spark_wh: Warehouse, tmp_path: Path) -> None:
    """The same report (available tables, rows excluded and why) from Parquet sources with an
    orphan event, a future-dated event and a duplicate event."""
    tables = random_tables(14, n_accounts=8)
    seats = tables["contracts"]["seats"]
    tables["contracts"]["seats"] = seats.where(seats != 0)  # 0 seats break the contract
    events = tables["usage_events"]
    orphan = events.iloc[[0]].assign(account_id="nobody")
    future = events.iloc[[1]].assign(event_time=AS_OF + timedelta(days=30))
    tables["usage_events"] = pd.concat([events, orphan, future, events.iloc[[2]]])
    reports = []
    for wh, _ in _both(spark_wh, tables, tmp_path):
        report = prepare_sources(wh, WarehouseConfig(), reference_time=AS_OF + timedelta(days=1))
        reports.append(report)
    assert "usage_events" in reports[0].available
    assert reports[0].lines()[:-1] == reports[1].lines()[:-1]  # the last: seconds taken
    assert any("usage_events" in line for line in reports[0].lines())


_SETTINGS = settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.slow
def test_rows_after_as_of_never_change_spark_features(spark_wh: Warehouse, tmp_path: Path) -> None:
    """test_no_lookahead's property, on Spark: rows dated after as_of change no feature."""
    counter = iter(range(1000))

    @_SETTINGS
    @given(base=st.integers(0, 2**16), noise=st.integers(0, 2**16))
    def check(base: int, noise: int) -> None:
        tables = random_tables(base)
        disturbed = _disturb(tables, np.random.default_rng(noise), after=True)
        frames = []
        for world in (tables, disturbed):
            folder = tmp_path / f"w{next(counter)}"
            frames.append(_features(spark_wh, stage_parquet(spark_wh, world, folder)))
        assert len(frames[0]) > 0
        pd.testing.assert_frame_equal(*frames)

    check()
