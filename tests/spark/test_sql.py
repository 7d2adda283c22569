"""The DuckDB-to-Spark rewrites sqlglot alone does not make (no Spark needed)."""

from __future__ import annotations

import pytest

from features.session import read_sql
from features.spark import to_spark
from features.usage import usage_days_sql, usage_sql


def test_epoch_keeps_fractional_seconds_as_a_double() -> None:
    out = to_spark("select epoch(t) as s from x")
    assert (
        out == "SELECT CAST(UNIX_MICROS(CAST(t AS TIMESTAMP_LTZ)) AS DOUBLE) / 1000000 AS s FROM x"
    )


def test_generate_series_over_the_left_side_becomes_a_lateral_explode() -> None:
    out = to_spark(
        "select g.day from bounds as b cross join generate_series(b.lo + 1, b.hi) as g (day)"
    )
    assert out == (
        "SELECT g.day FROM bounds AS b CROSS JOIN LATERAL "
        "(SELECT EXPLODE(SEQUENCE(b.lo + 1, b.hi)) AS day) AS g"
    )


def test_a_refined_named_window_is_written_out() -> None:
    out = to_spark(
        "select sum(n) over (w range between 6 preceding and current row) as s from t "
        "window w as (partition by a order by d)"
    )
    assert "WINDOW" not in out
    assert "SUM(n) OVER (PARTITION BY a ORDER BY d NULLS LAST range BETWEEN 6 preceding" in out


def test_placeholders_and_quoted_identifiers_survive() -> None:
    assert to_spark('select "a" from "s"."t" where x > ?') == "SELECT `a` FROM `s`.`t` WHERE x > ?"


@pytest.mark.parametrize(
    "sql",
    [read_sql(n) for n in ("commercial", "usage", "value", "support", "health", "labels")]
    + [usage_days_sql(2), usage_sql("usage_users", words=2)],
)
def test_every_feature_file_transpiles_without_duckdb_only_functions(sql: str) -> None:
    out = to_spark(sql).upper()
    for duckdb_only in ("EPOCH(", "GENERATE_SERIES", "UNIX_TIMESTAMP(", "WINDOW BY_DAY"):
        assert duckdb_only not in out


def test_text_with_utc_offsets_becomes_an_instant_read_in_utc() -> None:
    """typed_expr's TIMESTAMPTZ try_cast AT TIME ZONE 'UTC' (features/physical_types.py): on Spark a
    TIMESTAMP_LTZ (the offset honoured) cast to NTZ in the session's UTC."""
    out = to_spark(
        "select cast((case when ok then try_cast(src as timestamptz) end at time zone 'UTC') "
        "as timestamp) as t from x"
    )
    assert out == (
        "SELECT CAST((CASE WHEN ok THEN TRY_CAST(src AS TIMESTAMP_LTZ) END) AS TIMESTAMP_NTZ)"
        " AS t FROM x"
    )
