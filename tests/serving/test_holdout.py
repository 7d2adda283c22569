"""Holdouts: seeded, stratified by tier, the same on reruns and from week to week; the uplift
estimate finds no effect where the demo has none and finds an injected save effect."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.demo_data import generate_demo
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
