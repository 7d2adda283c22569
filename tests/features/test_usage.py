"""The usage plan a build runs for a set of dates, and its printed form (--print-sql)."""

from __future__ import annotations

from datetime import datetime, timedelta

from features.usage import (
    USAGE_USERS_TABLE,
    USAGE_WINDOW_DAYS,
    day_number,
    render_usage_sql,
    usage_plan,
)

AS_OF = datetime(2024, 4, 1)
GRID = [AS_OF + timedelta(weeks=k) for k in range(52)]


def test_a_year_of_weekly_dates_reads_the_events_once_per_statement() -> None:
    plan = usage_plan(GRID, ["login"])
    users = [s for s in plan if s.name == USAGE_USERS_TABLE]
    assert [s.kind for s in users] == ["table"]  # 357 + 90 days fit in one batch of masks
    assert users[0].params == (AS_OF - timedelta(days=USAGE_WINDOW_DAYS), GRID[-1])
    assert "m.b7 & w.w28_7" in users[0].sql and "b8" not in users[0].sql


def test_dates_more_than_a_batch_apart_append_a_second_batch() -> None:
    later = AS_OF + timedelta(days=500)
    kinds = [(s.kind, s.name) for s in usage_plan([AS_OF, later], [])]
    assert kinds.count(("table", USAGE_USERS_TABLE)) == 1
    assert kinds.count(("append", USAGE_USERS_TABLE)) == 1


def test_printed_sql_has_every_statement_with_its_parameters() -> None:
    text = render_usage_sql([AS_OF, AS_OF + timedelta(weeks=1)], ["login", "Big Export"])
    assert 'CREATE OR REPLACE TEMP TABLE "churnlens_usage_days" AS  -- parameters: ' in text
    assert "2024-01-02 00:00:00, 2024-04-08 00:00:00" in text  # (first as_of - 90 d, last]
    assert '"events_28d__login"' in text and "n_type_1" in text  # two per-type aggregates
    assert "{" not in text  # every template name written out
    assert text.count(";\n") == 7 + 3  # 2 views, 5 tables; usage, usage_types, value


def test_an_as_of_day_is_the_day_an_event_at_that_midnight_falls_on() -> None:
    assert day_number(datetime(1970, 1, 2)) == 1
    assert day_number(AS_OF) - day_number(AS_OF - timedelta(days=90)) == 90


def test_the_cli_prints_the_sql_of_the_dates_without_a_warehouse(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    monkeypatch.chdir(tmp_path)  # no config, no warehouse file around
    args = ["features", "--print-sql", "2024-04-08,2024-04-01", "--event-types", "login"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output == render_usage_sql([AS_OF, AS_OF + timedelta(weeks=1)], ["login"])
    assert not list(tmp_path.iterdir())  # nothing written
