"""Usage features: the activity every usage column reads, prepared once per build.

A build numbers days once: an event's day in ``sql/usage_events.sql`` (the midnight that ends
it), an as_of's day in :func:`day_number` (stored as ``churnlens_obs_dates.day`` and carried in
``churnlens_active.day``). With midnight as_of dates, "day in (as_of - n, as_of]" is then
exactly "event_time in (as_of - n days, as_of]".

:func:`usage_plan` lists the statements that prepare the usage tables for a set of dates (the
events are read there and nowhere else, only over the days some window sees);
:func:`prepare_usage` runs them and :func:`render_usage_sql` prints them. Event counts,
quantities and per-type counts come per span of days from ``sql/usage_days.sql``; distinct
users, active days and event types from day bit masks (``sql/usage_users.sql``,
:func:`day_masks`). The groups ``sql/usage.sql``, ``sql/usage_types.sql`` and ``sql/value.sql``
read those tables. docs/usage-features.md walks through a worked example.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from features.catalog import TYPE_WINDOWS, event_type_suffix
from features.session import append, materialize, read_sql
from features.warehouse import Warehouse, quote_ident

USAGE_DAYS_TABLE = "churnlens_usage_days"
USAGE_BEFORE_TABLE = "churnlens_usage_before"
USAGE_USERS_TABLE = "churnlens_usage_users"
USAGE_FIRST_TABLE = "churnlens_usage_first"
USAGE_HISTORY_TABLE = "churnlens_usage_history"
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
# the SQL files of the usage group, in join order (usage_types only with per-type columns)
USAGE_GROUP_SQL = ("usage", "usage_types", "value")


def day_number(moment: datetime) -> int:
    """The day a midnight ends, in whole days since 1970-01-01: the number ``usage_events.sql``
    gives an event at exactly that midnight (and every event of the 24 h before it)."""
    return int((pd.Timestamp(moment) - pd.Timestamp(0)).days)


def create_usage_event_views(wh: Warehouse) -> None:
    """The temp views of the staged events with their day (``sql/usage_events.sql``)."""
    for view, source in USAGE_EVENTS_VIEWS.items():
        wh.replace_temp_view(view, read_sql("usage_events").format(source=source))


def choose_event_types(wh: Warehouse, as_of: datetime, *, top_k: int) -> list[str]:
    """The ``top_k`` event types with the most events at or before ``as_of`` (events as
    staged; ties broken by name), most frequent first. Prepares ``churnlens_usage_history``
    for ``as_of`` (:func:`history_plan`) to count them."""
    if top_k <= 0:
        return []
    for step in history_plan([as_of]):
        run_usage_step(wh, step)
    return ranked_event_types(wh, top_k=top_k)


def ranked_event_types(wh: Warehouse, *, top_k: int) -> list[str]:
    """:func:`choose_event_types` at the first as_of of the prepared
    ``churnlens_usage_history``."""
    if top_k <= 0:
        return []
    counts = wh.query(read_sql("usage_history_types"))
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
    ``build_features`` so that it builds exactly the model's per-type columns. Raises
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


@dataclass(frozen=True)
class UsageStep:
    """One statement of :func:`usage_plan`: ``view`` (a temp view of ``sql``), ``frame`` (a
    temp table loaded from ``frame``), ``table`` (a temp table materialised from ``sql`` with
    ``params``) or ``append`` (``sql``'s rows added to the table ``name``)."""

    kind: Literal["view", "frame", "table", "append"]
    name: str
    sql: str = ""
    params: tuple[object, ...] = ()
    frame: pd.DataFrame | None = field(default=None, compare=False)


def history_plan(dates: Sequence[datetime]) -> list[UsageStep]:
    """The views of the events with their day, and ``churnlens_usage_history``
    (``sql/usage_history.sql``): the one read of the events before the windows of sorted
    midnight ``dates``, which event types, first and last active days come from."""
    floor = min(dates) - timedelta(days=USAGE_WINDOW_DAYS)
    steps = [
        UsageStep("view", view, read_sql("usage_events").format(source=source))
        for view, source in USAGE_EVENTS_VIEWS.items()
    ]
    params = (max(dates), min(dates), floor)
    return [*steps, UsageStep("table", USAGE_HISTORY_TABLE, read_sql("usage_history"), params)]


def usage_plan(dates: Sequence[datetime], event_types: Sequence[str]) -> list[UsageStep]:
    """The statements that prepare the usage activity of sorted midnight ``dates`` after
    :func:`history_plan`: the events any window can see, (first as_of - 90 days, last as_of],
    per span of days (``event_types`` numbered in ``churnlens_event_types``), the last active
    day before that of the accounts quiet through it, the first active day of every active
    account, and the distinct-user masks, one read of the events per batch of dates
    (:func:`mask_batches`)."""
    floor = min(dates) - timedelta(days=USAGE_WINDOW_DAYS)
    types = pd.DataFrame({"event_type": pd.Series(list(event_types), dtype="str")})
    types["type_index"] = np.arange(len(types), dtype=np.int64)
    steps = [
        UsageStep("frame", EVENT_TYPES_TABLE, frame=types),
        UsageStep("table", USAGE_DAYS_TABLE, usage_days_sql(len(types)), (floor, max(dates))),
        UsageStep("table", USAGE_BEFORE_TABLE, read_sql("usage_before")),
        UsageStep("table", USAGE_FIRST_TABLE, read_sql("usage_first")),
    ]
    for i, batch in enumerate(mask_batches(dates)):
        days, windows = day_masks(batch)
        sql = usage_sql("usage_users", words=len(days.columns) - 1)
        params = (batch[0] - timedelta(days=USAGE_WINDOW_DAYS), batch[-1])
        steps += [
            UsageStep("frame", DAY_BITS_TABLE, frame=days),
            UsageStep("frame", WINDOW_BITS_TABLE, frame=windows),
            UsageStep("table" if i == 0 else "append", USAGE_USERS_TABLE, sql, params),
        ]
    return steps


def prepare_usage(
    wh: Warehouse,
    dates: Sequence[datetime],
    event_types: Sequence[str] | None = None,
    *,
    top_k: int = 0,
) -> list[str]:
    """Run :func:`history_plan` and :func:`usage_plan` in ``wh``; returns the event types of the
    per-type columns: ``event_types``, or when None the ``top_k`` most frequent up to the first
    as_of (:func:`choose_event_types`). Needs ``build.prepare_active_accounts`` first (``dates``
    are its dates)."""
    for step in history_plan(dates):
        run_usage_step(wh, step)
    types = ranked_event_types(wh, top_k=top_k) if event_types is None else list(event_types)
    for step in usage_plan(dates, types):
        run_usage_step(wh, step)
    return types


def run_usage_step(wh: Warehouse, step: UsageStep) -> None:
    """Create the view or table of one step of :func:`usage_plan`."""
    if step.kind == "view":
        wh.replace_temp_view(step.name, step.sql)
    elif step.kind == "frame":
        assert step.frame is not None
        wh.create_table_from_frame(step.frame, step.name, temporary=True)
    elif step.kind == "table":
        materialize(wh, step.name, step.sql, step.params)
    else:
        append(wh, step.name, step.sql, step.params)


def usage_group_sql(event_types: Sequence[str]) -> list[tuple[str, str]]:
    """(file name, SELECT) of the usage group's files (``USAGE_GROUP_SQL``), the per-type
    file written out for ``event_types`` and left out without any."""
    suffixes = [event_type_suffix(t) for t in event_types]
    return [
        (name, usage_types_sql(suffixes) if name == "usage_types" else read_sql(name))
        for name in USAGE_GROUP_SQL
        if name != "usage_types" or suffixes
    ]


def render_usage_sql(dates: Sequence[datetime], event_types: Sequence[str] = ()) -> str:
    """The usage SQL a build of ``dates`` runs, as text: every statement of
    :func:`usage_plan` with its parameters, the tables loaded from frames summarised, then
    the SELECTs of the usage group."""
    out = [
        f"-- usage SQL for as_of {', '.join(f'{d:%Y-%m-%d}' for d in dates)}; per-type "
        f"columns for {list(event_types) or 'no event types'}"
    ]
    for step in [*history_plan(dates), *usage_plan(dates, event_types)]:
        if step.kind == "frame":
            assert step.frame is not None
            out.append(
                f"-- {step.name}: {len(step.frame)} rows ({', '.join(step.frame.columns)}), "
                "loaded from a frame"
            )
            continue
        head = {
            "view": f"CREATE OR REPLACE TEMP VIEW {quote_ident(step.name)} AS",
            "table": f"CREATE OR REPLACE TEMP TABLE {quote_ident(step.name)} AS",
            "append": f"INSERT INTO {quote_ident(step.name)}",
        }[step.kind]
        bound = ", ".join(str(p) for p in step.params)
        out.append(head + (f"  -- parameters: {bound}" if bound else ""))
        out.append(step.sql.rstrip() + ";")
    for name, select in usage_group_sql(event_types):
        out.append(f"-- sql/{name}.sql: a SELECT of the feature join")
        out.append(select.rstrip() + ";")
    return "\n".join(out) + "\n"


def usage_sql(name: str, *, words: int) -> str:
    """``sql/<name>.sql`` with its per-word column lists written out for ``words`` mask words."""

    def any_bit(window: str) -> str:
        return " | ".join(f"(m.b{k} & w.{window}_{k})" for k in range(words))

    def days_in(window: str) -> str:
        return " + ".join(f"bit_count(m.b{k} & w.{window}_{k})" for k in range(words))

    return read_sql(name).format(
        mask_aggregates=",\n        ".join(f"bit_or(d.b{k}) as b{k}" for k in range(words)),
        **{f"active_{window}": any_bit(window) for window, _, _ in DISTINCT_WINDOWS},
        user_days_w28=days_in("w28"),
        active_days_w28=days_in("w28"),
        active_days_w90=days_in("w90"),
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
    one BIGINT column per word (``b0..``, ``w7_0..``): day d (:func:`day_number`) is bit
    (i mod 62) of word (i div 62), i = d - day_number(first as_of - 90 days) - 1."""
    base = day_number(batch[0]) - USAGE_WINDOW_DAYS
    last = day_number(batch[-1])
    index = np.arange(last - base)
    days = {"day": np.arange(base + 1, last + 1, dtype=np.int64)}
    words = -(-len(index) // MASK_BITS)  # the words this batch's days need
    for k in range(words):
        days[f"b{k}"] = np.where(index // MASK_BITS == k, 1 << (index % MASK_BITS), 0)
    windows: dict[str, object] = {
        "as_of": pd.to_datetime(list(batch)).astype("datetime64[us]"),
    }
    ends = np.array([day_number(d) - base for d in batch])  # as_of as a 1-based day index
    for name, start, stop in DISTINCT_WINDOWS:
        lo, hi = ends - start, ends - stop  # days (lo, hi]: indices lo .. hi - 1
        for k in range(words):
            word_lo = np.clip(lo - k * MASK_BITS, 0, MASK_BITS)
            word_hi = np.clip(hi - k * MASK_BITS, 0, MASK_BITS)
            windows[f"{name}_{k}"] = (1 << word_hi) - (1 << word_lo)
    return pd.DataFrame(days).astype("int64"), pd.DataFrame(windows)
