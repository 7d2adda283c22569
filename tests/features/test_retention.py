"""Retention metrics on a hand-written book of contracts (the worked example in docs/metrics.md)."""

from datetime import date

import pandas as pd
import pytest

from features.retention import (
    RetentionConfig,
    arr_movements,
    churn_events,
    cohort_retention,
    detect_history_start,
    mark_history,
    period_bounds,
    prepare_contracts,
    with_industry_category,
)


def book() -> pd.DataFrame:
    rows = [
        # account, contract, start, end (exclusive), arr, segment
        ("A", "a1", "2024-02-01", "2025-02-01", 100.0, "ent"),
        ("A", "a2", "2025-02-01", "2026-02-01", 150.0, "ent"),  # renewal up 50
        ("A", "a3", "2025-03-01", "2026-02-01", 30.0, "ent"),  # mid-term add-on
        ("B", "b1", "2024-03-01", "2025-03-01", 200.0, "smb"),
        ("B", "b2", "2025-03-01", "2026-03-01", 120.0, "smb"),  # renewal down 80
        ("C", "c1", "2024-01-15", "2025-02-15", 300.0, "smb"),  # churns 2025-02-15
        ("D", "d1", "2025-02-01", "2026-02-01", 50.0, "ent"),  # new logo in Q1 2025
        ("F", "f1", "2024-06-01", "2025-03-01", 80.0, "smb"),
        ("F", "f2", "2025-03-10", "2026-03-10", 80.0, "smb"),  # 9-day lapse inside Q1
        ("G", "g1", "2023-01-01", "2025-01-01", 500.0, "ent"),  # ends exactly at Q1 start
        ("H", "h1", "2025-04-01", "2026-04-01", 70.0, "ent"),  # starts exactly at Q1 end
    ]
    frame = pd.DataFrame(
        rows, columns=["account_id", "contract_id", "start_date", "end_date", "arr", "segment"]
    )
    frame["start_date"] = pd.to_datetime(frame["start_date"]).dt.date
    frame["end_date"] = pd.to_datetime(frame["end_date"]).dt.date
    return frame


def q1(**kwargs) -> pd.Series:
    out = arr_movements(
        book(), period="quarter", start=date(2025, 1, 1), end=date(2025, 4, 1), **kwargs
    )
    assert len(out) == 1
    return out.iloc[0]


def test_quarter_bridge_hand_computed():
    row = q1()
    assert row["period"] == "2025Q1"
    assert row["starting_arr"] == 680.0  # A 100 + B 200 + C 300 + F 80; G ended at 2025-01-01
    assert row["expansion"] == 80.0  # A 100 -> 180
    assert row["contraction"] == 80.0  # B 200 -> 120
    assert row["churned_arr"] == 300.0  # C
    assert row["new_arr"] == 120.0  # D 50 + H 70 (starts at the period end instant)
    assert row["ending_arr"] == 500.0
    assert row["ndr"] == pytest.approx(380 / 680)  # 0.5588
    assert row["grr"] == pytest.approx(300 / 680)  # 0.4412
    assert (row["logos_start"], row["logos_churned"], row["logos_new"]) == (4, 1, 2)
    assert row["logo_churn_rate"] == 0.25


def test_bridge_identity_and_grr_bound():
    out = arr_movements(book(), period="month", start=date(2024, 1, 1), end=date(2025, 6, 1))
    bridge = (
        out["starting_arr"]
        + out["expansion"]
        - out["contraction"]
        - out["churned_arr"]
        + out["new_arr"]
    )
    assert (bridge - out["ending_arr"]).abs().max() < 1e-9
    assert (out["grr"].dropna() <= 1.0).all()
    # months chain: each month's ending ARR is the next month's starting ARR
    assert (out["ending_arr"].iloc[:-1].to_numpy() == out["starting_arr"].iloc[1:].to_numpy()).all()


def test_by_segment():
    out = arr_movements(
        book(), period="quarter", start=date(2025, 1, 1), end=date(2025, 4, 1), by=["segment"]
    ).set_index("segment")
    assert out.loc["ent", "starting_arr"] == 100.0 and out.loc["ent", "new_arr"] == 120.0
    assert out.loc["ent", "ndr"] == pytest.approx(1.8) and out.loc["ent", "grr"] == 1.0
    assert out.loc["smb", "ndr"] == pytest.approx(200 / 580)
    assert out.loc["smb", "grr"] == pytest.approx(200 / 580)


def test_exclude_segments():
    row = q1(exclude_segments=["smb"])
    assert row["starting_arr"] == 100.0 and row["ndr"] == pytest.approx(1.8)


def test_ttm_hand_computed():
    out = arr_movements(book(), period="ttm", start=date(2024, 4, 1), end=date(2025, 4, 1))
    row = out.iloc[-1]
    assert row["period"] == "TTM to 2025-03" and len(out) == 1
    assert row["starting_arr"] == 1100.0  # A, B, C, G on 2024-04-01
    assert row["churned_arr"] == 800.0  # C 300 + G 500
    assert row["new_arr"] == 200.0  # F 80 + D 50 + H 70
    assert row["ndr"] == pytest.approx(300 / 1100)
    assert row["grr"] == pytest.approx(0.2)


def test_rolling_average():
    out = arr_movements(
        book(), period="quarter", start=date(2024, 10, 1), end=date(2025, 4, 1), rolling=2
    )
    assert list(out["period"]) == ["2024Q4", "2025Q1"]
    assert out.loc[0, "ndr"] == pytest.approx(680 / 1180)  # G churns in Q4
    assert pd.isna(out.loc[0, "ndr_rolling"])
    assert out.loc[1, "ndr_rolling"] == pytest.approx((680 / 1180 + 380 / 680) / 2)


def test_signup_cohort_grouping():
    out = arr_movements(
        book(), period="quarter", start=date(2025, 1, 1), end=date(2025, 4, 1), by=["signup_cohort"]
    ).set_index("signup_cohort")
    assert out.loc["2024Q1", "starting_arr"] == 600.0  # A, B, C
    assert out.loc["2024Q2", "starting_arr"] == 80.0  # F


def test_period_bounds():
    months = period_bounds("month", date(2025, 1, 15), date(2025, 4, 1))
    assert list(months["period"]) == ["2025-02", "2025-03"]  # only complete months
    with pytest.raises(ValueError, match="period must be one of"):
        period_bounds("week", date(2025, 1, 1), date(2025, 4, 1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"arr": -1.0}, "negative arr"),
        ({"end_date": date(2023, 1, 1)}, "end_date before start_date"),
    ],
)
def test_bad_contracts_are_named(change, message):
    bad = book()
    for col, value in change.items():
        bad.loc[0, col] = value
    with pytest.raises(ValueError, match=f"contracts: 1 row\\(s\\) with {message}"):
        prepare_contracts(bad)


def test_missing_column_is_named():
    with pytest.raises(KeyError, match=r"contracts lacks column\(s\) \['arr'\]"):
        prepare_contracts(book().drop(columns="arr"))


def test_cohort_retention_hand_computed():
    out = cohort_retention(book(), end=date(2025, 4, 1), cohort="quarter", step_months=3)
    c = out[out["cohort"] == "2024Q1"].set_index("months_since_start")
    assert c.loc[0, "starting_arr"] == 600.0 and c.loc[0, "accounts"] == 3
    assert c.loc[3, "arr_retention"] == 1.0
    # 12 months on: A 150 (2025-02-01), B 120 (2025-03-01), C 300 (2025-01-15, still live)
    assert c.loc[12, "arr"] == 570.0 and c.loc[12, "arr_retention"] == pytest.approx(0.95)
    assert c.loc[12, "logo_retention"] == 1.0
    assert 15 not in c.index  # B reaches 15 months after the end date: cell hidden
    g = out[out["cohort"] == "2023Q1"].set_index("months_since_start")
    assert g.loc[24, "logo_retention"] == 0.0 and g.loc[21, "logo_retention"] == 1.0


@pytest.mark.parametrize(
    "grace,expected",
    [
        (0, [("G", "2025-01-01", 500.0), ("C", "2025-02-15", 300.0), ("F", "2025-03-01", 80.0)]),
        (30, [("G", "2025-01-01", 500.0), ("C", "2025-02-15", 300.0)]),  # F back after 9 days
        (60, [("G", "2025-01-01", 500.0)]),  # C's grace runs past the end date
    ],
)
def test_churn_events(grace, expected):
    out = churn_events(book(), start=date(2024, 1, 1), end=date(2025, 4, 1), grace_days=grace)
    got = [(r.account_id, f"{r.churn_date:%Y-%m-%d}", r.churned_arr) for r in out.itertuples()]
    assert got == expected


def test_reads_staging_views_from_the_warehouse(duck):
    frame = book()
    duck.create_table_from_frame(frame.drop(columns="segment"), "stg_contracts")
    accounts = (
        frame[["account_id", "segment"]].drop_duplicates().assign(csm_owner="x", industry="y")
    )
    duck.create_table_from_frame(accounts, "stg_accounts")
    row = arr_movements(
        duck, period="quarter", start=date(2025, 1, 1), end=date(2025, 4, 1), by=["segment"]
    ).set_index("segment")
    assert row.loc["smb", "ndr"] == pytest.approx(200 / 580)


@pytest.mark.postgres
def test_reads_staging_views_on_postgres(pg):
    frame = book()
    pg.create_table_from_frame(frame.drop(columns="segment"), "stg_contracts")
    accounts = (
        frame[["account_id", "segment"]].drop_duplicates().assign(csm_owner="x", industry="y")
    )
    pg.create_table_from_frame(accounts, "stg_accounts")
    row = q1_from(pg)
    assert row["ndr"] == pytest.approx(380 / 680) and row["new_arr"] == 120.0


def q1_from(wh) -> pd.Series:
    out = arr_movements(wh, period="quarter", start=date(2025, 1, 1), end=date(2025, 4, 1))
    return out.iloc[0]


def test_cohorts_need_a_contract_before_the_end():
    with pytest.raises(ValueError, match="no contract starts on or before end"):
        cohort_retention(book(), end=date(2020, 1, 1))


@pytest.mark.parametrize(
    "grace,churned,ndr,months",
    [
        (0, 380.0, 350 / 780, 4),  # F's lapse on 2025-03-01 looks like churn (+ new in March)
        (10, 300.0, 430 / 780, 3),  # F renews 9 days late: retained; April's grace not over
    ],
)
def test_late_renewal_within_grace_is_not_churn(grace, churned, ndr, months):
    out = arr_movements(
        book(), period="month", start=date(2025, 1, 1), end=date(2025, 5, 1), grace_days=grace
    )
    feb = out.set_index("period").loc["2025-02"]
    assert feb["starting_arr"] == 780.0  # A 150 (renewed 02-01), B 200, C 300, F 80, D 50
    assert feb["churned_arr"] == churned and feb["ndr"] == pytest.approx(ndr)
    assert len(out) == months


def test_no_complete_period_is_an_error():
    with pytest.raises(ValueError, match="no complete quarter period"):
        arr_movements(
            book(), period="quarter", start=date(2025, 1, 1), end=date(2025, 4, 1), grace_days=30
        )


def test_cohorts_before_the_history_start_are_left_out():
    out = cohort_retention(book(), end=date(2025, 4, 1), start=date(2024, 1, 1))
    assert "2023Q1" not in set(out["cohort"])  # G: only survivors of 2023 are on record
    assert "2024Q1" in set(out["cohort"])


@pytest.mark.parametrize("grace,retained", [(0, 0.0), (10, 1.0)])
def test_cohort_anniversary_renewed_late_within_grace_is_retained(grace, retained):
    # F's first contract ends 2025-03-01, nine months in; the renewal starts 9 days later
    out = cohort_retention(book(), end=date(2025, 4, 1), step_months=3, grace_days=grace)
    f = out[out["cohort"] == "2024Q2"].set_index("months_since_start")
    assert f.loc[9, "logo_retention"] == retained
    assert f.loc[9, "arr"] == 80.0 * retained


def test_cohort_cells_wait_for_the_grace_period():
    # B (2024Q1) reaches 12 months on 2025-03-01: with 45 days of grace a late renewal could
    # still come until 2025-04-15, after the end date, so the cell is hidden; 9 months is shown
    shown = cohort_retention(book(), end=date(2025, 4, 1), grace_days=45)
    c = shown[shown["cohort"] == "2024Q1"]
    assert 12 not in set(c["months_since_start"]) and 9 in set(c["months_since_start"])


def test_evergreen_contracts_never_lapse():
    """end_date NULL: in force from its start on; it never churns and its ARR counts in every
    later period (here E, evergreen from 2024-06-01, and an add-on dropped mid-quarter)."""
    rows = pd.DataFrame(
        [
            ("E", "e1", "2024-06-01", None, 400.0, "smb"),
            ("E", "e2", "2024-06-01", "2025-02-01", 100.0, "smb"),  # contraction, not churn
        ],
        columns=["account_id", "contract_id", "start_date", "end_date", "arr", "segment"],
    )
    contracts = pd.concat([book(), rows], ignore_index=True)
    out = arr_movements(contracts, period="quarter", start=date(2025, 1, 1), end=date(2025, 4, 1))
    row = out.iloc[0]
    assert row["starting_arr"] == 680.0 + 500.0 and row["contraction"] == 80.0 + 100.0
    assert row["churned_arr"] == 300.0 and row["logos_churned"] == 1  # C only
    events = churn_events(contracts, start=date(2024, 1, 1), end=date(2026, 6, 1))
    assert "E" not in set(events["account_id"])
    assert prepare_contracts(contracts)["end_date"].isna().sum() == 1


# --- trailing 12 months and the history start (the board report's headline) -------------------


def ttm_book() -> pd.DataFrame:
    rows = [
        ("a", "2023-01-01", "2024-07-01", 100.0),
        ("a", "2024-07-01", "2025-07-01", 150.0),  # renewed up 50: expansion
        ("b", "2023-06-01", "2024-06-01", 200.0),  # not renewed: churned
        ("c", "2023-03-01", "2024-03-01", 300.0),
        ("c", "2024-03-01", "2025-03-01", 240.0),  # renewed down 60: contraction
        ("d", "2024-05-01", "2025-05-01", 80.0),  # new logo: out of NDR and GRR
    ]
    frame = pd.DataFrame(rows, columns=["account_id", "start_date", "end_date", "arr"])
    return frame.assign(
        start_date=pd.to_datetime(frame["start_date"]), end_date=pd.to_datetime(frame["end_date"])
    )


def test_trailing_12_month_ndr_and_grr_hand_computed():
    ttm = arr_movements(ttm_book(), period="ttm", start=date(2024, 1, 1), end=date(2025, 1, 1))
    assert len(ttm) == 1
    row = ttm.iloc[0]
    assert row["period"] == "TTM to 2024-12"
    assert (row["starting_arr"], row["expansion"], row["contraction"]) == (600.0, 50.0, 60.0)
    assert (row["churned_arr"], row["new_arr"], row["ending_arr"]) == (200.0, 80.0, 470.0)
    assert row["ndr"] == pytest.approx(390 / 600)  # 150 + 0 + 240 of 100 + 200 + 300
    assert row["grr"] == pytest.approx(340 / 600)  # 600 - 60 contraction - 200 churn
    assert row["logo_churn_rate"] == pytest.approx(1 / 3)


def survivors_book() -> pd.DataFrame:
    """An export that begins in 2024: only contracts still in force then, however early they
    started (b's predecessors and every account lost in 2023 are missing)."""
    rows = [
        ("a", "2023-01-01", "2024-04-01", 100.0),
        ("a", "2024-04-01", "2025-04-01", 100.0),
        ("b", "2023-10-01", "2024-02-15", 50.0),  # the first end in the data: churns
        ("e", "2024-03-01", "2025-03-01", 40.0),  # a new logo after the export began
    ]
    frame = pd.DataFrame(rows, columns=["account_id", "start_date", "end_date", "arr"])
    return frame.assign(
        start_date=pd.to_datetime(frame["start_date"]), end_date=pd.to_datetime(frame["end_date"])
    )


def test_history_start_is_the_first_contract_end_and_marks_earlier_quarters():
    book = survivors_book()
    start = detect_history_start(book)
    assert start == pd.Timestamp("2024-02-15")
    quarters = mark_history(
        arr_movements(book, period="quarter", start=date(2023, 1, 1), end=date(2025, 1, 1)),
        start,
    )
    before = quarters[~quarters["complete_history"]]
    assert before["period"].tolist() == ["2023Q1", "2023Q2", "2023Q3", "2023Q4", "2024Q1"]
    # the survivors-only quarters of 2023 read 100% GRR by construction
    assert before["grr"].head(4).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert quarters.loc[quarters["complete_history"], "period"].iloc[0] == "2024Q2"
    assert detect_history_start(book.assign(end_date=pd.NaT)) is None


def test_cohorts_from_the_history_start_keep_only_accounts_that_signed_after_it():
    book = survivors_book()
    start = detect_history_start(book)
    every = cohort_retention(book, end=date(2025, 1, 1))
    after = cohort_retention(book, end=date(2025, 1, 1), start=start)
    assert set(every["cohort"]) == {"2023Q1", "2023Q4", "2024Q1"}
    assert set(after["cohort"]) == {"2024Q1"}
    assert after.loc[after["months_since_start"] == 0, "accounts"].tolist() == [1]


def test_industry_categories_label_accounts_and_refuse_unknown_codes():
    book = ttm_book().assign(industry=["media", "media", "retail", None, None, "software"])
    labelled = with_industry_category(book, {"media": 1, "software": 3})
    assert labelled["industry_category"].tolist() == [
        "1 hit hard",
        "1 hit hard",
        "unmapped",
        "unmapped",
        "unmapped",
        "3 benefits",
    ]
    with pytest.raises(ValueError, match="1, 2 or 3"):
        RetentionConfig(industry_categories={"media": 4})
