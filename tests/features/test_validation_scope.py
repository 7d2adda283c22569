"""Checking and deduplicating only what a run reads: exact duplicates removed among the rows the
feature windows see (the same features as a full deduplication), and event tables checked
incrementally against ``source_checks``, which notices rows loaded late."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from features.build import build_features
from features.config import WarehouseConfig
from features.usage import USAGE_WINDOW_DAYS
from features.validation import (
    SOURCE_CHECKS_TABLE,
    ContractError,
    feature_reads_after,
    prepare_sources,
    read_source_checks,
)
from features.warehouse import DuckDBWarehouse, Warehouse
from tests.features.test_build import AS_OF, golden_tables

REF = AS_OF + timedelta(days=1) - timedelta(microseconds=1)  # the end of the run date
DATES = [AS_OF - timedelta(days=7), AS_OF]
FLOOR = AS_OF - timedelta(days=7 + 90)  # 2023-12-26: the usage windows of DATES read after it
CONFIG = WarehouseConfig()


def _load(wh: Warehouse, tables: dict[str, pd.DataFrame]) -> None:
    for name, frame in tables.items():
        wh.create_table_from_frame(frame, name)


def _with_duplicates() -> dict[str, pd.DataFrame]:
    """The golden tables with three exact copies inside the windows of DATES and three of
    a1's event of 2023-12-01 (before FLOOR: outside every window)."""
    tables = golden_tables()
    usage = tables["usage_events"]
    inside = usage[usage["event_time"] > FLOOR].head(3)
    outside = usage[usage["event_time"] <= FLOOR]
    assert len(inside) == 3 and len(outside) == 1
    tables["usage_events"] = pd.concat(
        [usage, inside, outside, outside, outside], ignore_index=True
    )
    return tables


def _features(tables: dict[str, pd.DataFrame], **staging: object) -> tuple[pd.DataFrame, object]:
    wh = DuckDBWarehouse()
    try:
        _load(wh, tables)
        report = prepare_sources(wh, CONFIG, reference_time=REF, **staging)
        return build_features(wh, DATES, available_tables=report.available), report
    finally:
        wh.close()


def test_reads_after_is_the_longest_usage_window_before_the_earliest_date() -> None:
    assert feature_reads_after(DATES) == FLOOR
    assert feature_reads_after([AS_OF]) == AS_OF - timedelta(days=USAGE_WINDOW_DAYS)


def test_duplicates_inside_and_outside_the_windows_give_the_features_of_a_full_dedup() -> None:
    clean, _ = _features(golden_tables())
    full, full_report = _features(_with_duplicates())
    windowed, report = _features(_with_duplicates(), reads_after=FLOOR)
    pd.testing.assert_frame_equal(windowed, full)
    pd.testing.assert_frame_equal(windowed, clean)
    # the full check counts all six copies; the windowed one only the three it reads
    assert full_report.exclusions["usage_events"] == {"exact_duplicate": 6}
    assert report.exclusions["usage_events"] == {"exact_duplicate": 3}
    line = "usage_events: 3 rows excluded - exact duplicates of another row (one copy kept)"
    assert any(text.startswith(line) for text in report.lines())


def test_the_windowed_view_keeps_older_copies_and_drops_recent_ones(duck: Warehouse) -> None:
    _load(duck, _with_duplicates())
    prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    counts = duck.query(
        "SELECT event_time > ? AS recent, count(*) AS n FROM stg_usage_events GROUP BY 1 "
        "ORDER BY 1",
        [FLOOR],
    )
    # 10 distinct recent rows; before FLOOR a1's event with its three copies, as stored
    assert counts["n"].tolist() == [4, 10]


def _checks(wh: Warehouse) -> pd.DataFrame:
    return wh.query(f"SELECT * FROM churnlens.{SOURCE_CHECKS_TABLE} ORDER BY source")


def test_a_run_records_what_it_checked_per_event_table(duck: Warehouse) -> None:
    _load(duck, golden_tables())
    prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    checks = _checks(duck)
    # event tables only; accounts, contracts and tickets (keys not dated) are checked in full
    assert checks["source"].tolist() == [
        "contact_changes",
        "engagement",
        "health_scores",
        "surveys",
        "usage_events",
        "verified_outcomes",
    ]
    usage = checks.set_index("source").loc["usage_events"]
    assert usage["checked_through"] == pd.Timestamp(FLOOR)
    assert usage["rows_through"] == 1  # a1's event of 2023-12-01
    assert usage["reference_time"] == pd.Timestamp(REF)
    # again: the same rows (keyed by source), now vouched for by the first run
    report = prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    pd.testing.assert_frame_equal(_checks(duck), checks)
    assert report.rows["usage_events"] == 10  # the row before FLOOR is not read again
    assert (
        "usage_events: 1 rows dated up to 2023-12-26 00:00 passed an earlier run and are "
        "unchanged in number: not checked again"
    ) in report.notes


def test_a_week_later_only_newer_rows_are_checked_and_the_mark_moves(duck: Warehouse) -> None:
    tables = golden_tables()
    _load(duck, tables)
    prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    week = timedelta(days=7)
    later = feature_reads_after([d + week for d in DATES])
    report = prepare_sources(duck, CONFIG, reference_time=REF + week, reads_after=later)
    usage = tables["usage_events"]
    assert report.rows["usage_events"] == int((usage["event_time"] > FLOOR).sum())
    checks = read_source_checks(duck, "churnlens")["usage_events"]
    assert checks.checked_through == later
    assert checks.rows_through == int((usage["event_time"] <= later).sum())


def test_a_bad_row_loaded_late_before_the_mark_is_found(duck: Warehouse) -> None:
    tables = golden_tables()
    _load(duck, tables)
    prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    duck.execute(
        "INSERT INTO usage_events VALUES ('a1', 'u9', TIMESTAMP '2023-11-02 08:00', NULL, 1.0)"
    )
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    (problem,) = info.value.problems
    assert (problem.table, problem.column, problem.check, problem.n_rows) == (
        "usage_events",
        "event_type",
        "null",
        1,
    )
    assert problem.examples == [
        {"account_id": "a1", "event_time": "2023-11-02 08:00:00", "event_type": None}
    ]
    # the run that failed recorded nothing: the mark is still the first run's
    assert read_source_checks(duck, "churnlens")["usage_events"].rows_through == 1


def test_a_bad_row_after_the_mark_is_found_by_the_incremental_check(duck: Warehouse) -> None:
    _load(duck, golden_tables())
    prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    duck.execute(
        "INSERT INTO usage_events VALUES ('a2', 'v1', TIMESTAMP '2024-03-30 08:00', 'login', "
        "CAST('NaN' AS DOUBLE))"
    )
    with pytest.raises(ContractError, match=r"usage_events\.quantity: not_finite.*1 row"):
        prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)


def test_an_old_row_edited_in_place_is_not_detected_until_a_full_check(duck: Warehouse) -> None:
    """The documented limit: the record counts rows, so an edit that keeps the count passes
    the incremental check; a run without reads_after (every row) finds it."""
    _load(duck, golden_tables())
    prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    duck.execute("UPDATE usage_events SET event_type = NULL WHERE event_time <= ?", [FLOOR])
    prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    with pytest.raises(ContractError, match=r"usage_events\.event_type: null"):
        prepare_sources(duck, CONFIG, reference_time=REF)


def test_a_changed_mapping_checks_every_row_again(duck: Warehouse) -> None:
    tables = golden_tables()
    _load(duck, tables)
    prepare_sources(duck, CONFIG, reference_time=REF, reads_after=FLOOR)
    renamed = tables["usage_events"].rename(columns={"event_type": "action"})
    duck.execute("DROP TABLE usage_events")
    duck.create_table_from_frame(renamed, "usage_events")
    mapped = WarehouseConfig.model_validate(
        {"tables": {"usage_events": {"columns": {"event_type": "action"}}}}
    )
    report = prepare_sources(duck, mapped, reference_time=REF, reads_after=FLOOR)
    assert report.rows["usage_events"] == len(renamed)
    assert (
        "usage_events: the rows up to 2023-12-26 00:00 were checked with other columns or "
        "rules: every row checked again"
    ) in report.notes


@pytest.mark.postgres
def test_source_checks_on_postgres(pg) -> None:
    schema = pg.scalar("SELECT current_schema()")
    config = WarehouseConfig(output_schema=schema)
    _load(pg, _with_duplicates())
    first = prepare_sources(pg, config, reference_time=REF, reads_after=FLOOR)
    assert first.exclusions["usage_events"] == {"exact_duplicate": 3}
    assert pg.scalar("SELECT count(*) FROM stg_usage_events") == 14
    second = prepare_sources(pg, config, reference_time=REF, reads_after=FLOOR)
    assert second.rows["usage_events"] == 13  # the 4 rows before FLOOR were checked by the first
    assert read_source_checks(pg, schema)["usage_events"].rows_through == 4
    features = build_features(pg, DATES, available_tables=second.available)
    clean, _ = _features(golden_tables())
    pd.testing.assert_frame_equal(features, clean, check_exact=False, rtol=1e-9)
