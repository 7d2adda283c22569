"""The same feature and label SQL gives the same values on DuckDB and PostgreSQL (transpiled by
sqlglot), on the same random warehouse (evergreen and zero-ARR contracts included), for every
column: per-type and value features, every active rule, both expansion definitions."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.catalog import FEATURES
from features.config import ActiveConfig, FeatureConfig, LabelConfig
from features.labels import build_labels
from features.warehouse import Warehouse
from tests.features.test_build import stage
from tests.features.test_no_lookahead import AS_OF, random_tables

DATES = [AS_OF - timedelta(days=28), AS_OF - timedelta(days=7), AS_OF, AS_OF + timedelta(days=7)]
LABELS = LabelConfig(horizon_days=60, lead_days=7, grace_days=20, inactivity_days=45)


def assert_same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Same rows and columns; text equal, numbers within 1e-9, NULLs in the same places."""
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right)
    for col in left.columns:
        a, b = left[col].reset_index(drop=True), right[col].reset_index(drop=True)
        assert (a.isna() == b.isna()).all(), f"{col}: NULLs differ"
        a, b = a[a.notna()], b[b.notna()]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            np.testing.assert_allclose(
                a.astype(float), b.astype(float), rtol=1e-9, atol=1e-9, err_msg=col
            )
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), col


@pytest.mark.postgres
@pytest.mark.parametrize(("seed", "rule"), [(11, "contract"), (12, "contract"), (12, "both")])
def test_duckdb_and_postgres_agree_on_every_feature(
    duck: Warehouse, pg: Warehouse, seed: int, rule: str
) -> None:
    tables = random_tables(seed, n_accounts=14)
    config = FeatureConfig(active=ActiveConfig(rule=rule))
    frames = []
    for wh in (duck, pg):
        available = stage(wh, tables)
        frames.append(build_features(wh, DATES, available_tables=available, config=config))
    assert len(frames[0]) > 10
    assert set(FEATURES) <= set(frames[0].columns)
    assert [c for c in frames[0].columns if c.startswith("events_28d__")]
    # every feature takes a non-NULL value somewhere, so the comparison means something
    assert not [c for c in FEATURES if frames[0][c].isna().all()]
    assert_same(*frames)


@pytest.mark.postgres
@pytest.mark.parametrize("definition", ["horizon", "next_renewal"])
def test_duckdb_and_postgres_agree_on_labels(
    duck: Warehouse, pg: Warehouse, definition: str
) -> None:
    tables = random_tables(13, n_accounts=14)
    config = LABELS.model_copy(update={"expansion_definition": definition})
    frames = []
    for wh in (duck, pg):
        stage(wh, tables)
        end = AS_OF + timedelta(days=90)
        frames.append(build_labels(wh, DATES, config=config, data_end=end))
    assert frames[0]["churned"].notna().any() and frames[0]["churned"].isna().any()
    assert frames[0]["expanded"].notna().any()
    assert_same(*frames)
