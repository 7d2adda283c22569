"""The one feature path for training and scoring: point-in-time account features at many dates.

``build_features`` loads the observation dates into a temporary table, materialises the accounts
active at each date once (``sql/active_accounts.sql``, by the rule of ``features.active``) and
the usage activity every usage feature reads (``sql/usage_days.sql``, ``sql/usage_users.sql``,
``sql/usage_before.sql``, ``sql/usage_first.sql``: the events are read there and nowhere else,
only over the days some window sees), then runs the SQL files of each feature group
(``sql/<file>.sql``, ``GROUP_SQL``), each computing every date in a single pass, and joins them
on ``(account_id, as_of)``. Groups whose source table is absent are left out; the catalog
(``features/catalog.py``, ``docs/features.md``) defines every column.

Per-event-type columns (``events_28d__<type>``...) exist for a fixed list of event types: the
``features.event_types.top_k`` most frequent ones up to the earliest as_of of the build
(:func:`choose_event_types`), or the list the caller passes (scoring passes the model's,
:func:`event_types_for_features`), so training and scoring produce the same columns.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalog import (
    ALWAYS,
    FEATURES,
    TYPE_WINDOWS,
    event_type_features,
    event_type_suffix,
    features_for_groups,
    groups_for_tables,
)
from features.config import ActiveConfig, FeatureConfig
from features.warehouse import Warehouse, quote_ident

SQL_DIR = Path(__file__).parent / "sql"
OBS_TABLE = "churnlens_obs_dates"
ACTIVE_TABLE = "churnlens_active"
USAGE_DAYS_TABLE = "churnlens_usage_days"
USAGE_BEFORE_TABLE = "churnlens_usage_before"
USAGE_USERS_TABLE = "churnlens_usage_users"
USAGE_FIRST_TABLE = "churnlens_usage_first"
RECENT_ACTIVITY_TABLE = "churnlens_recent_activity"
EVENT_TYPES_TABLE = "churnlens_event_types"
# the events with their day: deduplicated (event counts) and as staged (day masks)
USAGE_EVENTS_VIEWS = {
    "churnlens_usage_events": "stg_usage_events",
    "churnlens_usage_events_all": "stg_usage_events_with_duplicates",
}
DAY_BITS_TABLE = "churnlens_day_bits"
WINDOW_BITS_TABLE = "churnlens_window_bits"
USAGE_WINDOW_DAYS = 90  # the longest usage window (usage.sql); events older than it are not read
MASK_WORDS = 8  # at most this many BIGINT words per day mask (usage_users.sql)
MASK_BITS = 62  # days per word (bits 0..61: a word never reaches the sign bit)
# distinct-user windows of usage_users.sql: (column prefix, days before as_of it starts, ends)
DISTINCT_WINDOWS = (("w7", 7, 0), ("w28", 28, 0), ("w90", 90, 0), ("wp28", 56, 28))
REQUIRED_TABLES = ("accounts", "contracts", "usage_events")
KEYS = ["account_id", "as_of"]
# the SQL files of a group, when they are not just sql/<group>.sql
GROUP_SQL = {"usage": ("usage", "usage_types", "value")}


class NoActiveAccountsError(ValueError):
    """No account is active at any observation date of a build, by the configured rule."""


@cache
def read_sql(name: str) -> str:
    """The text of ``features/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()


def check_as_of_dates(as_of_dates: Sequence[datetime]) -> list[datetime]:
    """Distinct, sorted, naive midnights; a clear ValueError for anything else."""
    if len(as_of_dates) == 0:
        raise ValueError("as_of_dates is empty: give at least one observation date")
    out = set()
    for value in as_of_dates:
        moment = pd.Timestamp(value)
        if moment.tzinfo is not None:
            moment = moment.tz_convert("UTC").tz_localize(None)
        if moment.time() != time.min:
            raise ValueError(
                f"as_of {value!r} is not a midnight: observation dates must be 00:00 (naive UTC), "
                "because usage is bucketed by day; use features.grid.observation_dates"
            )
        out.add(moment.to_pydatetime())
    return sorted(out)


def load_observation_dates(wh: Warehouse, as_of_dates: Sequence[datetime]) -> None:
    """(Re)create the temp table ``churnlens_obs_dates(as_of TIMESTAMP)`` every query joins."""
    frame = pd.DataFrame({"as_of": pd.to_datetime(list(as_of_dates)).astype("datetime64[us]")})
    wh.create_table_from_frame(frame, OBS_TABLE, temporary=True)


def materialize(wh: Warehouse, name: str, select_sql: str, params: Sequence[object] = ()) -> None:
    """Create or replace the session-local table ``name`` from a DuckDB-dialect SELECT
    (``params`` bound to its ``?``)."""
    table = quote_ident(name)
    if wh.dialect == "spark":
        # Spark has no temp tables: a checkpointed result under a temp view (features/spark.py)
        wh.materialize(name, select_sql, params)  # type: ignore[attr-defined]
    elif wh.dialect == "postgres":
        # pg_temp.: never drop a permanent table of that name on the search path
        wh.execute(f"DROP TABLE IF EXISTS pg_temp.{table}")
        wh.execute(f"CREATE TEMP TABLE {table} AS\n{select_sql}", params)
    else:
        wh.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS\n{select_sql}", params)


def prepare_active_accounts(
    wh: Warehouse, as_of_dates: Sequence[datetime], *, active: ActiveConfig | None = None
) -> list[datetime]:
    """Load the dates and the accounts active at each by the rule of ``active`` (default: a
    contract in force); returns the checked dates. Raises :class:`NoActiveAccountsError`
    naming the dates and the rule when no date has an active account."""
    active = ActiveConfig() if active is None else active
    dates = check_as_of_dates(as_of_dates)
    load_observation_dates(wh, dates)
    if active.rule == "contract":
        empty = pd.DataFrame({"account_id": pd.Series([], dtype="str")})
        empty["as_of"] = pd.Series([], dtype="datetime64[us]")
        wh.create_table_from_frame(empty, RECENT_ACTIVITY_TABLE, temporary=True)
    else:
        _create_usage_event_views(wh)
        floor = dates[0] - timedelta(days=active.activity_days)
        params = [active.activity_days, floor, dates[-1]]
        materialize(wh, RECENT_ACTIVITY_TABLE, read_sql("recent_activity"), params)
    materialize(wh, ACTIVE_TABLE, read_sql("active_accounts"), [active.rule != "activity"])
    if not wh.scalar(f"SELECT count(*) FROM {quote_ident(ACTIVE_TABLE)}"):
        raise NoActiveAccountsError(_no_active_message(dates, active))
    return dates


def _no_active_message(dates: Sequence[datetime], active: ActiveConfig) -> str:
    when = (
        f"at run date {dates[0]:%Y-%m-%d} (as_of {dates[0]:%Y-%m-%d %H:%M})"
        if len(dates) == 1
        else f"at any of the {len(dates)} observation dates {dates[0]:%Y-%m-%d} .. "
        f"{dates[-1]:%Y-%m-%d}"
    )
    return (
        f"no active accounts {when}: active means {active.describe()}. Check that the "
        "contracts (or usage events) reach that date, or choose another features.active.rule"
    )


def _create_usage_event_views(wh: Warehouse) -> None:
    for view, source in USAGE_EVENTS_VIEWS.items():
        wh.replace_temp_view(view, read_sql("usage_events").format(source=source))


def choose_event_types(wh: Warehouse, as_of: datetime, *, top_k: int) -> list[str]:
    """The ``top_k`` event types with the most events at or before ``as_of`` (events as
    staged; ties broken by name), most frequent first."""
    if top_k <= 0:
        return []
    counts = wh.query(read_sql("event_types"), [as_of])
    ranked = sorted(
        zip(counts["event_type"].astype(str), counts["n_events"].astype(int), strict=True),
        key=lambda item: (-item[1], item[0]),
    )
    return [name for name, _ in ranked[:top_k]]


def event_types_for_features(
    wh: Warehouse, feature_names: Collection[str], *, as_of: datetime
) -> list[str]:
    """The event types behind the per-type columns among ``feature_names`` (a model's feature
    list), read from the event types seen up to ``as_of``: what scoring passes to
    :func:`build_features` so that it builds exactly the model's per-type columns. Raises
    ValueError naming the columns no event type up to ``as_of`` produces."""
    wanted = {name.split("__", 1)[1] for name in feature_names if "__" in name}
    if not wanted:
        return []
    seen = wh.query(read_sql("event_types"), [as_of])["event_type"].astype(str)
    types = sorted(t for t in seen if event_type_suffix(t) in wanted)
    missing = sorted(wanted - {event_type_suffix(t) for t in types})
    if missing:
        raise ValueError(
            f"no event type up to {as_of:%Y-%m-%d} gives the per-type feature suffix(es) "
            f"{missing} of the model; was it trained on another warehouse?"
        )
    return types


def prepare_usage(wh: Warehouse, dates: Sequence[datetime], event_types: Sequence[str]) -> None:
    """Materialise the usage activity of the events any window can see, (first as_of - 90 days,
    last as_of], the last active day before that of the accounts quiet through it, and the first
    active day of every active account, for the usage group's SQL. Needs
    :func:`prepare_active_accounts` first (``dates`` are its dates).

    Event counts, quantities and per-type counts per span of days come from
    ``sql/usage_days.sql`` (one read of the events, ``event_types`` numbered in
    ``churnlens_event_types``); distinct users, active days and event types from
    ``sql/usage_users.sql``, which reads the events once per batch of dates
    (:func:`mask_batches`; one batch for up to 406 days of as_of)."""
    floor = min(dates) - timedelta(days=USAGE_WINDOW_DAYS)
    _create_usage_event_views(wh)
    types = pd.DataFrame({"event_type": pd.Series(list(event_types), dtype="str")})
    types["type_index"] = np.arange(len(types), dtype=np.int64)
    wh.create_table_from_frame(types, EVENT_TYPES_TABLE, temporary=True)
    materialize(wh, USAGE_DAYS_TABLE, usage_days_sql(len(types)), [floor, max(dates)])
    materialize(wh, USAGE_BEFORE_TABLE, read_sql("usage_before"), [floor])
    materialize(wh, USAGE_FIRST_TABLE, read_sql("usage_first"), [max(dates)])
    for i, batch in enumerate(mask_batches(dates)):
        days, windows = day_masks(batch)
        wh.create_table_from_frame(days, DAY_BITS_TABLE, temporary=True)
        wh.create_table_from_frame(windows, WINDOW_BITS_TABLE, temporary=True)
        sql = usage_sql("usage_users", words=len(days.columns) - 1)
        params = [batch[0] - timedelta(days=USAGE_WINDOW_DAYS), batch[-1]]
        if i == 0:
            materialize(wh, USAGE_USERS_TABLE, sql, params)
        elif wh.dialect == "spark":
            wh.append(USAGE_USERS_TABLE, sql, params)  # type: ignore[attr-defined]
        else:
            wh.execute(f"INSERT INTO {quote_ident(USAGE_USERS_TABLE)}\n{sql}", params)


def usage_sql(name: str, *, words: int) -> str:
    """``sql/<name>.sql`` with its per-word column lists written out for ``words`` mask words."""

    def any_bit(window: str) -> str:
        return " | ".join(f"(m.b{k} & w.{window}_{k})" for k in range(words))

    return read_sql(name).format(
        mask_aggregates=",\n        ".join(f"bit_or(d.b{k}) as b{k}" for k in range(words)),
        **{f"active_{window}": any_bit(window) for window, _, _ in DISTINCT_WINDOWS},
        user_days_w28=" + ".join(f"bit_count(m.b{k} & w.w28_{k})" for k in range(words)),
        active_days_w28=" + ".join(f"bit_count(m.b{k} & w.w28_{k})" for k in range(words)),
        active_days_w90=" + ".join(f"bit_count(m.b{k} & w.w90_{k})" for k in range(words)),
    )


def usage_days_sql(n_types: int) -> str:
    """``sql/usage_days.sql`` with one count and one quantity aggregate per chosen event type
    (numbered 0 .. n_types - 1 in ``churnlens_event_types``): structure only, never a value.
    Written with ``case``, not ``filter``: DuckDB runs many filtered aggregates 2-3x slower."""
    sep = ",\n        "
    aggregates = "".join(
        f"{sep}cast(coalesce(sum(case when t.type_index = {i} then b.n_events end), 0) as bigint)"
        f" as n_type_{i}{sep}coalesce(sum(case when t.type_index = {i} then b.quantity end), 0)"
        f" as q_type_{i}"
        for i in range(n_types)
    )
    return read_sql("usage_days").format(type_aggregates=aggregates)


def usage_types_sql(names: Sequence[str]) -> str:
    """``sql/usage_types.sql`` written out for the per-type suffixes ``names`` (type i's columns
    ``events_<w>d__<names[i]>``, ``quantity_<w>d__<names[i]>``): structure only."""
    n = len(names)
    sums, columns = [], []
    for i, name in enumerate(names):
        for w in TYPE_WINDOWS:
            # case, not filter (see usage_days_sql)
            sums.append(f"sum(case when days_before < {w} then n_type_{i} end) as n{w}_{i}")
            sums.append(f"sum(case when days_before < {w} then q_type_{i} end) as q{w}_{i}")
            events, quantity = (
                quote_ident(f"events_{w}d__{name}"),
                quote_ident(f"quantity_{w}d__{name}"),
            )
            columns.append(f"cast(coalesce(s.n{w}_{i}, 0) as double) as {events}")
            columns.append(f"cast(coalesce(s.q{w}_{i}, 0) as double) as {quantity}")
    sep = ",\n        "
    return read_sql("usage_types").format(
        type_spans=sep.join(f"n_type_{i}, q_type_{i}" for i in range(n)),
        type_spans_u=sep.join(f"u.n_type_{i}, u.q_type_{i}" for i in range(n)),
        type_sums=sep.join(sums),
        type_columns=sep.join(columns),
    )


def mask_batches(dates: Sequence[datetime]) -> list[list[datetime]]:
    """Sorted dates in runs whose days (first as_of - 90 days, last as_of] fit in the day masks
    of ``sql/usage_users.sql`` (``MASK_WORDS`` x ``MASK_BITS`` days)."""
    span = MASK_WORDS * MASK_BITS - USAGE_WINDOW_DAYS
    batches: list[list[datetime]] = []
    for day in sorted(dates):
        if batches and (day - batches[-1][0]).days <= span:
            batches[-1].append(day)
        else:
            batches.append([day])
    return batches


def day_masks(batch: Sequence[datetime]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The bit of every day a batch reads, and the day mask of every window of every as_of, as
    one BIGINT column per word (``b0..``, ``w7_0..``): day d, numbered by its end as in
    ``sql/usage_days.sql``, is bit (i mod 62) of word (i div 62), i = d - (first as_of - 90) - 1."""
    base = _day_number(batch[0]) - USAGE_WINDOW_DAYS
    last = _day_number(batch[-1])
    index = np.arange(last - base)
    days = {"day": np.arange(base + 1, last + 1, dtype=np.int64)}
    words = -(-len(index) // MASK_BITS)  # the words this batch's days need
    for k in range(words):
        days[f"b{k}"] = np.where(index // MASK_BITS == k, 1 << (index % MASK_BITS), 0)
    windows: dict[str, object] = {
        "as_of": pd.to_datetime(list(batch)).astype("datetime64[us]"),
    }
    ends = np.array([_day_number(d) - base for d in batch])  # as_of as a 1-based day index
    for name, start, stop in DISTINCT_WINDOWS:
        lo, hi = ends - start, ends - stop  # days (lo, hi]: indices lo .. hi - 1
        for k in range(words):
            word_lo = np.clip(lo - k * MASK_BITS, 0, MASK_BITS)
            word_hi = np.clip(hi - k * MASK_BITS, 0, MASK_BITS)
            windows[f"{name}_{k}"] = (1 << word_hi) - (1 << word_lo)
    return pd.DataFrame(days).astype("int64"), pd.DataFrame(windows)


def _day_number(moment: datetime) -> int:
    """Whole days since 1970-01-01 of a midnight."""
    return int((pd.Timestamp(moment) - pd.Timestamp(0)).days)


def build_features(
    wh: Warehouse,
    as_of_dates: Sequence[datetime],
    *,
    available_tables: Collection[str],
    config: FeatureConfig | None = None,
    event_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Features of every account active at each ``as_of`` (midnight, naive UTC), active by
    ``config.active`` (default: a contract in force).

    Columns: ``account_id`` (str), ``as_of`` (datetime64), ``name``, then the catalog features
    of the groups whose source table is in ``available_tables`` (the ``stg_`` views that exist),
    then the per-type usage columns of ``event_types`` (default: :func:`choose_event_types` at
    the earliest as_of with ``config.event_types.top_k``). A feature at ``as_of`` only sees rows
    dated at or before it. Sorted by as_of, account_id. Raises :class:`NoActiveAccountsError`
    when no account is active at any date. The groups are joined in the warehouse
    (:func:`assemble_features`); only the joined rows come to pandas."""
    sql, columns = assemble_features(
        wh, as_of_dates, available_tables=available_tables, config=config, event_types=event_types
    )
    return tidy_features(wh.query(sql), columns)


def assemble_features(
    wh: Warehouse,
    as_of_dates: Sequence[datetime],
    *,
    available_tables: Collection[str],
    config: FeatureConfig | None = None,
    event_types: Sequence[str] | None = None,
) -> tuple[str, list[str]]:
    """Prepare the session tables of a build (as :func:`build_features`) and return one SELECT
    (DuckDB dialect, no parameters) joining every feature group on ``(account_id, as_of)``
    inside the warehouse, with the feature columns :func:`tidy_features` orders and types.
    Spark scoring reads that SELECT as a DataFrame, partition by partition."""
    config = FeatureConfig() if config is None else config
    missing = [t for t in REQUIRED_TABLES if t not in set(available_tables)]
    if missing:
        raise ValueError(
            f"build_features needs the required table(s) {missing} (staging views stg_<table>); "
            f"available_tables was {sorted(available_tables)}"
        )
    dates = prepare_active_accounts(wh, as_of_dates, active=config.active)
    groups = groups_for_tables(available_tables)
    per_type: dict[str, str] = {}
    if "usage" in groups:
        if event_types is None:
            event_types = choose_event_types(wh, dates[0], top_k=config.event_types.top_k)
        per_type = event_type_features(event_types)
        prepare_usage(wh, dates, event_types)
    parts = [read_sql("commercial")]
    for group in groups:
        for name in GROUP_SQL.get(group, (group,)):
            if name == "commercial" or (name == "usage_types" and not per_type):
                continue
            parts.append(_group_sql(name, event_types or ()))
    relations = [f"(\n{part}\n)" for part in parts]
    if wh.dialect == "spark":
        # sqlglot lifts nested WITH clauses into one for Spark, where the groups' CTE names
        # (active, final...) would collide: each group becomes a temp view instead
        relations = []
        for i, part in enumerate(parts):
            view = f"churnlens_feature_group_{i}"
            wh.replace_temp_view(view, part)
            relations.append(quote_ident(view))
    sql = f"SELECT *\nFROM {relations[0]} AS g0"
    for i, relation in enumerate(relations[1:], start=1):
        sql += f"\nLEFT JOIN {relation} AS g{i} USING (account_id, as_of)"
    return sql, ["name", *ALWAYS, *features_for_groups(groups), *per_type]


def build_model_features(
    wh: Warehouse,
    as_of_dates: Sequence[datetime],
    *,
    feature_names: Collection[str],
    available_tables: Collection[str],
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """:func:`build_features` for scoring with models whose features are ``feature_names`` (the
    union of their feature lists): the per-type columns are those of the models' event types
    (:func:`event_types_for_features`, read up to the latest as_of), never a top-k chosen
    anew on this week's data, so scoring builds exactly the columns the models were trained
    on."""
    types = event_types_for_features(wh, feature_names, as_of=max(as_of_dates))
    return build_features(
        wh, as_of_dates, available_tables=available_tables, config=config, event_types=types
    )


def _group_sql(name: str, event_types: Sequence[str]) -> str:
    """The SQL of one feature file; the per-type file written out for ``event_types``."""
    if name == "usage_types":
        return usage_types_sql([event_type_suffix(t) for t in event_types])
    return read_sql(name)


def tidy_features(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Keys first, catalog order, one dtype per unit: str ids and categories, float numbers."""
    ordered = list(dict.fromkeys(c for c in columns if c in frame.columns))
    out = frame[KEYS + ordered].copy()
    out["account_id"] = out["account_id"].astype(str)
    out["as_of"] = pd.to_datetime(out["as_of"]).astype("datetime64[us]")
    for name in ordered:
        spec = FEATURES.get(name)  # per-type columns are not listed: numbers
        if name == "name" or (spec is not None and spec.unit == "category"):
            out[name] = _text(out[name])
        else:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    out = out.sort_values(["as_of", "account_id"], kind="stable")
    return out.reset_index(drop=True)


def _text(values: pd.Series) -> pd.Series:
    """Strings with NaN for missing (the pandas default text dtype)."""
    as_object = values.astype(object)
    return as_object.where(as_object.notna(), np.nan).astype("str")
