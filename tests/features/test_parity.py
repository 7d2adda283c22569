"""The same feature and label SQL gives the same values on DuckDB and PostgreSQL (transpiled by
sqlglot), on the same random warehouse, for every column."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.catalog import FEATURES
from features.config import LabelConfig
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
@pytest.mark.parametrize("seed", [11, 12])
def test_duckdb_and_postgres_agree_on_every_feature(
    duck: Warehouse, pg: Warehouse, seed: int
) -> None:
    tables = random_tables(seed, n_accounts=14)
    frames = []
    for wh in (duck, pg):
        available = stage(wh, tables)
        frames.append(build_features(wh, DATES, available_tables=available))
    assert len(frames[0]) > 10
    assert set(FEATURES) <= set(frames[0].columns)
    # every feature takes a non-NULL value somewhere, so the comparison means something
    assert not [c for c in FEATURES if frames[0][c].isna().all()]
    assert_same(*frames)


@pytest.mark.postgres
def test_duckdb_and_postgres_agree_on_labels(duck: Warehouse, pg: Warehouse) -> None:
    tables = random_tables(13, n_accounts=14)
    frames = []
    for wh in (duck, pg):
        stage(wh, tables)
        frames.append(build_labels(wh, DATES, config=LABELS, data_end=AS_OF + timedelta(days=90)))
    assert frames[0]["churned"].notna().any() and frames[0]["churned"].isna().any()
    assert_same(*frames)
