"""The hidden world behind the demo data: accounts, their latent state week by week, contracts.

Time runs on a weekly grid: week ``w`` covers days ``[7w, 7w + 7)`` counted from the first day
of history (``Calendar.start``). Day offsets are integers relative to that day; the run date
``Calendar.end`` is day ``Calendar.horizon`` and nothing observable happens on or after it.

Accounts are generated in blocks; each block draws from its own random stream
(``default_rng([seed, 1, block])``), so a block is the same whether it is generated alone (the
streaming benchmark generator) or as part of the in-memory demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

SEGMENTS = ("enterprise", "mid-market", "smb")
INDUSTRIES = (
    "software",
    "financial services",
    "healthcare",
    "manufacturing",
    "retail",
    "media",
    "education",
    "logistics",
)
TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Singapore",
    "Australia/Sydney",
    "Asia/Tokyo",
)
CSM_ROSTER = {
    "enterprise": ("Maya Chen", "Daniel Okafor", "Sofia Rossi", "Liam Novak"),
    "mid-market": ("Priya Raman", "Tom Becker", "Grace Kim", "Lucas Silva", "Emma Dubois"),
    "smb": ("Digital CS",),
}
BLOCK_SIZE = 500


@dataclass(frozen=True)
class SegmentProfile:
    """How one segment buys, uses and leaves."""

    share: float
    seats_median: float
    seats_sigma: float
    price_per_seat: float  # annual list price of one seat
    employees_per_seat: float
    terms: tuple[tuple[int, float], ...]  # (months, probability)
    churn_intercept: float  # logit of churn at a 12-month renewal for an average account
    addon_rate: float  # yearly chance of a mid-term seat add-on for a healthy account
    high_touch: bool


PROFILES: dict[str, SegmentProfile] = {
    "enterprise": SegmentProfile(0.15, 75, 0.6, 1500.0, 30.0, ((12, 0.72), (24, 0.16), (36, 0.12)),
                                 -4.8, 0.35, True),
    "mid-market": SegmentProfile(0.35, 22, 0.55, 820.0, 12.0, ((12, 0.86), (24, 0.06), (1, 0.08)),
                                 -4.0, 0.25, True),
    "smb": SegmentProfile(0.50, 7, 0.6, 480.0, 6.0, ((12, 0.55), (1, 0.45)),
                          -2.8, 0.10, False),
}  # fmt: skip


@dataclass(frozen=True)
class Calendar:
    """History from ``start`` (day 0) to the run date ``end`` (day ``horizon``, excluded)."""

    start: date
    end: date

    @property
    def horizon(self) -> int:
        return (self.end - self.start).days

    @property
    def n_weeks(self) -> int:
        return -(-self.horizon // 7)

    @property
    def start64(self) -> np.datetime64:
        return np.datetime64(self.start, "D")

    @classmethod
    def for_years(cls, end: date, years: float) -> Calendar:
        if years <= 0.25:
            raise ValueError(f"years must be > 0.25 (got {years}): the demo needs a few quarters")
        return cls(start=end - timedelta(days=round(years * 365.25)), end=end)


@dataclass(frozen=True)
class World:
    """Facts shared by every block: which industry hits a downturn and when, survey waves."""

    downturn_industry: str
    downturn_week: int
    nps_phase: int  # NPS survey waves run in weeks w with w % 26 == nps_phase

    @classmethod
    def draw(cls, seed: int, cal: Calendar) -> World:
        rng = np.random.default_rng([seed, 0])
        weeks = cal.n_weeks
        return cls(
            downturn_industry=str(rng.choice(["retail", "media"])),
            downturn_week=int(rng.integers(int(weeks * 0.3), max(int(weeks * 0.65), 2))),
            nps_phase=int(rng.integers(0, 26)),
        )


@dataclass
class Accounts:
    """Static attributes of the accounts of one block (arrays aligned by position)."""

    number: np.ndarray  # 1-based global account number
    segment: np.ndarray
    industry: np.ndarray  # true industry (the exported one may be missing)
    timezone: np.ndarray
    fit: np.ndarray
    mandated: np.ndarray  # usage mandated top-down: high logins, shallow value
    no_usage_tracking: np.ndarray  # product telemetry never connected
    budget_cut_week: np.ndarray  # week a budget cut lands (large = never)
    first_start: np.ndarray  # day offset of the first exported contract
    created_day: np.ndarray  # day offset of account creation (negative: before history)
    is_new_logo: np.ndarray
    seats0: np.ndarray
    price: np.ndarray
    term0: np.ndarray  # months of the first contract

    def __len__(self) -> int:
        return len(self.number)

    @property
    def high_touch(self) -> np.ndarray:
        return self.segment != "smb"


def draw_accounts(
    rng: np.random.Generator, first_number: int, n: int, cal: Calendar, world: World
) -> Accounts:
    """Segments, firmographics, commercial terms and hidden traits of ``n`` accounts."""
    names = np.array(SEGMENTS)
    segment = names[rng.choice(3, size=n, p=[PROFILES[s].share for s in SEGMENTS])]
    prof = {f: np.array([getattr(PROFILES[s], f) for s in segment]) for f in
            ("seats_median", "seats_sigma", "price_per_seat")}  # fmt: skip
    seats0 = np.maximum(1, np.round(prof["seats_median"] * rng.lognormal(0, prof["seats_sigma"])))
    price = prof["price_per_seat"] * rng.uniform(0.8, 1.15, n)
    term0 = np.array([_draw_term(rng, s) for s in segment])
    industry = np.array(INDUSTRIES)[rng.integers(0, len(INDUSTRIES), n)]
    is_new = rng.random(n) < 0.33
    horizon = cal.horizon
    first_new = rng.uniform(0, horizon - 14, n)
    first_old = -rng.uniform(0, term0 * 30.4)
    first_start = np.floor(np.where(is_new, first_new, first_old)).astype(int)
    created = np.where(is_new, first_start - rng.integers(0, 10, n),
                       first_start - rng.integers(15, 1100, n))  # fmt: skip
    hit = (industry == world.downturn_industry) & (rng.random(n) < 0.7)
    cut_week = np.where(hit, world.downturn_week + rng.integers(0, 20, n), 10**6)
    mandated_p = np.where(segment == "smb", 0.05, 0.10)
    return Accounts(
        number=np.arange(first_number, first_number + n),
        segment=segment,
        industry=industry,
        timezone=np.array(TIMEZONES)[rng.integers(0, len(TIMEZONES), n)],
        fit=rng.normal(0, 1, n),
        mandated=rng.random(n) < mandated_p,
        no_usage_tracking=rng.random(n) < 0.03,
        budget_cut_week=cut_week,
        first_start=first_start,
        created_day=created,
        is_new_logo=is_new,
        seats0=seats0,
        price=price,
        term0=term0,
    )


def _draw_term(rng: np.random.Generator, segment: str) -> int:
    months, probs = zip(*PROFILES[segment].terms, strict=True)
    return int(months[rng.choice(len(months), p=probs)])


@dataclass
class Latent:
    """Hidden weekly state, shape (accounts, weeks), plus contact events."""

    value: np.ndarray  # value realised, 0..1 (includes onboarding ramp)
    champion: np.ndarray  # champion strength, 0..1 (0.1 while the seat is vacant)
    exec_present: np.ndarray  # bool
    champion_events: pd.DataFrame  # pos, week, change (left/joined)
    exec_events: pd.DataFrame


def simulate_latent(rng: np.random.Generator, acc: Accounts, cal: Calendar) -> Latent:
    """Evolve value realised and champion strength week by week (vectorised over accounts).

    Value is a logistic AR(1) around a per-account mean set by fit; regime shocks move that mean
    (a re-org, a competitor, a product gap) and a weak or vacant champion drags value down
    over the following weeks. Mandated accounts realise less value than their logins suggest.
    """
    n, weeks = len(acc), cal.n_weeks
    mu = 0.35 + 0.55 * acc.fit + rng.normal(0, 0.35, n) - 0.9 * acc.mandated
    z = mu + rng.normal(0, 0.4, n)
    value = np.empty((n, weeks))
    champ = np.empty((n, weeks))
    exec_present = np.empty((n, weeks), dtype=bool)
    base = np.clip(rng.normal(0.72, 0.15, n), 0.3, 1.0)
    strength = base.copy()
    present = np.ones(n, dtype=bool)
    replace_at = np.full(n, np.inf)
    ex_present = np.ones(n, dtype=bool)
    ex_replace = np.full(n, np.inf)
    champ_hazard = np.where(acc.segment == "smb", 0.24, 0.19) / 52
    ch_events, ex_events = [], []
    for w in range(weeks):
        shocked = rng.random(n) < 0.12 / 52
        mu = mu + shocked * rng.normal(-0.25, 0.7, n)
        left = present & (rng.random(n) < champ_hazard)
        present &= ~left
        replace_at = np.where(left, w + rng.geometric(1 / 9, n) + np.where(
            rng.random(n) < 0.25, 10**6, 0), replace_at)  # fmt: skip
        joined = ~present & (w >= replace_at)
        present |= joined
        base = np.where(joined, np.clip(rng.normal(0.68, 0.15, n), 0.3, 1.0), base)
        strength = np.where(joined, 0.3, strength)
        strength = np.where(present, strength + 0.08 * (base - strength), 0.1)
        ex_left = ex_present & (rng.random(n) < 0.09 / 52)
        ex_present &= ~ex_left
        ex_replace = np.where(ex_left, w + rng.geometric(1 / 12, n), ex_replace)
        ex_joined = ~ex_present & (w >= ex_replace)
        ex_present |= ex_joined
        target = mu - 1.6 * np.clip(0.6 - strength, 0, None)
        z = 0.93 * z + 0.07 * target + rng.normal(0, 0.12, n)
        value[:, w], champ[:, w], exec_present[:, w] = _sigmoid(z), strength, ex_present
        ch_events += _events(w, left, "left") + _events(w, joined, "joined")
        ex_events += _events(w, ex_left, "left") + _events(w, ex_joined, "joined")
    value *= _onboarding_ramp(acc, cal)
    return Latent(value, champ, exec_present, _event_frame(ch_events), _event_frame(ex_events))


def _events(week: int, mask: np.ndarray, change: str) -> list[tuple[int, int, str]]:
    return [(int(p), week, change) for p in np.flatnonzero(mask)]


def _event_frame(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["pos", "week", "change"])
    return frame.astype({"pos": np.int64, "week": np.int64, "change": object})


def _onboarding_ramp(acc: Accounts, cal: Calendar) -> np.ndarray:
    """New logos realise value gradually over their first ~3 months."""
    age_weeks = np.arange(cal.n_weeks)[None, :] - (acc.first_start[:, None] / 7)
    ramp = 0.35 + 0.65 * (1 - np.exp(-np.clip(age_weeks, 0, None) / 6))
    return np.where(acc.is_new_logo[:, None], ramp, 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def add_months(days: np.ndarray, months: np.ndarray, cal: Calendar) -> np.ndarray:
    """Day offsets ``months`` calendar months after ``days`` (day of month kept, clipped)."""
    dates = cal.start64 + days.astype("timedelta64[D]")
    month = dates.astype("datetime64[M]")
    dom = (dates - month.astype("datetime64[D]")).astype(int)
    target = month + months.astype("timedelta64[M]")
    month_len = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(int)
    out = target.astype("datetime64[D]") + np.minimum(dom, month_len - 1).astype("timedelta64[D]")
    return (out - cal.start64).astype(int)
