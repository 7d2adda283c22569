"""Physical SQL types: which warehouse column types can hold which contract type, and the SQL
that casts a stored column to its contract type (tz-aware timestamps to naive UTC, codes
lower-case, text that does not cast to NULL).

DuckDB, PostgreSQL and Spark name types differently; the families here are what the source
checks and staging reason about.
"""

from __future__ import annotations

import re
from typing import Literal

from features.contract import SQL_TYPES, ColumnSpec, ColumnType
from features.warehouse import Warehouse, quote_ident

TypeFamily = Literal[
    "text", "integer", "decimal", "float", "boolean", "date", "timestamp", "timestamptz", "other"
]

_FAMILIES: tuple[tuple[str, TypeFamily], ...] = (
    (r".*with time zone|timestamptz", "timestamptz"),
    (r"timestamp.*|datetime", "timestamp"),
    (r"date", "date"),
    (r"bool(ean)?", "boolean"),
    (
        r"u?(tiny|small|big|huge)?int(eger)?|int[248]|u?hugeint|u?bigint|u?smallint|serial",
        "integer",
    ),
    (r"(decimal|numeric)\(\d+,\s*0\)", "integer"),
    (r"decimal.*|numeric.*", "decimal"),
    (r"float[48]?|real|double( precision)?", "float"),
    (r"varchar.*|text|string|char.*|character.*|bpchar.*|name|citext|uuid|enum\(.*", "text"),
)

# contract type -> physical families accepted as they are; text is also accepted for every
# contract type and checked value by value with try_cast
ACCEPTED_FAMILIES: dict[ColumnType, frozenset[str]] = {
    "id": frozenset({"text", "integer"}),
    "text": frozenset(
        {"text", "integer", "decimal", "float", "boolean", "date", "timestamp", "timestamptz"}
    ),
    "integer": frozenset({"integer", "decimal", "float"}),
    "number": frozenset({"integer", "decimal", "float"}),
    "boolean": frozenset({"boolean"}),
    "date": frozenset({"date", "timestamp", "timestamptz"}),
    "timestamp": frozenset({"timestamp", "timestamptz", "date"}),
}


def type_family(physical_type: str) -> TypeFamily:
    """The family of a physical SQL type as DuckDB or PostgreSQL names it."""
    text = physical_type.strip().lower()
    return next((fam for pattern, fam in _FAMILIES if re.fullmatch(pattern, text)), "other")


def type_accepted(contract_type: ColumnType, physical_type: str) -> bool:
    """Whether a physical column can hold a contract column (text always can, value by value)."""
    family = type_family(physical_type)
    return family == "text" or family in ACCEPTED_FAMILIES[contract_type]


def needs_try_cast(contract_type: ColumnType, physical_type: str) -> bool:
    """Whether values must be checked one by one: text holding non-text contract data."""
    return contract_type not in ("id", "text") and type_family(physical_type) == "text"


def typed_expr(wh: Warehouse, col: ColumnSpec, physical: str, physical_type: str) -> str:
    """SQL for one physical column as its contract type: tz-aware timestamps become naive UTC,
    enumerations lower-case, text that does not cast becomes NULL (validation counts those)."""
    src = quote_ident(physical, what="column name")
    family = type_family(physical_type)
    target = SQL_TYPES[col.type]
    if col.type in ("id", "text"):
        text = f"CAST({src} AS VARCHAR)"
        return f"lower(trim({text}))" if col.lowered else text
    if col.type == "timestamp":
        if family == "timestamptz":
            return f"CAST(({src} AT TIME ZONE 'UTC') AS TIMESTAMP)"
        if family == "text":
            return f"CAST(({wh.try_cast(src, 'TIMESTAMPTZ')} AT TIME ZONE 'UTC') AS TIMESTAMP)"
        return f"CAST({src} AS TIMESTAMP)"
    if col.type == "date" and family == "timestamptz":
        return f"CAST(({src} AT TIME ZONE 'UTC') AS DATE)"
    if family == "text":
        return f"CAST({wh.try_cast(src, target)} AS {target})"
    if col.type == "integer" and family in ("decimal", "float"):
        # NaN, infinities and values beyond BIGINT would abort the cast: NULL, reported by the
        # not_integer rule (NaN compares above every number, so BETWEEN leaves it out)
        return f"CAST(CASE WHEN {src} BETWEEN -9.2e18 AND 9.2e18 THEN {src} END AS BIGINT)"
    return f"CAST({src} AS {target})"


# timezone-bearing text: a clock time followed by Z, UTC or a numeric offset
_OFFSET_TEXT = r"[0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?\s*(z|utc|[+-][0-9]{2}(:?[0-9]{2})?)\s*$"


def converted_to_utc(col: ColumnSpec, physical_type: str) -> str | None:
    """SQL over ``"<column>__raw"`` true for a value staging converts to UTC (a TIMESTAMPTZ
    value, or text with a zone or offset); None when the column holds no such values."""
    if col.type not in ("timestamp", "date"):
        return None
    raw = quote_ident(f"{col.name}__raw")
    family = type_family(physical_type)
    if family == "timestamptz":
        return f"{raw} IS NOT NULL"
    if family == "text" and col.type == "timestamp":
        return f"REGEXP_MATCHES(lower(trim(CAST({raw} AS VARCHAR))), '{_OFFSET_TEXT}')"
    return None
