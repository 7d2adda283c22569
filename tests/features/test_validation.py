"""The input contract: every bad input gets an error naming table, column and example rows;
exclusions are counted and applied by the staging views; the same on DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import pytest

from features.config import WarehouseConfig
from features.sources import locate_sources
from features.validation import ContractError, Problem, prepare_sources, validate_sources
from features.warehouse import Warehouse

REF = dt.datetime(2025, 6, 30, 23, 59, 59)
Frames = dict[str, pd.DataFrame]


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def good_frames() -> Frames:
    """A tiny warehouse that satisfies the contract, every optional table included."""
    return {
        "accounts": pd.DataFrame(
            {
                "account_id": ["a1", "a2"],
                "name": ["Acme", "Globex"],
                "segment": ["smb", "enterprise"],
                "industry": ["retail", "energy"],
                "employees": [40, 5000],
                "csm_owner": ["kim", "lee"],
                "created_at": [_ts("2023-01-05"), _ts("2023-03-01")],
            }
        ),
        "contracts": pd.DataFrame(
            {
                "account_id": ["a1", "a2"],
                "contract_id": ["c1", "c2"],
                "product": ["core", "core"],
                "start_date": [dt.date(2024, 1, 1), dt.date(2024, 3, 1)],
                "end_date": [dt.date(2025, 1, 1), dt.date(2026, 3, 1)],
                "arr": [12000.0, 250000.0],
                "seats": [10, 400],
            }
        ),
        "usage_events": pd.DataFrame(
            {
                "account_id": ["a1", "a1", "a2"],
                "user_id": ["u1", "u2", "u9"],
                "event_time": [_ts("2025-06-01 10:00"), _ts("2025-06-02"), _ts("2025-06-30")],
                "event_type": ["login", "report", "login"],
                "quantity": [1.0, 1.0, 2.0],
            }
        ),
        "support_tickets": pd.DataFrame(
            {
                "account_id": ["a1", "a2"],
                "ticket_id": ["t1", "t2"],
                "opened_at": [_ts("2025-05-01 09:00"), _ts("2025-05-03 12:00")],
                "closed_at": [_ts("2025-05-02 09:00"), pd.NaT],
                "priority": ["p1", "p3"],
                "category": ["bug", "billing"],
                "csat": [4.0, None],
                "escalated": [True, False],
            }
        ),
        "engagement": pd.DataFrame(
            {"account_id": ["a1"], "occurred_at": [_ts("2025-04-01")], "kind": ["QBR"]}
        ),
        "surveys": pd.DataFrame(
            {
                "account_id": ["a1", "a2"],
                "responded_at": [_ts("2025-02-01"), _ts("2025-03-01")],
                "kind": ["nps", "csat"],
                "score": [9.0, 4.0],
            }
        ),
        "contact_changes": pd.DataFrame(
            {
                "account_id": ["a2"],
                "changed_at": [_ts("2025-01-15")],
                "role": ["champion"],
                "change": ["left"],
            }
        ),
        "health_scores": pd.DataFrame(
            {
                "account_id": ["a1", "a2"],
                "scored_at": [_ts("2025-06-02"), _ts("2025-06-02")],
                "score": [72.0, 35.0],
                "color": ["green", "red"],
            }
        ),
        "verified_outcomes": pd.DataFrame(
            {"account_id": ["a2"], "verified_at": [_ts("2025-02-10")]}
        ),
        "churn_reasons": pd.DataFrame(
            {
                "account_id": ["a1"],
                "recorded_at": [_ts("2025-03-02")],
                "reason_category": ["Budget"],
                "reason_text": ["cost cutting after a re-org"],
            }
        ),
    }


def load(wh: Warehouse, frames: Frames) -> None:
    for name, frame in frames.items():
        wh.create_table_from_frame(frame, name)


def _append(frames: Frames, table: str, **row: object) -> None:
    base = frames[table].iloc[[0]].copy()
    for column, value in row.items():
        base[column] = [value]
    frames[table] = pd.concat([frames[table], base], ignore_index=True)


def _set(table: str, column: str, values: list) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[table][column] = values

    return mutate


def _add(table: str, **row: object) -> Callable[[Frames], None]:
    return lambda frames: _append(frames, table, **row)


class _Sql(str):
    """A mutation run as SQL after loading (NaN cannot travel through a pandas frame: DuckDB
    and the PostgreSQL COPY both read a float NaN there as NULL)."""


def _empty(table: str) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[table] = frames[table].iloc[:0]

    return mutate


def _seats(values: list) -> Callable[[Frames], None]:
    return _set("contracts", "seats", values)


# (case id, mutation, table, column, check, a subset of one example row)
BAD_INPUTS = [
    (
        "wrong_type_physical",
        _set("contracts", "arr", [True, False]),
        "contracts",
        "arr",
        "wrong_type",
        None,
    ),
    (
        "wrong_type_text_does_not_cast",
        _set("contracts", "arr", ["12000", "lots"]),
        "contracts",
        "arr",
        "wrong_type",
        {"contract_id": "c2", "arr": "lots"},
    ),
    (
        "wrong_type_text_timestamp",
        _set("usage_events", "event_time", ["2025-06-01 10:00", "yesterday", "2025-06-30"]),
        "usage_events",
        "event_time",
        "wrong_type",
        {"account_id": "a1", "event_time": "yesterday"},
    ),
    (
        "null_in_required_column",
        _set("usage_events", "event_type", ["login", None, "login"]),
        "usage_events",
        "event_type",
        "null",
        {"account_id": "a1", "event_type": None},
    ),
    (
        "duplicate_account_id",
        _add("accounts", name="Acme again"),
        "accounts",
        "account_id",
        "duplicate_key",
        {"account_id": "a1", "rows": 2},
    ),
    (
        "duplicate_contract_id",
        _add("contracts", arr=5.0),
        "contracts",
        "contract_id",
        "duplicate_key",
        {"contract_id": "c1", "rows": 2},
    ),
    (
        "duplicate_ticket_id",
        _add("support_tickets", category="how-to"),
        "support_tickets",
        "ticket_id",
        "duplicate_key",
        {"ticket_id": "t1", "rows": 2},
    ),
    (
        "duplicate_health_score",
        _add("health_scores", score=10.0, color="red"),
        "health_scores",
        "account_id, scored_at",
        "duplicate_key",
        {"account_id": "a1", "scored_at": "2025-06-02", "rows": 2},
    ),
    (
        "contract_ends_before_start",
        _add("contracts", contract_id="c9", end_date=dt.date(2023, 12, 31)),
        "contracts",
        "end_date",
        "end_before_start",
        {"contract_id": "c9", "start_date": "2024-01-01", "end_date": "2023-12-31"},
    ),
    (
        "contract_ends_on_start",
        _add("contracts", contract_id="c9", end_date=dt.date(2024, 1, 1)),
        "contracts",
        "end_date",
        "end_before_start",
        {"contract_id": "c9", "end_date": "2024-01-01"},
    ),
    (
        "negative_arr",
        _add("contracts", contract_id="c9", arr=-100.0),
        "contracts",
        "arr",
        "negative",
        {"contract_id": "c9", "arr": -100.0},
    ),
    (
        "nan_arr",
        _Sql("UPDATE contracts SET arr = CAST('NaN' AS DOUBLE) WHERE contract_id = 'c2'"),
        "contracts",
        "arr",
        "not_finite",
        {"contract_id": "c2"},
    ),
    (
        "infinite_arr",
        _Sql("UPDATE contracts SET arr = CAST('Infinity' AS DOUBLE) WHERE contract_id = 'c1'"),
        "contracts",
        "arr",
        "not_finite",
        {"contract_id": "c1", "arr": float("inf")},
    ),
    (
        "nan_quantity",
        _Sql("UPDATE usage_events SET quantity = CAST('NaN' AS DOUBLE) WHERE user_id = 'u9'"),
        "usage_events",
        "quantity",
        "not_finite",
        {"account_id": "a2", "event_time": "2025-06-30"},
    ),
    (
        "fractional_seats",
        _seats([25.4, 400.0]),
        "contracts",
        "seats",
        "not_integer",
        {"contract_id": "c1", "seats": 25.4},
    ),
    (
        "nan_seats",
        _Sql(
            "ALTER TABLE contracts ALTER seats TYPE DOUBLE; "
            "UPDATE contracts SET seats = CAST('NaN' AS DOUBLE) WHERE contract_id = 'c2'"
        ),
        "contracts",
        "seats",
        "not_integer",
        {"contract_id": "c2"},
    ),
    (
        "fractional_seats_as_text",
        _seats(["25.5", "400"]),
        "contracts",
        "seats",
        "wrong_type",
        {"contract_id": "c1", "seats": "25.5"},
    ),
    (
        "zero_seats",
        _seats([0, 400]),
        "contracts",
        "seats",
        "bad_value",
        {"contract_id": "c1", "seats": 0},
    ),
    (
        "overlapping_contracts_same_product",
        _add("contracts", contract_id="c9", start_date=dt.date(2024, 6, 1)),
        "contracts",
        "account_id, product",
        "overlapping_contracts",
        {"contract_id": "c1", "overlaps_contract_id": "c9", "product": "core"},
    ),
    (
        "overlapping_an_open_ended_contract",
        _add("contracts", contract_id="c0", start_date=dt.date(2020, 1, 1), end_date=None),
        "contracts",
        "account_id, product",
        "overlapping_contracts",
        {"contract_id": "c0", "overlaps_contract_id": "c1", "end_date": None},
    ),
    ("empty_accounts", _empty("accounts"), "accounts", None, "empty_table", None),
    ("empty_contracts", _empty("contracts"), "contracts", None, "empty_table", None),
    ("empty_usage_events", _empty("usage_events"), "usage_events", None, "empty_table", None),
    (
        "usage_ids_match_no_account",
        _set("usage_events", "account_id", ["A-1", "A-1", "A-2"]),
        "usage_events",
        "account_id",
        "unknown_account",
        {"account_id": "A-1"},
    ),
    (
        "ticket_closed_before_opened",
        _add("support_tickets", ticket_id="t9", closed_at=_ts("2025-04-01")),
        "support_tickets",
        "closed_at",
        "end_before_start",
        {"ticket_id": "t9", "closed_at": "2025-04-01"},
    ),
    (
        "ticket_csat_out_of_range",
        _add("support_tickets", ticket_id="t9", csat=7.0),
        "support_tickets",
        "csat",
        "bad_value",
        {"ticket_id": "t9", "csat": 7.0},
    ),
    (
        "nps_out_of_range",
        _add("surveys", score=11.0),
        "surveys",
        "score",
        "bad_value",
        {"account_id": "a1", "kind": "nps", "score": 11.0},
    ),
    (
        "csat_survey_out_of_range",
        _add("surveys", kind="csat", score=0.0),
        "surveys",
        "score",
        "bad_value",
        {"kind": "csat", "score": 0.0},
    ),
    (
        "contact_change_unknown",
        _add("contact_changes", change="moved"),
        "contact_changes",
        "change",
        "bad_value",
        {"account_id": "a2", "change": "moved"},
    ),
    (
        "health_color_unknown",
        _add("health_scores", scored_at=_ts("2025-06-09"), color="purple"),
        "health_scores",
        "color",
        "bad_value",
        {"account_id": "a1", "scored_at": "2025-06-09", "color": "purple"},
    ),
    (
        "health_score_out_of_range",
        _add("health_scores", scored_at=_ts("2025-06-09"), score=120.0),
        "health_scores",
        "score",
        "bad_value",
        {"account_id": "a1", "score": 120.0},
    ),
]


def _problem(err: ContractError, table: str, column: str | None, check: str) -> Problem:
    found = [p for p in err.problems if (p.table, p.column, p.check) == (table, column, check)]
    assert found, f"no {check} on {table}.{column} in:\n{err}"
    return found[0]


def _assert_reported(wh: Warehouse, case: tuple) -> None:
    _, mutate, table, column, check, example = case
    frames = good_frames()
    if not isinstance(mutate, _Sql):
        mutate(frames)
    load(wh, frames)
    if isinstance(mutate, _Sql):
        wh.execute(mutate)
    with pytest.raises(ContractError) as info:
        prepare_sources(wh, WarehouseConfig(), reference_time=REF)
    problem = _problem(info.value, table, column, check)
    where = table if column is None else f"{table}.{column}"
    assert f"- {where}: {check}" in str(info.value)
    if example is not None:
        assert problem.n_rows >= 1
        assert any(example.items() <= row.items() for row in problem.examples), problem.examples


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_an_error_naming_table_column_and_rows(duck, case) -> None:
    _assert_reported(duck, case)


PG_SUBSET = {
    "wrong_type_text_does_not_cast",
    "wrong_type_text_timestamp",
    "duplicate_health_score",
    "contract_ends_before_start",
    "negative_arr",
    "nan_arr",
    "fractional_seats",
    "fractional_seats_as_text",
    "overlapping_an_open_ended_contract",
    "empty_usage_events",
    "usage_ids_match_no_account",
    "health_color_unknown",
}


@pytest.mark.postgres
@pytest.mark.parametrize(
    "case",
    [c for c in BAD_INPUTS if c[0] in PG_SUBSET],
    ids=sorted(PG_SUBSET, key=[c[0] for c in BAD_INPUTS].index),
)
def test_bad_input_is_an_error_on_postgres(pg, case) -> None:
    _assert_reported(pg, case)


def test_good_data_passes_and_stages_every_table(duck) -> None:
    load(duck, good_frames())
    report = prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    assert report.skipped == [] and report.exclusions == {}
    assert report.rows["usage_events"] == 3
    staged = duck.query("SELECT kind FROM stg_engagement")
    assert staged["kind"].tolist() == ["qbr"]  # enumerations are lower-cased
    assert duck.columns("stg_contracts") == {
        "account_id": "varchar",
        "contract_id": "varchar",
        "product": "varchar",
        "start_date": "date",
        "end_date": "date",
        "arr": "double",
        "seats": "bigint",
    }


def test_every_problem_is_reported_at_once(duck) -> None:
    frames = good_frames()
    del frames["contracts"]
    frames["accounts"] = frames["accounts"].drop(columns="created_at")
    _append(frames, "usage_events", event_type=None)
    load(duck, frames)
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    checks = {(p.table, p.column, p.check) for p in info.value.problems}
    assert checks == {
        ("contracts", None, "missing_table"),
        ("accounts", "created_at", "missing_column"),
        ("usage_events", "event_type", "null"),
    }
    text = str(info.value)
    assert "warehouse.tables.accounts.columns" in text
    assert "warehouse.tables.contracts.table" in text


def _messy_frames() -> Frames:
    frames = good_frames()
    _append(frames, "usage_events")  # exact duplicate of the first event
    _append(frames, "usage_events", account_id="ghost")  # unknown account
    _append(frames, "support_tickets", account_id="ghost", ticket_id="t8")
    _append(frames, "surveys", kind="CES", score=3.0)  # not nps/csat: excluded
    _append(frames, "contact_changes", role="user")  # role not tracked: excluded
    _append(frames, "accounts", account_id="a3")  # no contract
    return frames


TOLERANT = WarehouseConfig(max_unmatched_share=0.5)  # the tiny tables have 1 stray row in 3-5


def _assert_exclusions(wh: Warehouse) -> None:
    load(wh, _messy_frames())
    report = prepare_sources(wh, TOLERANT, reference_time=REF)
    assert report.exclusions == {
        "accounts": {"no_contract": 1},
        "usage_events": {"unknown_account": 1, "exact_duplicate": 1},
        "support_tickets": {"unknown_account": 1},
        "surveys": {"unknown_kind": 1},
        "contact_changes": {"unknown_role": 1},
    }
    assert wh.scalar("SELECT count(*) FROM stg_usage_events") == 3
    assert wh.scalar("SELECT count(*) FROM stg_accounts WHERE account_id = 'a3'") == 0
    assert wh.scalar("SELECT count(*) FROM stg_support_tickets") == 2
    assert wh.scalar("SELECT count(*) FROM stg_surveys") == 2
    assert wh.scalar("SELECT count(*) FROM stg_contact_changes") == 1
    lines = report.lines()
    assert (
        "usage_events: 1 rows excluded - account_id not in accounts "
        "(e.g. ghost at 2025-06-01 10:00:00)"
    ) in lines
    assert "accounts: 1 rows excluded - account has no contract (e.g. a3)" in lines
    assert "support_tickets: 1 rows excluded - account_id not in accounts (e.g. t8)" in lines
    assert (
        "usage_events: 1 rows excluded - exact duplicates of another row (one copy kept) "
        "(e.g. a1 at 2025-06-01 10:00:00)"
    ) in lines


def test_exclusions_are_counted_and_applied(duck) -> None:
    _assert_exclusions(duck)


def test_activity_rule_keeps_accounts_without_a_contract(duck) -> None:
    # Under features.active.rule activity/both, a usage-only account is a customer: whether it
    # signs a contract later must not decide whether it exists at an earlier observation date.
    load(duck, _messy_frames())
    report = prepare_sources(duck, TOLERANT, reference_time=REF, require_contract=False)
    assert "no_contract" not in report.exclusions.get("accounts", {})
    assert duck.scalar("SELECT count(*) FROM stg_accounts WHERE account_id = 'a3'") == 1


@pytest.mark.postgres
def test_exclusions_are_counted_and_applied_on_postgres(pg) -> None:
    _assert_exclusions(pg)


def test_missing_optional_table_is_skipped_with_an_empty_view(duck) -> None:
    frames = good_frames()
    del frames["support_tickets"], frames["health_scores"]
    load(duck, frames)
    report = prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    assert report.skipped == ["support_tickets", "health_scores"]
    assert "support_tickets: absent - support features skipped" in report.lines()
    assert duck.query("SELECT * FROM stg_health_scores").columns.tolist() == [
        "account_id",
        "scored_at",
        "score",
        "color",
    ]
    assert duck.scalar("SELECT count(*) FROM stg_health_scores") == 0


def test_absent_nullable_column_is_read_as_null(duck) -> None:
    frames = good_frames()
    frames["accounts"] = frames["accounts"].drop(columns="industry")
    load(duck, frames)
    report = prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    assert "accounts.industry: column absent - read as NULL" in report.lines()
    assert duck.query("SELECT industry FROM stg_accounts")["industry"].isna().all()


MAPPED = WarehouseConfig.model_validate(
    {
        "tables": {
            "usage_events": {
                "table": "events",
                "schema": "analytics",
                "columns": {"event_time": "ts", "account_id": "acct"},
            }
        }
    }
)


def _load_mapped(wh: Warehouse, events: pd.DataFrame) -> None:
    frames = good_frames()
    del frames["usage_events"]
    load(wh, frames)
    wh.create_schema("analytics")
    wh.create_table_from_frame(
        events.rename(columns={"event_time": "ts", "account_id": "acct"}), "events", "analytics"
    )


def test_column_mapping_reads_renamed_table_and_columns(duck) -> None:
    _load_mapped(duck, good_frames()["usage_events"])
    prepare_sources(duck, MAPPED, reference_time=REF)
    staged = duck.query("SELECT account_id, event_time FROM stg_usage_events ORDER BY event_time")
    assert staged["account_id"].tolist() == ["a1", "a1", "a2"]
    assert staged["event_time"].iloc[0] == pd.Timestamp("2025-06-01 10:00")


def test_errors_name_the_mapped_physical_column(duck) -> None:
    events = good_frames()["usage_events"]
    events.loc[1, "event_time"] = pd.NaT
    _load_mapped(duck, events)
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, MAPPED, reference_time=REF)
    problem = _problem(info.value, "usage_events", "event_time", "null")
    assert problem.physical == "ts"
    assert 'usage_events.event_time (physical column "ts"): null' in str(info.value)


def test_mapped_column_that_is_missing_names_the_config_key(duck) -> None:
    _load_mapped(duck, good_frames()["usage_events"].rename(columns={"event_time": "when"}))
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, MAPPED, reference_time=REF)
    problem = _problem(info.value, "usage_events", "event_time", "missing_column")
    assert "warehouse.tables.usage_events.columns" in problem.hint
    assert "when" in problem.hint  # lists what the table does have


def _tz_tickets() -> pd.DataFrame:
    tickets = good_frames()["support_tickets"]
    local = pd.to_datetime(["2025-05-01 09:00", "2025-05-03 12:00"]).tz_localize("America/New_York")
    tickets["opened_at"] = local
    tickets["closed_at"] = [local[0] + pd.Timedelta(hours=30), pd.NaT]
    return tickets


def _assert_tz_normalised(wh: Warehouse) -> None:
    frames = good_frames()
    frames["support_tickets"] = _tz_tickets()
    load(wh, frames)
    assert "with time zone" in wh.columns("support_tickets")["opened_at"]
    prepare_sources(wh, WarehouseConfig(), reference_time=REF)
    staged = wh.query("SELECT ticket_id, opened_at, closed_at FROM stg_support_tickets")
    staged = staged.sort_values("ticket_id").reset_index(drop=True)
    assert staged["opened_at"].dt.tz is None
    assert staged["opened_at"].tolist() == [
        pd.Timestamp("2025-05-01 13:00"),  # 09:00 EDT = 13:00 UTC
        pd.Timestamp("2025-05-03 16:00"),
    ]
    assert staged["closed_at"].iloc[0] == pd.Timestamp("2025-05-02 19:00")


def test_tz_aware_timestamps_become_naive_utc(duck) -> None:
    _assert_tz_normalised(duck)


@pytest.mark.postgres
def test_tz_aware_timestamps_become_naive_utc_on_postgres(pg) -> None:
    _assert_tz_normalised(pg)


def test_run_date_cut_off_uses_utc_for_tz_aware_columns(duck) -> None:
    # 2025-06-30 21:00 in Los Angeles is 2025-07-01 04:00 UTC: after the end of the run date
    frames = good_frames()
    frames["usage_events"]["event_time"] = pd.to_datetime(
        ["2025-06-01 10:00", "2025-06-02 00:00", "2025-06-30 21:00"]
    ).tz_localize("America/Los_Angeles")
    load(duck, frames)
    report = prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    assert report.exclusions == {"usage_events": {"after_run_date": 1}}
    assert report.examples["usage_events"]["after_run_date"] == ["a2 at 2025-07-01 04:00:00"]
    assert "usage_events.event_time: converted 3 values from UTC offsets to UTC" in report.lines()
    assert duck.scalar("SELECT count(*) FROM stg_usage_events") == 2


def test_text_columns_that_cast_are_accepted(duck) -> None:
    frames = good_frames()
    frames["contracts"]["arr"] = ["12000", " 250000.5 "]
    frames["usage_events"]["event_time"] = ["2025-06-01 10:00", "2025-06-02", "2025-06-30"]
    load(duck, frames)
    prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    assert duck.query("SELECT arr FROM stg_contracts ORDER BY arr")["arr"].tolist() == [
        12000.0,
        250000.5,
    ]


def test_integer_ids_join_text_ids(duck) -> None:
    frames = good_frames()
    frames["accounts"]["account_id"] = [1, 2]
    frames["contracts"]["account_id"] = ["1", "2"]
    frames["usage_events"]["account_id"] = [1, 1, 2]
    for name in ("support_tickets", "engagement", "surveys", "contact_changes"):
        del frames[name]
    del frames["health_scores"], frames["verified_outcomes"], frames["churn_reasons"]
    load(duck, frames)
    report = prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    assert report.exclusions == {}


def test_parquet_source_is_validated_the_same_way(duck, tmp_path) -> None:
    frames = good_frames()
    events = frames.pop("usage_events")
    events.loc[2, "event_type"] = None
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    load(duck, frames)
    config = WarehouseConfig.model_validate({"tables": {"usage_events": {"parquet": str(path)}}})
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, config, reference_time=REF)
    problem = _problem(info.value, "usage_events", "event_type", "null")
    assert problem.examples == [
        {"account_id": "a2", "event_time": "2025-06-30", "event_type": None}
    ]
    events.loc[2, "event_type"] = "login"
    events.to_parquet(path)
    prepare_sources(duck, config, reference_time=REF)
    assert duck.scalar("SELECT count(*) FROM stg_usage_events") == 3


def test_missing_parquet_files_are_a_missing_table(duck, tmp_path) -> None:
    frames = good_frames()
    del frames["usage_events"]
    load(duck, frames)
    glob = str(tmp_path / "nothing" / "*.parquet")
    config = WarehouseConfig.model_validate({"tables": {"usage_events": {"parquet": glob}}})
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, config, reference_time=REF)
    problem = _problem(info.value, "usage_events", None, "missing_table")
    assert glob in problem.hint


def test_validate_sources_takes_tz_aware_reference_time(duck) -> None:
    load(duck, good_frames())
    aware = dt.datetime(2025, 7, 1, 1, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    report = validate_sources(duck, locate_sources(WarehouseConfig()), reference_time=aware)
    assert report.available[:3] == ["accounts", "contracts", "usage_events"]


# --- time cut-offs are the run date, not the clock -----------------------------------------


def _late_frames() -> Frames:
    """Rows dated after REF: an event one microsecond later, an account created in July."""
    frames = good_frames()
    _append(frames, "usage_events", event_time=_ts("2025-06-30 23:59:59"))  # at REF: kept
    _append(frames, "usage_events", event_time=_ts("2025-07-01 00:00:00"))
    _append(frames, "usage_events", event_time=_ts("2025-07-02 00:00:00"), user_id="u3")
    _append(frames, "accounts", account_id="a4", created_at=_ts("2025-07-15 08:00"))
    _append(frames, "contracts", account_id="a4", contract_id="c4")
    _append(frames, "usage_events", account_id="a4", event_time=_ts("2025-06-20"))
    _append(
        frames,
        "support_tickets",
        ticket_id="t7",
        opened_at=_ts("2025-07-01 09:00"),
        closed_at=pd.NaT,
    )
    return frames


def _assert_cut_off_at_the_run_date(wh: Warehouse) -> None:
    load(wh, _late_frames())
    report = prepare_sources(wh, WarehouseConfig(), reference_time=REF)
    assert report.exclusions == {
        "accounts": {"after_run_date": 1},
        "contracts": {"account_after_run_date": 1},
        "usage_events": {"after_run_date": 2, "account_after_run_date": 1},
        "support_tickets": {"after_run_date": 1},
    }
    lines = report.lines()
    assert (
        "usage_events: 2 rows excluded - event_time after the run date (2025-06-30) "
        "(e.g. a1 at 2025-07-01, a1 at 2025-07-02)"
    ) in lines
    assert (
        "accounts: 1 rows excluded - created_at after the run date (2025-06-30) (e.g. a4)" in lines
    )
    assert (
        "contracts: 1 rows excluded - account created after the run date (2025-06-30) (e.g. c4)"
    ) in lines
    assert wh.scalar("SELECT count(*) FROM stg_usage_events") == 4
    assert wh.scalar("SELECT max(event_time) FROM stg_usage_events") == pd.Timestamp(
        "2025-06-30 23:59:59"
    )
    assert wh.scalar("SELECT count(*) FROM stg_contracts WHERE account_id = 'a4'") == 0
    # the same warehouse a month later: nothing is after that run date
    later = prepare_sources(wh, WarehouseConfig(), reference_time=dt.datetime(2025, 7, 31))
    assert later.exclusions == {}
    assert wh.scalar("SELECT count(*) FROM stg_usage_events") == 7


def test_rows_after_the_run_date_are_excluded_with_examples(duck) -> None:
    _assert_cut_off_at_the_run_date(duck)


@pytest.mark.postgres
def test_rows_after_the_run_date_are_excluded_on_postgres(pg) -> None:
    _assert_cut_off_at_the_run_date(pg)


def test_every_exclusion_line_lists_at_most_three_example_ids(duck) -> None:
    frames = good_frames()
    events = frames["usage_events"]
    strays = pd.DataFrame(
        {
            "account_id": [f"ghost{i}" for i in range(5)],
            "user_id": "u1",
            "event_time": _ts("2025-06-03"),
            "event_type": "login",
            "quantity": 1.0,
        }
    )
    frames["usage_events"] = pd.concat([events] * 40 + [strays], ignore_index=True)
    frames["usage_events"]["event_time"] += pd.to_timedelta(range(125), unit="s")
    load(duck, frames)
    report = prepare_sources(duck, WarehouseConfig(), reference_time=REF)  # 5 of 125: 4%
    assert report.exclusions == {"usage_events": {"unknown_account": 5}}
    ids = report.examples["usage_events"]["unknown_account"]
    assert len(ids) == 3 and all(i.startswith("ghost") for i in ids)
    line = next(x for x in report.lines() if "not in accounts" in x)
    assert line.count("ghost") == 3


def test_unmatched_share_above_the_threshold_is_an_error(duck) -> None:
    frames = good_frames()
    frames["usage_events"]["account_id"] = ["a1", "zz", "a2"]  # 1 of 3 = 33%
    load(duck, frames)
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    problem = _problem(info.value, "usage_events", "account_id", "unknown_account")
    assert problem.examples[0]["account_id"] == "zz"
    assert "at most 5% of rows with an account_id not in accounts, found 33.3% (1 of 3)" in str(
        info.value
    )
    assert "warehouse.max_unmatched_share" in problem.hint
    report = prepare_sources(duck, WarehouseConfig(max_unmatched_share=0.4), reference_time=REF)
    assert report.exclusions == {"usage_events": {"unknown_account": 1}}


def _evergreen_frames() -> Frames:
    frames = good_frames()
    frames["contracts"]["end_date"] = [None, dt.date(2026, 3, 1)]
    frames["contracts"]["arr"] = [0.0, 250000.0]  # a usage-priced contract has no ARR
    frames["contracts"]["seats"] = [None, 400]
    return frames


def _assert_evergreen_accepted(wh: Warehouse) -> None:
    load(wh, _evergreen_frames())
    report = prepare_sources(wh, WarehouseConfig(), reference_time=REF)
    assert report.exclusions == {}
    assert "contracts: 1 open-ended contracts (end_date NULL: active until ended)" in report.lines()
    staged = wh.query("SELECT contract_id, end_date, arr FROM stg_contracts ORDER BY contract_id")
    assert staged["end_date"].isna().tolist() == [True, False]  # NULL stays NULL: no sentinel
    assert staged["arr"].tolist() == [0.0, 250000.0]


def test_open_ended_and_zero_arr_contracts_are_accepted(duck) -> None:
    _assert_evergreen_accepted(duck)


@pytest.mark.postgres
def test_open_ended_and_zero_arr_contracts_are_accepted_on_postgres(pg) -> None:
    _assert_evergreen_accepted(pg)


def test_renewals_and_other_products_do_not_overlap(duck) -> None:
    frames = good_frames()
    # a renewal starting on the exclusive end_date, and an add-on of another product
    _append(frames, "contracts", contract_id="c1r", start_date=dt.date(2025, 1, 1), end_date=None)
    _append(frames, "contracts", contract_id="c1x", product="analytics")
    _append(frames, "contracts", contract_id="c1n", product=None)  # no product: not checked
    load(duck, frames)
    prepare_sources(duck, WarehouseConfig(), reference_time=REF)


def test_overlap_message_names_both_contracts(duck) -> None:
    frames = good_frames()
    _append(frames, "contracts", contract_id="c9", start_date=dt.date(2024, 6, 1))
    load(duck, frames)
    with pytest.raises(ContractError) as info:
        prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    text = str(info.value)
    assert "- contracts.account_id, product: overlapping_contracts" in text
    assert "1 pair overlap and would count ARR twice" in text
    assert "contract_id='c1', overlaps_contract_id='c9'" in text


def test_offset_text_is_converted_and_reported(duck) -> None:
    frames = good_frames()
    frames["usage_events"]["event_time"] = [
        "2025-06-01 10:00-04:00",
        "2025-06-02 00:00Z",
        "2025-06-30",
    ]
    load(duck, frames)
    report = prepare_sources(duck, WarehouseConfig(), reference_time=REF)
    assert "usage_events.event_time: converted 2 values from UTC offsets to UTC" in report.lines()
    staged = duck.query("SELECT event_time FROM stg_usage_events ORDER BY event_time")
    assert staged["event_time"].iloc[0] == pd.Timestamp("2025-06-01 14:00")
