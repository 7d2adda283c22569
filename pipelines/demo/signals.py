"""Observable signals of the demo world, drawn from the hidden weekly state with lags.

Every function takes the block's accounts, latent state and contract book and returns rows with
``pos`` (account position in the block) and ``t`` (fractional day offset from history start).
Panels have shape (accounts, weeks). Usage, tickets and touchpoints respond to value realised
two weeks earlier; value itself responds to champion strength over the following weeks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.demo.contracts import ContractBook
from pipelines.demo.world import Accounts, Calendar, Latent, World

EVENT_TYPES = (
    "login", "view_dashboard", "run_report", "create_project", "share_report", "edit_workflow",
    "export_data", "api_call", "invite_user", "configure_integration", "create_alert",
    "comment",
)  # fmt: skip
TICKET_CATEGORIES = ("bug", "how-to", "billing", "feature-request", "integration")
_TICKET_RATE = {"enterprise": 0.2, "mid-market": 0.1, "smb": 0.045}


@dataclass
class Panels:
    """Weekly panels shared by the signal generators and the health score."""

    seats: np.ndarray
    live: np.ndarray  # the account is a customer during (part of) the week
    value_lag: np.ndarray  # value realised two weeks earlier
    active_users: np.ndarray
    pool: np.ndarray  # named users the account has


def build_panels(
    rng: np.random.Generator, acc: Accounts, lat: Latent, book: ContractBook, cal: Calendar
) -> Panels:
    """Seats in force, customer weeks, lagged value and weekly active users."""
    weeks = np.arange(cal.n_weeks)[None, :]
    live = (7 * weeks + 7 > acc.first_start[:, None]) & (7 * weeks < book.last_day[:, None])
    seats = _seats_panel(acc, book, cal)
    seats = pd.DataFrame(np.where(seats > 0, seats, np.nan).T).ffill().bfill().to_numpy().T
    seats = np.where(live, np.nan_to_num(seats, nan=1.0), 0.0)
    v_lag = np.concatenate([lat.value[:, :1], lat.value[:, :1], lat.value[:, :-2]], axis=1)
    noise = rng.normal(0, 0.09, v_lag.shape)
    habit = rng.normal(0, 0.07, len(acc))[:, None]  # some teams simply log in more
    util = 0.05 + 0.9 / (1 + np.exp(-9 * (v_lag - 0.5))) + habit + noise
    util = np.clip(np.where(acc.mandated[:, None], 0.8 + noise, util), 0.01, 1.0)
    pool = np.ceil(seats * 1.15) + 1
    p = np.clip(util * seats / pool, 0, 1)
    active = rng.binomial(pool.astype(np.int64), p)
    active = np.where(live & ~acc.no_usage_tracking[:, None], active, 0)
    return Panels(seats, live, v_lag, active, pool)


def _seats_panel(acc: Accounts, book: ContractBook, cal: Calendar) -> np.ndarray:
    """Seats in force at the middle of each week (base contracts plus add-ons)."""
    n, weeks = len(acc), cal.n_weeks
    c = book.contracts
    first = np.clip(np.ceil((c["start_day"].to_numpy() - 3) / 7), 0, weeks).astype(int)
    last = np.clip(np.ceil((c["end_day"].to_numpy() - 3) / 7), 0, weeks).astype(int)
    diff = np.zeros((n, weeks + 1))
    np.add.at(diff, (c["pos"].to_numpy(), first), c["seats"].to_numpy())
    np.add.at(diff, (c["pos"].to_numpy(), last), -c["seats"].to_numpy())
    return np.cumsum(diff, axis=1)[:, :weeks]


def _expand(rng: np.random.Generator, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per unit of a (accounts, weeks) count panel: (cell index, day offset t)."""
    flat = counts.ravel().astype(np.int64)
    cells = np.repeat(np.arange(flat.size), flat)
    weeks = counts.shape[1]
    t = (cells % weeks) * 7 + rng.random(cells.size) * 7
    return cells, t


def _in_life(acc: Accounts, book: ContractBook, cal: Calendar, pos: np.ndarray,
             t: np.ndarray) -> np.ndarray:  # fmt: skip
    return (t >= acc.first_start[pos]) & (t < book.last_day[pos]) & (t < cal.horizon)


def usage_events(
    rng: np.random.Generator, acc: Accounts, book: ContractBook, pan: Panels, cal: Calendar,
    *, events_scale: float = 1.0,
) -> pd.DataFrame:  # fmt: skip
    """Product events of the week's active users; breadth and depth follow value.

    ``events_scale`` multiplies the events per active user-week (1.0: the demo's density).
    """
    intensity = rng.lognormal(0, 0.35, len(acc))[:, None]  # heavy vs light product users
    depth = np.where(acc.mandated[:, None], 0.45, 0.25 + 1.1 * pan.value_lag)
    depth = depth * intensity * events_scale
    events = rng.poisson(pan.active_users * depth)
    cells, t = _expand(rng, events)
    weeks = events.shape[1]
    pos = cells // weeks
    breadth = np.where(acc.mandated[:, None], 2.6, 2.0 + 10.0 * pan.value_lag).ravel()[cells]
    kind = np.minimum(np.floor(breadth * rng.random(cells.size) ** 1.5), len(EVENT_TYPES) - 1)
    user = np.floor(pan.pool.ravel()[cells] * rng.random(cells.size) ** 1.6).astype(np.int64)
    quantity = np.ones(cells.size)
    api, export = kind == EVENT_TYPES.index("api_call"), kind == EVENT_TYPES.index("export_data")
    quantity[api] = np.round(rng.lognormal(3.0, 1.0, api.sum()))
    quantity[export] = np.round(rng.lognormal(5.0, 1.2, export.sum()))
    quantity[rng.random(cells.size) < 0.01] = np.nan
    no_user = (api & (rng.random(cells.size) < 0.3)) | (rng.random(cells.size) < 0.003)
    keep = _in_life(acc, book, cal, pos, t)
    frame = pd.DataFrame({"pos": pos, "user": np.where(no_user, -1, user), "t": t,
                          "kind": kind.astype(np.int64), "quantity": quantity})[keep]  # fmt: skip
    dupes = frame.sample(frac=0.005, random_state=rng)
    return pd.concat([frame, dupes]).sort_index(kind="stable").reset_index(drop=True)


def support_tickets(
    rng: np.random.Generator, acc: Accounts, book: ContractBook, pan: Panels, cal: Calendar
) -> pd.DataFrame:
    """Tickets rise as value falls; P1s are likelier in struggling accounts."""
    base = np.array([_TICKET_RATE[s] for s in acc.segment])[:, None]
    rate = base * (np.maximum(pan.seats, 1) / 20) ** 0.35 * (0.5 + 1.6 * (1 - pan.value_lag))
    counts = rng.poisson(rate * pan.live)
    cells, t = _expand(rng, counts)
    pos = cells // counts.shape[1]
    v = pan.value_lag.ravel()[cells]
    u = rng.random(cells.size)
    p1 = 0.03 + 0.12 * (1 - v)
    priority = np.select([u < p1, u < p1 + 0.2, u < p1 + 0.62], ["p1", "p2", "p3"], "p4")
    hours = rng.lognormal(np.where(priority == "p1", 1.6, 3.4), 1.0)
    closed = t + hours / 24
    category = np.array(TICKET_CATEGORIES)[rng.choice(5, cells.size, p=[0.35, 0.3, 0.1, 0.15, 0.1])]
    category = np.where((priority == "p1") & (rng.random(cells.size) < 0.5), "outage", category)
    responded = rng.random(cells.size) < 0.35
    mood = 2.5 * (v - 0.4) - 0.3 * np.log(hours / 24) + rng.normal(0, 0.8, cells.size)
    csat = np.clip(np.round(1 + 4 / (1 + np.exp(-mood))), 1, 5)
    esc_p = np.select([priority == "p1", priority == "p2"], [0.5, 0.15], 0.03)
    frame = pd.DataFrame({
        "pos": pos, "t": t, "closed_t": np.where(closed < cal.horizon, closed, np.nan),
        "priority": priority, "category": category,
        "escalated": rng.random(cells.size) < esc_p,
    })  # fmt: skip
    frame["csat"] = np.where(responded & (closed < cal.horizon), csat, np.nan)
    frame.loc[rng.random(len(frame)) < 0.02, "priority"] = None
    frame["escalated"] = frame["escalated"].astype("boolean")
    frame.loc[rng.random(len(frame)) < 0.03, "escalated"] = pd.NA
    return frame[_in_life(acc, book, cal, pos, t)].reset_index(drop=True)


def engagement(
    rng: np.random.Generator, acc: Accounts, lat: Latent, book: ContractBook, pan: Panels,
    cal: Calendar,
) -> pd.DataFrame:  # fmt: skip
    """CSM touchpoints: high-touch meetings/QBRs/EBRs need a champion; tech-touch is e-mail."""
    seg = acc.segment[:, None]
    ent, mm = seg == "enterprise", seg == "mid-market"
    c, v = lat.champion, pan.value_lag
    week = np.arange(cal.n_weeks)[None, :]
    onboarding = acc.is_new_logo[:, None] & (7 * week - acc.first_start[:, None] < 70)
    firefight = 0.35 * (v < 0.35)
    rates = {
        "meeting": np.select([ent, mm], [0.3 * (0.4 + c) + firefight, 0.12 * (0.4 + c)
                                          + 0.6 * firefight], 0.01),
        "email": np.select([ent, mm], [0.9, 0.5], 0.35),
        "training": np.where(onboarding, np.where(ent | mm, 0.35, 0.12), 0.02),
    }  # fmt: skip
    phase = (acc.number[:, None] * 7) % 13
    rates["qbr"] = np.select(
        [ent, mm],
        [(week % 13 == phase) * (0.3 + 0.6 * c), (week % 26 == phase) * (0.3 + 0.5 * c)],
        0.0,
    )
    rates["ebr"] = ent * (week % 52 == phase) * 0.7 * lat.exec_present
    frames = []
    for kind, rate in rates.items():
        cells, t = _expand(rng, rng.poisson(rate * pan.live))
        frames.append(pd.DataFrame({"pos": cells // cal.n_weeks, "t": t, "kind": kind}))
    frame = pd.concat(frames, ignore_index=True)
    keep = _in_life(acc, book, cal, frame["pos"].to_numpy(), frame["t"].to_numpy())
    return frame[keep].sort_values(["pos", "t"], kind="stable").reset_index(drop=True)


def surveys(
    rng: np.random.Generator, acc: Accounts, lat: Latent, book: ContractBook, pan: Panels,
    touch: pd.DataFrame, cal: Calendar, world: World,
) -> pd.DataFrame:  # fmt: skip
    """Semi-annual NPS waves (few respondents) and CSAT after training sessions."""
    week = np.arange(cal.n_weeks)[None, :]
    wave = (week % 26 == world.nps_phase) & pan.live
    respond_p = 0.2 * (0.3 + lat.champion) * np.where(acc.mandated[:, None], 0.5, 1.0)
    counts = rng.binomial(np.minimum(pan.seats, 12).astype(np.int64) * wave, respond_p)
    cells, t = _expand(rng, counts)
    v = pan.value_lag.ravel()[cells]
    nps = np.clip(np.round(10 / (1 + np.exp(-(3.0 * (v - 0.45) + rng.normal(0, 1.0, v.size))))),
                  0, 10)  # fmt: skip
    frames = [pd.DataFrame({"pos": cells // cal.n_weeks, "t": t, "kind": "nps", "score": nps})]
    trained = touch[(touch["kind"] == "training")]
    trained = trained[rng.random(len(trained)) < 0.4]
    tv = pan.value_lag[trained["pos"].to_numpy(), (trained["t"].to_numpy() // 7).astype(int)]
    mood = 2.0 * (tv - 0.4) + rng.normal(0, 0.8, tv.size)
    frames.append(pd.DataFrame({
        "pos": trained["pos"].to_numpy(), "t": trained["t"].to_numpy() + rng.uniform(0, 3, tv.size),
        "kind": "csat", "score": np.clip(np.round(1 + 4 / (1 + np.exp(-mood))), 1, 5),
    }))  # fmt: skip
    frame = pd.concat(frames, ignore_index=True)
    keep = _in_life(acc, book, cal, frame["pos"].to_numpy(), frame["t"].to_numpy())
    return frame[keep].sort_values(["pos", "t"], kind="stable").reset_index(drop=True)


def contact_changes(
    rng: np.random.Generator, acc: Accounts, lat: Latent, book: ContractBook, cal: Calendar
) -> pd.DataFrame:
    """Champion/sponsor moves as the CS team learns of them: late, and not always at all."""
    frames = []
    for role, events in (("champion", lat.champion_events), ("exec_sponsor", lat.exec_events)):
        pos = events["pos"].to_numpy()
        seen_p = np.where(acc.high_touch[pos], 0.85, 0.4)
        t = events["week"].to_numpy() * 7 + rng.random(pos.size) * 7 + rng.uniform(0, 21, pos.size)
        frame = pd.DataFrame({"pos": pos, "t": t, "role": role, "change": events["change"]})
        keep = (rng.random(pos.size) < seen_p) & _in_life(acc, book, cal, pos, t)
        frames.append(frame[keep])
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["pos", "t"], kind="stable").reset_index(drop=True)


def verified_outcomes(
    rng: np.random.Generator, acc: Accounts, book: ContractBook, pan: Panels, cal: Calendar
) -> pd.DataFrame:
    """Outcomes confirmed with the customer, mostly in high-touch accounts realising value."""
    factor = np.select([acc.segment == "enterprise", acc.segment == "mid-market"], [1.5, 1.0], 0.3)
    p = 0.025 * factor[:, None] * pan.value_lag**2 * pan.live
    cells, t = _expand(rng, rng.random(p.shape) < p)
    pos = cells // cal.n_weeks
    frame = pd.DataFrame({"pos": pos, "t": t})
    return frame[_in_life(acc, book, cal, pos, t)].reset_index(drop=True)


def weekly_counts(frame: pd.DataFrame, n: int, cal: Calendar, mask: np.ndarray | None = None
                  ) -> np.ndarray:  # fmt: skip
    """Rows of ``frame`` per (account, week) cell."""
    pos, t = frame["pos"].to_numpy(), frame["t"].to_numpy()
    if mask is not None:
        pos, t = pos[mask], t[mask]
    cell = pos * cal.n_weeks + np.minimum(t // 7, cal.n_weeks - 1).astype(np.int64)
    return np.bincount(cell, minlength=n * cal.n_weeks).reshape(n, cal.n_weeks).astype(float)
