from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.backtest import (
    MIN_FIT_DATES,
    MIN_TRAIN_DATES,
    SplitError,
    inner_split,
    minimum_history_days,
    plan_folds,
    rolling_origin_folds,
)

WEEKS = pd.Series(pd.date_range("2025-01-06", periods=30, freq="7D").repeat(3))


@pytest.mark.parametrize("gap_days", [0, 7, 28, 90])
def test_no_training_row_within_the_label_gap_of_the_test_window(gap_days):
    folds = rolling_origin_folds(WEEKS, n_folds=3, fold_days=14, gap_days=gap_days)
    assert [f.index for f in folds] == [1, 2, 3]
    for fold in folds:
        train, test = WEEKS.iloc[fold.train_rows], WEEKS.iloc[fold.test_rows]
        assert train.max() < test.min() - pd.Timedelta(days=gap_days)
        # everything before the purge boundary is used
        assert (test.min() - pd.Timedelta(days=gap_days) > WEEKS).sum() == len(train)


def test_folds_are_consecutive_windows_ending_at_the_latest_date():
    folds = rolling_origin_folds(WEEKS, n_folds=3, fold_days=14, gap_days=28)
    assert folds[-1].test_end == WEEKS.max()
    assert [len(f.test_rows) for f in folds] == [6, 6, 6]
    assert folds[0].test_end < folds[1].test_start and folds[1].test_end < folds[2].test_start
    all_test = np.concatenate([f.test_rows for f in folds])
    assert len(set(all_test)) == len(all_test)


def test_too_short_history_names_the_dates_and_the_fix():
    with pytest.raises(SplitError, match=r"fold 1 .*lower model.n_folds"):
        rolling_origin_folds(WEEKS, n_folds=3, fold_days=14, gap_days=400)


def test_inner_split_keeps_the_gap_before_the_validation_slice():
    split = inner_split(WEEKS, validation_fraction=0.2, gap_days=21)
    fit, valid = split.fit_rows, split.valid_rows
    assert split.gap_days == 21 and not split.accounts_held_out and split.note is None
    assert WEEKS.iloc[valid].nunique() == 6
    assert WEEKS.iloc[fit].max() < WEEKS.iloc[valid].min() - pd.Timedelta(days=21)
    assert WEEKS.iloc[fit].max() == WEEKS.iloc[valid].min() - pd.Timedelta(days=28)


def test_plan_keeps_the_configured_folds_when_the_history_holds_them():
    folds, reductions = plan_folds(WEEKS, n_folds=3, fold_days=14, gap_days=28)
    assert len(folds) == 3 and reductions == []


def test_short_history_gets_fewer_folds_and_says_why():
    weeks = pd.Series(pd.date_range("2025-01-06", periods=14, freq="7D"))
    folds, reductions = plan_folds(weeks, n_folds=3, fold_days=28, gap_days=44)
    assert len(folds) >= 1
    for fold in folds:  # the label gap is still purged, once
        assert weeks.iloc[fold.train_rows].max() < fold.test_start - pd.Timedelta(days=44)
        assert weeks.iloc[fold.train_rows].nunique() >= MIN_TRAIN_DATES
    assert folds[-1].test_end == weeks.max()
    assert any("instead of model.n_folds=3" in r for r in reductions)


def test_test_windows_shrink_before_giving_up():
    weeks = pd.Series(pd.date_range("2025-01-06", periods=11, freq="7D"))
    folds, reductions = plan_folds(weeks, n_folds=1, fold_days=28, gap_days=44)
    assert len(folds) == 1 and any("test windows instead of" in r for r in reductions)


def test_impossible_history_names_the_minimum_in_days():
    weeks = pd.Series(pd.date_range("2025-01-06", periods=8, freq="7D"))
    need = minimum_history_days(gap_days=44, step_days=7)
    assert need == 1 * 7 + 44 + 7 + 1
    with pytest.raises(SplitError, match=rf"needs at least {need} days of labelled as_of"):
        plan_folds(weeks, n_folds=3, fold_days=28, gap_days=44)
    # and the minimum is enough
    span = pd.Series(pd.date_range("2025-01-06", periods=need // 7 + 1, freq="7D"))
    assert len(plan_folds(span, n_folds=1, fold_days=7, gap_days=44)[0]) == 1


def test_a_very_short_history_gets_one_fold_on_two_dates_and_says_so():
    # three months of weekly history with a 37-day label gap: 8 labelled dates (a 3-month cut)
    weeks = pd.Series(pd.date_range("2022-01-03", periods=8, freq="7D"))
    folds, reductions = plan_folds(weeks, n_folds=3, fold_days=28, gap_days=37)
    assert len(folds) == 1
    train = weeks.iloc[folds[0].train_rows]
    assert train.nunique() == 2 and train.max() < folds[0].test_start - pd.Timedelta(days=37)
    assert any("trains on only 2 as_of dates" in r and "weak evidence" in r for r in reductions)


def test_short_window_holds_out_accounts_instead_of_a_second_full_purge():
    weeks = pd.Series(pd.date_range("2025-01-06", periods=6, freq="7D").repeat(30))
    accounts = pd.Series([f"A{i:03d}" for i in range(30)] * 6)  # 30 accounts, every week
    with pytest.raises(SplitError, match="too short"):
        inner_split(weeks, validation_fraction=0.2, gap_days=44)
    split = inner_split(weeks, validation_fraction=0.2, gap_days=44, accounts=accounts)
    assert split.accounts_held_out and "holds out 30% of accounts" in split.note
    fit_ids, valid_ids = set(accounts.iloc[split.fit_rows]), set(accounts.iloc[split.valid_rows])
    assert fit_ids and valid_ids and not fit_ids & valid_ids
    assert weeks.iloc[split.fit_rows].nunique() == MIN_FIT_DATES
    gap = pd.Timedelta(days=split.gap_days)
    assert weeks.iloc[split.fit_rows].max() < weeks.iloc[split.valid_rows].min() - gap
    assert split.gap_days < 44
