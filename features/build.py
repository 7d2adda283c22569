"""The one feature path for training and scoring: point-in-time account features at many dates.

``build_features`` loads the observation dates into a temporary table (with their day number,
:func:`features.usage.day_number`), materialises the accounts active at each date once
(``sql/active_accounts.sql``, by the rule of ``features.active``) and the usage activity every
usage feature reads (``features/usage.py``: the events are read there and nowhere else, only
over the days some window sees), then runs the SQL file of each feature group
(``sql/<group>.sql``; the usage group has three, ``usage.USAGE_GROUP_SQL``), each computing
every date in a single pass, and joins them on ``(account_id, as_of)``. Groups whose source
table is absent are left out; the catalog (``features/catalog.py``, ``docs/features.md``)
defines every column.

Per-event-type columns (``events_28d__<type>``...) exist for a fixed list of event types: the
``features.event_types.top_k`` most frequent ones up to the earliest as_of of the build
(:func:`features.usage.choose_event_types`), or the list the caller passes (scoring passes the
model's, :func:`features.usage.event_types_for_features`), so training and scoring produce the
same columns.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, time, timedelta

import numpy as np
import pandas as pd

from features.catalog import (
    ALWAYS,
    FEATURES,
    FeatureSpec,
    event_type_features,
    features_for_groups,
    groups_for_tables,
)
from features.config import ActiveConfig, FeatureConfig
from features.session import materialize, read_sql
from features.usage import (
    create_usage_event_views,
    day_number,
    event_types_for_features,
    prepare_usage,
    usage_group_sql,
)
from features.warehouse import Warehouse, quote_ident

OBS_TABLE = "churnlens_obs_dates"
ACTIVE_TABLE = "churnlens_active"
RECENT_ACTIVITY_TABLE = "churnlens_recent_activity"
REQUIRED_TABLES = ("accounts", "contracts", "usage_events")
KEYS = ["account_id", "as_of"]


class NoActiveAccountsError(ValueError):
    """No account is active at any observation date of a build, by the configured rule."""


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
    """(Re)create the temp table ``churnlens_obs_dates(as_of TIMESTAMP, day BIGINT)`` every
    query joins: ``day`` is the day the midnight ``as_of`` ends (:func:`day_number`), the one
    numbering of an as_of's day that the SQL reads."""
    frame = pd.DataFrame({"as_of": pd.to_datetime(list(as_of_dates)).astype("datetime64[us]")})
    frame["day"] = np.array([day_number(d) for d in as_of_dates], dtype=np.int64)
    wh.create_table_from_frame(frame, OBS_TABLE, temporary=True)


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
        create_usage_event_views(wh)
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
    then the per-type usage columns of ``event_types`` (default: the
    ``config.event_types.top_k`` most frequent up to the earliest as_of,
    :func:`features.usage.choose_event_types`). A feature at ``as_of`` only sees rows dated at
    or before it. Sorted by as_of, account_id. Raises :class:`NoActiveAccountsError`
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
    per_type: dict[str, FeatureSpec] = {}
    if "usage" in groups:
        top_k = config.event_types.top_k
        event_types = prepare_usage(wh, dates, event_types, top_k=top_k)
        per_type = event_type_features(event_types)
    parts = [sql for _, sql in feature_selects(groups, event_types or ())]
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


def feature_selects(groups: Collection[str], event_types: Sequence[str]) -> list[tuple[str, str]]:
    """(file name, SELECT) of every feature file of ``groups`` in join order, commercial first
    (its rows are the active accounts); the usage group's per-type file written out for
    ``event_types``. Each reads the session tables a build prepared."""
    selects = [("commercial", read_sql("commercial"))]
    for group in groups:
        if group == "usage":
            selects += usage_group_sql(event_types)
        elif group != "commercial":
            selects.append((group, read_sql(group)))
    return selects


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
