"""The input contract (the tables a user maps their warehouse onto) and its staging views.

Every feature and label query reads ``stg_<table>`` views, never the user's tables directly.
A staging view renames mapped columns to the contract names, casts them to the contract types
(tz-aware timestamps become naive UTC, enumerations lower-case), and drops the rows the contract
excludes (see :func:`row_rules`), so the SQL downstream is the same whatever the warehouse calls
things and never sees those rows. ``docs/data-contract.md`` gives the meaning of every column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from features.config import SourceTable, WarehouseConfig
from features.warehouse import Warehouse, qualified, quote_ident


class SourceMappingError(ValueError):
    """``warehouse.tables`` names a table or column the contract does not have."""


ColumnType = Literal["id", "text", "integer", "number", "boolean", "date", "timestamp"]
Action = Literal["error", "exclude"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: ColumnType
    nullable: bool = False
    description: str = ""
    allowed: tuple[str, ...] = ()  # enumeration, compared after lower(trim())
    minimum: float | None = None
    maximum: float | None = None
    on_invalid: Action = "error"  # what a value outside allowed/minimum/maximum does
    code: bool = False  # a code (kind, priority): staged lower-case and trimmed

    @property
    def lowered(self) -> bool:
        return self.code or bool(self.allowed)


@dataclass(frozen=True)
class TableRule:
    """A rule over several columns of one row. ``invalid`` is SQL over quoted contract names."""

    check: str
    columns: tuple[str, ...]
    invalid: str
    expected: str
    action: Action = "error"


@dataclass(frozen=True)
class TableSpec:
    name: str
    required: bool
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()
    description: str = ""
    # timestamp columns read point-in-time; the first one dates the row: rows dated after the
    # reference time (the end of the run date) are excluded, so a run never sees its future
    event_time_columns: tuple[str, ...] = field(default=())
    rules: tuple[TableRule, ...] = ()
    feature_group: str = ""  # features that need this table (for "skipped" messages)
    deduplicate: bool = False  # rows identical in every contract column are counted and dropped
    needs_account: bool = True  # rows whose account_id is not in accounts are excluded
    needs_contract: bool = False  # accounts without any contract row are excluded
    open_ended: str | None = None  # a nullable end column where NULL means "until ended"
    overlap_key: tuple[str, ...] = ()  # rows of one key whose periods must not overlap

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    @property
    def example_columns(self) -> tuple[str, ...]:
        """Columns that identify a row in an error message: the key, else account and time."""
        if self.key:
            return self.key
        return ("account_id", *self.event_time_columns[:1])


def _c(
    name: str,
    type_: ColumnType,
    description: str,
    *,
    nullable: bool = False,
    allowed: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    on_invalid: Action = "error",
    code: bool = False,
) -> ColumnSpec:
    return ColumnSpec(
        name, type_, nullable, description, allowed, minimum, maximum, on_invalid, code
    )


CONTRACT: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "accounts",
            required=True,
            key=("account_id",),
            description="one row per customer account",
            event_time_columns=("created_at",),
            feature_group="all",
            needs_account=False,
            needs_contract=True,
            columns=(
                _c("account_id", "id", "unique account identifier (text or integer)"),
                _c("name", "text", "account display name", nullable=True),
                _c("segment", "text", "e.g. enterprise / mid-market / smb", nullable=True),
                _c("industry", "text", "industry of the customer", nullable=True),
                _c("employees", "integer", "headcount of the customer", nullable=True, minimum=0),
                _c("csm_owner", "text", "the CSM who owns the account", nullable=True),
                _c("created_at", "timestamp", "when the account was created"),
            ),
        ),
        TableSpec(
            "contracts",
            required=True,
            key=("contract_id",),
            description="one row per contract or add-on; ARR is recognised while it runs",
            feature_group="commercial",
            open_ended="end_date",
            overlap_key=("account_id", "product"),
            rules=(
                TableRule(
                    "end_before_start",
                    ("start_date", "end_date"),
                    '"end_date" <= "start_date"',
                    "end_date after start_date",
                ),
            ),
            columns=(
                _c("account_id", "id", "the account the contract belongs to"),
                _c("contract_id", "id", "unique contract identifier"),
                _c("product", "text", "product or plan", nullable=True),
                _c("start_date", "date", "first day the contract is in force"),
                _c(
                    "end_date",
                    "date",
                    "day the contract ends (exclusive); NULL: open-ended (evergreen)",
                    nullable=True,
                ),
                _c("arr", "number", "annual recurring revenue of this contract", minimum=0),
                _c(
                    "seats",
                    "integer",
                    "licensed seats; NULL if not seat-based",
                    nullable=True,
                    minimum=1,
                ),
            ),
        ),
        TableSpec(
            "usage_events",
            required=True,
            description="product usage, one row per event",
            event_time_columns=("event_time",),
            feature_group="usage",
            deduplicate=True,
            columns=(
                _c("account_id", "id", "the account of the user"),
                _c("user_id", "id", "the user who acted", nullable=True),
                _c("event_time", "timestamp", "when it happened (UTC, or with a time zone)"),
                _c("event_type", "text", "what was done: a feature or action name"),
                _c("quantity", "number", "amount, for metered events (default 1)", nullable=True),
            ),
        ),
        TableSpec(
            "support_tickets",
            required=False,
            key=("ticket_id",),
            description="support tickets",
            event_time_columns=("opened_at", "closed_at"),
            feature_group="support",
            rules=(
                TableRule(
                    "end_before_start",
                    ("opened_at", "closed_at"),
                    '"closed_at" < "opened_at"',
                    "closed_at not before opened_at",
                ),
            ),
            columns=(
                _c("account_id", "id", "the account that raised it"),
                _c("ticket_id", "id", "unique ticket identifier"),
                _c("opened_at", "timestamp", "when it was opened"),
                _c("closed_at", "timestamp", "when it was closed; null while open", nullable=True),
                _c("priority", "text", "p1 (urgent) .. p4 (low)", nullable=True, code=True),
                _c("category", "text", "e.g. bug, how-to, billing", nullable=True, code=True),
                _c("csat", "number", "ticket satisfaction", nullable=True, minimum=1, maximum=5),
                _c("escalated", "boolean", "escalated to engineering/management", nullable=True),
            ),
        ),
        TableSpec(
            "engagement",
            required=False,
            description="CSM touchpoints",
            event_time_columns=("occurred_at",),
            feature_group="engagement (CSM touch)",
            columns=(
                _c("account_id", "id", "the account touched"),
                _c("occurred_at", "timestamp", "when"),
                _c("kind", "text", "meeting, qbr, ebr, email, training, ...", code=True),
            ),
        ),
        TableSpec(
            "surveys",
            required=False,
            description="NPS and CSAT survey responses",
            event_time_columns=("responded_at",),
            feature_group="engagement (NPS)",
            rules=(
                TableRule(
                    "bad_value",
                    ("kind", "score"),
                    """("kind" = 'nps' AND ("score" < 0 OR "score" > 10))"""
                    """ OR ("kind" = 'csat' AND ("score" < 1 OR "score" > 5))""",
                    "score 0-10 for nps, 1-5 for csat",
                ),
            ),
            columns=(
                _c("account_id", "id", "the account of the respondent"),
                _c("responded_at", "timestamp", "when"),
                _c(
                    "kind",
                    "text",
                    "nps (score 0-10) or csat (score 1-5)",
                    allowed=("nps", "csat"),
                    on_invalid="exclude",
                ),
                _c("score", "number", "the answer"),
            ),
        ),
        TableSpec(
            "contact_changes",
            required=False,
            description="champion and executive-sponsor changes",
            event_time_columns=("changed_at",),
            feature_group="engagement (champion changes)",
            columns=(
                _c("account_id", "id", "the account"),
                _c("changed_at", "timestamp", "when the change became known"),
                _c(
                    "role",
                    "text",
                    "champion or exec_sponsor",
                    allowed=("champion", "exec_sponsor"),
                    on_invalid="exclude",
                ),
                _c("change", "text", "left or joined", allowed=("left", "joined")),
            ),
        ),
        TableSpec(
            "health_scores",
            required=False,
            key=("account_id", "scored_at"),
            description="rule-based health score exported from the CS platform",
            event_time_columns=("scored_at",),
            feature_group="health",
            columns=(
                _c("account_id", "id", "the account scored"),
                _c("scored_at", "timestamp", "when the score was computed"),
                _c("score", "number", "the exported score", minimum=0, maximum=100),
                _c("color", "text", "green, yellow or red", allowed=("green", "yellow", "red")),
            ),
        ),
        TableSpec(
            "verified_outcomes",
            required=False,
            description="business outcomes the customer confirmed (value realised)",
            event_time_columns=("verified_at",),
            feature_group="engagement (verified outcomes)",
            columns=(
                _c("account_id", "id", "the account"),
                _c("verified_at", "timestamp", "when the outcome was verified"),
            ),
        ),
        TableSpec(
            "churn_reasons",
            required=False,
            description="why churned customers say they left (exit interviews, CRM loss "
            "reasons); read by the report only, never a model input",
            event_time_columns=("recorded_at",),
            feature_group="churn-reason report",
            columns=(
                _c("account_id", "id", "the account that churned"),
                _c("recorded_at", "timestamp", "when the reason was recorded"),
                _c(
                    "reason_category",
                    "text",
                    "stated reason, one of the taxonomy in docs/data-contract.md",
                    allowed=(
                        "adoption",
                        "relationship",
                        "support",
                        "budget",
                        "product_fit",
                        "competitor",
                        "business_change",
                        "other",
                    ),
                ),
                _c("reason_text", "text", "free text: the interview note", nullable=True),
            ),
        ),
    )
}

SQL_TYPES: dict[ColumnType, str] = {
    "id": "VARCHAR",
    "text": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


def staging_view(name: str) -> str:
    """Name of the staging view that holds contract table ``name``."""
    return f"stg_{name}"


def with_duplicates_view(name: str) -> str:
    """Name of the view of a deduplicating table that keeps its exact duplicates (otherwise as
    staged), for reads a duplicate cannot change, such as the latest event of an account: they
    skip the DISTINCT, which on a large table costs more than the scan."""
    return f"stg_{name}_with_duplicates"


@dataclass(frozen=True)
class SourceLocation:
    """Where one contract table physically is, resolved from configuration."""

    spec: TableSpec
    table: str
    schema: str | None
    columns: dict[str, str]  # contract name -> physical name
    parquet: str | None = None

    @property
    def label(self) -> str:
        if self.parquet:
            return f"parquet:{self.parquet}"
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def physical(self, column: str) -> str:
        return self.columns.get(column, column)


def locate_sources(config: WarehouseConfig) -> dict[str, SourceLocation]:
    """Resolve every contract table to its physical location (whether it exists or not)."""
    unknown = set(config.tables) - set(CONTRACT)
    if unknown:
        keys = ", ".join(f"warehouse.tables.{name}" for name in sorted(unknown))
        raise SourceMappingError(
            f"unknown table key(s) {keys}: the contract tables are {', '.join(CONTRACT)}"
        )
    located = {}
    for name, spec in CONTRACT.items():
        mapping = config.tables.get(name, SourceTable())
        bad = set(mapping.columns) - {c.name for c in spec.columns}
        if bad:
            raise SourceMappingError(
                f"warehouse.tables.{name}.columns maps unknown contract column(s) "
                f"{', '.join(sorted(bad))}: {name} has {', '.join(c.name for c in spec.columns)}"
            )
        located[name] = SourceLocation(
            spec=spec,
            table=mapping.table or name,
            schema=mapping.schema_name or config.source_schema,
            columns=dict(mapping.columns),
            parquet=mapping.parquet,
        )
    return located


# --- physical types -----------------------------------------------------------------------------

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


# --- row rules: one list for validation (counting) and staging (excluding) ---------------------


@dataclass(frozen=True)
class RowRule:
    """One check over the rows of one table.

    ``invalid`` is SQL over the quoted contract column names of the typed source (plus
    ``"<column>__raw"`` for the untouched physical value); ``{accounts}``/``{contracts}`` stand
    for those tables' typed relations and ``?`` for the reference time. ``action`` says whether a
    matching row is an error or a counted exclusion (``check`` is then the exclusion reason).
    """

    check: str
    columns: tuple[str, ...]
    invalid: str
    expected: str
    action: Action = "error"


_NON_FINITE = "(CAST('NaN' AS DOUBLE), CAST('Infinity' AS DOUBLE), CAST('-Infinity' AS DOUBLE))"


def _number_rules(col: ColumnSpec, physical_type: str) -> list[RowRule]:
    """NaN and infinities in numbers; fractions (and NaN) in whole-number columns, which a
    cast would otherwise round (25.5 seats -> 26) or abort on."""
    q, raw = quote_ident(col.name), quote_ident(f"{col.name}__raw")
    if col.type == "number":
        invalid = f"{q} IN {_NON_FINITE}"
        return [RowRule("not_finite", (col.name,), invalid, "a finite number (not NaN or inf)")]
    if col.type == "integer" and type_family(physical_type) in ("decimal", "float"):
        invalid = (
            f"{raw} IS NOT NULL AND ({q} IS NULL OR CAST({raw} AS DOUBLE) <> CAST({q} AS DOUBLE))"
        )
        return [RowRule("not_integer", (col.name,), invalid, "a whole number")]
    return []


def _value_rules(col: ColumnSpec) -> list[RowRule]:
    q = quote_ident(col.name)
    rules = []
    if col.allowed:
        values = ", ".join(f"'{v}'" for v in col.allowed)
        check = "bad_value" if col.on_invalid == "error" else f"unknown_{col.name}"
        expected = "one of " + ", ".join(col.allowed)
        rules.append(
            RowRule(check, (col.name,), f"{q} NOT IN ({values})", expected, col.on_invalid)
        )
    if col.minimum is not None and col.maximum is None:
        expected = f">= {col.minimum:g}"
        check = "negative" if col.minimum == 0 else "bad_value"
        rules.append(RowRule(check, (col.name,), f"{q} < {col.minimum!r}", expected))
    elif col.minimum is not None or col.maximum is not None:
        lo, hi = col.minimum, col.maximum
        invalid = " OR ".join(
            p for p in (lo is not None and f"{q} < {lo!r}", hi is not None and f"{q} > {hi!r}") if p
        )
        expected = f"between {lo:g} and {hi:g}" if lo is not None else f"<= {hi:g}"
        rules.append(RowRule("bad_value", (col.name,), invalid, expected))
    return rules


def row_rules(spec: TableSpec, present: Mapping[str, str]) -> list[RowRule]:
    """Every row-level rule of ``spec`` that can run on the columns ``present`` (contract name ->
    physical type): casts, nulls, enumerations, ranges, time, cross-column and cross-table rules.
    Columns of an unusable type are left out (they are reported as ``wrong_type``)."""
    usable = {c: t for c, t in present.items() if type_accepted(spec.column(c).type, t)}
    rules: list[RowRule] = []
    for col in spec.columns:
        if col.name not in usable:
            continue
        q, raw = quote_ident(col.name), quote_ident(f"{col.name}__raw")
        if needs_try_cast(col.type, usable[col.name]):
            expected = f"text that casts to {SQL_TYPES[col.type]}"
            rules.append(
                RowRule("wrong_type", (col.name,), f"{raw} IS NOT NULL AND {q} IS NULL", expected)
            )
        if not col.nullable:
            rules.append(RowRule("null", (col.name,), f"{raw} IS NULL", "a value (not NULL)"))
        rules.extend(_number_rules(col, usable[col.name]))
        rules.extend(_value_rules(col))
        if spec.event_time_columns[:1] == (col.name,):
            expected = "no later than the end of the run date"
            invalid = f"{q} > CAST(? AS TIMESTAMP)"
            rules.append(RowRule("after_run_date", (col.name,), invalid, expected, "exclude"))
    rules.extend(
        RowRule(r.check, r.columns, r.invalid, r.expected, r.action)
        for r in spec.rules
        if set(r.columns) <= set(usable)
    )
    if "account_id" in usable and spec.needs_account:
        rules.append(_membership_rule("unknown_account", "{accounts}", "account_id in accounts"))
        invalid = (
            '"account_id" IN (SELECT "account_id" FROM {accounts} '
            'WHERE "created_at" > CAST(? AS TIMESTAMP))'
        )
        expected = "an account created by the end of the run date"
        rules.append(
            RowRule("account_after_run_date", ("account_id",), invalid, expected, "exclude")
        )
    if "account_id" in usable and spec.needs_contract:
        rules.append(_membership_rule("no_contract", "{contracts}", "at least one contract"))
    return rules


def _membership_rule(reason: str, relation: str, expected: str) -> RowRule:
    invalid = (
        '"account_id" IS NOT NULL AND "account_id" NOT IN '
        f'(SELECT "account_id" FROM {relation} WHERE "account_id" IS NOT NULL)'
    )
    return RowRule(reason, ("account_id",), invalid, expected, "exclude")


# --- relations ----------------------------------------------------------------------------------


def _parquet_view(name: str) -> str:
    return f"_churnlens_parquet_{name}"


def _raw_relation(wh: Warehouse, loc: SourceLocation) -> str | None:
    """SQL naming the raw table (or a temp view over Parquet files); None when it is absent."""
    if loc.parquet:
        if wh.dialect != "duckdb":
            raise ValueError(
                f"warehouse.tables.{loc.spec.name}.parquet: Parquet sources need the DuckDB "
                "warehouse (warehouse.kind: duckdb)"
            )
        import duckdb

        raw = _parquet_view(loc.spec.name)
        try:
            wh.con.read_parquet(loc.parquet).create_view(raw, replace=True)  # type: ignore[attr-defined]
        except (duckdb.IOException, duckdb.InvalidInputException):
            return None
        return quote_ident(raw)
    if not wh.table_exists(loc.table, loc.schema):
        return None
    return qualified(loc.table, loc.schema)


def physical_columns(wh: Warehouse, loc: SourceLocation) -> dict[str, str]:
    """Physical column name -> SQL type of a located source (a Parquet view included); {} if
    the source is absent."""
    if loc.parquet:
        return wh.columns(_parquet_view(loc.spec.name)) if _raw_relation(wh, loc) else {}
    return wh.columns(loc.table, loc.schema)


def present_columns(loc: SourceLocation, physical: Mapping[str, str]) -> dict[str, str]:
    """Contract column -> physical type, for the contract columns the source has."""
    return {
        c.name: physical[loc.physical(c.name)]
        for c in loc.spec.columns
        if loc.physical(c.name) in physical
    }


def typed_select(
    wh: Warehouse,
    loc: SourceLocation,
    physical: Mapping[str, str],
    *,
    with_raw: bool = False,
    distinct: bool = False,
    where: str | None = None,
    relation: str | None = None,
    passthrough: tuple[str, ...] = (),
) -> str | None:
    """``SELECT`` of a source's contract columns under contract names and types (absent or
    unusable columns as typed NULLs); with ``with_raw`` also ``<column>__raw``. None if absent.

    ``distinct`` first keeps one copy of rows identical in every contract column as stored:
    deduplicating before the casts is about twice as fast as after them. ``where`` (SQL over
    the stored columns, such as :func:`row_time_after`) keeps only the rows it holds for,
    before the DISTINCT, so a DISTINCT never reads more than those rows (the source is ``r``
    there). ``relation`` reads another relation with the stored columns instead of the source;
    ``passthrough`` are more of its columns, selected as they are.
    """
    raw = _raw_relation(wh, loc) if relation is None else relation
    if raw is None:
        return None
    present = present_columns(loc, physical)
    if where is not None:
        raw = f"(SELECT * FROM {raw} AS r WHERE {where}) AS _rows"
    if distinct:
        stored = ", ".join(quote_ident(loc.physical(c), what="column name") for c in present)
        raw = f"(SELECT DISTINCT {stored} FROM {raw}) AS _distinct"
    items = []
    for col in loc.spec.columns:
        phys_type = present.get(col.name)
        if phys_type is not None and type_accepted(col.type, phys_type):
            expr = typed_expr(wh, col, loc.physical(col.name), phys_type)
        else:
            expr = f"CAST(NULL AS {SQL_TYPES[col.type]})"
        items.append(f"{expr} AS {quote_ident(col.name)}")
        if with_raw:
            phys = quote_ident(loc.physical(col.name), what="column name")
            raw_expr = phys if phys_type is not None else "NULL"
            items.append(f"{raw_expr} AS {quote_ident(col.name + '__raw')}")
    items += [quote_ident(c) for c in passthrough]
    return "SELECT\n    " + ",\n    ".join(items) + f"\n  FROM {raw}"


COPIES_COLUMN = "_copies"


def copies_table(name: str) -> str:
    """Name of the session-local table of the rows of ``name`` stored more than once among the
    rows a run reads: one row each, with ``_copies`` (how many extra copies there are)."""
    return f"churnlens_copies_{name}"


def copies_select(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str], where: str | None
) -> str:
    """SQL for :func:`copies_table`: the stored columns of each row held more than once (among
    the rows ``where`` keeps), and its extra copies. NULLs group together, as in DISTINCT."""
    raw = _raw_relation(wh, loc)
    stored = ", ".join(
        quote_ident(loc.physical(c), what="column name") for c in present_columns(loc, physical)
    )
    filtered = "" if where is None else f" WHERE {where}"
    return (
        f"SELECT {stored}, count(*) - 1 AS {quote_ident(COPIES_COLUMN)} FROM {raw}{filtered} "
        f"GROUP BY {stored} HAVING count(*) > 1"
    )


def _without_copies(wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str]) -> str:
    """SQL over the stored columns: the row is not one of :func:`copies_table` (an anti-join on
    every stored column; nullable ones compare NULL equal to NULL, as DISTINCT does)."""
    present = present_columns(loc, physical)
    conditions = []
    for name in present:
        phys = quote_ident(loc.physical(name), what="column name")
        equal = "IS NOT DISTINCT FROM" if loc.spec.column(name).nullable else "="
        conditions.append(f"c.{phys} {equal} r.{phys}")
    table = quote_ident(copies_table(loc.spec.name))
    return f"NOT EXISTS (SELECT 1 FROM {table} AS c WHERE {' AND '.join(conditions)})"


def row_time(wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str]) -> str | None:
    """SQL over the stored columns for the time that dates a row (the table's first
    ``event_time_columns``) as staged: a naive UTC TIMESTAMP, NULL where it is missing or does
    not cast. None when the table has no such column, or not of a usable type."""
    if not loc.spec.event_time_columns:
        return None
    col = loc.spec.column(loc.spec.event_time_columns[0])
    phys_type = present_columns(loc, physical).get(col.name)
    if phys_type is None or not type_accepted(col.type, phys_type):
        return None
    return typed_expr(wh, col, loc.physical(col.name), phys_type)


def row_time_after(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str], moment: datetime
) -> str | None:
    """SQL over the stored columns: the row is dated after ``moment`` (naive UTC); rows without
    a time are not. None when the table has no usable time column."""
    time_sql = row_time(wh, loc, physical)
    if time_sql is None:
        return None
    return f"COALESCE(({time_sql}) > {timestamp_literal(moment)}, FALSE)"


def resolve_relations(rule_sql: str, relations: Mapping[str, str]) -> str | None:
    """Replace ``{accounts}``/``{contracts}`` with typed relations; None if one is missing."""
    for name in re.findall(r"\{(\w+)\}", rule_sql):
        if name not in relations:
            return None
        rule_sql = rule_sql.replace("{" + name + "}", f"({relations[name]}) AS _{name}")
    return rule_sql


def reference_relations(wh: Warehouse, sources: Mapping[str, SourceLocation]) -> dict[str, str]:
    """Typed ``SELECT``s of accounts and contracts, the tables exclusion rules look up."""
    out = {}
    for name in ("accounts", "contracts"):
        loc = sources.get(name)
        if loc is None:
            continue
        physical = physical_columns(wh, loc)
        present = present_columns(loc, physical)
        id_type = present.get("account_id")
        if id_type is None or not type_accepted("id", id_type):
            continue
        select = typed_select(wh, loc, physical)
        if select is not None:
            out[name] = select
    return out


def staging_select(
    wh: Warehouse,
    loc: SourceLocation,
    *,
    sources: Mapping[str, SourceLocation] | None = None,
    deduplicate: bool | None = None,
    reference_time: datetime | None = None,
    deduplicate_after: datetime | None = None,
) -> str | None:
    """The SQL of ``stg_<table>``: typed columns, minus excluded rows (and exact duplicates when
    the table deduplicates). Without ``sources``, cross-table exclusions use the contract names in
    the same schema. ``reference_time`` (naive UTC, the end of the run date) drops the rows dated
    after it; without it (unit tests of feature SQL) those rules are left out. None when the
    source is absent.

    ``deduplicate_after`` (naive UTC) removes exact duplicates only among the rows dated after
    it, the rows the run's feature windows read; older rows are staged as stored. Copies share
    their time, so the rows after it are exactly those of the DISTINCT over the whole table."""
    physical = physical_columns(wh, loc)
    distinct = loc.spec.deduplicate if deduplicate is None else deduplicate
    select = typed_select(wh, loc, physical, distinct=distinct) if physical else None
    if select is None:
        return None
    after = row_time_after(wh, loc, physical, deduplicate_after) if deduplicate_after else None
    if distinct and after is not None:
        copies = copies_table(loc.spec.name)
        if wh.table_exists(copies):
            # the rows held once, then one of each row held more than once (validation's
            # table of copies): a hash anti-join against a few rows instead of a DISTINCT
            once = f"{after} AND {_without_copies(wh, loc, physical)}"
            recent = (
                f"{typed_select(wh, loc, physical, where=once)}\n  UNION ALL\n  "
                f"{typed_select(wh, loc, physical, relation=quote_ident(copies))}"
            )
        else:
            recent = typed_select(wh, loc, physical, distinct=True, where=after)
        older = typed_select(wh, loc, physical, where=f"NOT {after}")
        select = f"{recent}\n  UNION ALL\n  {older}"
    if sources is None:
        sources = {
            n: SourceLocation(CONTRACT[n], n, loc.schema, {}) for n in ("accounts", "contracts")
        }
    relations = reference_relations(wh, sources)
    present = present_columns(loc, physical)
    conditions = []
    for rule in row_rules(loc.spec, present):
        if rule.action != "exclude":
            continue
        rule_sql = rule.invalid
        if "?" in rule_sql:
            if reference_time is None:
                continue
            # a view cannot hold bound parameters; the literal is formatted from a datetime,
            # never from user text (and before relations, whose regexes may hold "?")
            rule_sql = rule_sql.replace("?", timestamp_literal(reference_time))
        invalid = resolve_relations(rule_sql, relations)
        if invalid is not None:
            conditions.append(f"NOT COALESCE(({invalid}), FALSE)")
    names = ", ".join(quote_ident(c.name) for c in loc.spec.columns)
    where = ("\nWHERE " + "\n  AND ".join(conditions)) if conditions else ""
    return f"SELECT {names}\nFROM (\n  {select}\n) AS src{where}"


def create_staging_view(
    wh: Warehouse,
    loc: SourceLocation,
    *,
    sources: Mapping[str, SourceLocation] | None = None,
    deduplicate: bool | None = None,
    reference_time: datetime | None = None,
    deduplicate_after: datetime | None = None,
) -> bool:
    """(Re)create the temporary view ``stg_<table>`` for one source (and, for a table that
    deduplicates, ``stg_<table>_with_duplicates``). Returns False when the source is absent (see
    :func:`create_empty_staging_view`). ``deduplicate_after``: see :func:`staging_select`.

    Types are not checked here: run :func:`features.validation.validate_sources` first (or
    :func:`features.validation.prepare_sources`, which does both), so a bad column gets a message
    naming it rather than a cast error.
    """
    sql = staging_select(
        wh,
        loc,
        sources=sources,
        deduplicate=deduplicate,
        reference_time=reference_time,
        deduplicate_after=deduplicate_after,
    )
    if sql is None:
        return False
    wh.replace_temp_view(staging_view(loc.spec.name), sql)
    if loc.spec.deduplicate:
        kept = sql  # staged without the DISTINCT: the same rows
        if deduplicate is not False:
            kept = (
                staging_select(
                    wh, loc, sources=sources, deduplicate=False, reference_time=reference_time
                )
                or sql
            )
        wh.replace_temp_view(with_duplicates_view(loc.spec.name), kept)
    return True


def timestamp_literal(moment: datetime) -> str:
    """A naive-UTC ``datetime`` as a SQL TIMESTAMP literal (for views, which cannot bind)."""
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return f"CAST('{moment:%Y-%m-%d %H:%M:%S.%f}' AS TIMESTAMP)"


def create_empty_staging_view(wh: Warehouse, spec: TableSpec) -> None:
    """``stg_<table>`` with the contract columns and no rows, for an absent optional table, so
    queries that join it optionally still run (and see NULLs)."""
    cols = ", ".join(
        f"CAST(NULL AS {SQL_TYPES[c.type]}) AS {quote_ident(c.name)}" for c in spec.columns
    )
    wh.replace_temp_view(staging_view(spec.name), f"SELECT {cols} WHERE 1 = 0")
    if spec.deduplicate:
        wh.replace_temp_view(with_duplicates_view(spec.name), f"SELECT {cols} WHERE 1 = 0")
