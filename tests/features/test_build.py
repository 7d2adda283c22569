"""Golden feature values on hand-written rows, per group, at and around one as_of.

Every group has an event exactly at as_of (counted) and one a second later (not counted)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features.build import NoActiveAccountsError, build_features, build_model_features
from features.catalog import FEATURES, event_type_features, event_type_suffix
from features.config import ActiveConfig, FeatureConfig, WarehouseConfig
from features.sources import create_staging_view, locate_sources
from features.usage import choose_event_types, event_types_for_features
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
            ("a5", "x1", AS_OF + SECOND, "report"),
        ],
        columns=["account_id", "user_id", "event_time", "event_type"],
    )
    # a1's event a second after as_of has the largest quantity; NULL is one unit
    usage["quantity"] = [2.0, 100.0, 5.0, 3.0, 1.0, 4.0, 7.0, 2.5, None, 1.0, 9.0]
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
    # the event types with most events up to as_of ("report" only comes a second after it)
    per_type = event_type_features(["login", "export", "sync"])
    assert set(frame.columns[3:]) == set(FEATURES) | set(per_type)
    assert list(frame.columns[-len(per_type) :]) == list(per_type)
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


def test_value_golden(golden: pd.DataFrame) -> None:
    _check(
        golden,
        {
            "a1": {
                "quantity_7d": 7.0,  # at as_of 2 + export 5; the 100 a second later is not seen
                "quantity_28d": 10.0,
                "quantity_90d": 15.0,
                "quantity_mean_7d": 3.5,
                "quantity_mean_28d": 10 / 3,
                "quantity_mean_90d": 3.0,
                "quantity_max_7d": 5.0,
                "quantity_max_90d": 5.0,
                "days_since_first_activity": 122.0,  # 2023-12-01 00:00
                "active_days_28d": 3.0,
                "active_days_90d": 5.0,
                "events_per_day_28d": 3 / 28,
                "events_per_day_90d": 5 / 90,
                "quantity_per_day_90d": 15 / 90,
            },
            "a2": {
                "quantity_7d": 0.0,  # the event exactly 7 days before as_of is outside
                "quantity_28d": 3.5,  # a NULL quantity is one unit
                "quantity_mean_28d": 1.75,
                "quantity_max_7d": None,
                "quantity_max_28d": 2.5,
                "days_since_first_activity": 10.0,
                "active_days_28d": 2.0,
                "events_per_day_28d": 2 / 11,  # 11 days of activity tenure
            },
            "a5": {  # its only event is a second after as_of
                "quantity_90d": 0.0,
                "quantity_mean_28d": None,
                "quantity_max_90d": None,
                "days_since_first_activity": None,
                "active_days_90d": 0.0,
                "events_per_day_28d": None,
            },
        },
    )


def test_per_event_type_golden(golden: pd.DataFrame) -> None:
    _check(
        golden,
        {
            "a1": {
                "events_7d__login": 1.0,
                "quantity_7d__login": 2.0,
                "events_28d__login": 2.0,
                "quantity_28d__login": 5.0,
                "events_90d__login": 4.0,
                "quantity_90d__login": 10.0,
                "events_7d__export": 1.0,
                "quantity_90d__export": 5.0,
                "events_90d__sync": 0.0,
            },
            "a2": {
                "events_7d__sync": 0.0,
                "events_28d__sync": 1.0,
                "quantity_28d__sync": 1.0,
                "quantity_28d__login": 2.5,
            },
            "a5": {"events_90d__login": 0.0, "quantity_7d__export": 0.0},
        },
    )


def test_event_types_are_chosen_at_the_earliest_as_of(duck: Warehouse) -> None:
    available = stage(duck, golden_tables())
    assert choose_event_types(duck, AS_OF, top_k=10) == ["login", "export", "sync"]
    assert choose_event_types(duck, AS_OF, top_k=1) == ["login"]
    assert choose_event_types(duck, AS_OF + SECOND, top_k=10) == [
        "login", "report", "export", "sync"
    ]  # fmt: skip
    # a build over two dates takes the types of the earlier one, for both
    frame = build_features(duck, [AS_OF, AS_OF + days(7)], available_tables=available)
    assert "events_28d__report" not in frame.columns
    none = build_features(duck, [AS_OF], available_tables=available, config=_config(top_k=0))
    assert not [c for c in none.columns if "__" in c]


def test_scoring_rebuilds_the_model_per_type_columns(duck: Warehouse) -> None:
    """A model trained on some types gets exactly its columns back at a later date, even when
    the most frequent types have changed since."""
    available = stage(duck, golden_tables())
    trained = build_features(duck, [AS_OF], available_tables=available)
    model_features = [c for c in trained.columns if c.startswith(("events_", "quantity_"))]
    later = AS_OF + days(7)
    types = event_types_for_features(duck, model_features, as_of=later)
    assert types == ["export", "login", "sync"]
    scored = build_features(duck, [later], available_tables=available, event_types=types)
    assert set(model_features) <= set(scored.columns)
    assert "events_28d__report" not in scored.columns
    with pytest.raises(ValueError, match="gives the per-type feature"):
        event_types_for_features(duck, ["events_28d__unknown"], as_of=later)


def test_build_model_features_gives_the_model_columns_not_a_new_top_k(duck: Warehouse) -> None:
    available = stage(duck, golden_tables())
    trained = build_features(duck, [AS_OF], available_tables=available)
    later = AS_OF + days(7)
    scored = build_model_features(
        duck, [later], feature_names=list(trained.columns), available_tables=available
    )
    assert sorted(scored.columns) == sorted(trained.columns)  # "report" is frequent now: not built
    fresh = build_features(duck, [later], available_tables=available)
    assert "events_28d__report" in fresh.columns
    common = [c for c in scored.columns if c in fresh.columns]
    pd.testing.assert_frame_equal(scored[common], fresh[common])


@pytest.mark.parametrize(
    ("event_type", "suffix"),
    [
        ("login", "login"),
        ("win_opportunity", "win_opportunity"),
        ("Win Opportunity", "win_opportunity_"),
        ("win-opportunity", "win_opportunity_"),
        ("2fa", "2fa_"),
        ("!!!", "type_"),
        ("a" * 40, "a" * 25 + "_"),
    ],
)
def test_event_type_suffixes_are_safe_and_distinct(event_type: str, suffix: str) -> None:
    got = event_type_suffix(event_type)
    assert got.startswith(suffix) and len(got) <= 32
    assert all(c.islower() or c.isdigit() or c == "_" for c in got)
    if got != event_type:  # a changed name carries a hash of the type: distinct types differ
        assert len(got) == len(suffix) + 6
    assert event_type_suffix("Win Opportunity") != event_type_suffix("win-opportunity")
    with pytest.raises(ValueError, match="repeated"):
        event_type_features(["login", "login"])


def _config(*, top_k: int = 10, rule: str = "contract") -> FeatureConfig:
    return FeatureConfig(event_types={"top_k": top_k}, active=ActiveConfig(rule=rule))


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
    types = ["login", "report", "export", "sync"]
    together = build_features(duck, dates, available_tables=available, event_types=types)
    apart = pd.concat(
        [
            build_features(duck, [d], available_tables=available, event_types=types)
            for d in sorted(dates)
            if d > datetime(2023, 1, 1)  # no account is active before (an error on its own)
        ],
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


@pytest.mark.parametrize("rule", ["contract", "activity", "both"])
def test_no_active_account_is_an_error_naming_the_date_and_rule(duck: Warehouse, rule: str) -> None:
    available = stage(duck, golden_tables())
    with pytest.raises(NoActiveAccountsError, match=f"2020-01-06.*rule '{rule}'"):
        build_features(
            duck, [datetime(2020, 1, 6)], available_tables=available, config=_config(rule=rule)
        )
    two = [datetime(2020, 1, 6), datetime(2020, 1, 13)]
    with pytest.raises(ValueError, match=r"the 2 observation dates 2020-01-06 \.\. 2020-01-13"):
        build_features(duck, two, available_tables=available)


def test_a_date_without_active_accounts_beside_others_gives_no_rows(duck: Warehouse) -> None:
    available = stage(duck, golden_tables())
    frame = build_features(duck, [datetime(2020, 1, 6), AS_OF], available_tables=available)
    assert (frame["as_of"] == pd.Timestamp(AS_OF)).all() and len(frame) == 3
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
    from features.usage import MASK_BITS, MASK_WORDS, USAGE_WINDOW_DAYS, mask_batches

    dates = [AS_OF + days(7 * k) for k in range(120)]  # 833 days of weekly dates
    batches = mask_batches(dates)
    assert [d for b in batches for d in b] == dates and len(batches) == 3
    for batch in batches:
        assert (batch[-1] - batch[0]).days + USAGE_WINDOW_DAYS <= MASK_WORDS * MASK_BITS


def test_day_masks_mark_each_window_on_the_days_it_counts() -> None:
    from features.usage import MASK_BITS, day_masks

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


def _with_contracts(extra: list[tuple]) -> dict[str, pd.DataFrame]:
    """The golden tables with more accounts and contracts (``end_date`` None: evergreen)."""
    tables = golden_tables()
    ids = sorted({row[0] for row in extra})
    more = _accounts([(a, a, "smb", "x", 10, "csm_3", datetime(2023, 1, 1)) for a in ids])
    tables["accounts"] = pd.concat([tables["accounts"], more], ignore_index=True)
    tables["contracts"] = pd.concat([tables["contracts"], _contracts(extra)], ignore_index=True)
    return tables


def test_evergreen_contracts_are_in_force_without_a_renewal(duck: Warehouse) -> None:
    tables = _with_contracts(
        [
            ("e1", "k20", "core", date(2023, 6, 1), None, 400, 2),  # evergreen
            ("e2", "k21", "core", date(2023, 6, 1), None, 400, 2),  # evergreen + a dated add-on
            ("e2", "k22", "addon", date(2024, 1, 1), date(2024, 7, 1), 100, 1),
            ("e3", "k23", "core", date(2024, 5, 1), None, 400, 2),  # starts after as_of
        ]
    )
    frame = build_features(duck, [AS_OF], available_tables=stage(duck, tables))
    frame = frame.set_index("account_id")
    assert "e3" not in frame.index
    _check(
        frame,
        {
            "e1": {
                "arr": 400.0,
                "days_to_next_renewal": None,
                "contract_term_days": None,
                "tenure_days": 305.0,
                "arr_prev_365d": 0.0,
            },
            "e2": {
                "arr": 500.0,
                "days_to_next_renewal": 91.0,  # the add-on's end
                "contract_term_days": 182.0,
                "products_active": 2.0,
            },
        },
    )
    # a year later the evergreen contract is still in force; the add-on has ended
    later = build_features(duck, [datetime(2025, 4, 7)], available_tables=stage(duck, tables))
    later = later.set_index("account_id")
    assert later.loc["e2", "arr"] == 400.0 and pd.isna(later.loc["e2", "days_to_next_renewal"])
    assert later.loc["e2", "past_contractions"] == 1.0 and later.loc["e1", "arr_prev_365d"] == 400


def test_active_rule_contract_activity_or_both(duck: Warehouse) -> None:
    tables = _with_contracts(
        [("z1", "k30", "usage", date(2024, 1, 1), None, 0, None)]  # usage-priced: ARR 0
    )
    # u1: no contract at all, an event 27.5 days before as_of; u2: an event exactly 28 days before
    events = pd.DataFrame(
        [
            ("u1", "p1", AS_OF - days(27.5), "login", 3.0),
            ("u2", "p2", AS_OF - days(28), "login", 1.0),
        ],
        columns=["account_id", "user_id", "event_time", "event_type", "quantity"],
    )
    tables["usage_events"] = pd.concat([tables["usage_events"], events], ignore_index=True)
    t0 = datetime(2023, 1, 1)
    more = _accounts([(a, a, "smb", "x", 3, "csm_3", t0) for a in ("u1", "u2")])
    tables["accounts"] = pd.concat([tables["accounts"], more], ignore_index=True)
    available = stage(duck, tables)

    def rows(rule: str) -> pd.DataFrame:
        config = _config(rule=rule)
        frame = build_features(duck, [AS_OF], available_tables=available, config=config)
        return frame.set_index("account_id")

    contract, activity, both = rows("contract"), rows("activity"), rows("both")
    assert sorted(contract.index) == ["a1", "a2", "a5", "z1"]  # z1: a contract at ARR 0
    # a3's contract ended at as_of, its last event a day before; a5 and z1 have no event
    assert sorted(activity.index) == ["a1", "a2", "a3", "u1"]
    assert sorted(both.index) == ["a1", "a2", "a3", "a5", "u1", "z1"]
    _check(
        both,
        {
            "u1": {"arr": 0.0, "seats": None, "products_active": 0.0, "tenure_days": None,
                   "days_to_next_renewal": None, "quantity_28d": 3.0, "events_28d": 1.0},
            "z1": {"arr": 0.0, "products_active": 1.0, "days_to_next_renewal": None},
            "a1": {"arr": 1500.0, "events_28d": 3.0},
            "a3": {"arr": 0.0, "days_since_last_activity": 1.0, "tenure_days": 366.0},
        },
    )  # fmt: skip
    short = FeatureConfig(active=ActiveConfig(rule="activity", activity_days=7))
    frame = build_features(duck, [AS_OF], available_tables=available, config=short)
    assert sorted(frame["account_id"]) == ["a1", "a3"]  # a2's last event: exactly 7 days before
