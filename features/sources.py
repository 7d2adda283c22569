"""Staging: where each contract table physically is, and the ``stg_<table>`` views over it.

Every feature and label query reads ``stg_<table>`` views, never the user's tables directly.
A staging view renames mapped columns to the contract names, casts them to the contract types
(:mod:`features.physical_types`), and drops the rows the contract excludes
(:func:`features.row_rules.row_rules`), so the SQL downstream is the same whatever the warehouse
calls things and never sees those rows. The contract itself is data in :mod:`features.contract`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from features.config import SourceTable, WarehouseConfig
from features.contract import CONTRACT, SQL_TYPES, TableSpec
from features.physical_types import type_accepted, typed_expr
from features.row_rules import row_rules
from features.warehouse import Warehouse, qualified, quote_ident


class SourceMappingError(ValueError):
    """``warehouse.tables`` names a table or column the contract does not have."""


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
        mapping = config.tables.get(name) or SourceTable.model_validate({})
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
    grouped = f"GROUP BY {stored} HAVING count(*) > 1"
    copies = quote_ident(COPIES_COLUMN)
    if wh.dialect != "duckdb":
        return f"SELECT {stored}, count(*) - 1 AS {copies} FROM {raw}{filtered} {grouped}"
    # DuckDB: a grouping on every stored column (text included) of a large window does not
    # spill within a small memory_limit (200,000 accounts: 70 M rows fail at 1 GiB), a grouping
    # on one 64-bit hash does. So the rows whose hash occurs twice are found first, then only
    # they are grouped on their columns: exact (equal rows hash equal; a collision is dropped by
    # the second grouping), at the price of reading the window twice.
    return (
        f"WITH w AS (SELECT {stored} FROM {raw}{filtered}),\n"
        f"twice AS (SELECT hash({stored}) AS h FROM w GROUP BY h HAVING count(*) > 1)\n"
        f"SELECT {stored}, count(*) - 1 AS {copies} FROM w "
        f"WHERE hash({stored}) IN (SELECT h FROM twice) {grouped}"
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
            recent: str | None = (
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
