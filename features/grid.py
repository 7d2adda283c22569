"""The observation grid: the ``as_of`` dates a training set is observed at.

Every date is a midnight, as a naive UTC ``datetime``: a feature at ``as_of`` sees the data up
to and including that instant. Weekly grids fall on one weekday; monthly grids on the first of
each month.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

FREQUENCIES = ("weekly", "monthly")


def observation_dates(
    start: date, end: date, *, frequency: str = "weekly", weekday: int = 0
) -> list[datetime]:
    """Midnights (naive UTC) from ``start`` to ``end`` inclusive: every ``weekday`` (0 = Monday)
    for a weekly grid, every first of the month for a monthly one. Ascending."""
    start, end = _as_date(start, "start"), _as_date(end, "end")
    if end < start:
        raise ValueError(f"observation grid: end {end} is before start {start}")
    if frequency == "weekly":
        if not 0 <= weekday <= 6:
            raise ValueError(f"observation grid: weekday must be 0 (Monday) .. 6, got {weekday}")
        days = _weekly(start, end, weekday)
    elif frequency == "monthly":
        days = _monthly(start, end)
    else:
        raise ValueError(
            f"observation grid: frequency must be one of {FREQUENCIES}, got {frequency!r}"
        )
    return [datetime.combine(d, time.min) for d in days]


def _as_date(value: date, what: str) -> date:
    if isinstance(value, datetime):
        if value.time() != time.min:
            raise ValueError(f"observation grid: {what} {value} is not a date or a midnight")
        return value.date()
    return value


def _weekly(start: date, end: date, weekday: int) -> list[date]:
    first = start + timedelta(days=(weekday - start.weekday()) % 7)
    return (
        [first + timedelta(weeks=i) for i in range((end - first).days // 7 + 1)]
        if first <= end
        else []
    )


def _monthly(start: date, end: date) -> list[date]:
    year, month = (
        (start.year, start.month) if start.day == 1 else _next_month(start.year, start.month)
    )
    out = []
    while date(year, month, 1) <= end:
        out.append(date(year, month, 1))
        year, month = _next_month(year, month)
    return out


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)
