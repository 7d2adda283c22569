"""The contract as data: type families, derived row rules, locating sources, staging views."""

from __future__ import annotations

import pandas as pd
import pytest

from features.config import WarehouseConfig
from features.contract import CONTRACT
from features.physical_types import type_accepted, type_family
from features.row_rules import row_rules
from features.sources import SourceMappingError, create_staging_view, locate_sources


@pytest.mark.parametrize(
    ("physical", "family"),
    [
        ("varchar", "text"),
        ("character varying(40)", "text"),
        ("text", "text"),
        ("uuid", "text"),
        ("bigint", "integer"),
        ("integer", "integer"),
        ("numeric(12,0)", "integer"),
        ("decimal(18,3)", "decimal"),
        ("double precision", "float"),
        ("double", "float"),
        ("boolean", "boolean"),
        ("date", "date"),
        ("timestamp", "timestamp"),
        ("timestamp_ns", "timestamp"),
        ("timestamp without time zone", "timestamp"),
        ("timestamp with time zone", "timestamptz"),
        ("timestamp(3) with time zone", "timestamptz"),
        ("interval", "other"),
        ("integer[]", "other"),
    ],
)
def test_type_family(physical, family) -> None:
    assert type_family(physical) == family


@pytest.mark.parametrize(
    ("contract", "physical", "accepted"),
    [
        ("id", "bigint", True),
        ("id", "varchar", True),
        ("id", "double", False),
        ("timestamp", "date", True),
        ("timestamp", "varchar", True),  # checked value by value
        ("timestamp", "boolean", False),
        ("number", "decimal(12,2)", True),
        ("number", "boolean", False),
        ("boolean", "integer", False),
        ("date", "timestamp with time zone", True),
        ("text", "bigint", True),
    ],
)
def test_type_accepted(contract, physical, accepted) -> None:
    assert type_accepted(contract, physical) is accepted


def _checks(table: str, present: dict[str, str]) -> set[tuple[str, str, str]]:
    return {(r.check, r.columns[-1], r.action) for r in row_rules(CONTRACT[table], present)}


def test_row_rules_follow_the_contract() -> None:
    contracts = {c.name: "varchar" for c in CONTRACT["contracts"].columns}
    contracts |= {"start_date": "date", "end_date": "date", "arr": "double", "seats": "bigint"}
    checks = _checks("contracts", contracts)
    assert ("negative", "arr", "error") in checks
    assert ("end_before_start", "end_date", "error") in checks
    assert ("unknown_account", "account_id", "exclude") in checks
    assert ("null", "arr", "error") in checks and ("null", "seats", "error") not in checks
    assert ("not_finite", "arr", "error") in checks
    assert ("bad_value", "seats", "error") in checks  # seats >= 1: NULL when not seat-based
    assert ("null", "end_date", "error") not in checks  # NULL end_date: open-ended
    assert not any(c[0] == "wrong_type" for c in checks)  # no text columns to cast


def test_text_columns_get_a_cast_rule_and_wrong_types_get_none() -> None:
    present = {"account_id": "varchar", "scored_at": "varchar", "score": "boolean", "color": "text"}
    checks = _checks("health_scores", present)
    assert ("wrong_type", "scored_at", "error") in checks
    assert ("after_run_date", "scored_at", "exclude") in checks
    assert ("bad_value", "color", "error") in checks
    assert not any(col == "score" for _, col, _ in checks)  # reported as wrong_type instead


def test_enumeration_exclusions_are_named_after_the_column() -> None:
    present = {c.name: "varchar" for c in CONTRACT["contact_changes"].columns}
    present["changed_at"] = "timestamp"
    checks = _checks("contact_changes", present)
    assert ("unknown_role", "role", "exclude") in checks
    assert ("bad_value", "change", "error") in checks


def test_locate_sources_applies_mapping_and_defaults() -> None:
    config = WarehouseConfig.model_validate(
        {
            "source_schema": "crm",
            "tables": {
                "usage_events": {
                    "table": "events",
                    "schema": "analytics",
                    "columns": {"event_time": "ts"},
                }
            },
        }
    )
    located = locate_sources(config)
    assert set(located) == set(CONTRACT)
    assert located["usage_events"].label == "analytics.events"
    assert located["usage_events"].physical("event_time") == "ts"
    assert located["accounts"].label == "crm.accounts"


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"usage": {}}, "unknown table key.*warehouse.tables.usage: the contract tables are"),
        ({"accounts": {"columns": {"acct": "id"}}}, "warehouse.tables.accounts.columns"),
    ],
)
def test_locate_sources_rejects_unknown_names(tables, message) -> None:
    with pytest.raises(SourceMappingError, match=message):
        locate_sources(WarehouseConfig.model_validate({"tables": tables}))


def test_mapping_rejects_injection_in_physical_names() -> None:
    with pytest.raises(ValueError, match="invalid column name"):
        WarehouseConfig.model_validate(
            {"tables": {"accounts": {"columns": {"name": 'x"; drop table accounts; --'}}}}
        )


def test_staging_view_of_an_absent_source_is_not_created(duck) -> None:
    located = locate_sources(WarehouseConfig())
    assert create_staging_view(duck, located["engagement"]) is False
    assert duck.columns("stg_engagement") == {}


def test_staging_view_alone_still_applies_exclusions(duck) -> None:
    duck.create_table_from_frame(pd.DataFrame({"account_id": ["a1"]}), "accounts")
    duck.create_table_from_frame(
        pd.DataFrame(
            {
                "account_id": ["a1", "a1", "zz"],
                "occurred_at": pd.to_datetime(["2025-01-01"] * 3),
                "kind": [" QBR", "email", "email"],
            }
        ),
        "engagement",
    )
    located = locate_sources(WarehouseConfig())
    assert create_staging_view(duck, located["engagement"]) is True
    staged = duck.query("SELECT account_id, kind FROM stg_engagement ORDER BY kind")
    assert staged.to_dict("list") == {"account_id": ["a1", "a1"], "kind": ["email", "qbr"]}


def test_whole_number_rule_only_for_fractional_physical_types() -> None:
    base = {c.name: "varchar" for c in CONTRACT["contracts"].columns}
    base |= {"start_date": "date", "end_date": "date", "arr": "double"}
    assert ("not_integer", "seats", "error") in _checks("contracts", base | {"seats": "double"})
    assert ("not_integer", "seats", "error") in _checks(
        "contracts", base | {"seats": "decimal(10,2)"}
    )
    assert ("not_integer", "seats", "error") not in _checks("contracts", base | {"seats": "bigint"})


def test_only_the_first_event_time_column_dates_the_row() -> None:
    present = {c.name: "varchar" for c in CONTRACT["support_tickets"].columns}
    present |= {"opened_at": "timestamp", "closed_at": "timestamp"}
    checks = _checks("support_tickets", present)
    assert ("after_run_date", "opened_at", "exclude") in checks
    # a ticket open on the run date and closed later stays: features read closed_at in time
    assert not any(c[0] == "after_run_date" and c[1] == "closed_at" for c in checks)


def test_staging_keeps_null_end_date_and_cuts_off_at_the_reference_time(duck) -> None:
    import datetime as dt

    duck.create_table_from_frame(
        pd.DataFrame({"account_id": ["a1"], "created_at": pd.to_datetime(["2024-01-01"])}),
        "accounts",
    )
    duck.create_table_from_frame(
        pd.DataFrame(
            {
                "account_id": ["a1", "a1"],
                "occurred_at": pd.to_datetime(["2025-01-01 10:00", "2025-01-02 00:00"]),
                "kind": ["qbr", "email"],
            }
        ),
        "engagement",
    )
    duck.execute(
        "CREATE TABLE contracts AS SELECT 'a1' AS account_id, 'c1' AS contract_id, "
        "'core' AS product, DATE '2024-01-01' AS start_date, CAST(NULL AS DATE) AS end_date, "
        "0.0 AS arr, CAST(NULL AS BIGINT) AS seats"
    )
    located = locate_sources(WarehouseConfig())
    ref = dt.datetime(2025, 1, 1, 23, 59, 59, 999999)
    assert create_staging_view(duck, located["engagement"], reference_time=ref)
    assert duck.query("SELECT kind FROM stg_engagement")["kind"].tolist() == ["qbr"]
    assert create_staging_view(duck, located["contracts"], reference_time=ref)
    staged = duck.query("SELECT end_date, arr FROM stg_contracts")
    assert staged["end_date"].isna().all() and staged["arr"].tolist() == [0.0]


def test_timestamp_literal_is_built_from_a_datetime_only() -> None:
    import datetime as dt

    from features.sources import timestamp_literal

    aware = dt.datetime(2025, 7, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert timestamp_literal(aware) == "CAST('2025-06-30 23:30:00.000000' AS TIMESTAMP)"
    with pytest.raises(TypeError):
        timestamp_literal("2025-01-01'; DROP TABLE accounts; --")  # type: ignore[arg-type]
