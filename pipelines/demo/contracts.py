"""Contracts of the demo world: first contracts, mid-term seat add-ons and renewal decisions.

A renewal decision is taken four weeks before a contract ends, from the hidden state at that
time: value realised, champion strength and recent champion loss, a recent executive-sponsor
departure, a budget cut in the account's industry, mandated-but-shallow usage, plus noise.
The outcome is churn (no new contract), contract (fewer seats/ARR), renew flat, or expand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.demo.world import PROFILES, Accounts, Calendar, Latent, add_months

DRIVERS = ("low_value", "champion_loss", "budget_cut", "exec_sponsor_loss", "mandated_shallow")
_PRODUCT = {"enterprise": "Enterprise", "mid-market": "Business", "smb": "Team"}


@dataclass
class ContractBook:
    """All contract rows of a block (day offsets), the renewal truth and each account's end."""

    contracts: pd.DataFrame  # pos, contract_id, product, start_day, end_day, arr, seats
    renewals: pd.DataFrame  # one row per contract end decided before the run date
    last_day: np.ndarray  # day the account stopped being a customer (horizon if it did not)


@dataclass
class _Current:
    start: np.ndarray
    end: np.ndarray
    term: np.ndarray
    seats: np.ndarray
    arr: np.ndarray
    seq: np.ndarray
    addon_seats: np.ndarray
    addon_arr: np.ndarray


def simulate_contracts(
    rng: np.random.Generator, acc: Accounts, lat: Latent, cal: Calendar
) -> ContractBook:
    """Run every account's contract chain from its first exported contract to the run date."""
    n = len(acc)
    arr0 = acc.seats0 * acc.price * np.where(acc.term0 == 1, 1.12, 1.0)
    end0 = add_months(acc.first_start, acc.term0, cal)
    cur = _Current(
        acc.first_start.copy(), end0, acc.term0.copy(), acc.seats0.copy(), arr0,
        np.ones(n, dtype=int), np.zeros(n), np.zeros(n),
    )  # fmt: skip
    rows = [_contract_rows(acc, np.arange(n), cur)]
    rows.append(_addons(rng, acc, lat, cal, np.arange(n), cur))
    renewals = []
    active = np.ones(n, dtype=bool)
    last_day = np.full(n, cal.horizon)
    loss = _recent_min(lat.champion, 26) <= 0.11
    exec_loss = _recent_min(lat.exec_present.astype(float), 26) < 0.5
    while True:
        due = np.flatnonzero(active & (cur.end <= cal.horizon))
        if due.size == 0:
            break
        decided = _decide(rng, acc, lat, cal, due, cur, loss, exec_loss)
        renewals.append(decided)
        churn = decided["decision"].to_numpy() == "churn"
        observed = decided["renewal_start_day"].to_numpy() <= cal.horizon
        last_day[due[churn]] = cur.end[due[churn]]
        active[due[churn | ~observed]] = False
        renew = due[~churn & observed]
        _advance(rng, acc, cal, cur, renew, decided.loc[~churn & observed])
        rows.append(_contract_rows(acc, renew, cur))
        rows.append(_addons(rng, acc, lat, cal, renew, cur))
    contracts = pd.concat(rows, ignore_index=True)
    truth = pd.concat(renewals, ignore_index=True) if renewals else pd.DataFrame()
    return ContractBook(contracts, truth, last_day)


def _recent_min(panel: np.ndarray, weeks: int) -> np.ndarray:
    """Minimum of each row over the trailing ``weeks`` weeks (inclusive of the current one)."""
    return pd.DataFrame(panel.T).rolling(weeks, min_periods=1).min().to_numpy().T


def _contract_rows(acc: Accounts, pos: np.ndarray, cur: _Current) -> pd.DataFrame:
    seg = acc.segment[pos]
    product = np.array([_PRODUCT[s] for s in seg], dtype=object)
    monthly = cur.term[pos] == 1
    product[monthly] = product[monthly] + " Monthly"
    return pd.DataFrame({
        "pos": pos,
        "contract_id": [f"CT-{a:05d}-{s:02d}" for a, s in zip(acc.number[pos], cur.seq[pos],
                                                                strict=True)],
        "product": product,
        "start_day": cur.start[pos],
        "end_day": cur.end[pos],
        "arr": np.round(cur.arr[pos], 2),
        "seats": cur.seats[pos].astype(int),
    })  # fmt: skip


def _addons(
    rng: np.random.Generator, acc: Accounts, lat: Latent, cal: Calendar, pos: np.ndarray,
    cur: _Current,
) -> pd.DataFrame:  # fmt: skip
    """Mid-term seat add-ons, co-terminous with the contract; likelier when value is high."""
    cur.addon_seats[pos] = 0.0
    cur.addon_arr[pos] = 0.0
    term = cur.term[pos]
    at = cur.start[pos] + rng.uniform(0.2, 0.85, pos.size) * (cur.end[pos] - cur.start[pos])
    at = np.floor(at).astype(int)
    week = np.clip(at // 7, 0, cal.n_weeks - 1)
    v = lat.value[pos, week]
    rate = np.array([PROFILES[s].addon_rate for s in acc.segment[pos]])
    p = 1 - (1 - np.clip(rate * 2 / (1 + np.exp(-6 * (v - 0.6))), 0, 0.9)) ** (term / 12)
    hit = (term >= 12) & (rng.random(pos.size) < p) & (at < cal.horizon)
    pos, at = pos[hit], at[hit]
    seats = np.ceil(cur.seats[pos] * rng.uniform(0.1, 0.35, pos.size))
    arr = np.round(seats * acc.price[pos], 2)
    cur.addon_seats[pos] = seats
    cur.addon_arr[pos] = arr
    return pd.DataFrame({
        "pos": pos,
        "contract_id": [f"CT-{a:05d}-{s:02d}A" for a, s in zip(acc.number[pos], cur.seq[pos],
                                                                 strict=True)],
        "product": "Additional Seats",
        "start_day": at,
        "end_day": cur.end[pos],
        "arr": arr,
        "seats": seats.astype(int),
    })  # fmt: skip


def _decide(
    rng: np.random.Generator, acc: Accounts, lat: Latent, cal: Calendar, pos: np.ndarray,
    cur: _Current, loss: np.ndarray, exec_loss: np.ndarray,
) -> pd.DataFrame:  # fmt: skip
    """Renewal outcome for the contracts of ``pos`` that end before the run date."""
    week = np.clip((cur.end[pos] - 28) // 7, 0, cal.n_weeks - 1)
    v, c = lat.value[pos, week], lat.champion[pos, week]
    budget = week >= acc.budget_cut_week[pos]
    parts = np.column_stack([
        np.clip(-8.5 * (v - 0.55), 0, None),
        1.7 * loss[pos, week] + 1.2 * np.clip(0.55 - c, 0, None),
        2.5 * budget,
        0.6 * exec_loss[pos, week] * acc.high_touch[pos],
        1.0 * acc.mandated[pos],
    ])  # fmt: skip
    term = cur.term[pos]
    intercept = np.array([PROFILES[s].churn_intercept for s in acc.segment[pos]])
    term_adj = np.select([term == 1, term >= 24], [-2.25, -0.4], 0.0)
    logit = intercept + term_adj - 8.5 * (v - 0.55) + parts[:, 1:].sum(axis=1)
    p_churn = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, pos.size))))
    churn = rng.random(pos.size) < p_churn
    monthly = term == 1
    p_contract = (1 / (1 + np.exp(2.7 + 2.5 * (v - 0.5) - 1.8 * budget))) * np.where(
        monthly, 0.15, 1
    )
    p_expand = 1 / (1 + np.exp(1.3 - 3.5 * (v - 0.6) - 0.8 * (cur.addon_seats[pos] > 0)))
    p_expand *= np.where(monthly, 0.12, 1)
    u = rng.random(pos.size)
    decision = np.where(churn, "churn", np.where(u < p_contract, "contract", np.where(
        rng.random(pos.size) < p_expand, "expand", "flat")))  # fmt: skip
    late = np.where(rng.random(pos.size) < np.where(monthly, 0.03, 0.08),
                    rng.integers(1, 29, pos.size), 0)  # fmt: skip
    arr_before = cur.arr[pos] + cur.addon_arr[pos]
    factor = np.select([decision == "contract", decision == "expand", decision == "flat"],
                       [rng.uniform(0.55, 0.9, pos.size), rng.uniform(1.15, 1.7, pos.size),
                        rng.uniform(1.0, 1.05, pos.size)], 0.0)  # fmt: skip
    driver = np.array(DRIVERS)[parts.argmax(axis=1)]
    driver = np.where(parts.max(axis=1) > 0.3, driver, "noise")
    return pd.DataFrame({
        "pos": pos,
        "contract_id": [f"CT-{a:05d}-{s:02d}" for a, s in zip(acc.number[pos], cur.seq[pos],
                                                                strict=True)],
        "end_day": cur.end[pos],
        "term_months": term,
        "decision": decision,
        "primary_driver": np.where(churn, driver, None),  # type: ignore[call-overload]
        "churn_probability": np.round(p_churn, 4),
        "value_realised": np.round(v, 4),
        "champion_strength": np.round(c, 4),
        "champion_lost_26w": loss[pos, week],
        "budget_cut": budget,
        "mandated_usage": acc.mandated[pos],
        "late_days": np.where(churn, 0, late),
        "renewal_start_day": np.where(churn, -1, cur.end[pos] + late),
        "arr_before": np.round(arr_before, 2),
        "arr_after": np.round(arr_before * factor, 2),
        "seats_before": (cur.seats[pos] + cur.addon_seats[pos]).astype(int),
    })  # fmt: skip


def _advance(
    rng: np.random.Generator, acc: Accounts, cal: Calendar, cur: _Current, pos: np.ndarray,
    decided: pd.DataFrame,
) -> None:  # fmt: skip
    """Replace the current contract of ``pos`` by its renewal."""
    if pos.size == 0:
        return
    arr_after = decided["arr_after"].to_numpy()
    ratio = arr_after / np.maximum(decided["arr_before"].to_numpy(), 1e-9)
    seats = np.maximum(1, np.round(decided["seats_before"].to_numpy() * ratio / 1.02))
    term = cur.term[pos].copy()
    term = np.where((term >= 24) & (rng.random(pos.size) < 0.5), 12, term)
    term = np.where((term == 1) & (rng.random(pos.size) < 0.02), 12, term)
    start = decided["renewal_start_day"].to_numpy()
    cur.start[pos] = start
    cur.end[pos] = add_months(start, term, cal)
    cur.term[pos] = term
    cur.seats[pos] = seats
    cur.arr[pos] = arr_after
    cur.seq[pos] += 1
