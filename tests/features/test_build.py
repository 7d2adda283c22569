"""Golden feature values on hand-written rows, per group, at and around one as_of.

Every group has an event exactly at as_of (counted) and one a second later (not counted)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.catalog import FEATURES
from features.config import WarehouseConfig
from features.sources import create_staging_view, locate_sources
from features.warehouse import Warehouse

AS_OF = datetime(2024, 4, 1)
SECOND = timedelta(seconds=1)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def stage(wh: Warehouse, tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Write raw tables into ``wh`` and create their staging views; returns the tables staged."""
    located = locate_sources(WarehouseConfig())
    staged = []
    for name, frame in tables.items():
        wh.create_table_from_frame(frame, name)
    for name in tables:
        if create_staging_view(wh, located[name]):
            staged.append(name)
    return staged


def _accounts(rows: list[tuple]) -> pd.DataFrame:
    cols = ["account_id", "name", "segment", "industry", "employees", "csm_owner", "created_at"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["employees"] = frame["employees"].astype("Int64")
    return frame


def _contracts(rows: list[tuple]) -> pd.DataFrame:
    cols = ["account_id", "contract_id", "product", "start_date", "end_date", "arr", "seats"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["seats"] = frame["seats"].astype("Int64")
    frame["arr"] = frame["arr"].astype(float)
    return frame


def golden_tables() -> dict[str, pd.DataFrame]:
    """Accounts a1 (everything), a2 (contraction, sparse usage), a3 (ends exactly at as_of:
    inactive), a4 (starts a day after), a5 (starts exactly at as_of, no usage)."""
    t0 = datetime(2023, 1, 1)
    accounts = _accounts(
        [
            ("a1", "Acme", "enterprise", "software", 30, "csm_1", t0),
            ("a2", "Beta", "smb", "retail", 8, "csm_2", t0),
            ("a3", "Gone", "smb", "retail", 5, "csm_2", t0),
            ("a4", "Soon", "smb", "retail", 5, "csm_1", t0),
            ("a5", "Fresh", "mid_market", None, None, None, t0),
        ]
    )
    contracts = _contracts(
        [
            ("a1", "k1", "core", date(2023, 1, 1), date(2025, 1, 1), 1200, 10),
            ("a1", "k2", "addon", date(2024, 3, 1), date(2025, 1, 1), 300, 2),
            ("a2", "k3", "core", date(2023, 2, 1), date(2024, 2, 1), 900, 4),
            ("a2", "k4", "core", date(2024, 2, 1), date(2024, 5, 1), 600, 4),
            ("a3", "k5", "core", date(2023, 4, 1), date(2024, 4, 1), 500, 3),
            ("a4", "k6", "core", date(2024, 4, 2), date(2025, 4, 2), 700, 5),
            ("a5", "k7", "core", date(2024, 4, 1), date(2025, 4, 1), 100, None),
        ]
    )
    usage = pd.DataFrame(
        [
            ("a1", "u1", AS_OF, "login"),
            ("a1", "u2", AS_OF + SECOND, "report"),
            ("a1", "u1", AS_OF - days(3) + timedelta(hours=10), "export"),
            ("a1", "u3", datetime(2024, 3, 10, 12), "login"),
            ("a1", "u2", datetime(2024, 2, 20), "login"),
            ("a1", "u1", datetime(2024, 1, 10), "login"),
            ("a1", "u3", datetime(2023, 12, 1), "login"),
            ("a2", "v1", AS_OF - days(10), "login"),
            ("a2", None, AS_OF - days(7), "sync"),
            ("a3", "w1", AS_OF - days(1), "login"),
        ],
        columns=["account_id", "user_id", "event_time", "event_type"],
    )
    usage["quantity"] = 1.0
    tickets = pd.DataFrame(
        [
            ("a1", "t1", AS_OF - days(10), AS_OF - days(9), "P1", "bug", 4.0, True),
            ("a1", "t2", AS_OF - days(40), None, "p3", "how-to", None, False),
            ("a1", "t3", AS_OF, AS_OF + timedelta(hours=2), "urgent", "bug", 5.0, None),
            ("a1", "t4", AS_OF + SECOND, None, "p1", "bug", None, True),
            ("a1", "t5", AS_OF - days(100), AS_OF - days(80), "p2", "billing", 2.0, False),
        ],
        columns=[
            "account_id",
            "ticket_id",
            "opened_at",
            "closed_at",
            "priority",
            "category",
            "csat",
            "escalated",
        ],
    )
    tickets["closed_at"] = pd.to_datetime(tickets["closed_at"])
    engagement = pd.DataFrame(
        [
            ("a1", AS_OF - days(5), "meeting"),
            ("a1", AS_OF - days(100), "QBR"),
            ("a1", AS_OF + SECOND, "ebr"),
            ("a2", AS_OF, "email"),
        ],
        columns=["account_id", "occurred_at", "kind"],
    )
    surveys = pd.DataFrame(
        [
            ("a1", AS_OF - days(200), "nps", 9.0),
            ("a1", AS_OF - days(20), "nps", 6.0),
            ("a1", AS_OF - days(2), "csat", 5.0),
            ("a1", AS_OF + SECOND, "nps", 0.0),
            ("a2", AS_OF, "nps", 10.0),
        ],
        columns=["account_id", "responded_at", "kind", "score"],
    )
    contacts = pd.DataFrame(
        [
            ("a1", AS_OF - days(100), "champion", "left"),
            ("a1", AS_OF - days(10), "champion", "joined"),
            ("a1", AS_OF, "exec_sponsor", "left"),
            ("a2", AS_OF + SECOND, "champion", "left"),
        ],
        columns=["account_id", "changed_at", "role", "change"],
    )
    outcomes = pd.DataFrame(
        [("a1", AS_OF - days(30.5)), ("a2", AS_OF + SECOND)],
        columns=["account_id", "verified_at"],
    )
    health = pd.DataFrame(
        [
            ("a1", AS_OF - days(35), 70.0, "green"),
            ("a1", AS_OF, 55.0, "yellow"),
            ("a1", AS_OF + SECOND, 10.0, "red"),
            ("a2", AS_OF - days(10), 90.0, "green"),
        ],
        columns=["account_id", "scored_at", "score", "color"],
    )
    return {
        "accounts": accounts,
        "contracts": contracts,
        "usage_events": usage,
        "support_tickets": tickets,
        "engagement": engagement,
        "surveys": surveys,
        "contact_changes": contacts,
        "verified_outcomes": outcomes,
        "health_scores": health,
    }


@pytest.fixture
def golden(duck: Warehouse) -> pd.DataFrame:
    available = stage(duck, golden_tables())
    frame = build_features(duck, [AS_OF], available_tables=available)
    return frame.set_index("account_id")


def _check(frame: pd.DataFrame, expected: Mapping[str, Mapping[str, object]]) -> None:
    for account, values in expected.items():
        for name, want in values.items():
            got = frame.loc[account, name]
            if want is None:
                assert pd.isna(got), f"{account}.{name}: expected NULL, got {got!r}"
            elif isinstance(want, str):
                assert got == want, f"{account}.{name}: expected {want!r}, got {got!r}"
            else:
                assert got == pytest.approx(want, abs=1e-12), f"{account}.{name}: {got!r} != {want}"


def test_rows_are_accounts_active_at_as_of(golden: pd.DataFrame) -> None:
    # a3 ends exactly at as_of (end is exclusive), a4 starts a day later, a5 starts at as_of
    assert sorted(golden.index) == ["a1", "a2", "a5"]
    assert (golden["as_of"] == pd.Timestamp(AS_OF)).all()


def test_columns_are_keys_then_catalog_features(golden: pd.DataFrame) -> None:
    frame = golden.reset_index()
    assert list(frame.columns[:3]) == ["account_id", "as_of", "name"]
    assert set(frame.columns[3:]) == set(FEATURES)
    assert str(frame["account_id"].dtype) == "str"
    assert frame["as_of"].dtype.kind == "M"


def test_commercial_golden(golden: pd.DataFrame) -> None:
    _check(
        golden,
        {
            "a1": {
                "name": "Acme",
                "arr": 1500.0,
                "csm_owner": "csm_1",
                "segment": "enterprise",
                "industry": "software",
                "employees": 30.0,
                "arr_prev_365d": 1200.0,
                "arr_change_365d": 0.25,
                "tenure_days": 456.0,
                "days_to_next_renewal": 275.0,
                "contract_term_days": 731.0,
                "seats": 12.0,
                "arr_per_seat": 125.0,
                "arr_per_employee": 50.0,
                "products_active": 2.0,
                "past_contractions": 0.0,
            },
            "a2": {
                "arr": 600.0,
                "arr_change_365d": 600 / 900 - 1,
                "tenure_days": 425.0,
                "days_to_next_renewal": 30.0,
                "contract_term_days": 90.0,
                "past_contractions": 1.0,
                "arr_per_employee": 75.0,
            },
            "a5": {
                "arr": 100.0,
                "arr_prev_365d": 0.0,
                "arr_change_365d": None,
                "tenure_days": 0.0,
                "seats": None,
                "arr_per_seat": None,
                "arr_per_employee": None,
                "industry": None,
                "csm_owner": None,
            },
        },
    )


def test_usage_golden(golden: pd.DataFrame) -> None:
    _check(
        golden,
        {
            "a1": {
                "events_7d": 2.0,
                "events_28d": 3.0,
                "events_90d": 5.0,
                "events_prev_28d": 1.0,
                "events_change_28d": 2.0,
                "active_users_7d": 1.0,
                "active_users_28d": 2.0,
                "active_users_90d": 3.0,
                "active_users_prev_28d": 1.0,
                "active_users_change_28d": 1.0,
                "stickiness_28d": 3 / 28 / 2,
                "event_types_28d": 2.0,
                "events_per_active_user_28d": 1.5,
                "seat_utilization": 2 / 12,
                "days_since_last_activity": 0.0,
            },
            "a2": {
                "events_7d": 0.0,  # the event exactly 7 days before as_of is outside
                "events_28d": 2.0,
                "active_users_28d": 1.0,  # a NULL user_id is an event, not a user
                "stickiness_28d": 1 / 28,
                "event_types_28d": 2.0,
                "days_since_last_activity": 7.0,
                "seat_utilization": 0.25,
                "events_change_28d": None,
            },
            "a5": {
                "events_90d": 0.0,
                "active_users_28d": 0.0,
                "stickiness_28d": None,
                "seat_utilization": None,
                "days_since_last_activity": None,
            },
        },
    )


def test_support_golden(golden: pd.DataFrame) -> None:
    _check(
        golden,
        {
            "a1": {
                "tickets_30d": 2.0,
                "tickets_90d": 3.0,
                "p1_tickets_90d": 2.0,
                "open_tickets": 2.0,  # t2 never closed, t3 closed after as_of
                "median_hours_to_close_90d": (24 + 480) / 2,
                "escalated_tickets_90d": 1.0,
                "ticket_csat_90d": 3.0,
            },
            "a2": {"tickets_90d": 0.0, "open_tickets": 0.0, "median_hours_to_close_90d": None},
        },
    )


def test_engagement_sentiment_relationship_outcomes_golden(golden: pd.DataFrame) -> None:
    _check(
        golden,
        {
            "a1": {
                "days_since_last_csm_touch": 5.0,
                "csm_touches_90d": 1.0,
                "days_since_last_ebr_qbr": 100.0,
                "nps_latest": 6.0,
                "nps_change": -3.0,
                "days_since_last_nps": 20.0,
                "champion_left_90d": 0.0,
                "champion_left_180d": 1.0,
                "exec_sponsor_left_90d": 1.0,
                "exec_sponsor_left_180d": 1.0,
                "days_since_champion_left": 100.0,
                "verified_outcome_on_record": 1.0,
                "days_since_verified_outcome": 30.0,
            },
            "a2": {
                "days_since_last_csm_touch": 0.0,
                "csm_touches_90d": 1.0,
                "days_since_last_ebr_qbr": None,
                "nps_latest": 10.0,
                "nps_change": None,
                "champion_left_90d": 0.0,
                "days_since_champion_left": None,
                "verified_outcome_on_record": 0.0,
                "days_since_verified_outcome": None,
            },
        },
    )


def test_health_golden(golden: pd.DataFrame) -> None:
    _check(
        golden,
        {
            "a1": {
                "health_score": 55.0,
                "health_color": "yellow",
                "health_score_change_30d": -15.0,
                "health_color_prev_30d": "green",
            },
            "a2": {
                "health_score": 90.0,
                "health_color": "green",
                "health_score_change_30d": None,
                "health_color_prev_30d": None,
            },
            "a5": {"health_score": None, "health_color": None},
        },
    )


@pytest.mark.parametrize(
    "offsets",
    [
        [0, 1, -7],
        [0, 1, -7, -300, -420],  # over 406 days of as_of: two batches of day masks
        [-500, 200],  # two batches with unread days between: the activity near AS_OF
    ],
)
def test_many_dates_in_one_pass_equal_one_date_at_a_time(
    duck: Warehouse, offsets: list[int]
) -> None:
    available = stage(duck, golden_tables())
    dates = [AS_OF + days(n) for n in offsets]
    together = build_features(duck, dates, available_tables=available)
    apart = pd.concat(
        [build_features(duck, [d], available_tables=available) for d in sorted(dates)],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(together, apart)
    if 1 not in offsets:
        return
    next_day = together[together["as_of"] == pd.Timestamp(AS_OF + days(1))].set_index("account_id")
    # a second after as_of counts the next day; a4 starts then
    assert next_day.loc["a1", "events_7d"] == 3.0
    assert "a4" in next_day.index


def test_absent_optional_tables_leave_their_groups_out(duck: Warehouse) -> None:
    tables = golden_tables()
    core = {k: tables[k] for k in ("accounts", "contracts", "usage_events", "surveys")}
    available = stage(duck, core)
    frame = build_features(duck, [AS_OF], available_tables=available)
    assert "nps_latest" in frame.columns and "events_28d" in frame.columns
    for absent in ("health_score", "health_color", "tickets_90d", "csm_touches_90d",
                   "champion_left_90d", "verified_outcome_on_record"):  # fmt: skip
        assert absent not in frame.columns


def test_rejects_a_non_midnight_as_of(duck: Warehouse) -> None:
    available = stage(duck, golden_tables())
    with pytest.raises(ValueError, match="not a midnight"):
        build_features(duck, [AS_OF + SECOND], available_tables=available)


def test_requires_the_required_tables(duck: Warehouse) -> None:
    with pytest.raises(ValueError, match="usage_events"):
        build_features(duck, [AS_OF], available_tables=["accounts", "contracts"])


def test_no_active_account_gives_empty_frame_with_columns(duck: Warehouse) -> None:
    available = stage(duck, golden_tables())
    frame = build_features(duck, [datetime(2020, 1, 6)], available_tables=available)
    assert frame.empty and "events_28d" in frame.columns
    assert np.isin(["account_id", "as_of"], frame.columns).all()


def test_exact_duplicate_events_change_no_feature(duck: Warehouse) -> None:
    """The contract drops exact duplicate usage rows; the build reads the de-duplicated view
    for counts and the raw one only where a copy cannot matter (event types, last activity)."""
    tables = golden_tables()
    dates = [AS_OF, AS_OF - days(7)]
    clean = build_features(duck, dates, available_tables=stage(duck, tables))
    usage = tables["usage_events"]
    tables["usage_events"] = pd.concat([usage, usage, usage.head(3)], ignore_index=True)
    doubled = build_features(duck, dates, available_tables=stage(duck, tables))
    pd.testing.assert_frame_equal(clean, doubled)


def test_mask_batches_keep_every_window_inside_the_day_masks() -> None:
    from features.build import MASK_BITS, MASK_WORDS, USAGE_WINDOW_DAYS, mask_batches

    dates = [AS_OF + days(7 * k) for k in range(120)]  # 833 days of weekly dates
    batches = mask_batches(dates)
    assert [d for b in batches for d in b] == dates and len(batches) == 3
    for batch in batches:
        assert (batch[-1] - batch[0]).days + USAGE_WINDOW_DAYS <= MASK_WORDS * MASK_BITS


def test_day_masks_mark_each_window_on_the_days_it_counts() -> None:
    from features.build import MASK_BITS, day_masks

    bits, windows = day_masks([AS_OF])
    assert len(bits) == 90  # the 90 days (as_of - 90 days, as_of], numbered by their end
    words = [c for c in bits.columns if c != "day"]
    assert (bits[words].astype(bool).sum(axis=1) == 1).all()  # one bit per day

    def days_in(prefix: str) -> set[int]:
        mask = [int(windows.loc[0, f"{prefix}_{k}"]) for k in range(len(words))]
        return {
            int(row.day)
            for row in bits.itertuples()
            if any(mask[k] & int(getattr(row, f"b{k}")) for k in range(len(words)))
        }

    as_of_day = (AS_OF - datetime(1970, 1, 1)).days
    assert days_in("w7") == set(range(as_of_day - 6, as_of_day + 1))
    assert days_in("w90") == set(range(as_of_day - 89, as_of_day + 1))
    assert days_in("wp28") == set(range(as_of_day - 55, as_of_day - 27))
    assert MASK_BITS < 63  # words stay positive BIGINTs
