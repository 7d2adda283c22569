"""Time splits: rolling-origin backtest folds and the inner split of a training window.

A label for ``as_of = s`` is only known at ``s + gap`` (lead + horizon + grace), so every split
purges: a row at ``s`` may train a model evaluated (or calibrated) on rows at ``t`` only when
``s < t_first - gap``, where ``t_first`` is the earliest as_of of the later slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


class SplitError(ValueError):
    """The observation grid is too short for the requested folds, window or label gap."""


@dataclass(frozen=True)
class TimeFold:
    """One rolling-origin fold: rows are positions in the frame the fold was cut from."""

    index: int
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def rolling_origin_folds(
    as_of: pd.Series, *, n_folds: int, fold_days: int, gap_days: int
) -> list[TimeFold]:
    """``n_folds`` consecutive test windows of ``fold_days`` ending at the latest as_of (oldest
    fold first); each trains on every row with ``as_of < test_start - gap_days``."""
    dates = pd.to_datetime(as_of).to_numpy()
    last = dates.max()
    folds = []
    for i in range(n_folds):
        end = last - np.timedelta64(fold_days * (n_folds - 1 - i), "D")
        begin = end - np.timedelta64(fold_days, "D")
        test = np.flatnonzero((dates > begin) & (dates <= end))
        if len(test) == 0:
            raise SplitError(f"backtest fold {i + 1}: no rows with as_of in ({begin}, {end}]")
        test_start = dates[test].min()
        train = np.flatnonzero(dates < test_start - np.timedelta64(gap_days, "D"))
        if len(train) == 0:
            raise SplitError(
                f"backtest fold {i + 1} (test from {pd.Timestamp(test_start).date()}): no "
                f"training rows before it minus the {gap_days}-day label gap; the labelled "
                f"as_of dates span {pd.Timestamp(dates.min()).date()}..{pd.Timestamp(last).date()}"
                ": lower model.n_folds or model.fold_days, or observe a longer history"
            )
        folds.append(
            TimeFold(
                index=i + 1,
                train_rows=train,
                test_rows=test,
                train_end=pd.Timestamp(dates[train].max()),
                test_start=pd.Timestamp(test_start),
                test_end=pd.Timestamp(dates[test].max()),
            )
        )
    return folds


def inner_split(
    as_of: pd.Series, *, validation_fraction: float, gap_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a training window into (fit rows, validation rows): validation is the latest
    ``validation_fraction`` of its as_of dates (at least one); fit rows precede it by the gap."""
    dates = pd.to_datetime(as_of).to_numpy()
    unique = np.unique(dates)
    n_valid = max(1, int(np.ceil(validation_fraction * len(unique))))
    valid_start = unique[-n_valid]
    valid = np.flatnonzero(dates >= valid_start)
    fit = np.flatnonzero(dates < valid_start - np.timedelta64(gap_days, "D"))
    if len(fit) == 0:
        raise SplitError(
            f"training window {pd.Timestamp(unique[0]).date()}..{pd.Timestamp(unique[-1]).date()}"
            f" is too short: nothing is left to fit the booster before the validation slice "
            f"from {pd.Timestamp(valid_start).date()} minus the {gap_days}-day label gap; lower "
            "model.n_folds / model.fold_days / model.validation_fraction or observe more history"
        )
    return fit, valid
