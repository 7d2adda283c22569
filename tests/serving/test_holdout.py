"""Holdouts: seeded, stratified by tier, the same on reruns and from week to week; the uplift
estimate finds no effect where the demo has none and finds an injected save effect."""

from __future__ import annotations

import uuid
from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.demo.data import generate_demo
from serving.holdout import (
    HOLDOUTS_SCHEMA,
    HoldoutConfig,
    assign_holdout,
    estimate_uplift,
    holdout_rows,
    newcombe_interval,
)

TEN = HoldoutConfig(share=0.10, seed=7)


def _predictions(n_high: int = 40, n_medium: int = 20, n_low: int = 30) -> pd.DataFrame:
    tiers = ["high"] * n_high + ["medium"] * n_medium + ["low"] * n_low
    n = len(tiers)
    return pd.DataFrame(
        {
            "run_date": pd.Timestamp("2026-11-16"),
            "account_id": [f"ACC-{i:05d}" for i in range(n)],
            "churn_tier": tiers,
            "segment": ["smb"] * n,
            "arr": np.arange(n, dtype=float) * 1000,
            "churn_probability": np.linspace(0.9, 0.01, n),
        }
    )


def test_holdout_is_stratified_by_tier_and_only_flagged() -> None:
    out = assign_holdout(_predictions(), config=TEN, flagged_tiers=["high", "medium"])
    held = out[out["holdout"]]
    assert held.groupby("churn_tier").size().to_dict() == {"high": 4, "medium": 2}
    assert out["holdout"].dtype == bool
    only_high = assign_holdout(_predictions(), config=TEN, flagged_tiers=["high"])
    assert set(only_high.loc[only_high["holdout"], "churn_tier"]) == {"high"}
    assert only_high["holdout"].sum() == 4


def test_holdout_is_off_by_default() -> None:
    out = assign_holdout(_predictions(), config=HoldoutConfig(), flagged_tiers=["high"])
    assert not out["holdout"].any()


def test_reruns_and_row_order_pick_the_same_accounts_and_the_seed_matters() -> None:
    frame = _predictions()
    first = assign_holdout(frame, config=TEN, flagged_tiers=["high"])
    shuffled = frame.sample(frac=1.0, random_state=3)
    again = assign_holdout(shuffled, config=TEN, flagged_tiers=["high"])
    picked = set(first.loc[first["holdout"], "account_id"])
    assert picked == set(again.loc[again["holdout"], "account_id"])
    other = assign_holdout(frame, config=HoldoutConfig(share=0.10, seed=8), flagged_tiers=["high"])
    assert picked != set(other.loc[other["holdout"], "account_id"])


def test_an_account_held_out_stays_held_out_next_week() -> None:
    """The draw depends on (seed, account), not the run date: next week's same flagged set
    holds out the same accounts, so a held-out account is not listed a week later."""
    week1 = _predictions()
    week2 = week1.assign(run_date=pd.Timestamp("2026-11-23"))
    a = assign_holdout(week1, config=TEN, flagged_tiers=["high"])
    b = assign_holdout(week2, config=TEN, flagged_tiers=["high"])
    assert a["holdout"].tolist() == b["holdout"].tolist()


def test_holdout_rows_record_every_flagged_account_with_its_group() -> None:
    scored = assign_holdout(_predictions(), config=TEN, flagged_tiers=["high"])
    rows = holdout_rows(scored, config=TEN, flagged_tiers=["high"])
    assert list(rows.columns) == list(HOLDOUTS_SCHEMA)
    assert len(rows) == 40 and rows["holdout"].sum() == 4
    assert (rows["holdout_share"] == 0.10).all() and (rows["holdout_seed"] == 7).all()
    unassigned = holdout_rows(_predictions(), config=TEN, flagged_tiers=["high"])
    assert unassigned.empty and list(unassigned.columns) == list(HOLDOUTS_SCHEMA)


def test_newcombe_interval_matches_the_published_example() -> None:
    """Newcombe (1998), method 10: 56/70 - 48/80 = 0.2, 95 % interval 0.0524 to 0.3339."""
    lo, hi = newcombe_interval(56, 70, 48, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


@pytest.fixture(scope="module")
def demo_flags() -> pd.DataFrame:
    """Flagged accounts from the demo's ground truth: every renewal whose true churn
    probability was >= 5 %, flagged 90 days before its contract end, outcome the true decision.
    The demo has no CSM acting on any list, so there is no treatment effect."""
    data = generate_demo(n_accounts=500, seed=3, end=date(2026, 11, 16), years=2.0)
    r = data.truth["renewals"]
    r = r[r["churn_probability"] >= 0.05]
    flags = pd.DataFrame(
        {
            "account_id": r["account_id"].astype(str).to_numpy(),
            "run_date": (pd.to_datetime(r["end_date"]) - pd.Timedelta(days=90)).to_numpy(),
            "churn_tier": np.where(r["churn_probability"] >= 0.3, "high", "medium"),
            "arr": r["arr_before"].to_numpy(dtype=float),
            "churned": (r["decision"] == "churn").to_numpy(),
        }
    )
    flags["churned_arr"] = np.where(flags["churned"], flags["arr"], 0.0)
    return flags


def _drawn(flags: pd.DataFrame, seed: int) -> pd.DataFrame:
    config = HoldoutConfig(share=0.5, seed=seed)
    return assign_holdout(flags, config=config, flagged_tiers=["high", "medium"])


def _with_saves(flags: pd.DataFrame, *, save_rate: float, seed: int) -> pd.DataFrame:
    """Inject a treatment effect: each listed churner is saved with probability ``save_rate``."""
    rng = np.random.default_rng(seed)
    saved = ~flags["holdout"] & flags["churned"] & (rng.random(len(flags)) < save_rate)
    out = flags.copy()
    out.loc[saved, "churned"] = False
    out.loc[saved, "churned_arr"] = 0.0
    return out


def test_uplift_on_demo_truth_without_effect_contains_zero(demo_flags: pd.DataFrame) -> None:
    uplift = estimate_uplift(_drawn(demo_flags, seed=1), n_boot=1000)
    assert uplift.n_listed + uplift.n_holdout == demo_flags["account_id"].nunique()
    assert uplift.interval[0] < 0 < uplift.interval[1]
    assert uplift.arr_interval[0] < 0 < uplift.arr_interval[1]
    assert not uplift.significant
    # coverage: over 20 independent holdout draws the 95 % interval misses zero rarely
    covered = [
        estimate_uplift(_drawn(demo_flags, seed=s), n_boot=200).significant for s in range(20)
    ]
    assert sum(covered) <= 3


def test_uplift_on_demo_truth_detects_an_injected_save_effect(demo_flags: pd.DataFrame) -> None:
    """Acting on the list saves 80 % of listed churners: with ~210 flagged accounts (a fifth
    churn) the interval excludes zero in nearly every holdout draw."""
    drawn = _drawn(demo_flags, seed=1)
    uplift = estimate_uplift(_with_saves(drawn, save_rate=0.8, seed=5), n_boot=1000)
    assert uplift.interval[0] > 0 and uplift.arr_interval[0] > 0
    assert uplift.saved_accounts > 0 and uplift.saved_arr > 0
    detected = [
        estimate_uplift(_with_saves(_drawn(demo_flags, s), save_rate=0.8, seed=s), n_boot=200)
        for s in range(20)
    ]
    assert sum(u.interval[0] > 0 for u in detected) >= 17
    assert all(u.difference > 0 for u in detected)


def test_uplift_counts_each_account_once_and_skips_unmatured_labels() -> None:
    flags = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "c", "d"],
            "run_date": pd.to_datetime(
                ["2026-01-05", "2026-01-12", "2026-01-05", "2026-01-05", "2026-01-05"]
            ),
            "holdout": [True, False, False, False, True],
            "arr": [100.0, 100.0, 200.0, 300.0, 400.0],
            "churned": pd.array([True, False, True, False, pd.NA], dtype="boolean"),
            "churned_arr": [100.0, 0.0, 200.0, 0.0, 0.0],
        }
    )
    uplift = estimate_uplift(flags, n_boot=50)
    assert (uplift.n_holdout, uplift.churned_holdout) == (1, 1)  # a at its first flag; d unmatured
    assert (uplift.n_listed, uplift.churned_listed) == (2, 1)
    assert uplift.difference == pytest.approx(0.5)
    assert uplift.arr_rate_listed == pytest.approx(200 / 500)


def test_uplift_needs_both_groups() -> None:
    flags = _predictions(5, 0, 0).assign(holdout=False, churned=True, churned_arr=1.0)
    with pytest.raises(ValueError, match="listed 5, held out 0"):
        estimate_uplift(flags)


def _scored(day: date, predictions: pd.DataFrame):
    from serving.score import Scored
    from serving.writeback import PREDICTIONS_SCHEMA, REASONS_SCHEMA

    frame = predictions.assign(run_date=pd.Timestamp(day))
    for column in PREDICTIONS_SCHEMA:
        if column not in frame:
            frame[column] = None
    reasons = pd.DataFrame({c: pd.Series(dtype=object) for c in REASONS_SCHEMA})
    return Scored(frame, reasons, day, "snap", {"churn": "churn v1"})


def _assert_written_and_replaced(wh, schema: str) -> None:
    from serving.config import ServingConfig
    from serving.holdout import read_holdouts
    from serving.writeback import write_scores

    config = ServingConfig(holdout=TEN)
    day = date(2026, 11, 16)
    drawn = assign_holdout(_predictions(), config=TEN, flagged_tiers=["high"])
    counts = write_scores(wh, _scored(day, drawn), schema=schema, run_meta={}, config=config)
    assert counts[f"{schema}.list_holdouts"] == 40
    stored = read_holdouts(wh, schema=schema)
    assert stored["holdout"].sum() == 4
    assert set(stored.loc[stored["holdout"], "account_id"]) == set(
        drawn.loc[drawn["holdout"], "account_id"]
    )
    fewer = assign_holdout(_predictions(n_high=10), config=TEN, flagged_tiers=["high"])
    write_scores(wh, _scored(day, fewer), schema=schema, run_meta={}, config=config)
    again = read_holdouts(wh, schema=schema)
    assert len(again) == 10 and again["holdout"].sum() == 1  # the run date replaced, not added
    pk = wh.query(
        "SELECT constraint_type FROM information_schema.table_constraints "
        "WHERE table_schema = ? AND table_name = 'list_holdouts'",
        [schema],
    )
    assert "PRIMARY KEY" in pk["constraint_type"].tolist()


def test_list_holdouts_are_written_with_the_predictions_and_replaced_on_rerun(duck) -> None:
    _assert_written_and_replaced(duck, "out")


@pytest.mark.postgres
def test_list_holdouts_are_written_and_replaced_on_postgres(pg) -> None:
    schema = f"h_{uuid.uuid4().hex[:10]}"
    try:
        _assert_written_and_replaced(pg, schema)
    finally:
        pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_holdout_outcomes_join_labels_at_the_run_date_and_the_section_reads_plainly() -> None:
    from serving.holdout import holdout_outcomes, uplift_section

    holdouts = pd.DataFrame(
        {
            "run_date": pd.to_datetime(["2026-01-05"] * 4 + ["2026-01-12"]),
            "account_id": ["a", "b", "c", "d", "e"],
            "holdout": [True, True, False, False, False],
            "arr": [100.0, 200.0, 300.0, 400.0, 500.0],
        }
    )
    labels = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e"],
            "as_of": pd.to_datetime(["2026-01-05"] * 4 + ["2026-01-05"]),  # e: other date
            "churned": pd.array([True, False, False, False, True], dtype="boolean"),
            "churned_arr": [100.0, 0.0, 0.0, 0.0, 500.0],
        }
    )
    out = holdout_outcomes(holdouts, labels)
    assert out["churned"].tolist()[:4] == [True, False, False, False]
    assert pd.isna(out["churned"].iloc[4])  # no label at e's run date: not matured
    section = uplift_section(out, horizon_days=90)
    text = section.notes[1]  # ARR: held out 100 of 300 churned, listed 0 of 700: 1/3 x 700
    assert "1 of 2 held out (50%)" in text and "0 of 2 listed churned" in text
    assert "about 1.0 account(s) and $233 ARR saved" in text
    assert section.tables[0].rows[0]["cells"][:3] == ["Listed (worked by CSMs)", "2", "0.0%"]
    assert "No holdout recorded" in uplift_section(None, horizon_days=90).missing
    only_listed = out.assign(holdout=False)
    assert "No holdout recorded" in uplift_section(only_listed, horizon_days=90).missing
    unmatured = out.assign(churned=pd.array([pd.NA] * 5, dtype="boolean"))
    assert "not matured yet" in uplift_section(unmatured, horizon_days=90).missing
