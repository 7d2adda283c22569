"""Row rules: one list of per-row checks derived from the contract, which validation counts
(errors and exclusions per table) and staging applies (excluded rows never reach a feature).

Deriving both from one list is what keeps "what validation reports" and "what the features
see" the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from features.contract import SQL_TYPES, Action, ColumnSpec, TableSpec
from features.physical_types import needs_try_cast, type_accepted, type_family
from features.warehouse import quote_ident


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
