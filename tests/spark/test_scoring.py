"""Scoring partitioned over Spark equals scoring in process, and the week is written as a
Parquet partition that a rerun replaces and a failure leaves alone."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.build import assemble_features, tidy_features
from models.bundle import ModelBundle, prepare_matrix
from serving.config import ServingConfig
from serving.score import score_accounts
from serving.spark_scoring import read_week, score_partitioned, write_week
from tests.features.test_no_lookahead import AS_OF, random_tables
from tests.features.test_parity import assert_same
from tests.spark.conftest import stage_parquet

FEATURES = ["segment", "events_28d", "active_users_28d", "tickets_90d", "health_score", "arr"]
RUN_DAY = AS_OF.date()
WEEK_LATER = (AS_OF + pd.Timedelta(days=7)).date()


def _bundle(frame: pd.DataFrame, target: str, seed: int) -> ModelBundle:
    levels = {"segment": sorted(frame["segment"].dropna().unique())}
    X = prepare_matrix(frame, FEATURES, levels)
    rng = np.random.default_rng(seed)
    y = (rng.random(len(frame)) < 0.4 + 0.2 * (frame["events_28d"] < 5)).astype(int)
    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 3, "verbose": -1,
              "num_threads": 1, "seed": seed, "min_data_per_group": 2, "cat_smooth": 1}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=["segment"]), 15)
    return ModelBundle(
        target=target,
        booster=booster,
        feature_names=list(FEATURES),
        categorical_levels=levels,
        calibrator=None,
        train_window=(datetime(2024, 1, 1), datetime(2024, 6, 1)),
        params=params,
    )


@pytest.fixture(scope="module")
def scoring_wh(spark, tmp_path_factory: pytest.TempPathFactory):
    """One warehouse for the module: its features and bundles are built once, not per test."""
    from features.spark import SparkWarehouse

    wh = SparkWarehouse(spark, output_dir=tmp_path_factory.mktemp("spark-out"))
    yield wh
    wh.close()


@pytest.fixture(scope="module")
def world(scoring_wh, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("src")
    available = stage_parquet(scoring_wh, random_tables(21, n_accounts=60), folder)
    sql, columns = assemble_features(scoring_wh, [AS_OF], available_tables=available)
    local = tidy_features(scoring_wh.query(sql), columns)
    churn, expansion = _bundle(local, "churn", 1), _bundle(local, "expansion", 2)
    # checkpointed: both tests read the same rows without re-running the feature SQL
    frame = scoring_wh.sql(sql).repartition(3, "account_id").localCheckpoint(eager=True)
    return frame, columns, local, churn, expansion


def _score(frame, columns, churn, expansion, day=RUN_DAY):
    refs = {"churn": "churn v1", "expansion": "expansion v1"}
    return score_partitioned(
        frame, columns=columns, churn=churn, expansion=expansion, run_date=day,
        config=ServingConfig(), model_refs=refs,
    )  # fmt: skip


def test_partitioned_scoring_equals_in_process_scoring(world) -> None:
    frame, columns, local, churn, expansion = world
    refs = {"churn": "churn v1", "expansion": "expansion v1"}
    expected = score_accounts(
        local, churn=churn, expansion=expansion, run_date=RUN_DAY, config=ServingConfig(),
        model_refs=refs,
    )  # fmt: skip
    got = _score(frame, columns, churn, expansion).to_scored()
    assert len(expected.predictions) > 30
    assert expected.predictions["segment"].nunique() > 1  # the segment medians mean something
    assert_same(got.predictions, expected.predictions)
    keys = ["target", "account_id", "direction", "rank"]
    want = expected.reasons.sort_values(keys).reset_index(drop=True)
    assert_same(got.reasons.sort_values(keys).reset_index(drop=True), want)


def test_rerun_replaces_its_week_and_a_failure_keeps_the_previous_one(
    world, scoring_wh, tmp_path: Path
) -> None:
    frame, columns, _, churn, expansion = world
    out = tmp_path / "out"
    tables = ServingConfig().tables
    spark = scoring_wh.spark
    for day in (RUN_DAY, WEEK_LATER, RUN_DAY):  # the third run reruns the first week
        counts = write_week(
            _score(frame, columns, churn, expansion, day),
            output_dir=out,
            tables=tables,
            run_meta={"sources": ["accounts"]},
        )
    first = read_week(out, tables.predictions, RUN_DAY, spark)
    assert counts[tables.predictions] == len(first) == first["account_id"].nunique() > 30
    assert len(read_week(out, tables.runs, RUN_DAY, spark)) == 1
    reasons = read_week(out, tables.reasons, RUN_DAY, spark)
    assert counts[tables.reasons] == len(reasons)
    later = read_week(out, tables.predictions, WEEK_LATER, spark)

    # a duplicate account fails scoring inside the write: nothing of the week changes
    broken = frame.unionByName(frame.limit(1))
    with pytest.raises(Exception, match="duplicate account_id"):
        write_week(
            _score(broken, columns, churn, expansion, RUN_DAY),
            output_dir=out,
            tables=tables,
            run_meta={},
        )
    keys = ["account_id"]
    again = read_week(out, tables.predictions, RUN_DAY, spark).sort_values(keys)
    pd.testing.assert_frame_equal(
        again.reset_index(drop=True), first.sort_values(keys).reset_index(drop=True)
    )
    assert len(read_week(out, tables.reasons, RUN_DAY, spark)) == len(reasons)
    assert len(read_week(out, tables.predictions, WEEK_LATER, spark)) == len(later)
    assert not (out / "_staging").exists()


def test_keyed_rows_are_replaced_by_key_and_kept_otherwise(spark_wh) -> None:
    """source_checks on Spark: rows of the sources written replace theirs, the others stay."""
    first = pd.DataFrame({"source": ["a", "b"], "rows_through": [1, 2]})
    spark_wh.replace_keyed_rows("source_checks", "churnlens", first, key="source")
    again = pd.DataFrame({"source": ["b", "c"], "rows_through": [20, 30]})
    spark_wh.replace_keyed_rows("source_checks", "churnlens", again, key="source")
    got = spark_wh.query("SELECT * FROM churnlens.source_checks ORDER BY source")
    assert got.to_dict("list") == {"source": ["a", "b", "c"], "rows_through": [1, 20, 30]}
    assert not list(spark_wh.output_dir.glob("_source_checks-*"))  # no copy left behind
