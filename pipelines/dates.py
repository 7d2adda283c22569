"""What a run date means in time; no Prefect here, so the CLI can use it without importing it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

__all__ = ["as_of_for", "data_horizon", "end_of"]


def as_of_for(run_date: date) -> datetime:
    """The observation moment of a run date: its first instant (00:00 UTC)."""
    return datetime.combine(run_date, time.min)


def end_of(run_date: date) -> datetime:
    """The last instant of ``run_date``."""
    return datetime.combine(run_date + timedelta(days=1), time.min) - timedelta(microseconds=1)


def data_horizon(run_date: date, *, today: date | None = None) -> datetime:
    """The newest moment the source data may describe: the end of the run date, or of today
    when re-running a past date (later rows are then legitimate, and the point-in-time feature
    windows ignore them). Rows beyond it are clock or time-zone errors."""
    return end_of(max(run_date, today or datetime.now(UTC).date()))
