"""Validate the source tables against the input contract, then stage them.

Every check is SQL run inside the warehouse and derived from ``features.contract.CONTRACT``
(:func:`features.row_rules.row_rules`): one aggregate query per table counts every row rule at once
(one scan; a second, grouped query only for tables with a key, a self-join of contracts for
overlaps). Only failing checks and exclusions fetch example rows. Rules are either errors
(collected, then raised together as one :class:`ContractError`) or counted exclusions that the
staging views drop; ``docs/data-contract.md`` lists which is which. Every time cut-off is the
``reference_time`` passed in (the end of the run date), never the clock.

A run that says which rows its feature windows read (``reads_after``, :func:`feature_reads_after`)
checks and deduplicates only what it needs: exact duplicates are counted and removed among the
rows dated after ``reads_after`` (the rows the windows read; a copy shares its time, so those
rows are exactly what a DISTINCT over the whole table would give), and the event tables are
checked incrementally. After a run that passes, ``<output_schema>.source_checks`` records per
event table that every row dated up to ``reads_after`` passed, and how many rows that was
(:class:`SourceCheck`); the next run re-counts those rows (one read of the time column) and,
when the count is unchanged and the rules and columns are the same, checks only the rows dated
after ``min(reads_after, checked_through)`` and rows without a time. A changed count (rows
loaded late, or deleted) checks every row again. Not detected: an old row edited in place
(same count); delete the table's row of ``source_checks`` to force a full check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from features.catalog import FEATURES
from features.config import WarehouseConfig
from features.contract import CONTRACT, SQL_TYPES, TableSpec
from features.physical_types import ACCEPTED_FAMILIES, converted_to_utc, type_accepted
from features.row_rules import RowRule, row_rules
from features.sources import (
    COPIES_COLUMN,
    SourceLocation,
    copies_select,
    copies_table,
    create_empty_staging_view,
    create_staging_view,
    locate_sources,
    physical_columns,
    present_columns,
    reference_relations,
    resolve_relations,
    row_time,
    row_time_after,
    timestamp_literal,
    typed_select,
)
from features.warehouse import Warehouse, qualified, quote_ident

MAX_EXAMPLES = 5
MAX_EXCLUSION_EXAMPLES = 3
DEFAULT_MAX_UNMATCHED_SHARE = 0.05
SOURCE_CHECKS_TABLE = "source_checks"
# part of every rules fingerprint: bump when a rule's meaning changes without its SQL changing
CHECKS_VERSION = 1

_EXCLUSION_TEXT = {
    "unknown_account": "account_id not in accounts",
    "account_after_run_date": "account created after the run date",
    "no_contract": "account has no contract",
    "exact_duplicate": "exact duplicates of another row (one copy kept)",
}

_HINTS = {
    "wrong_type": "convert {physical} to {type} in the source",
    "null": "fill these values or filter the rows out in the source",
    "not_finite": "store a finite number (NaN and infinities cannot be summed or compared)",
    "not_integer": "store whole numbers: a fraction would be rounded, NaN cannot be counted",
    "end_before_start": "fix the dates in the source",
    "negative": "fix the values in the source (refunds are not negative ARR)",
    "bad_value": "use {expected}; other scales must be converted in the source",
}
_COLUMN_HINTS = {
    ("contracts", "seats", "bad_value"): "use NULL for a contract that is not sold by seat",
    ("contracts", "arr", "negative"): (
        "fix the values in the source (refunds are not negative ARR; 0 is accepted for "
        "usage-priced contracts)"
    ),
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
    # table -> reason -> up to three example ids of excluded rows
    examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    reference_time: dt.datetime | None = None
    # what this run checked, per event table, for <output_schema>.source_checks (reads_after runs)
    checks: dict[str, SourceCheck] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Plain-language run-log lines, one per fact."""
        out = []
        for table in self.available:
            out.append(f"{table}: {self.rows.get(table, 0):,} rows checked")
            for reason, n in self.exclusions.get(table, {}).items():
                line = f"{table}: {n:,} rows excluded - {self._reason(table, reason)}"
                ids = self.examples.get(table, {}).get(reason)
                if ids:
                    line += f" (e.g. {', '.join(ids)})"
                out.append(line)
        for table in self.skipped:
            out.append(f"{table}: absent - {CONTRACT[table].feature_group} features skipped")
        out.extend(self.notes)
        out.append(f"validated {len(self.available)} source tables in {self.seconds:.1f} s")
        return out

    def _reason(self, table: str, reason: str) -> str:
        text = _reason_text(table, reason)
        if reason.endswith("after_run_date") and self.reference_time is not None:
            text += f" ({self.reference_time:%Y-%m-%d})"
        return text


def _reason_text(table: str, reason: str) -> str:
    if reason in _EXCLUSION_TEXT:
        return _EXCLUSION_TEXT[reason]
    if reason == "after_run_date":
        return f"{CONTRACT[table].event_time_columns[0]} after the run date"
    column = reason.removeprefix("unknown_")
    spec = CONTRACT[table]
    if any(c.name == column for c in spec.columns):
        return f"{column} is not one of {', '.join(spec.column(column).allowed)}"
    return reason


@dataclass(frozen=True)
class SourceCheck:
    """What a run that passed checked of one event table (a row of ``source_checks``): every
    row dated up to ``checked_through`` (naive UTC), ``rows_through`` of them, passed the
    contract's rules, whose location, columns and SQL ``rules`` fingerprints."""

    source: str
    checked_through: dt.datetime
    rows_through: int
    rules: str
    reference_time: dt.datetime


@dataclass(frozen=True)
class _Scope:
    """Which rows of one table a run checks. ``checked_after``: rows dated after it and rows
    without a time (None: every row); ``dedup_after``: exact duplicates are counted among the
    rows dated after it (None: every row); ``record_through``: the time a new
    :class:`SourceCheck` is recorded through (None: none); ``earlier``: the record that vouches
    for the rows up to ``checked_after``."""

    checked_after: dt.datetime | None = None
    dedup_after: dt.datetime | None = None
    record_through: dt.datetime | None = None
    earlier: SourceCheck | None = None


def feature_reads_after(
    as_of_dates: Sequence[dt.datetime], *, table: str = "usage_events"
) -> dt.datetime:
    """The time after which the feature windows of ``as_of_dates`` read ``table``: the earliest
    as_of minus the longest window of the catalog's features of that table's group (90 days for
    usage). Labels read only after an as_of, so a training grid needs nothing earlier either."""
    group = CONTRACT[table].feature_group
    windows = [f.window_days for f in FEATURES.values() if f.group == group and f.window_days]
    if not windows:
        raise ValueError(f"no feature of group {group!r} has a window: {table} has no window floor")
    earliest = min(_naive_utc(d) for d in as_of_dates)
    return earliest - dt.timedelta(days=max(windows))


# --- entry points ---------------------------------------------------------------------------


def validate_sources(
    wh: Warehouse,
    locations: Mapping[str, SourceLocation],
    *,
    reference_time: dt.datetime,
    max_unmatched_share: float = DEFAULT_MAX_UNMATCHED_SHARE,
    reads_after: dt.datetime | None = None,
    earlier_checks: Mapping[str, SourceCheck] | None = None,
) -> SourceReport:
    """Check every located source against the contract; raise one :class:`ContractError` that
    lists all problems, else return what is available and what the staging views will exclude.

    ``reference_time`` is the end of the run date (naive UTC, or tz-aware): rows dated after it
    are excluded and counted, so the run sees the data as they were on its date. A table whose
    share of rows with an ``account_id`` not in ``accounts`` exceeds ``max_unmatched_share``
    is an error (ids that do not join at all); below it those rows are excluded and counted.

    ``reads_after`` (naive UTC; None: the run reads every row) limits the exact-duplicate count
    to the rows dated after it and, with ``earlier_checks`` (the rows of ``source_checks``),
    skips the event-table rows an earlier run checked (see the module docstring); counts and
    exclusions are then those of the rows checked.
    """
    started = time.perf_counter()
    ref = _naive_utc(reference_time)
    after = None if reads_after is None else _naive_utc(reads_after)
    earlier_checks = earlier_checks or {}
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
    examples: dict[str, dict[str, list[str]]] = {}
    notes: list[str] = []
    checks: dict[str, SourceCheck] = {}
    for name, cols in physical.items():
        loc = locations[name]
        problems += _structural_problems(loc, cols)
        notes += _absent_nullable_notes(loc, cols)
        fingerprint = _rules_fingerprint(wh, loc, cols, relations)
        scope, scope_notes = _scope(wh, loc, cols, after, earlier_checks.get(name), fingerprint)
        notes += scope_notes
        checked = _check_rows(wh, loc, cols, relations, ref, max_unmatched_share, scope)
        rows[name] = checked.n_rows
        problems += checked.problems
        notes += checked.notes
        vouched = scope.earlier is not None and scope.earlier.rows_through > 0
        if checked.n_rows == 0 and loc.spec.required and not vouched:
            problems.append(_empty_table(loc))
        problems += _duplicate_keys(wh, loc, cols, scope)
        problems += _overlapping_periods(wh, loc, cols)
        if checked.excluded:
            exclusions[name] = checked.excluded
            examples[name] = checked.examples
        if checked.rows_through is not None:
            checks[name] = _record(name, scope, checked.rows_through, fingerprint, ref)
    if problems:
        raise ContractError(problems)
    return SourceReport(
        available=list(physical),
        skipped=skipped,
        exclusions=exclusions,
        rows=rows,
        notes=notes,
        seconds=time.perf_counter() - started,
        examples=examples,
        reference_time=ref,
        checks=checks,
    )


def prepare_sources(
    wh: Warehouse,
    config: WarehouseConfig,
    *,
    reference_time: dt.datetime,
    require_contract: bool = True,
    reads_after: dt.datetime | None = None,
) -> SourceReport:
    """Locate the contract tables, validate them, and (re)create the ``stg_<table>`` views.

    The views drop every excluded row, those dated after ``reference_time`` included. Absent
    optional tables get an empty staging view with the contract columns, so optional joins
    still run; ``SourceReport.skipped`` says which feature groups to skip.

    ``require_contract`` (the contract rule of ``features.active``) excludes accounts without
    any contract row. Under the activity rules it must be False: a contract signed after an
    observation date would otherwise decide whether a usage-only account exists at that date.

    ``reads_after`` (:func:`feature_reads_after` of the run's as_of dates; None: every row)
    checks and deduplicates only what the run reads, incrementally against ``source_checks`` in
    ``config.output_schema``, which a run that passes updates in one transaction (module
    docstring). The staging views then remove exact duplicates only among the rows dated after
    it: the rows every feature window of those dates reads, with the values a full
    deduplication gives them.
    """
    locations = locate_sources(config)
    if not require_contract and "accounts" in locations:
        accounts = locations["accounts"]
        locations["accounts"] = replace(accounts, spec=replace(accounts.spec, needs_contract=False))
    after = None if reads_after is None else _naive_utc(reads_after)
    report = validate_sources(
        wh,
        locations,
        reference_time=reference_time,
        max_unmatched_share=config.max_unmatched_share,
        reads_after=after,
        earlier_checks=read_source_checks(wh, config.output_schema) if after else None,
    )
    if report.checks:
        record_source_checks(wh, config.output_schema, report.checks.values())
    ref = _naive_utc(reference_time)
    for name in report.available:
        dupes = report.exclusions.get(name, {}).get("exact_duplicate", 0)
        # DISTINCT only when needed: on 50M events it costs more than the whole scan
        create_staging_view(
            wh,
            locations[name],
            sources=locations,
            deduplicate=dupes > 0,
            reference_time=ref,
            deduplicate_after=after,
        )
    for name in report.skipped:
        create_empty_staging_view(wh, CONTRACT[name])
    return report


# --- incremental checks: source_checks ------------------------------------------------------


def read_source_checks(wh: Warehouse, schema: str) -> dict[str, SourceCheck]:
    """The rows of ``<schema>.source_checks`` by source ({} before the first recorded run)."""
    if not wh.table_exists(SOURCE_CHECKS_TABLE, schema):
        return {}
    frame = wh.query(
        "SELECT source, checked_through, rows_through, rules, reference_time "
        f"FROM {qualified(SOURCE_CHECKS_TABLE, schema)}"
    )
    return {
        str(r.source): SourceCheck(
            source=str(r.source),
            checked_through=_datetime(r.checked_through),
            rows_through=_int(r.rows_through),
            rules=str(r.rules),
            reference_time=_datetime(r.reference_time),
        )
        for r in frame.itertuples(index=False)
    }


def record_source_checks(wh: Warehouse, schema: str, checks: Iterable[SourceCheck]) -> None:
    """Replace the rows of these sources in ``<schema>.source_checks``, in one transaction
    (keyed by source: running twice leaves the same rows)."""
    if wh.dialect == "spark":  # no DELETE on Parquet tables: features/spark.py swaps a copy
        import pandas as pd

        rows = pd.DataFrame([vars(c) for c in checks], columns=list(SourceCheck.__annotations__))
        wh.replace_keyed_rows(SOURCE_CHECKS_TABLE, schema, rows, key="source")  # type: ignore[attr-defined]
        return
    table = qualified(SOURCE_CHECKS_TABLE, schema)
    with wh.transaction():
        wh.create_schema(schema)
        wh.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (source VARCHAR PRIMARY KEY, "
            "checked_through TIMESTAMP NOT NULL, rows_through BIGINT NOT NULL, "
            "rules VARCHAR NOT NULL, reference_time TIMESTAMP NOT NULL)"
        )
        for check in checks:
            wh.execute(f"DELETE FROM {table} WHERE source = ?", [check.source])
            wh.execute(
                f"INSERT INTO {table} (source, checked_through, rows_through, rules, "
                "reference_time) VALUES (?, ?, ?, ?, ?)",
                [
                    check.source,
                    check.checked_through,
                    check.rows_through,
                    check.rules,
                    check.reference_time,
                ],
            )


def _incremental(spec: TableSpec) -> bool:
    """Event tables, whose rows are dated and whose key (if any) includes that date, so rows
    added later can only repeat the key of rows of the same date: checking the rows dated after
    a time finds every problem they bring."""
    if not spec.event_time_columns:
        return False
    return not spec.key or spec.event_time_columns[0] in spec.key


def _rules_fingerprint(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str], relations: Mapping[str, str]
) -> str:
    """A digest of where a table is, its columns and types, and the SQL of its rules: a record
    made under others vouches for nothing."""
    rules = [sql for _, sql in _runnable_rules(loc.spec, present_columns(loc, physical), relations)]
    text = json.dumps(
        [
            CHECKS_VERSION,
            loc.label,
            sorted(physical.items()),
            typed_select(wh, loc, physical),
            rules,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _scope(
    wh: Warehouse,
    loc: SourceLocation,
    physical: Mapping[str, str],
    after: dt.datetime | None,
    earlier: SourceCheck | None,
    fingerprint: str,
) -> tuple[_Scope, list[str]]:
    """The rows of one table this run checks, and notes saying why."""
    if after is None or row_time(wh, loc, physical) is None:
        return _Scope(), []
    if not _incremental(loc.spec):
        return _Scope(dedup_after=after), []
    name = loc.spec.name
    if earlier is None:
        return _Scope(dedup_after=after, record_through=after), []
    through = f"{earlier.checked_through:%Y-%m-%d %H:%M}"
    if earlier.rules != fingerprint:
        note = (
            f"{name}: the rows up to {through} were checked with other columns or rules: "
            "every row checked again"
        )
        return _Scope(dedup_after=after, record_through=after), [note]
    now = _rows_through(wh, loc, physical, earlier.checked_through)
    if now != earlier.rows_through:
        note = (
            f"{name}: {now:,} rows dated up to {through}, where an earlier run checked "
            f"{earlier.rows_through:,} (rows loaded late or removed): every row checked again"
        )
        return _Scope(dedup_after=after, record_through=after), [note]
    note = (
        f"{name}: {earlier.rows_through:,} rows dated up to {through} passed an earlier run "
        "and are unchanged in number: not checked again"
    )
    scope = _Scope(
        checked_after=min(after, earlier.checked_through),
        dedup_after=after,
        record_through=after,
        earlier=earlier,
    )
    return scope, [note]


def _rows_through(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str], moment: dt.datetime
) -> int:
    """Rows dated up to ``moment`` (a read of the time column only)."""
    time_sql = row_time(wh, loc, physical)
    src = typed_select(wh, loc, physical, where=f"({time_sql}) <= {timestamp_literal(moment)}")
    return _int(wh.scalar(f"WITH src AS (\n  {src}\n)\nSELECT count(*) FROM src"))


def _scope_filter(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str], scope: _Scope
) -> str | None:
    """SQL over the stored columns for the rows ``scope`` checks; None: every row."""
    if scope.checked_after is None:
        return None
    after = row_time_after(wh, loc, physical, scope.checked_after)
    time_sql = row_time(wh, loc, physical)
    return f"({after} OR ({time_sql}) IS NULL)"


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


@dataclass
class _Checked:
    """What the row scan of one table found."""

    n_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rows_through: int | None = None  # rows checked dated up to the scope's record_through


def _check_rows(
    wh: Warehouse,
    loc: SourceLocation,
    physical: Mapping[str, str],
    relations: Mapping[str, str],
    ref: dt.datetime,
    max_unmatched_share: float,
    scope: _Scope | None = None,
) -> _Checked:
    """Count every row rule of one table in one query over the rows ``scope`` checks (default:
    every row); fetch examples of the failing ones."""
    scope = _Scope() if scope is None else scope
    where = _scope_filter(wh, loc, physical, scope)
    src = typed_select(wh, loc, physical, with_raw=True, where=where)
    assert src is not None  # physical columns were found, so the source exists
    rules = _runnable_rules(loc.spec, present_columns(loc, physical), relations)
    # each rule becomes a flag computed once per row, then summed: one scan for all rules
    flags, aggregates, params = [], ["count(*) AS n_rows"], []
    for i, (rule, sql) in enumerate(rules):
        flags.append(f"COALESCE(({sql}), FALSE) AS f{i}")
        aggregates.append(f"sum(CASE WHEN f{i} THEN 1 ELSE 0 END) AS k{i}")
        # count in the rule as written: a resolved relation may hold "?" inside regex literals
        params += [ref] * rule.invalid.count("?")
    facts = _fact_aggregates(loc, physical)
    aggregates += [f"sum(CASE WHEN {sql} THEN 1 ELSE 0 END) AS {alias}" for alias, sql in facts]
    kept = _kept(rules)
    time_col = quote_ident(loc.spec.event_time_columns[0]) if loc.spec.event_time_columns else ""
    if loc.spec.deduplicate and scope.dedup_after is None:
        aggregates.append(f"sum(CASE WHEN {kept} THEN 1 ELSE 0 END) AS kept_rows")
    if scope.record_through is not None:
        through = timestamp_literal(scope.record_through)
        aggregates.append(f"sum(CASE WHEN {time_col} <= {through} THEN 1 ELSE 0 END) AS through")
    flagged = ", ".join(["*", *flags])
    with_flagged = f"WITH src AS (\n  {src}\n),\nflagged AS (SELECT {flagged} FROM src)\n"
    sql = with_flagged + "SELECT\n  " + ",\n  ".join(aggregates) + "\nFROM flagged"
    counts = wh.query(sql, params).iloc[0]
    out = _Checked(n_rows=_int(counts["n_rows"]))
    if scope.record_through is not None:
        out.rows_through = _int(counts["through"])
    out.notes = _fact_notes(loc, {alias: _int(counts[alias]) for alias, _ in facts})
    for i, (rule, rule_sql) in enumerate(rules):
        n = _int(counts[f"k{i}"])
        if n == 0:
            continue
        if rule.action == "exclude" and not _too_many_unmatched(
            rule, n, out.n_rows, max_unmatched_share
        ):
            out.excluded[rule.check] = out.excluded.get(rule.check, 0) + n
            found = _examples(wh, loc, src, rule_sql, rule.invalid.count("?"), ref, columns=())
            out.examples[rule.check] = [
                _example_id(loc.spec, row) for row in found[:MAX_EXCLUSION_EXAMPLES]
            ]
            continue
        examples = _examples(
            wh, loc, src, rule_sql, rule.invalid.count("?"), ref, columns=rule.columns
        )
        if rule.action == "exclude":
            out.problems.append(
                _unmatched_problem(loc, n, out.n_rows, examples, max_unmatched_share)
            )
        else:
            out.problems.append(_row_problem(loc, rule, n, examples, ref))
    if loc.spec.deduplicate and scope.dedup_after is not None:
        window = row_time_after(wh, loc, physical, scope.dedup_after)
        dupes, dupe_ids = _window_copies(wh, loc, physical, rules, kept, ref, window)
        if dupes:
            out.excluded["exact_duplicate"] = dupes
            out.examples["exact_duplicate"] = dupe_ids
    elif loc.spec.deduplicate:
        dupes = _exact_duplicates(wh, loc, physical, rules, kept, ref, _int(counts["kept_rows"]))
        if dupes:
            out.excluded["exact_duplicate"] = dupes
            out.examples["exact_duplicate"] = _duplicate_examples(wh, loc, physical)
    return out


def _window_copies(
    wh: Warehouse,
    loc: SourceLocation,
    physical: Mapping[str, str],
    rules: list[tuple[RowRule, str]],
    kept: str,
    ref: dt.datetime,
    window: str | None,
) -> tuple[int, list[str]]:
    """The exact duplicates among the rows ``window`` keeps: one grouping of those rows into
    the session's :func:`~features.sources.copies_table` (the rows held more than once, which
    the staging view then keeps once), then the contract's exclusions over those few rows.
    Returns the extra copies the view drops, and up to three of them."""
    table = copies_table(loc.spec.name)
    _replace_temp_table(wh, table, copies_select(wh, loc, physical, window))
    src = typed_select(
        wh,
        loc,
        physical,
        with_raw=True,
        relation=quote_ident(table),
        passthrough=(COPIES_COLUMN,),
    )
    excluding = [(i, r, q) for i, (r, q) in enumerate(rules) if r.action == "exclude"]
    flagged = ", ".join(["*", *(f"COALESCE(({q}), FALSE) AS f{i}" for i, _, q in excluding)])
    params = [ref] * sum(r.invalid.count("?") for _, r, _ in excluding)
    head = f"WITH src AS (\n  {src}\n),\nflagged AS (SELECT {flagged} FROM src)\n"
    copies = quote_ident(COPIES_COLUMN)
    n = _int(
        wh.scalar(
            head + f"SELECT sum(CASE WHEN {kept} THEN {copies} ELSE 0 END) FROM flagged", params
        )
    )
    if not n:
        return 0, []
    ident = ", ".join(quote_ident(c) for c in loc.spec.example_columns)
    found = wh.query(
        head + f"SELECT {ident} FROM flagged WHERE {kept} ORDER BY {ident} "
        f"LIMIT {MAX_EXCLUSION_EXAMPLES}",
        params,
    ).to_dict("records")
    return n, [_example_id(loc.spec, {k: _plain(v) for k, v in r.items()}) for r in found]


def _record(
    name: str, scope: _Scope, through: int, fingerprint: str, ref: dt.datetime
) -> SourceCheck:
    """The source_checks row after this run: the rows up to ``record_through`` all checked (by
    an earlier run up to its time, ``through`` of them by this one after it); an earlier record
    that reaches further (a run for an earlier date) stays as it is."""
    assert scope.record_through is not None
    earlier = scope.earlier
    if earlier is not None and earlier.checked_through >= scope.record_through:
        return earlier
    before = earlier.rows_through if earlier is not None else 0
    return SourceCheck(name, scope.record_through, before + through, fingerprint, ref)


def _exact_duplicates(
    wh: Warehouse,
    loc: SourceLocation,
    physical: Mapping[str, str],
    rules: list[tuple[RowRule, str]],
    kept: str,
    ref: dt.datetime,
    kept_rows: int,
) -> int:
    """Rows the DISTINCT of the staging view drops: the same rules over the distinct rows, as
    the view sees them; a separate query measured faster than count(DISTINCT ROW(...))."""
    distinct_src = typed_select(wh, loc, physical, with_raw=True, distinct=True)
    excluding = [(i, r, q) for i, (r, q) in enumerate(rules) if r.action == "exclude"]
    flagged = ", ".join(["*", *(f"COALESCE(({q}), FALSE) AS f{i}" for i, _, q in excluding)])
    distinct = wh.query(
        f"WITH src AS (\n  {distinct_src}\n),\nflagged AS (SELECT {flagged} FROM src)\n"
        f"SELECT sum(CASE WHEN {kept} THEN 1 ELSE 0 END) AS n FROM flagged",
        [ref] * sum(r.invalid.count("?") for _, r, _ in excluding),
    )
    return kept_rows - _int(distinct["n"].iloc[0])


def _duplicate_examples(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str]
) -> list[str]:
    """Up to three rows stored more than once, run only when there are some. Looked for first
    among the rows of the first 50 accounts (a filtered pass instead of grouping millions of
    events on every column), then, if none are there, in the whole table."""
    src = typed_select(wh, loc, physical)
    cols = ", ".join(quote_ident(c.name) for c in loc.spec.columns)
    ident = ", ".join(quote_ident(c) for c in loc.spec.example_columns)
    found: list[dict[str, Any]] = []
    for subset in (
        'WHERE "account_id" IN (SELECT DISTINCT "account_id" FROM src ORDER BY 1 LIMIT 50)',
        "",
    ):
        sql = (
            f"WITH src AS (\n  {src}\n)\nSELECT {ident} FROM src {subset} GROUP BY {cols} "
            f"HAVING count(*) > 1 ORDER BY {ident} LIMIT {MAX_EXCLUSION_EXAMPLES}"
        )
        found = wh.query(sql).to_dict("records")
        if found:
            break
    return [_example_id(loc.spec, {k: _plain(v) for k, v in r.items()}) for r in found]


def _replace_temp_table(wh: Warehouse, name: str, select_sql: str) -> None:
    """Create or replace the session-local table ``name``. PostgreSQL tracks the staging view
    that reads it (recreated by :func:`prepare_sources` right after); ``pg_temp.`` never drops a
    permanent table of that name."""
    table = quote_ident(name)
    if wh.dialect == "postgres":
        wh.execute(f"DROP TABLE IF EXISTS pg_temp.{table} CASCADE")
        wh.execute(f"CREATE TEMP TABLE {table} AS\n{select_sql}")
    else:
        wh.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS\n{select_sql}")


def _too_many_unmatched(rule: RowRule, n: int, n_rows: int, max_share: float) -> bool:
    """Ids that do not join beyond the threshold are an error: a wrong id column or mapping
    would otherwise silently drop most of a table."""
    return rule.check == "unknown_account" and n_rows > 0 and n / n_rows > max_share


def _unmatched_problem(
    loc: SourceLocation, n: int, n_rows: int, examples: list[dict[str, Any]], max_share: float
) -> Problem:
    physical = loc.physical("account_id")
    return Problem(
        table=loc.spec.name,
        column="account_id",
        check="unknown_account",
        n_rows=n,
        examples=examples,
        expected=(
            f"at most {max_share:.0%} of rows with an account_id not in accounts, "
            f"found {n / n_rows:.1%} ({n:,} of {n_rows:,})"
        ),
        hint=(
            f"check that {physical} holds the same ids as accounts.account_id (mapping: "
            f"warehouse.tables.{loc.spec.name}.columns); to accept and exclude this share, "
            "raise warehouse.max_unmatched_share"
        ),
        physical=physical if "account_id" in loc.columns else None,
    )


def _fact_aggregates(loc: SourceLocation, physical: Mapping[str, str]) -> list[tuple[str, str]]:
    """Counts that are reported, not checked: values converted to UTC, open-ended rows."""
    present = present_columns(loc, physical)
    facts = []
    for col in loc.spec.columns:
        if col.name in present and type_accepted(col.type, present[col.name]):
            converted = converted_to_utc(col, present[col.name])
            if converted is not None:
                facts.append((f"utc_{col.name}", f"COALESCE(({converted}), FALSE)"))
    end = loc.spec.open_ended
    if end is not None and end in present:
        facts.append(("open_ended", f"{quote_ident(end + '__raw')} IS NULL"))
    return facts


def _fact_notes(loc: SourceLocation, counts: Mapping[str, int]) -> list[str]:
    name, notes = loc.spec.name, []
    for alias, n in counts.items():
        if n and alias.startswith("utc_"):
            column = alias.removeprefix("utc_")
            notes.append(f"{name}.{column}: converted {n:,} values from UTC offsets to UTC")
        elif n and alias == "open_ended":
            end = loc.spec.open_ended
            notes.append(f"{name}: {n:,} open-ended contracts ({end} NULL: active until ended)")
    return notes


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
    wh: Warehouse,
    loc: SourceLocation,
    src: str,
    rule_sql: str,
    n_params: int,
    ref: dt.datetime,
    *,
    columns: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Up to five matching rows: the identifying columns, then the raw values of ``columns``."""
    select = {c: quote_ident(c) for c in loc.spec.example_columns}
    select.update({c: quote_ident(f"{c}__raw") for c in columns})
    items = ", ".join(f"{expr} AS {quote_ident(name)}" for name, expr in select.items())
    order = ", ".join(quote_ident(c) for c in loc.spec.example_columns)
    sql = (
        f"WITH src AS (\n  {src}\n)\nSELECT {items} FROM src "
        f"WHERE COALESCE(({rule_sql}), FALSE) ORDER BY {order} LIMIT {MAX_EXAMPLES}"
    )
    frame = wh.query(sql, [ref] * n_params)
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _example_id(spec: TableSpec, row: Mapping[str, Any]) -> str:
    """A row named in a run-log line: its key, else its account and time."""
    values = [row.get(c) for c in spec.example_columns]
    if spec.key:
        return "/".join(str(v) for v in values)
    return f"{values[0]} at {values[1]}" if len(values) > 1 else str(values[0])


def _row_problem(
    loc: SourceLocation, rule: RowRule, n: int, examples: list[dict[str, Any]], ref: dt.datetime
) -> Problem:
    column = rule.columns[-1]
    physical = loc.physical(column)
    template = _COLUMN_HINTS.get((loc.spec.name, column, rule.check), _HINTS.get(rule.check, ""))
    hint = template.format(
        physical=physical, type=loc.spec.column(column).type, expected=rule.expected
    )
    return Problem(
        table=loc.spec.name,
        column=column,
        check=rule.check,
        n_rows=n,
        examples=examples,
        hint=hint,
        expected=rule.expected,
        physical=physical if column in loc.columns else None,
    )


def _empty_table(loc: SourceLocation) -> Problem:
    name = loc.spec.name
    return Problem(
        name,
        None,
        "empty_table",
        0,
        expected="at least one row",
        hint=(
            f"{loc.label} has no rows: load it, or map warehouse.tables.{name} to the table "
            "that holds them"
        ),
    )


# --- periods --------------------------------------------------------------------------------


def _overlapping_periods(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str]
) -> list[Problem]:
    """Contracts of one account and product in force on the same day (their ARR would be
    counted twice). NULL ``end_date`` runs until ended; rows without a product are add-ons
    and may overlap anything."""
    spec, key = loc.spec, loc.spec.overlap_key
    present = present_columns(loc, physical)
    needed = (*key, *spec.key, "start_date", "end_date")
    if not key or not all(
        c in present and type_accepted(spec.column(c).type, present[c]) for c in needed
    ):
        return []
    src = typed_select(wh, loc, physical)
    (ident,) = spec.key
    on = " AND ".join(f"a.{quote_ident(k)} = b.{quote_ident(k)}" for k in key)
    not_null = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in (*key, ident, "start_date"))
    keys = ", ".join(f"a.{quote_ident(k)}" for k in key)
    sql = (
        f"WITH src AS (\n  {src}\n),\n"
        f"periods AS (SELECT *, COALESCE(end_date, DATE '9999-12-31') AS ends FROM src "
        f"WHERE {not_null} AND (end_date IS NULL OR end_date > start_date)),\n"
        f"pairs AS (SELECT {keys}, a.{ident} AS {ident}, b.{ident} AS overlaps_{ident}, "
        "a.start_date, a.end_date, b.start_date AS other_start_date, b.end_date AS other_end_date "
        f"FROM periods AS a JOIN periods AS b ON {on} AND a.{ident} < b.{ident} "
        "AND a.start_date < b.ends AND b.start_date < a.ends)\n"
        f"SELECT *, count(*) OVER () AS n_pairs FROM pairs ORDER BY {keys.replace('a.', '')}, "
        f"{ident} LIMIT {MAX_EXAMPLES}"
    )
    frame = wh.query(sql)
    if frame.empty:
        return []
    n_pairs = _int(frame["n_pairs"].iloc[0])
    examples = [
        {k: _plain(v) for k, v in row.items()}
        for row in frame.drop(columns=["n_pairs"]).to_dict("records")
    ]
    return [
        Problem(
            spec.name,
            ", ".join(key),
            "overlapping_contracts",
            n_pairs,
            examples=examples,
            expected=(
                f"no two contracts of one ({', '.join(key)}) in force on the same day; "
                f"{n_pairs:,} pair{'s' if n_pairs != 1 else ''} overlap and would count ARR twice"
            ),
            hint=(
                "a renewal or upgrade starts on or after the end_date of the contract it "
                "replaces (end_date is exclusive): end the old one there, or give an add-on "
                "its own product"
            ),
        )
    ]


# --- keys -----------------------------------------------------------------------------------


def _duplicate_keys(
    wh: Warehouse, loc: SourceLocation, physical: Mapping[str, str], scope: _Scope | None = None
) -> list[Problem]:
    """Keys that occur more than once among the rows ``scope`` checks (a key that holds the
    row's date repeats only among rows of that date): one grouped query returns counts and
    examples."""
    spec = loc.spec
    present = present_columns(loc, physical)
    if not spec.key or not all(
        k in present and type_accepted(spec.column(k).type, present[k]) for k in spec.key
    ):
        return []
    where = None if scope is None else _scope_filter(wh, loc, physical, scope)
    src = typed_select(wh, loc, physical, where=where)
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


def _datetime(value: Any) -> dt.datetime:
    """A timestamp read back from the warehouse as a naive ``datetime``."""
    import pandas as pd

    return _naive_utc(pd.Timestamp(value).to_pydatetime())


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
