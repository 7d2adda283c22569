"""Validate the source tables against the input contract, then stage them.

Every check is SQL run inside the warehouse and derived from ``features.sources.CONTRACT``
(:func:`features.sources.row_rules`): one aggregate query per table counts every row rule at once
(one scan; a second, grouped query only for tables with a key). Only failing checks fetch example
rows. Rules are either errors (collected, then raised together as one :class:`ContractError`) or
counted exclusions that the staging views drop; ``docs/data-contract.md`` lists which is which.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from features.config import WarehouseConfig
from features.sources import (
    ACCEPTED_FAMILIES,
    CONTRACT,
    SQL_TYPES,
    RowRule,
    SourceLocation,
    TableSpec,
    create_empty_staging_view,
    create_staging_view,
    locate_sources,
    physical_columns,
    present_columns,
    reference_relations,
    resolve_relations,
    row_rules,
    type_accepted,
    typed_select,
)
from features.warehouse import Warehouse, quote_ident

MAX_EXAMPLES = 5

_EXCLUSION_TEXT = {
    "unknown_account": "account_id not in accounts",
    "no_contract": "account has no contract",
    "exact_duplicate": "exact duplicates of another row (one copy kept)",
}


@dataclass(frozen=True)
class Problem:
    """One failed contract check: where, what, how many rows, a few of them, what to do."""

    table: str
    column: str | None
    check: str
    n_rows: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    hint: str = ""
    expected: str = ""
    physical: str | None = None  # the physical column name, when it is mapped in config

    def describe(self) -> str:
        """A few readable lines (no markup characters, so it prints safely in any console)."""
        where = self.table if self.column is None else f"{self.table}.{self.column}"
        if self.physical and self.physical != self.column:
            where += f' (physical column "{self.physical}")'
        head = f"- {where}: {self.check}"
        if self.expected:
            head += f"; expected {self.expected}"
        if self.n_rows:
            head += f"; {self.n_rows:,} row{'s' if self.n_rows != 1 else ''}"
        lines = [head]
        if self.examples:
            lines.append("    e.g. " + "\n         ".join(_row_text(r) for r in self.examples))
        if self.hint:
            lines.append(f"    fix: {self.hint}")
        return "\n".join(lines)


class ContractError(ValueError):
    """The source tables break the input contract; ``problems`` lists every failed check."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        header = f"the source tables break the input contract ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([header, *(p.describe() for p in self.problems)]))


@dataclass(frozen=True)
class SourceReport:
    """What validation found: tables usable, optional tables absent, rows excluded per reason."""

    available: list[str]
    skipped: list[str]
    exclusions: dict[str, dict[str, int]]
    rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """Plain-language run-log lines, one per fact."""
        out = []
        for table in self.available:
            out.append(f"{table}: {self.rows.get(table, 0):,} rows checked")
            for reason, n in self.exclusions.get(table, {}).items():
                out.append(f"{table}: {n:,} rows excluded - {_reason_text(table, reason)}")
        for table in self.skipped:
            out.append(f"{table}: absent - {CONTRACT[table].feature_group} features skipped")
        out.extend(self.notes)
        out.append(f"validated {len(self.available)} source tables in {self.seconds:.1f} s")
        return out


def _reason_text(table: str, reason: str) -> str:
    if reason in _EXCLUSION_TEXT:
        return _EXCLUSION_TEXT[reason]
    column = reason.removeprefix("unknown_")
    spec = CONTRACT[table]
    if any(c.name == column for c in spec.columns):
        return f"{column} is not one of {', '.join(spec.column(column).allowed)}"
    return reason


# --- entry points ---------------------------------------------------------------------------


def validate_sources(
    wh: Warehouse, locations: Mapping[str, SourceLocation], *, reference_time: dt.datetime
) -> SourceReport:
    """Check every located source against the contract; raise one :class:`ContractError` that
    lists all problems, else return what is available and what the staging views will exclude.

    ``reference_time`` is the newest moment the data may describe (the end of the latest run
    date being processed, naive UTC); timestamps after it are errors.
    """
    started = time.perf_counter()
    ref = _naive_utc(reference_time)
    problems: list[Problem] = []
    physical: dict[str, dict[str, str]] = {}
    skipped: list[str] = []
    for name, loc in locations.items():
        cols = physical_columns(wh, loc)
        if cols:
            physical[name] = cols
        elif loc.spec.required:
            problems.append(_missing_table(loc))
        else:
            skipped.append(name)
    relations = reference_relations(wh, {n: locations[n] for n in physical})
    rows: dict[str, int] = {}
    exclusions: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    for name, cols in physical.items():
        loc = locations[name]
        problems += _structural_problems(loc, cols)
        notes += _absent_nullable_notes(loc, cols)
        n_rows, row_problems, excluded = _check_rows(wh, loc, cols, relations, ref)
        rows[name] = n_rows
        problems += row_problems
        problems += _duplicate_keys(wh, loc, cols)
        if excluded:
            exclusions[name] = excluded
    if problems:
        raise ContractError(problems)
    return SourceReport(
        available=list(physical),
        skipped=skipped,
        exclusions=exclusions,
        rows=rows,
        notes=notes,
        seconds=time.perf_counter() - started,
    )


def prepare_sources(
    wh: Warehouse, config: WarehouseConfig, *, reference_time: dt.datetime
) -> SourceReport:
    """Locate the contract tables, validate them, and (re)create the ``stg_<table>`` views.

    Absent optional tables get an empty staging view with the contract columns, so optional
    joins still run; ``SourceReport.skipped`` says which feature groups to skip.
    """
    locations = locate_sources(config)
    report = validate_sources(wh, locations, reference_time=reference_time)
    for name in report.available:
        dupes = report.exclusions.get(name, {}).get("exact_duplicate", 0)
        # DISTINCT only when needed: on 50M events it costs more than the whole scan
        create_staging_view(wh, locations[name], sources=locations, deduplicate=dupes > 0)
    for name in report.skipped:
        create_empty_staging_view(wh, CONTRACT[name])
    return report


# --- structural checks (no scan) ------------------------------------------------------------


def _missing_table(loc: SourceLocation) -> Problem:
    name = loc.spec.name
    if loc.parquet:
        hint = f"no readable Parquet files match {loc.parquet!r} (warehouse.tables.{name}.parquet)"
    else:
        hint = (
            f"looked for {loc.label}; create it, or map it in the config with "
            f"warehouse.tables.{name}.table and .schema (or .parquet)"
        )
    return Problem(name, None, "missing_table", 0, hint=hint, expected="a required table")


def _structural_problems(loc: SourceLocation, physical: Mapping[str, str]) -> list[Problem]:
    spec, out = loc.spec, []
    for col in spec.columns:
        phys = loc.physical(col.name)
        mapped = phys if col.name in loc.columns else None
        if phys not in physical:
            if col.nullable:
                continue
            have = ", ".join(list(physical)[:12])
            hint = (
                f"map it in the config: warehouse.tables.{spec.name}.columns: "
                f"{{{col.name}: <your column>}}; {loc.label} has: {have}"
            )
            out.append(
                Problem(
                    spec.name,
                    col.name,
                    "missing_column",
                    0,
                    hint=hint,
                    physical=mapped,
                    expected=f"a column {phys!r} of type {col.type}",
                )
            )
        elif not type_accepted(col.type, physical[phys]):
            accepted = " / ".join(sorted(ACCEPTED_FAMILIES[col.type] | {"text"}))
            out.append(
                Problem(
                    spec.name,
                    col.name,
                    "wrong_type",
                    0,
                    expected=f"{col.type} ({accepted}), found {physical[phys]}",
                    hint=f"store {phys} as {SQL_TYPES[col.type]}, or map another column",
                    physical=mapped or phys,
                )
            )
    return out


def _absent_nullable_notes(loc: SourceLocation, physical: Mapping[str, str]) -> list[str]:
    return [
        f"{loc.spec.name}.{c.name}: column absent - read as NULL"
        for c in loc.spec.columns
        if c.nullable and loc.physical(c.name) not in physical
    ]


# --- row checks: one aggregate scan per table -----------------------------------------------


def _check_rows(
    wh: Warehouse,
    loc: SourceLocation,
    physical: Mapping[str, str],
    relations: Mapping[str, str],
    ref: dt.datetime,
) -> tuple[int, list[Problem], dict[str, int]]:
    """Count every row rule of one table in one query; fetch examples of the failing ones."""
    src = typed_select(wh, loc, physical, with_raw=True)
    assert src is not None  # physical columns were found, so the source exists
    rules = _runnable_rules(loc.spec, present_columns(loc, physical), relations)
    # each rule becomes a flag computed once per row, then summed: one scan for all rules
    flags, aggregates, params = [], ["count(*) AS n_rows"], []
    for i, (rule, sql) in enumerate(rules):
        flags.append(f"COALESCE(({sql}), FALSE) AS f{i}")
        aggregates.append(f"sum(CASE WHEN f{i} THEN 1 ELSE 0 END) AS k{i}")
        # count in the rule as written: a resolved relation may hold "?" inside regex literals
        params += [ref] * rule.invalid.count("?")
    kept = _kept(rules)
    if loc.spec.deduplicate:
        aggregates.append(f"sum(CASE WHEN {kept} THEN 1 ELSE 0 END) AS kept_rows")
    flagged = ", ".join(["*", *flags])
    with_flagged = f"WITH src AS (\n  {src}\n),\nflagged AS (SELECT {flagged} FROM src)\n"
    sql = with_flagged + "SELECT\n  " + ",\n  ".join(aggregates) + "\nFROM flagged"
    counts = wh.query(sql, params).iloc[0]
    problems: list[Problem] = []
    excluded: dict[str, int] = {}
    for i, (rule, rule_sql) in enumerate(rules):
        n = _int(counts[f"k{i}"])
        if n == 0:
            continue
        if rule.action == "exclude":
            excluded[rule.check] = excluded.get(rule.check, 0) + n
            continue
        examples = _examples(wh, loc, src, rule, rule_sql, ref)
        problems.append(_row_problem(loc, rule, n, examples, ref))
    if loc.spec.deduplicate:
        # the same rules over the distinct rows, as the staging view sees them; a separate
        # query measured faster than count(DISTINCT ROW(...)) inside the aggregate
        distinct_src = typed_select(wh, loc, physical, with_raw=True, distinct=True)
        excluding = [(i, r, q) for i, (r, q) in enumerate(rules) if r.action == "exclude"]
        flagged = ", ".join(["*", *(f"COALESCE(({q}), FALSE) AS f{i}" for i, _, q in excluding)])
        distinct = wh.query(
            f"WITH src AS (\n  {distinct_src}\n),\nflagged AS (SELECT {flagged} FROM src)\n"
            f"SELECT sum(CASE WHEN {kept} THEN 1 ELSE 0 END) AS n FROM flagged",
            [ref] * sum(r.invalid.count("?") for _, r, _ in excluding),
        )
        dupes = _int(counts["kept_rows"]) - _int(distinct["n"].iloc[0])
        if dupes:
            excluded["exact_duplicate"] = dupes
    return _int(counts["n_rows"]), problems, excluded


def _runnable_rules(
    spec: TableSpec, present: Mapping[str, str], relations: Mapping[str, str]
) -> list[tuple[RowRule, str]]:
    """The table's rules with cross-table relations filled in (rules whose lookup table is
    unusable are left out; that table's own problems are reported)."""
    out = []
    for rule in row_rules(spec, present):
        sql = resolve_relations(rule.invalid, relations)
        if sql is not None:
            out.append((rule, sql))
    return out


def _kept(rules: list[tuple[RowRule, str]]) -> str:
    """SQL over the flags: the row survives every exclusion (what the staging view keeps)."""
    excluded = [f"f{i}" for i, (rule, _) in enumerate(rules) if rule.action == "exclude"]
    return f"NOT ({' OR '.join(excluded)})" if excluded else "TRUE"


def _examples(
    wh: Warehouse, loc: SourceLocation, src: str, rule: RowRule, rule_sql: str, ref: dt.datetime
) -> list[dict[str, Any]]:
    """Up to five offending rows: the identifying columns, then the offending raw values."""
    select = {c: quote_ident(c) for c in loc.spec.example_columns}
    select.update({c: quote_ident(f"{c}__raw") for c in rule.columns})
    items = ", ".join(f"{expr} AS {quote_ident(name)}" for name, expr in select.items())
    sql = (
        f"WITH src AS (\n  {src}\n)\nSELECT {items} FROM src "
        f"WHERE COALESCE(({rule_sql}), FALSE) LIMIT {MAX_EXAMPLES}"
    )
    frame = wh.query(sql, [ref] * rule.invalid.count("?"))
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _row_problem(
    loc: SourceLocation, rule: RowRule, n: int, examples: list[dict[str, Any]], ref: dt.datetime
) -> Problem:
    column = rule.columns[-1]
    physical = loc.physical(column)
    hints = {
        "wrong_type": f"convert {physical} to {loc.spec.column(column).type} in the source",
        "null": "fill these values or filter the rows out in the source",
        "future_timestamp": (
            f"rows dated after {ref:%Y-%m-%d %H:%M:%S} UTC: check the run date and time zones "
            "(timestamps without a zone are read as UTC)"
        ),
        "end_before_start": "fix the dates in the source",
        "negative": "fix the values in the source (refunds are not negative ARR)",
        "bad_value": f"use {rule.expected}; other scales must be converted in the source",
    }
    return Problem(
        table=loc.spec.name,
        column=column,
        check=rule.check,
        n_rows=n,
        examples=examples,
        hint=hints.get(rule.check, ""),
        expected=rule.expected,
        physical=physical if column in loc.columns else None,
    )


# --- keys -----------------------------------------------------------------------------------


def _duplicate_keys(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str]
) -> list[Problem]:
    """Keys that occur more than once: one grouped query returns counts and examples."""
    spec = loc.spec
    present = present_columns(loc, physical)
    if not spec.key or not all(
        k in present and type_accepted(spec.column(k).type, present[k]) for k in spec.key
    ):
        return []
    src = typed_select(wh, loc, physical)
    keys = ", ".join(quote_ident(k) for k in spec.key)
    not_null = " AND ".join(f"{quote_ident(k)} IS NOT NULL" for k in spec.key)
    sql = (
        f"WITH src AS (\n  {src}\n),\n"
        f"dup AS (SELECT {keys}, count(*) AS n FROM src WHERE {not_null} "
        f"GROUP BY {keys} HAVING count(*) > 1)\n"
        f'SELECT {keys}, n AS "rows", count(*) OVER () AS n_keys, sum(n) OVER () AS n_rows '
        f"FROM dup ORDER BY n DESC, {keys} LIMIT {MAX_EXAMPLES}"
    )
    frame = wh.query(sql)
    if frame.empty:
        return []
    n_rows, n_keys = _int(frame["n_rows"].iloc[0]), _int(frame["n_keys"].iloc[0])
    examples = [
        {k: _plain(v) for k, v in row.items()}
        for row in frame.drop(columns=["n_keys", "n_rows"]).to_dict("records")
    ]
    mapped = [loc.physical(k) for k in spec.key if k in loc.columns]
    return [
        Problem(
            spec.name,
            ", ".join(spec.key),
            "duplicate_key",
            n_rows,
            examples=examples,
            expected=f"one row per ({', '.join(spec.key)}); {n_keys:,} keys repeat",
            hint="remove or merge the duplicate rows in the source",
            physical=", ".join(mapped) or None,
        )
    ]


# --- small helpers --------------------------------------------------------------------------


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def _int(value: Any) -> int:
    if value is None:
        return 0
    try:
        return 0 if math.isnan(float(value)) else int(value)
    except (TypeError, ValueError):
        return 0


def _plain(value: Any) -> Any:
    """A value as a plain Python object for messages (timestamps as ISO text)."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        try:
            if value != value:  # NaT
                return None
        except (TypeError, ValueError):
            pass
        if isinstance(value, dt.datetime):
            # DATE columns come back from pandas as midnight timestamps: print them as dates
            midnight = value.time() == dt.time(0) and value.tzinfo is None
            return value.date().isoformat() if midnight else value.isoformat(sep=" ")
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _row_text(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in row.items())
