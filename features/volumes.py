"""Rows per source per week up to a run date: what catches a source that silently broke.

A feature frame cannot tell "customers stopped using the product" from "the usage export stopped
arriving": both give zeros. The row counts of each staged source over the last week, beside the
weeks before it, can (``models.monitoring.volume_checks`` turns them into ok / warn / alert).

Weeks are counted back from the end of the run date: week 0 is ``(end - 7 days, end]``, week 1
the seven days before it, and so on. One scan per source with bound parameters; rows dated after
the end are never counted (the staged views already drop them).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pandas as pd

from features.contract import CONTRACT
from features.sources import staging_view, with_duplicates_view
from features.warehouse import Warehouse

VOLUME_COLUMNS = ("source", "week", "week_end", "rows", "accounts")


def volume_sources(available_tables: Iterable[str]) -> list[str]:
    """The available contract tables dated by an event time (everything but the two that define
    the book, accounts and contracts), in contract order."""
    tables = set(available_tables)
    return [
        name
        for name, spec in CONTRACT.items()
        if name in tables and spec.event_time_columns and name not in ("accounts", "contracts")
    ]


def _volume_sql(source: str, weeks: int) -> str:
    spec = CONTRACT[source]
    time = spec.event_time_columns[0]
    view = with_duplicates_view(source) if spec.deduplicate else staging_view(source)
    window = f"{time} > ? AND {time} <= ?"
    parts = []
    for week in range(weeks):
        parts.append(f"count(CASE WHEN {window} THEN 1 END) AS rows_{week}")
        parts.append(f"count(DISTINCT CASE WHEN {window} THEN account_id END) AS accounts_{week}")
    return f"SELECT {', '.join(parts)} FROM {view} WHERE {window}"


def source_volumes(
    wh: Warehouse, *, available_tables: Iterable[str], end: datetime, weeks: int
) -> pd.DataFrame:
    """Rows and distinct accounts per source and week for the ``weeks`` weeks up to ``end``
    (week 0 the latest). The warehouse must be staged."""
    if weeks < 2:
        raise ValueError(f"source volumes need at least 2 weeks to compare, got {weeks}")
    bounds = [
        (end - timedelta(days=7 * (w + 1)), end - timedelta(days=7 * w)) for w in range(weeks)
    ]
    rows = []
    for source in volume_sources(available_tables):
        params = [x for lo, hi in bounds for x in (lo, hi, lo, hi)] + [bounds[-1][0], end]
        counts = wh.query(_volume_sql(source, weeks), params).iloc[0]
        rows += [
            {
                "source": source,
                "week": week,
                "week_end": pd.Timestamp(hi),
                "rows": int(counts[f"rows_{week}"]),
                "accounts": int(counts[f"accounts_{week}"]),
            }
            for week, (_, hi) in enumerate(bounds)
        ]
    return pd.DataFrame(rows, columns=list(VOLUME_COLUMNS))
