"""Every usage column against a plain pandas oracle on random small warehouses.

The oracle reads the events row by row, as the catalog defines each column: events, distinct
users, event types and active days with ``event_time`` in ``(as_of - n days, as_of]``, the
latest and earliest event up to as_of, quantities (NULL is one unit), per-type counts. It knows
nothing of spans, probe days or bit masks, so a change to that machinery that changes a value
fails here. Exact duplicate events are in the data: counts and quantities skip them (the
staging deduplicates), distinct counts cannot see them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.catalog import (
    TYPE_WINDOWS,
    event_type_features,
    event_type_suffix,
    features_for_groups,
)
from features.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from tests.conftest import PG_DSN
from tests.features.test_build import _accounts, _contracts, stage

BASE = datetime(2024, 4, 1)
# weekly dates, and one more than a mask batch (406 days) later: a second batch of day masks
CANDIDATE_DATES = [BASE + timedelta(days=7 * k) for k in range(4)] + [BASE + timedelta(days=420)]
ACCOUNTS = ["a1", "a2", "a3", "a4"]  # a4 never has an event
USERS = ["u1", "u2", "u3", None]
TYPES = ["login", "report", "Big Export"]  # "Big Export" gets a hashed column suffix
DAY = timedelta(days=1)


@st.composite
def warehouses(draw: st.DrawFn) -> tuple[list[datetime], dict[str, pd.DataFrame]]:
    """Observation dates and raw tables: every account under contract through every date
    (seats NULL, 0 or some), events spread over the 100 days before a date and 3 after,
    often exactly at a midnight or a second after one, with some exact duplicates."""
    dates = sorted(draw(st.sets(st.sampled_from(CANDIDATE_DATES), min_size=1, max_size=3)))
    seats = draw(st.lists(st.sampled_from([None, 0, 2, 5]), min_size=4, max_size=4))
    rows = []
    for _ in range(draw(st.integers(0, 40))):
        anchor = draw(st.sampled_from(dates))
        offset = draw(st.integers(-100, 3)) * DAY
        within = draw(
            st.sampled_from([timedelta(0), timedelta(seconds=1), -timedelta(seconds=1)])
            | st.integers(0, 24 * 60 - 1).map(lambda m: timedelta(minutes=m))
        )
        rows.append(
            (
                draw(st.sampled_from(ACCOUNTS[:3])),
                draw(st.sampled_from(USERS)),
                anchor + offset + within,
                draw(st.sampled_from(TYPES)),
                draw(st.sampled_from([None, 1.0, 2.5, 10.0])),
            )
        )
    repeats = draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), max_size=5)) if rows else []
    rows += [rows[i] for i in repeats]
    events = pd.DataFrame(
        rows, columns=["account_id", "user_id", "event_time", "event_type", "quantity"]
    )
    events["event_time"] = pd.to_datetime(events["event_time"]).astype("datetime64[us]")
    events["quantity"] = events["quantity"].astype("float64")
    t0 = datetime(2023, 1, 1)
    tables = {
        "accounts": _accounts([(a, a, "smb", "x", 10, "csm_1", t0) for a in ACCOUNTS]),
        "contracts": _contracts(
            [
                (a, f"k{a}", "core", t0.date(), datetime(2026, 1, 1).date(), 100, s)
                for a, s in zip(ACCOUNTS, seats, strict=True)
            ]
        ),
        "usage_events": events,
    }
    return dates, tables


def _day(moment: pd.Series) -> pd.Series:
    """The day an event falls on, numbered by the midnight that ends it (days since 1970)."""
    return moment.dt.ceil("D").sub(pd.Timestamp(0)).dt.days


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else np.nan


def _rate(total: float, n: int, tenure: float) -> float:
    """Per day of the n-day window, or of the activity tenure when shorter; NaN before any."""
    return np.nan if np.isnan(tenure) else total / min(n, tenure + 1)


def oracle(dates: list[datetime], tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every usage column, per account under contract and as_of, straight from the event
    rows (every contract runs through every date)."""
    seats = tables["contracts"].set_index("account_id")["seats"]
    rows = [
        _oracle_row(tables["usage_events"], account, as_of, seats[account])
        for as_of in dates
        for account in sorted(seats.index)
    ]
    return pd.DataFrame(rows).sort_values(["as_of", "account_id"]).reset_index(drop=True)


def _oracle_row(staged: pd.DataFrame, account: str, as_of: datetime, seats: object) -> dict:
    unique = staged.drop_duplicates()
    mine = unique[unique["account_id"] == account]
    seen = staged[(staged["account_id"] == account) & (staged["event_time"] <= as_of)]
    as_of_day = (as_of - datetime(1970, 1, 1)).days

    def window(start: int, stop: int = 0) -> pd.DataFrame:
        t = mine["event_time"]
        return mine[(t > as_of - start * DAY) & (t <= as_of - stop * DAY)]

    def users(start: int, stop: int = 0) -> float:
        return float(window(start, stop)["user_id"].dropna().nunique())

    row: dict[str, object] = {"account_id": account, "as_of": pd.Timestamp(as_of)}
    for n in (7, 28, 90):
        w = window(n)
        quantity = w["quantity"].fillna(1.0)
        row[f"events_{n}d"] = float(len(w))
        row[f"active_users_{n}d"] = users(n)
        row[f"quantity_{n}d"] = float(quantity.sum())
        row[f"quantity_mean_{n}d"] = _ratio(quantity.sum(), len(w))
        row[f"quantity_max_{n}d"] = float(quantity.max()) if len(w) else np.nan
    e28, prev, au28, au_prev = (
        float(len(window(28))),
        float(len(window(56, 28))),
        users(28),
        users(56, 28),
    )
    row["events_prev_28d"] = prev
    row["active_users_prev_28d"] = au_prev
    row["events_change_28d"] = _ratio(e28, prev) - 1
    row["active_users_change_28d"] = _ratio(au28, au_prev) - 1
    w28 = window(28)
    named = w28.dropna(subset=["user_id"])
    user_days = len(set(zip(named["user_id"], _day(named["event_time"]), strict=True)))
    row["stickiness_28d"] = _ratio(user_days / 28.0, au28)
    row["event_types_28d"] = float(w28["event_type"].nunique())
    row["events_per_active_user_28d"] = _ratio(e28, au28)
    row["seat_utilization"] = np.nan if pd.isna(seats) else _ratio(au28, float(seats))
    last = _day(seen["event_time"]).max() if len(seen) else np.nan
    first = _day(seen["event_time"]).min() if len(seen) else np.nan
    row["days_since_last_activity"] = float(as_of_day - last)
    tenure = float(as_of_day - first)
    row["days_since_first_activity"] = tenure
    row["active_days_28d"] = float(_day(w28["event_time"]).nunique())
    row["active_days_90d"] = float(_day(window(90)["event_time"]).nunique())
    row["events_per_day_28d"] = _rate(e28, 28, tenure)
    row["events_per_day_90d"] = _rate(len(window(90)), 90, tenure)
    row["quantity_per_day_90d"] = _rate(window(90)["quantity"].fillna(1.0).sum(), 90, tenure)
    for event_type in TYPES:
        suffix = event_type_suffix(event_type)
        for n in TYPE_WINDOWS:
            w = window(n)
            w = w[w["event_type"] == event_type]
            row[f"events_{n}d__{suffix}"] = float(len(w))
            row[f"quantity_{n}d__{suffix}"] = float(w["quantity"].fillna(1.0).sum())
    return row


def usage_columns() -> list[str]:
    """The usage columns of the catalog, then the per-type columns of ``TYPES``."""
    return [*features_for_groups(["usage"]), *event_type_features(TYPES)]


def check_against_oracle(wh: Warehouse, dates: list[datetime], tables: dict) -> None:
    available = stage(wh, tables)
    built = build_features(wh, dates, available_tables=available, event_types=TYPES)
    want = oracle(dates, tables)
    columns = usage_columns()
    assert set(columns) <= set(built.columns), sorted(set(columns) - set(built.columns))
    assert set(columns) <= set(want.columns), sorted(set(columns) - set(want.columns))
    assert built["account_id"].tolist() == want["account_id"].tolist()
    for col in columns:
        got, exp = built[col].to_numpy(float), want[col].to_numpy(float)
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=col)


SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_OK)
@given(case=warehouses())
def test_every_usage_column_equals_the_oracle_on_duckdb(
    case: tuple[list[datetime], dict[str, pd.DataFrame]],
) -> None:
    dates, tables = case
    with DuckDBWarehouse() as wh:
        check_against_oracle(wh, dates, tables)


@settings(max_examples=12, deadline=None, suppress_health_check=SLOW_OK)
@given(case=warehouses())
def test_every_usage_column_equals_the_oracle_on_postgres(
    case: tuple[list[datetime], dict[str, pd.DataFrame]],
) -> None:
    dates, tables = case
    wh = PostgresWarehouse(PG_DSN)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        wh.create_schema(schema)
        wh.execute(f'SET search_path TO "{schema}", public')
        check_against_oracle(wh, dates, tables)
    finally:
        wh.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        wh.close()


def test_the_oracle_counts_an_event_at_as_of_and_not_one_a_second_later() -> None:
    """The oracle's own windows, on two events: (as_of - n, as_of] holds the event at as_of."""
    events = pd.DataFrame(
        {
            "account_id": ["a1", "a1"],
            "user_id": ["u1", "u2"],
            "event_time": pd.to_datetime([BASE, BASE + timedelta(seconds=1)]),
            "event_type": ["login", "login"],
            "quantity": [None, 4.0],
        }
    )
    contract = _contracts([("a1", "k1", "core", BASE.date(), None, 100, 3)])
    want = oracle([BASE], {"usage_events": events, "contracts": contract})
    a1 = want.set_index("account_id").loc["a1"]
    assert (a1["events_7d"], a1["active_users_7d"], a1["quantity_7d"]) == (1.0, 1.0, 1.0)
    assert a1["days_since_last_activity"] == 0.0 and a1["active_days_28d"] == 1.0
