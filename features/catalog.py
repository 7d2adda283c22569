"""The feature catalog: every feature ``build_features`` returns, with its meaning, unit and window.

The catalog is the source of ``docs/features.md`` (``python -m features.catalog >
docs/features.md``; a test fails when the file is stale) and of the units and windows serving
uses to write reasons. Each group is computed by one SQL file from one contract table; when that
table is absent, the group's columns are left out of the frame (not filled with NULL).

Time semantics (all features): ``as_of`` is a midnight, naive UTC; an n-day window is
``t > as_of - n days AND t <= as_of``; "days since" is ``floor((as_of - t) / 1 day)`` over the
latest ``t <= as_of`` (NULL when there is none).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

UNITS = ("count", "ratio", "days", "currency", "score", "flag", "category")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: what it measures (``description``), in which ``unit``, over which
    trailing window (``window_days``; None = point-in-time state or all history), from which
    contract table (``source``)."""

    name: str
    group: str
    description: str
    unit: str
    window_days: int | None
    source: str
    # why the feature moves week after week by construction (None: it does not): drift monitoring
    # measures it but never alerts on it (models.monitoring.feature_drift)
    drifts_by_construction: str | None = None


# group -> the contract table its SQL file reads (besides the contracts that define activity)
GROUP_SOURCES: dict[str, str] = {
    "commercial": "contracts",
    "usage": "usage_events",
    "support": "support_tickets",
    "engagement": "engagement",
    "sentiment": "surveys",
    "relationship": "contact_changes",
    "outcomes": "verified_outcomes",
    "health": "health_scores",
}

# columns every frame carries that describe the account (not model features by themselves)
_ACCOUNT = "accounts"

_SPECS: tuple[tuple[str, str, str, int | None, str], ...] = (
    # name, group, unit, window, description
    ("arr", "commercial", "currency", None, "ARR at as_of: sum of arr of contracts in force"),
    ("segment", "commercial", "category", None, "customer segment (accounts.segment)"),
    ("industry", "commercial", "category", None, "customer industry (accounts.industry)"),
    ("csm_owner", "commercial", "category", None, "CSM who owns the account (for risk lists)"),
    ("employees", "commercial", "count", None, "customer headcount (accounts.employees)"),
    ("arr_prev_365d", "commercial", "currency", 365, "ARR 365 days before as_of"),
    (
        "arr_change_365d",
        "commercial",
        "ratio",
        365,
        "ARR at as_of / ARR 365 days before - 1; NULL when it was 0 then",
    ),
    ("tenure_days", "commercial", "days", None, "days since the first contract started"),
    (
        "days_to_next_renewal",
        "commercial",
        "days",
        None,
        "days from as_of to the earliest end_date of the contracts in force",
    ),
    (
        "contract_term_days",
        "commercial",
        "days",
        None,
        "longest term (end_date - start_date) among the contracts in force",
    ),
    ("seats", "commercial", "count", None, "licensed seats of the contracts in force"),
    ("arr_per_seat", "commercial", "currency", None, "arr / seats; NULL without seats"),
    (
        "arr_per_employee",
        "commercial",
        "currency",
        None,
        "arr / employees (penetration); NULL without headcount",
    ),
    ("products_active", "commercial", "count", None, "distinct products in force"),
    (
        "past_contractions",
        "commercial",
        "count",
        None,
        "contract boundaries up to as_of where ARR fell but stayed above 0",
    ),
    ("events_7d", "usage", "count", 7, "usage events in the last 7 days"),
    ("events_28d", "usage", "count", 28, "usage events in the last 28 days"),
    ("events_90d", "usage", "count", 90, "usage events in the last 90 days"),
    ("events_prev_28d", "usage", "count", 28, "usage events in the 28 days before the last 28"),
    (
        "events_change_28d",
        "usage",
        "ratio",
        28,
        "events_28d / events_prev_28d - 1; NULL when the prior window had none",
    ),
    ("active_users_7d", "usage", "count", 7, "distinct users with an event in the last 7 days"),
    ("active_users_28d", "usage", "count", 28, "distinct users with an event in the last 28 days"),
    ("active_users_90d", "usage", "count", 90, "distinct users with an event in the last 90 days"),
    (
        "active_users_prev_28d",
        "usage",
        "count",
        28,
        "distinct users active in the 28 days before the last 28",
    ),
    (
        "active_users_change_28d",
        "usage",
        "ratio",
        28,
        "active_users_28d / active_users_prev_28d - 1; NULL when the prior window had none",
    ),
    (
        "stickiness_28d",
        "usage",
        "ratio",
        28,
        "DAU/MAU: mean daily active users over 28 days / active_users_28d (days end at midnight)",
    ),
    (
        "event_types_28d",
        "usage",
        "count",
        28,
        "distinct event types (features) used in the last 28 days: breadth",
    ),
    (
        "events_per_active_user_28d",
        "usage",
        "ratio",
        28,
        "events_28d / active_users_28d: intensity per user; NULL without active users",
    ),
    (
        "seat_utilization",
        "usage",
        "ratio",
        28,
        "active_users_28d / seats in force; NULL without seats",
    ),
    (
        "days_since_last_activity",
        "usage",
        "days",
        None,
        "days since the latest usage event (0 = within the 24 h before as_of)",
    ),
    ("quantity_7d", "usage", "count", 7, "summed quantity of the usage events of the last 7 days"),
    (
        "quantity_28d",
        "usage",
        "count",
        28,
        "summed quantity of the usage events of the last 28 days",
    ),
    (
        "quantity_90d",
        "usage",
        "count",
        90,
        "summed quantity of the usage events of the last 90 days",
    ),
    (
        "quantity_mean_7d",
        "usage",
        "count",
        7,
        "quantity_7d / events_7d: mean quantity per event; NULL without events",
    ),
    (
        "quantity_mean_28d",
        "usage",
        "count",
        28,
        "quantity_28d / events_28d: mean quantity per event; NULL without events",
    ),
    (
        "quantity_mean_90d",
        "usage",
        "count",
        90,
        "quantity_90d / events_90d: mean quantity per event; NULL without events",
    ),
    ("quantity_max_7d", "usage", "count", 7, "largest quantity of one event in the last 7 days"),
    ("quantity_max_28d", "usage", "count", 28, "largest quantity of one event in the last 28 days"),
    ("quantity_max_90d", "usage", "count", 90, "largest quantity of one event in the last 90 days"),
    (
        "days_since_first_activity",
        "usage",
        "days",
        None,
        "days since the earliest usage event (activity tenure; 0 = within the 24 h before as_of)",
    ),
    (
        "active_days_28d",
        "usage",
        "count",
        28,
        "days with at least one usage event in the last 28 days (frequency; days end at midnight)",
    ),
    (
        "active_days_90d",
        "usage",
        "count",
        90,
        "days with at least one usage event in the last 90 days (frequency; days end at midnight)",
    ),
    (
        "events_per_day_28d",
        "usage",
        "ratio",
        28,
        "events_28d / min(28, days_since_first_activity + 1): a young account's rate over the "
        "days it has been active; NULL before its first event",
    ),
    (
        "events_per_day_90d",
        "usage",
        "ratio",
        90,
        "events_90d / min(90, days_since_first_activity + 1); NULL before the first event",
    ),
    (
        "quantity_per_day_90d",
        "usage",
        "ratio",
        90,
        "quantity_90d / min(90, days_since_first_activity + 1); NULL before the first event",
    ),
    ("tickets_30d", "support", "count", 30, "support tickets opened in the last 30 days"),
    ("tickets_90d", "support", "count", 90, "support tickets opened in the last 90 days"),
    (
        "p1_tickets_90d",
        "support",
        "count",
        90,
        "urgent tickets (priority p1 or urgent) opened in the last 90 days",
    ),
    (
        "open_tickets",
        "support",
        "count",
        None,
        "tickets opened at or before as_of and not closed by then (backlog)",
    ),
    (
        "median_hours_to_close_90d",
        "support",
        "score",
        90,
        "median hours from opened_at to closed_at of tickets closed in the last 90 days",
    ),
    (
        "escalated_tickets_90d",
        "support",
        "count",
        90,
        "tickets opened in the last 90 days flagged escalated (the flag has no timestamp)",
    ),
    (
        "ticket_csat_90d",
        "support",
        "score",
        90,
        "mean ticket CSAT (1-5) of tickets closed in the last 90 days",
    ),
    (
        "days_since_last_csm_touch",
        "engagement",
        "days",
        None,
        "days since the latest CSM touchpoint of any kind",
    ),
    ("csm_touches_90d", "engagement", "count", 90, "CSM touchpoints in the last 90 days"),
    (
        "days_since_last_ebr_qbr",
        "engagement",
        "days",
        None,
        "days since the latest business review (kind ebr or qbr)",
    ),
    ("nps_latest", "sentiment", "score", None, "latest NPS answer (0-10) at or before as_of"),
    (
        "nps_change",
        "sentiment",
        "score",
        None,
        "latest NPS answer minus the answer before it; NULL with fewer than two",
    ),
    (
        "days_since_last_nps",
        "sentiment",
        "days",
        None,
        "days since the latest NPS answer",
    ),
    (
        "champion_left_90d",
        "relationship",
        "flag",
        90,
        "1 if a champion left in the last 90 days, else 0",
    ),
    (
        "champion_left_180d",
        "relationship",
        "flag",
        180,
        "1 if a champion left in the last 180 days, else 0",
    ),
    (
        "exec_sponsor_left_90d",
        "relationship",
        "flag",
        90,
        "1 if an executive sponsor left in the last 90 days, else 0",
    ),
    (
        "exec_sponsor_left_180d",
        "relationship",
        "flag",
        180,
        "1 if an executive sponsor left in the last 180 days, else 0",
    ),
    (
        "days_since_champion_left",
        "relationship",
        "days",
        None,
        "days since the latest champion departure",
    ),
    (
        "verified_outcome_on_record",
        "outcomes",
        "flag",
        None,
        "1 if any business outcome was verified at or before as_of, else 0",
    ),
    (
        "days_since_verified_outcome",
        "outcomes",
        "days",
        None,
        "days since the latest verified outcome",
    ),
    ("health_score", "health", "score", None, "latest exported health score at or before as_of"),
    ("health_color", "health", "category", None, "color (green/yellow/red) of that export"),
    (
        "health_score_change_30d",
        "health",
        "score",
        30,
        "health_score minus the latest score at or before as_of - 30 days",
    ),
    (
        "health_color_prev_30d",
        "health",
        "category",
        30,
        "color of the latest export at or before as_of - 30 days",
    ),
)

# features whose distribution moves by construction, not because a source or the customers
# changed: each week the book ages, and calendar-bound activities go out in waves
DRIFTS_BY_CONSTRUCTION: dict[str, str] = {
    "tenure_days": "grows by a week every week as the book ages",
    "days_since_first_activity": "activity tenure: grows with the book's age like tenure_days",
    "days_since_last_nps": "calendar-bound: NPS surveys go out in waves, so it cycles with them",
    "days_since_last_ebr_qbr": "calendar-bound: business reviews follow the quarter",
}

# accounts attributes ride along with the commercial group; their source is accounts
_FROM_ACCOUNTS = frozenset({"segment", "industry", "csm_owner", "employees"})

FEATURES: dict[str, FeatureSpec] = {
    name: FeatureSpec(
        name=name,
        group=group,
        description=description,
        unit=unit,
        window_days=window,
        source=_ACCOUNT if name in _FROM_ACCOUNTS else GROUP_SOURCES[group],
        drifts_by_construction=DRIFTS_BY_CONSTRUCTION.get(name),
    )
    for name, group, unit, window, description in _SPECS
}

# what build_features always returns (besides account_id, as_of and name)
ALWAYS = ("arr", "csm_owner", "segment", "industry", "employees")

# per-event-type usage columns: <measure>_<n>d__<event type suffix>, for the chosen event types
TYPE_MEASURES = (
    ("events", "usage events of type {type} in the last {days} days"),
    ("quantity", "summed quantity of the events of type {type} in the last {days} days"),
)
TYPE_WINDOWS = (7, 28, 90)
SUFFIX_MAX = 32
_SAFE = re.compile(r"[a-z][a-z0-9_]*")


def event_type_suffix(event_type: str) -> str:
    """The column-name suffix of an event type: the type itself when it already is a safe name
    (lowercase letters, digits and ``_``, starting with a letter, at most 32 characters), else
    its lowercase letters and digits with ``_`` between runs, cut to 25 characters, plus ``_``
    and 6 hex digits of its SHA-1, so that distinct types never share a suffix and the suffix
    is a function of the type alone (``"Win Opportunity"`` -> ``win_opportunity_<hash>``)."""
    if len(event_type) <= SUFFIX_MAX and _SAFE.fullmatch(event_type):
        return event_type
    slug = re.sub(r"[^a-z0-9]+", "_", event_type.lower()).strip("_")[:25].strip("_") or "type"
    digest = hashlib.sha1(event_type.encode()).hexdigest()[:6]
    return f"{slug}_{digest}"


def event_type_features(event_types: Sequence[str]) -> dict[str, FeatureSpec]:
    """The per-type usage columns of ``event_types``, in build order (type by type, then
    window, then measure). Raises ValueError on a repeated type or suffix."""
    suffixes = [event_type_suffix(t) for t in event_types]
    if len(set(suffixes)) != len(suffixes):
        repeated = sorted({t for t, s in zip(event_types, suffixes, strict=True)
                           if suffixes.count(s) > 1})  # fmt: skip
        raise ValueError(f"event types {repeated} are repeated (or share a column suffix)")
    specs: dict[str, FeatureSpec] = {}
    for event_type, suffix in zip(event_types, suffixes, strict=True):
        for days in TYPE_WINDOWS:
            for measure, text in TYPE_MEASURES:
                name = f"{measure}_{days}d__{suffix}"
                specs[name] = FeatureSpec(
                    name=name,
                    group="usage",
                    description=text.format(type=repr(event_type), days=days),
                    unit="count",
                    window_days=days,
                    source="usage_events",
                )
    return specs


def drifting_by_construction(names: Iterable[str]) -> frozenset[str]:
    """Those of ``names`` the catalog declares as drifting by construction."""
    return frozenset(
        n for n in names if n in FEATURES and FEATURES[n].drifts_by_construction is not None
    )


def features_for_groups(groups: Iterable[str]) -> list[str]:
    """Feature names of ``groups`` in catalog order; raises on an unknown group."""
    wanted = set(groups)
    unknown = wanted - set(GROUP_SOURCES)
    if unknown:
        raise ValueError(f"unknown feature group(s) {sorted(unknown)}; use {list(GROUP_SOURCES)}")
    return [name for name, spec in FEATURES.items() if spec.group in wanted]


def groups_for_tables(available_tables: Iterable[str]) -> list[str]:
    """The groups whose source table is among ``available_tables`` (catalog order)."""
    tables = set(available_tables)
    return [group for group, table in GROUP_SOURCES.items() if table in tables]


def render_markdown() -> str:
    """``docs/features.md``: every feature with definition, window, unit and source table."""
    lines = [
        "# Feature catalog",
        "",
        "Generated from `features/catalog.py` by `python -m features.catalog > docs/features.md`;",
        "do not edit by hand (a test fails when this file is out of date).",
        "",
        "Rows: one per account **active** at `as_of`, by `features.active.rule`: `contract`",
        "(the default: a contract in force, `start_date <= as_of < end_date`, `end_date` NULL =",
        "evergreen, any ARR >= 0), `activity` (a usage event in the `activity_days`, default 28,",
        "up to `as_of`) or `both`. A date with no active account is an error naming the rule.",
        "An evergreen contract has no renewal: `days_to_next_renewal` and `contract_term_days`",
        "skip it (NULL when every contract in force is evergreen). `as_of` is midnight (naive",
        "UTC). An n-day window is",
        "`t > as_of - n days AND t <= as_of`: an event exactly at `as_of` counts, one a second",
        "later does not. *Days since* is `floor((as_of - t) / 1 day)` for the latest `t <= as_of`,",
        "NULL when there is none. A group whose source table is absent is left out of the frame.",
        "How the usage columns are computed (day numbers, spans, day bit masks), a worked",
        "example and how to add a column: `docs/usage-features.md`; `churnlens features",
        "--print-sql 2026-01-05,2026-01-12` prints the usage SQL a build of those dates runs.",
        "",
        "Dialects: the SQL is written in DuckDB's dialect and run on **DuckDB** and, transpiled by",
        "sqlglot, on **PostgreSQL**; tests check both give the same values. sqlglot can also",
        "target Snowflake, BigQuery and Spark SQL, but those were only transpiled, never run.",
        "",
    ]
    for group, table in GROUP_SOURCES.items():
        names = features_for_groups([group])
        lines += [
            f"## {group} (`{table}`)",
            "",
            "| feature | unit | window | source | definition |",
            "|---|---|---|---|---|",
        ]
        for name in names:
            spec = FEATURES[name]
            window = f"{spec.window_days} d" if spec.window_days else "-"
            lines.append(
                f"| `{name}` | {spec.unit} | {window} | `{spec.source}` | {spec.description} |"
            )
        lines.append("")
    lines += _per_type_markdown()
    lines += _drift_markdown()
    lines.append(
        f"{len(FEATURES)} features, plus {len(TYPE_MEASURES) * len(TYPE_WINDOWS)} per event type."
    )
    lines += ["", *_labels_markdown()]
    return "\n".join(lines) + "\n"


# target, label column, TRUE when, censored until (docs/features.md; features/labels.py)
_LABEL_ROWS = (
    (
        "`churn`",
        "`churned`",
        "a lapse (no contract in force; an evergreen contract never lapses) starts in "
        "`(as_of, e]`, overlaps `(s, e]` and no contract starts within `grace_days` of it",
        "`e + grace_days`",
    ),
    (
        "`churn_inactive`",
        "`churned_inactive`",
        "no usage event in `(max(s, e - inactivity_days), e]`: the last `inactivity_days` of the "
        "window, the whole window when it is shorter",
        "`e`",
    ),
    (
        "`expansion` (`expansion_definition: horizon`, the default)",
        "`expanded`",
        "not churned, and ARR at `e` (or at a renewal signed within `grace_days` after a lapse "
        "at `e`) exceeds ARR at `as_of` by `expansion_min_ratio` (or `expansion_min_arr`)",
        "`e + grace_days`",
    ),
    (
        "`expansion` (`expansion_definition: next_renewal`)",
        "`expanded`",
        "the next renewal `r`, the earliest `end_date` of the dated contracts in force at "
        "`as_of`, falls in `(as_of, e]`, and ARR in force at `r` (after a lapse there: at the "
        "first contract start within `grace_days`) exceeds ARR at `as_of` by the same "
        "thresholds. FALSE when the account does not renew (churns instead) and when no "
        "renewal falls in the window (evergreen or longer contracts)",
        "`r + grace_days`; `e + grace_days` without a renewal in the window",
    ),
    (
        "`contraction`",
        "`contracted`",
        "not churned, ARR at `e` still > 0 but below ARR at `as_of` by more than "
        "`contraction_min_ratio`",
        "`e + grace_days`",
    ),
)


def _labels_markdown() -> list[str]:
    lines = [
        "## Labels and targets (`features/labels.py`, `sql/labels.sql`)",
        "",
        "Rows: the accounts active at `as_of` by the same `features.active.rule` as the",
        "features. Label window `(s, e]` with `s = as_of + lead_days`, `e = s + horizon_days`;",
        "nothing at or before `as_of` decides a label. A label is NA (*censored*, dropped from",
        "training) until the moment in the last column is at or before `data_end`.",
        "",
        "| target (`model.targets`) | label column | TRUE when | censored until |",
        "|---|---|---|---|",
        *(f"| {t} | {c} | {when} | {until} |" for t, c, when, until in _LABEL_ROWS),
        "",
        "Values at stake (the ARR-captured metric): `churned_arr`, `expansion_arr` (the increase",
        "at `e`, or at `r` for `next_renewal`), `contracted_arr`; for `churn_inactive` ARR at",
        "`as_of` or, when that is 0 (usage-priced, transactional), `quantity_90d`",
        "(`models/dataset.py`).",
    ]
    return lines


def _drift_markdown() -> list[str]:
    lines = [
        "## Features that drift by construction",
        "",
        "Their distribution moves week after week whatever the customers do. Weekly drift",
        "monitoring still measures them (PSI against the model's training window) but lists them",
        "as *excluded* and never raises a warning for them (`drifts_by_construction` in",
        "`features/catalog.py`; add others with `monitoring.exclude_features`).",
        "",
        "| feature | why it drifts |",
        "|---|---|",
    ]
    lines += [
        f"| `{spec.name}` | {spec.drifts_by_construction} |"
        for spec in FEATURES.values()
        if spec.drifts_by_construction is not None
    ]
    return [*lines, ""]


def _per_type_markdown() -> list[str]:
    lines = [
        "## usage per event type (`usage_events`)",
        "",
        "For each of the `features.event_types.top_k` (default 10) event types with the most",
        "events (as staged, ties by name) at or before the **earliest** `as_of` of a build:",
        "one fixed column set for the whole training window, never chosen on data after any row.",
        "The list travels with the model as its column names; scoring rebuilds exactly those",
        "columns (`build_features(..., event_types=event_types_for_features(...))`). `<type>` is",
        "the event type itself when it is a safe name (`[a-z][a-z0-9_]*`, at most 32 characters),",
        "else its lowercase letters and digits joined by `_`, cut to 25, plus `_` and 6 hex",
        "digits of its SHA-1 (distinct types never share a column).",
        "",
        "| feature | unit | window | source | definition |",
        "|---|---|---|---|---|",
    ]
    for days in TYPE_WINDOWS:
        for measure, text in TYPE_MEASURES:
            name = f"{measure}_{days}d__<type>"
            definition = text.format(type="`<type>`", days=days)
            lines.append(f"| `{name}` | count | {days} d | `usage_events` | {definition} |")
    return [*lines, ""]


if __name__ == "__main__":
    print(render_markdown(), end="")
