"""Observation grids: weekly on a weekday, monthly on the first, midnights, inclusive ends."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from features.grid import observation_dates


def test_weekly_on_the_weekday_inclusive() -> None:
    got = observation_dates(date(2026, 11, 1), date(2026, 11, 23), weekday=0)
    assert got == [datetime(2026, 11, d) for d in (2, 9, 16, 23)]
    assert all(d.weekday() == 0 and d.hour == 0 and d.tzinfo is None for d in got)


def test_weekly_other_weekday_and_single_day() -> None:
    assert observation_dates(date(2026, 11, 4), date(2026, 11, 4), weekday=2) == [
        datetime(2026, 11, 4)
    ]
    assert observation_dates(date(2026, 11, 5), date(2026, 11, 10), weekday=2) == []


def test_monthly_on_the_first() -> None:
    got = observation_dates(date(2025, 11, 15), date(2026, 2, 1), frequency="monthly")
    assert got == [datetime(2025, 12, 1), datetime(2026, 1, 1), datetime(2026, 2, 1)]
    assert observation_dates(date(2026, 1, 1), date(2026, 1, 31), frequency="monthly") == [
        datetime(2026, 1, 1)
    ]


def test_52_weeks() -> None:
    assert len(observation_dates(date(2025, 11, 25), date(2026, 11, 23))) == 52


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frequency": "daily"}, "frequency"),
        ({"weekday": 7}, "weekday"),
    ],
)
def test_bad_options_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        observation_dates(date(2026, 1, 1), date(2026, 2, 1), **kwargs)


def test_end_before_start() -> None:
    with pytest.raises(ValueError, match="before start"):
        observation_dates(date(2026, 2, 1), date(2026, 1, 1))
