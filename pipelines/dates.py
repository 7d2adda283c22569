"""What a run date means in time; no Prefect here, so the CLI can use it without importing it."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

__all__ = ["as_of_for", "data_horizon", "end_of"]


def as_of_for(run_date: date) -> datetime:
    """The observation moment of a run date: its first instant (00:00 UTC)."""
    return datetime.combine(run_date, time.min)


def end_of(run_date: date) -> datetime:
    """The last instant of ``run_date``."""
    return datetime.combine(run_date + timedelta(days=1), time.min) - timedelta(microseconds=1)


def data_horizon(run_date: date) -> datetime:
    """The newest moment a run for ``run_date`` may see: the end of that day (naive UTC).
    Staging excludes (and counts) the rows dated after it, so re-running a past date sees the
    data as they were then, never the clock's "today"."""
    return end_of(run_date)
