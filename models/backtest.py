"""Time splits: rolling-origin backtest folds and the inner split of a training window.

A label for ``as_of = s`` is only known at ``s + gap`` (lead + horizon + grace), so the backtest
purges once: a row at ``s`` may train a model evaluated on rows at ``t`` only when
``s < t_first - gap``, where ``t_first`` is the earliest as_of of the test window.

The history a user has decides how much of the plan fits (:func:`plan_folds`): the configured
folds are kept when each has ``MIN_TRAIN_DATES`` as_of dates to train on, else the oldest folds
are dropped, then the test windows shortened, and each change is returned as a sentence for the
run log. Inside a training window, the early-stopping / calibration slice is cut by
:func:`inner_split`: with the full label gap when that leaves ``MIN_FIT_DATES`` dates to fit on;
otherwise with the largest gap that does, and then the slice holds out *accounts* as well as
time (fit on the other accounts' earlier rows), so no account's own outcome is in both parts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Fewest distinct as_of dates a backtest fold trains on (a month of weekly observations).
MIN_TRAIN_DATES = 4
# A history too short for MIN_TRAIN_DATES still gets one fold with this many (a young product's
# first weeks), said in the run's reductions; below it there is no honest out-of-time test.
LAST_RESORT_TRAIN_DATES = 2
# Fewest distinct as_of dates the booster fits on before its early-stopping slice.
MIN_FIT_DATES = 3
# Share of accounts held out for the early-stopping slice when the gap had to be shortened.
HELD_OUT_ACCOUNT_SHARE = 0.3


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


@dataclass(frozen=True)
class InnerSplit:
    """Fit rows and early-stopping/calibration rows of one training window."""

    fit_rows: np.ndarray
    valid_rows: np.ndarray
    gap_days: int  # the purge actually kept between the two parts
    accounts_held_out: bool  # the two parts also hold different accounts
    note: str | None = None  # why the split was reduced, when it was


def rolling_origin_folds(
    as_of: pd.Series, *, n_folds: int, fold_days: int, gap_days: int, min_train_dates: int = 1
) -> list[TimeFold]:
    """``n_folds`` consecutive test windows of ``fold_days`` ending at the latest as_of (oldest
    fold first); each trains on every row with ``as_of < test_start - gap_days``, which must
    hold at least ``min_train_dates`` distinct as_of dates."""
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
        if len(np.unique(dates[train])) < max(1, min_train_dates):
            raise SplitError(
                f"backtest fold {i + 1} (test from {pd.Timestamp(test_start).date()}): fewer "
                f"than {max(1, min_train_dates)} as_of dates to train on before it minus the "
                f"{gap_days}-day label gap; the labelled as_of dates span "
                f"{pd.Timestamp(dates.min()).date()}..{pd.Timestamp(last).date()}"
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


def observation_step_days(as_of: pd.Series) -> int:
    """The typical spacing of the as_of grid in days (7 for weekly observations)."""
    unique = np.unique(pd.to_datetime(as_of).to_numpy())
    if len(unique) < 2:
        return 7
    return max(1, int(np.median(np.diff(unique)) / np.timedelta64(1, "D")))


def minimum_history_days(*, gap_days: int, step_days: int) -> int:
    """Shortest span of labelled as_of dates that trains and backtests one fold: the training
    dates, the label gap, and one test date."""
    return (LAST_RESORT_TRAIN_DATES - 1) * step_days + gap_days + step_days + 1


def plan_folds(
    as_of: pd.Series, *, n_folds: int, fold_days: int, gap_days: int
) -> tuple[list[TimeFold], list[str]]:
    """The configured folds when the history holds them, else fewer folds, then shorter test
    windows (down to one as_of step); returns the folds and what was reduced, as sentences.
    Raises :class:`SplitError` naming the minimum history only when not even one fold fits."""
    step = observation_step_days(as_of)
    lengths = [fold_days, *[d for d in (21, 14, 7) if d < fold_days], step]
    for min_train in (MIN_TRAIN_DATES, LAST_RESORT_TRAIN_DATES):
        for days in dict.fromkeys(d for d in lengths if d >= step):
            for n in range(n_folds, 0, -1):
                try:
                    folds = rolling_origin_folds(
                        as_of,
                        n_folds=n,
                        fold_days=days,
                        gap_days=gap_days,
                        min_train_dates=min_train,
                    )
                except SplitError:
                    continue
                notes = _fold_reductions(n, days, n_folds=n_folds, fold_days=fold_days)
                if min_train < MIN_TRAIN_DATES:
                    trained_on = len(np.unique(np.asarray(as_of)[folds[0].train_rows]))
                    notes.append(
                        f"backtest: the oldest fold trains on only {trained_on}"
                        f" as_of dates (fewer than {MIN_TRAIN_DATES}): the history is very "
                        "short, so its metrics are weak evidence"
                    )
                return folds, notes
    dates = pd.to_datetime(as_of)
    span = int((dates.max() - dates.min()) / pd.Timedelta(days=1)) + 1
    raise SplitError(
        f"the labelled as_of dates span {span} days ({dates.min().date()}..{dates.max().date()}"
        f"), too short to train and test one fold: this config needs at least "
        f"{minimum_history_days(gap_days=gap_days, step_days=step)} days of labelled as_of "
        f"dates ({LAST_RESORT_TRAIN_DATES} as_of dates to train on, the {gap_days}-day label gap "
        "lead+horizon+grace, one test date); observe a longer history or shorten the label "
        "horizon"
    )


def _fold_reductions(n: int, days: int, *, n_folds: int, fold_days: int) -> list[str]:
    out = []
    if n < n_folds:
        out.append(
            f"backtest: {n} fold(s) instead of model.n_folds={n_folds}: the history is too "
            f"short for more with {MIN_TRAIN_DATES}+ as_of dates to train on each"
        )
    if days < fold_days:
        out.append(
            f"backtest: {days}-day test windows instead of model.fold_days={fold_days}, to fit "
            "the history"
        )
    return out


def inner_split(
    as_of: pd.Series,
    *,
    validation_fraction: float,
    gap_days: int,
    accounts: pd.Series | None = None,
    seed: int = 0,
) -> InnerSplit:
    """Split a training window into fit rows and the early-stopping/calibration slice, the
    latest ``validation_fraction`` of its as_of dates (at least one).

    Fit rows precede the slice by the full label gap when that leaves ``MIN_FIT_DATES`` dates
    (or all the window has). Otherwise, given ``accounts``, the gap is shortened to the largest
    multiple of the observation step that leaves them, and a seeded ``HELD_OUT_ACCOUNT_SHARE``
    of accounts forms the slice while the others fit: shared time, but no shared account."""
    dates = pd.to_datetime(as_of).to_numpy()
    unique = np.unique(dates)
    n_valid = max(1, int(np.ceil(validation_fraction * len(unique))))
    valid_start = unique[-n_valid] if n_valid < len(unique) else unique[-1]
    valid = np.flatnonzero(dates >= valid_start)
    fit = np.flatnonzero(dates < valid_start - np.timedelta64(gap_days, "D"))
    before = unique[unique < valid_start]
    needed = min(MIN_FIT_DATES, len(before))
    if needed > 0 and len(np.unique(dates[fit])) >= needed:
        return InnerSplit(fit, valid, gap_days, accounts_held_out=False)
    if accounts is None:
        raise SplitError(
            f"training window {pd.Timestamp(unique[0]).date()}..{pd.Timestamp(unique[-1]).date()}"
            f" is too short: nothing is left to fit the booster before the validation slice "
            f"from {pd.Timestamp(valid_start).date()} minus the {gap_days}-day label gap; lower "
            "model.n_folds / model.fold_days / model.validation_fraction or observe more history"
        )
    return _account_split(dates, before, valid_start, accounts, gap_days, seed)


def _account_split(
    dates: np.ndarray,
    before: np.ndarray,
    valid_start: np.datetime64,
    accounts: pd.Series,
    gap_days: int,
    seed: int,
) -> InnerSplit:
    """Slice = held-out accounts from ``valid_start``; fit = the other accounts before it, with
    the largest gap (<= ``gap_days``) that keeps ``MIN_FIT_DATES`` dates (or all there are)."""
    held = _held_out_accounts(accounts, seed)
    valid = np.flatnonzero((dates >= valid_start) & held)
    if len(before) == 0:  # a single as_of date: both parts at that date
        fit, gap = np.flatnonzero(~held), 0
    else:
        kth_oldest = before[min(MIN_FIT_DATES, len(before)) - 1]
        gap = int((valid_start - kth_oldest) / np.timedelta64(1, "D")) - 1
        gap = max(0, min(gap, gap_days))
        fit = np.flatnonzero((dates < valid_start - np.timedelta64(gap, "D")) & ~held)
    note = (
        f"early stopping/calibration: the {gap_days}-day label gap would leave fewer than "
        f"{MIN_FIT_DATES} as_of dates to fit on before the slice from "
        f"{pd.Timestamp(valid_start).date()}, so the slice holds out "
        f"{HELD_OUT_ACCOUNT_SHARE:.0%} of accounts and keeps a {gap}-day gap"
    )
    return InnerSplit(fit, valid, gap, accounts_held_out=True, note=note)


def _held_out_accounts(accounts: pd.Series, seed: int) -> np.ndarray:
    """A stable, seeded ``HELD_OUT_ACCOUNT_SHARE`` of accounts (by a hash of the id)."""
    ids = accounts.astype(str).to_numpy()
    unique, inverse = np.unique(ids, return_inverse=True)
    hashed = np.array([zlib.crc32(f"{seed}:{a}".encode()) for a in unique], dtype=np.uint64)
    chosen = (hashed % 1000) < HELD_OUT_ACCOUNT_SHARE * 1000
    return chosen[inverse]
