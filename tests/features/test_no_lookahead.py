"""No look-ahead, as properties: rows dated after as_of never change the features at as_of (under
every active rule, per-type and value features included), and rows dated at or before as_of
(outside contracts) never change its labels (both expansion definitions).

``random_tables`` (also used by the parity test) writes a small random warehouse around
``AS_OF`` with rows exactly at as_of and a second after it."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.config import ActiveConfig, FeatureConfig, LabelConfig
from features.labels import build_labels
from features.warehouse import DuckDBWarehouse
from tests.features.test_build import _accounts, _contracts, stage

AS_OF = datetime(2024, 4, 1)
DATES = [AS_OF - timedelta(days=7), AS_OF]
# the time column that dates a row of each table (contracts: when they start)
DATED_BY = {
    "accounts": "created_at",
    "contracts": "start_date",
    "usage_events": "event_time",
    "support_tickets": "opened_at",
    "engagement": "occurred_at",
    "surveys": "responded_at",
    "contact_changes": "changed_at",
    "verified_outcomes": "verified_at",
    "health_scores": "scored_at",
}


def _times(rng: np.random.Generator, n: int, lo_days: float, hi_days: float) -> list[datetime]:
    """``n`` whole-second times in [AS_OF + lo_days, AS_OF + hi_days], with AS_OF and AS_OF + 1 s
    among them when n >= 2."""
    seconds = rng.integers(int(lo_days * 86400), int(hi_days * 86400), n)
    if n >= 2:
        seconds[:2] = [0, 1]
    return [AS_OF + timedelta(seconds=int(s)) for s in seconds]


def random_tables(seed: int, *, n_accounts: int = 10) -> dict[str, pd.DataFrame]:
    """A small random warehouse around AS_OF (all nine contract tables)."""
    rng = np.random.default_rng(seed)
    ids = [f"acc{i}" for i in range(n_accounts)]
    accounts = _accounts(
        [
            (
                a,
                f"Name {a}",
                rng.choice(["smb", "enterprise"]),
                rng.choice(["x", "y"]),
                int(rng.integers(1, 500)),
                f"csm_{i % 3}",
                AS_OF - timedelta(days=900),
            )
            for i, a in enumerate(ids)
        ]
    )
    rows = []
    for a in ids:
        start = AS_OF.date() - timedelta(days=int(rng.integers(-60, 700)))
        for j in range(int(rng.integers(1, 4))):
            term = int(rng.choice([30, 90, 365, 400]))
            evergreen = rng.random() < 0.15  # open-ended: the account's last contract
            rows.append((a, f"{a}-k{j}", rng.choice(["core", "addon"]), start,
                         None if evergreen else start + timedelta(days=term),
                         float(rng.integers(0, 50) * 100), int(rng.integers(0, 20))))  # fmt: skip
            if evergreen:
                break
            start = start + timedelta(days=term + int(rng.choice([0, 0, 10, 40])))
    contracts = _contracts(rows)
    n = 400
    users = rng.integers(0, 6, n).astype(object)
    users[rng.random(n) < 0.05] = None
    usage = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n),
            "user_id": [None if u is None else f"u{u}" for u in users],
            "event_time": _times(rng, n, -130, 40),
            "event_type": rng.choice(["login", "report", "export", "share"], n),
            "quantity": rng.integers(1, 5, n).astype(float),
        }
    )
    n = 40
    opened = _times(rng, n, -150, 20)
    durations = rng.integers(60, 40 * 86400, n)
    closed = [o + timedelta(seconds=int(d)) for o, d in zip(opened, durations, strict=True)]
    tickets = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n),
            "ticket_id": [f"t{i}" for i in range(n)],
            "opened_at": opened,
            "closed_at": pd.to_datetime([None if rng.random() < 0.2 else c for c in closed]),
            "priority": rng.choice(["p1", "P2", "p3", "urgent", None], n),
            "category": rng.choice(["bug", "billing"], n),
            "csat": [None if rng.random() < 0.4 else float(rng.integers(1, 6)) for _ in range(n)],
            "escalated": rng.choice([True, False, None], n),
        }
    )
    n = 40
    engagement = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n),
            "occurred_at": _times(rng, n, -250, 30),
            "kind": rng.choice(["meeting", "qbr", "EBR", "email"], n),
        }
    )
    n = 30
    kinds = rng.choice(["nps", "csat"], n)
    surveys = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n),
            "responded_at": _times(rng, n, -300, 30),
            "kind": kinds,
            "score": [
                float(rng.integers(0, 11) if k == "nps" else rng.integers(1, 6)) for k in kinds
            ],
        }
    )
    n = 20
    contacts = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n),
            "changed_at": _times(rng, n, -250, 30),
            "role": rng.choice(["champion", "exec_sponsor"], n),
            "change": rng.choice(["left", "joined"], n),
        }
    )
    outcomes = pd.DataFrame(
        {"account_id": rng.choice(ids, 8), "verified_at": _times(rng, 8, -200, 30)}
    )
    weeks = [AS_OF + timedelta(days=7 * k) for k in range(-12, 3)]
    health = pd.DataFrame(
        [
            (
                a,
                w + timedelta(seconds=int(s)),
                float(rng.integers(0, 101)),
                str(rng.choice(["green", "yellow", "red"])),
            )
            for a in ids
            for w, s in zip(weeks, rng.integers(0, 2, len(weeks)), strict=True)
            if rng.random() < 0.8
        ],
        columns=["account_id", "scored_at", "score", "color"],
    )
    return {
        "accounts": accounts,
        "contracts": contracts,
        "usage_events": usage,
        "support_tickets": tickets,
        "engagement": engagement,
        "surveys": surveys,
        "contact_changes": contacts,
        "verified_outcomes": outcomes,
        "health_scores": health,
    }


def _dated(frame: pd.DataFrame, table: str) -> pd.Series:
    return pd.to_datetime(frame[DATED_BY[table]])


def _disturb(
    tables: dict[str, pd.DataFrame], rng: np.random.Generator, *, after: bool
) -> dict[str, pd.DataFrame]:
    """Drop, shuffle the values of, and duplicate-with-shifted-time rows dated after AS_OF
    (``after``) or at/before it (not ``after``; contracts and accounts untouched)."""
    out = {}
    for table, frame in tables.items():
        when = _dated(frame, table)
        chosen = when > AS_OF if after else when <= AS_OF
        if not after and table in ("accounts", "contracts"):
            chosen = pd.Series(False, index=frame.index)
        keep = ~chosen | (rng.random(len(frame)) < 0.5)
        changed = frame[keep].copy()
        mask = chosen[keep].to_numpy()
        for col in changed.columns:
            fixed = ("account_id", DATED_BY[table], "ticket_id", "contract_id", "end_date")
            if col in fixed or not mask.any():
                continue
            values = changed.loc[mask, col].to_numpy()
            changed.loc[mask, col] = rng.permutation(values)
        extra = frame[chosen].copy()
        if table in ("accounts", "contracts", "health_scores"):
            extra = extra.iloc[0:0]  # their keys must stay unique
        shift = pd.to_timedelta(rng.integers(1, 30 * 86400, len(extra)), unit="s")
        moved = _dated(extra, table) + (shift if after else -shift)
        extra[DATED_BY[table]] = moved.to_numpy()
        if table == "support_tickets":
            extra["ticket_id"] = extra["ticket_id"] + "x"
            extra["closed_at"] = pd.NaT
        out[table] = pd.concat([changed, extra], ignore_index=True)
    return out


def _features(tables: dict[str, pd.DataFrame], rule: str = "contract") -> pd.DataFrame:
    config = FeatureConfig(active=ActiveConfig(rule=rule))
    with DuckDBWarehouse() as wh:
        available = stage(wh, tables)
        return build_features(wh, DATES, available_tables=available, config=config)


def _labels(tables: dict[str, pd.DataFrame], definition: str = "horizon") -> pd.DataFrame:
    config = LabelConfig(
        horizon_days=60,
        lead_days=14,
        grace_days=20,
        inactivity_days=60,
        expansion_definition=definition,
    )
    with DuckDBWarehouse() as wh:
        stage(wh, tables)
        return build_labels(wh, DATES, config=config, data_end=AS_OF + timedelta(days=400))


_SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("rule", ["contract", "both"])
def test_rows_after_as_of_never_change_features(rule: str) -> None:
    @_SETTINGS
    @given(base=st.integers(0, 2**16), noise=st.integers(0, 2**16))
    def check(base: int, noise: int) -> None:
        tables = random_tables(base)
        before = _features(tables, rule)
        disturbed = _disturb(tables, np.random.default_rng(noise), after=True)
        if rule != "contract":
            # stg_accounts drops an account with no contract row at all (features/sources.py,
            # needs_contract): under the activity rule an account active by usage alone would
            # lose its attributes when its only contract, after as_of, is dropped
            disturbed["contracts"] = tables["contracts"]
        after = _features(disturbed, rule)
        assert len(before) > 0
        assert [c for c in before.columns if c.startswith("quantity_28d__")]  # per-type columns
        pd.testing.assert_frame_equal(before, after)

    check()


@pytest.mark.parametrize("definition", ["horizon", "next_renewal"])
def test_rows_up_to_as_of_outside_contracts_never_change_labels(definition: str) -> None:
    @_SETTINGS
    @given(base=st.integers(0, 2**16), noise=st.integers(0, 2**16))
    def check(base: int, noise: int) -> None:
        tables = random_tables(base)
        before = _labels(tables, definition)
        after = _labels(_disturb(tables, np.random.default_rng(noise), after=False), definition)
        # inactivity looks at usage in (as_of + lead, window end] only
        pd.testing.assert_frame_equal(before, after)

    check()


def test_the_disturbance_does_change_rows_after_as_of() -> None:
    """Guard against a property that holds trivially: the same disturbance before as_of does
    change the features, and rows after as_of do change later features."""
    tables = random_tables(3)
    disturbed = _disturb(tables, np.random.default_rng(5), after=False)
    assert not _features(tables).equals(_features(disturbed))
    later = [AS_OF + timedelta(days=14)]
    moved = _disturb(tables, np.random.default_rng(5), after=True)
    with DuckDBWarehouse() as a, DuckDBWarehouse() as b:
        x = build_features(a, later, available_tables=stage(a, tables))
        y = build_features(b, later, available_tables=stage(b, moved))
    assert not x.equals(y)
