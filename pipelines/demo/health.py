"""The rule-based health score the demo's CS platform exports every week (Gainsight-style).

score = 0.5 usage + 0.15 support + 0.15 NPS + 0.2 engagement, each component 0-100, from the
data up to the end of the previous week; color green >= 70, yellow >= 40, red below.
By construction it cannot see champion loss, shallow-but-mandated logins (utilisation looks
great), or budget cuts in a struggling industry: those churners are often green.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.demo.signals import Panels, weekly_counts
from pipelines.demo.world import Accounts, Calendar

WEIGHTS = {"usage": 0.5, "support": 0.15, "nps": 0.15, "engagement": 0.2}
GREEN, YELLOW = 70.0, 40.0
SCORE_HOUR = 5  # exported at 05:00 UTC on the first day of each week


def color_of(score: np.ndarray) -> np.ndarray:
    return np.select([score >= GREEN, score >= YELLOW], ["green", "yellow"], "red")


def _trailing(panel: np.ndarray, weeks: int, how: str) -> np.ndarray:
    frame = pd.DataFrame(panel.T).rolling(weeks, min_periods=1)
    return getattr(frame, how)().to_numpy().T


def health_panel(
    acc: Accounts, pan: Panels, tickets: pd.DataFrame, touch: pd.DataFrame,
    surveys: pd.DataFrame, cal: Calendar,
) -> np.ndarray:  # fmt: skip
    """Score computed at the end of each week (NaN where the account is not a customer)."""
    n = len(acc)
    recent = _trailing(pan.active_users, 4, "mean")
    before = np.concatenate([np.full((n, 4), np.nan), recent[:, :-4]], axis=1)
    util = recent / np.maximum(pan.seats, 1)
    declining = recent < 0.8 * np.nan_to_num(before, nan=0.0)
    usage = np.clip(np.clip((util - 0.25) / 0.5, 0, 1) * 100 - 25 * declining, 0, 100)
    p1 = weekly_counts(tickets, n, cal, (tickets["priority"] == "p1").to_numpy())
    tickets_4w = _trailing(weekly_counts(tickets, n, cal), 4, "sum")
    support = np.clip(100 - 30 * _trailing(p1, 4, "sum") - 8 * tickets_4w, 0, 100)
    nps_rows = surveys[surveys["kind"] == "nps"]
    total = np.bincount(*_cells(nps_rows, cal), minlength=n * cal.n_weeks)
    count = weekly_counts(nps_rows, n, cal).ravel()
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan).reshape(n, cal.n_weeks)
    latest = pd.DataFrame(mean.T).ffill(limit=26).to_numpy().T
    nps = np.select([latest >= 8, latest >= 6.5, latest < 6.5], [100.0, 60.0, 20.0], 50.0)
    human = (touch["kind"] != "email").to_numpy()
    touches = _trailing(weekly_counts(touch, n, cal, human), 8, "sum")
    emails = _trailing(weekly_counts(touch, n, cal, ~human), 8, "sum")
    engaged = np.where(
        acc.high_touch[:, None], np.select([touches >= 2, touches >= 1], [100.0, 70.0], 35.0),
        np.where(emails + touches > 0, 70.0, 55.0))  # fmt: skip
    score = (WEIGHTS["usage"] * usage + WEIGHTS["support"] * support + WEIGHTS["nps"] * nps
             + WEIGHTS["engagement"] * engaged)  # fmt: skip
    return np.where(pan.live, np.round(score, 1), np.nan)


def _cells(frame: pd.DataFrame, cal: Calendar) -> tuple[np.ndarray, np.ndarray]:
    week = np.minimum(frame["t"].to_numpy() // 7, cal.n_weeks - 1).astype(np.int64)
    return frame["pos"].to_numpy() * cal.n_weeks + week, frame["score"].to_numpy()


def health_rows(
    rng: np.random.Generator, panel: np.ndarray, cal: Calendar
) -> tuple[pd.DataFrame, np.ndarray]:
    """Exported rows (pos, t, score): the week-(w-1) score is stamped at day 7w, 05:00.

    Returns the rows and the exported panel indexed by export week (NaN where not exported,
    about 1% of weeks are missing as export gaps).
    """
    n, weeks = panel.shape
    exported = np.full((n, weeks), np.nan)
    exported[:, 1:] = panel[:, :-1]
    stamp = 7 * np.arange(weeks) + SCORE_HOUR / 24
    exported[:, stamp >= cal.horizon] = np.nan
    exported[rng.random(exported.shape) < 0.01] = np.nan
    pos, week = np.nonzero(~np.isnan(exported))
    rows = pd.DataFrame({"pos": pos, "t": stamp[week], "score": exported[pos, week]})
    return rows, exported


def color_before(exported: np.ndarray, pos: np.ndarray, day: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Latest exported score (and color) at or before ``day`` for each account position."""
    filled = pd.DataFrame(exported.T).ffill(limit=3).to_numpy().T
    week = np.floor((day - SCORE_HOUR / 24) / 7).astype(int)
    ok = (week >= 0) & (week < exported.shape[1])
    score = np.where(ok, filled[pos, np.clip(week, 0, exported.shape[1] - 1)], np.nan)
    color = np.where(np.isnan(score), None, color_of(np.nan_to_num(score)))  # type: ignore[call-overload]
    return score, color
