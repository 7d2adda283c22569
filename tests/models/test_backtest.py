from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.backtest import SplitError, inner_split, rolling_origin_folds

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
    fit, valid = inner_split(WEEKS, validation_fraction=0.2, gap_days=21)
    assert WEEKS.iloc[valid].nunique() == 6
    assert WEEKS.iloc[fit].max() < WEEKS.iloc[valid].min() - pd.Timedelta(days=21)
    assert WEEKS.iloc[fit].max() == WEEKS.iloc[valid].min() - pd.Timedelta(days=28)
