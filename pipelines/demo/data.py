"""The demo warehouse: a synthetic B2B SaaS business with a hidden state that drives churn.

``generate_demo`` returns the ten contract tables (``features.contract.CONTRACT`` names and
columns) and, apart from them, the ground truth (latent state, every renewal decision and its
drivers, summary rates). ``write_demo`` loads both into a warehouse; ``write_demo_parquet``
writes the contract tables as Parquet. The generative story is in ``docs/demo-data.md``.

Generation runs in blocks of ``BLOCK_SIZE`` accounts, each with its own random stream, so
``iter_demo_blocks`` (used by the streaming benchmark generator) yields exactly the rows that
``generate_demo`` concatenates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import CONTRACT
from features.warehouse import Warehouse, quote_ident
from pipelines.demo import health as demo_health
from pipelines.demo import reasons as demo_reasons
from pipelines.demo import signals as demo_signals
from pipelines.demo.contracts import ContractBook, simulate_contracts
from pipelines.demo.signals import Panels
from pipelines.demo.world import (
    BLOCK_SIZE,
    CSM_ROSTER,
    PROFILES,
    Accounts,
    Calendar,
    Latent,
    World,
    draw_accounts,
    simulate_latent,
)

_US_PER_DAY = 86_400_000_000
_NAME_A = ("Blue", "North", "Bright", "Iron", "Silver", "Quantum", "Green", "Summit", "Atlas",
           "Cedar", "Nova", "Harbor", "Pioneer", "Apex", "Lumen", "Crest")  # fmt: skip
_NAME_B = ("Labs", "Systems", "Health", "Logistics", "Retail", "Media", "Capital", "Works",
           "Analytics", "Foods", "Energy", "Learning", "Robotics", "Networks")  # fmt: skip
_NAME_C = ("Inc", "GmbH", "Ltd", "LLC", "SA", "Pty", "Group", "Co")


@dataclass(frozen=True)
class DemoData:
    """Contract tables and, kept apart, the ground truth that generated them."""

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    start: date
    end: date


def generate_demo(
    *, n_accounts: int = 1500, seed: int = 7, end: date, years: float = 2.5
) -> DemoData:
    """A complete demo warehouse with ``years`` of history ending at the run date ``end``.

    Nothing is dated on or after ``end`` (00:00) except contract end dates of contracts still
    in force. Deterministic: the same arguments give the same frames.
    """
    if n_accounts < 1:
        raise ValueError(f"n_accounts must be >= 1 (got {n_accounts})")
    cal = Calendar.for_years(end, years)
    tables: dict[str, list[pd.DataFrame]] = {}
    truth: dict[str, list[pd.DataFrame]] = {}
    for block in iter_demo_blocks(n_accounts=n_accounts, seed=seed, cal=cal):
        for name, frame in block.tables.items():
            tables.setdefault(name, []).append(frame)
        for name, frame in block.truth.items():
            truth.setdefault(name, []).append(frame)
    data = DemoData(
        tables={name: pd.concat(tables[name], ignore_index=True) for name in CONTRACT},
        truth={name: pd.concat(frames, ignore_index=True) for name, frames in truth.items()},
        start=cal.start,
        end=cal.end,
    )
    data.truth["summary"] = summarise(data.tables, data.truth, cal)
    return data


def iter_demo_blocks(
    *,
    n_accounts: int,
    seed: int,
    cal: Calendar,
    latent_panel: bool = True,
    events_scale: float = 1.0,
) -> Iterator[DemoData]:
    """The demo, block by block of ``BLOCK_SIZE`` accounts (bounded memory per block).

    Block ``b`` holds accounts ``b * BLOCK_SIZE + 1 ..`` and is drawn from its own stream, so
    it is identical however many blocks follow. ``events_scale`` multiplies usage density.
    """
    world = World.draw(seed, cal)
    for block, first in enumerate(range(0, n_accounts, BLOCK_SIZE)):
        size = min(BLOCK_SIZE, n_accounts - first)
        yield generate_block(block, first + 1, size, seed=seed, cal=cal, world=world,
                             latent_panel=latent_panel, events_scale=events_scale)  # fmt: skip


def generate_block(
    block: int, first_number: int, size: int, *, seed: int, cal: Calendar, world: World,
    latent_panel: bool = True, events_scale: float = 1.0,
) -> DemoData:  # fmt: skip
    """Generate ``size`` accounts numbered from ``first_number`` with block ``block``'s stream."""
    rng = np.random.default_rng([seed, 1, block])
    acc = draw_accounts(rng, first_number, size, cal, world)
    lat = simulate_latent(rng, acc, cal)
    book = simulate_contracts(rng, acc, lat, cal)
    pan = demo_signals.build_panels(rng, acc, lat, book, cal)
    # usage has its own stream, so its density (events_scale) leaves every other table unchanged
    usage_rng = np.random.default_rng([seed, 2, block])
    usage = demo_signals.usage_events(usage_rng, acc, book, pan, cal, events_scale=events_scale)
    tickets = demo_signals.support_tickets(rng, acc, book, pan, cal)
    touch = demo_signals.engagement(rng, acc, lat, book, pan, cal)
    surveys = demo_signals.surveys(rng, acc, lat, book, pan, touch, cal, world)
    contacts = demo_signals.contact_changes(rng, acc, lat, book, cal)
    outcomes = demo_signals.verified_outcomes(rng, acc, book, pan, cal)
    panel = demo_health.health_panel(acc, pan, tickets, touch, surveys, cal)
    health, exported = demo_health.health_rows(rng, panel, cal)
    # stated churn reasons have their own stream too: every other table is as it was without them
    reasons_rng = np.random.default_rng([seed, 3, block])
    reasons = demo_reasons.stated_reasons(reasons_rng, book.renewals, acc, cal)
    ids = np.array([f"ACC-{k:05d}" for k in acc.number], dtype=object)
    tables = {
        "accounts": _accounts_table(rng, acc, ids, cal),
        "contracts": _contracts_table(book.contracts, ids, cal),
        "usage_events": _usage_table(usage, acc, ids, cal),
        "support_tickets": _tickets_table(tickets, acc, ids, cal),
        "engagement": _with_time(touch, ids, cal, "occurred_at")[["account_id", "occurred_at",
                                                                  "kind"]],
        "surveys": _with_time(surveys, ids, cal, "responded_at")[
            ["account_id", "responded_at", "kind", "score"]],
        "contact_changes": _with_time(contacts, ids, cal, "changed_at")[
            ["account_id", "changed_at", "role", "change"]],
        "health_scores": _health_table(health, ids, cal),
        "verified_outcomes": _with_time(outcomes, ids, cal, "verified_at")[
            ["account_id", "verified_at"]],
        "churn_reasons": _reasons_table(reasons, ids, cal),
    }  # fmt: skip
    truth = {
        "accounts": _truth_accounts(acc, lat, book, pan, ids, cal),
        "renewals": _truth_renewals(book.renewals, acc, exported, ids, cal),
    }
    if latent_panel:
        truth["latent_weekly"] = _truth_latent(acc, lat, pan, ids, cal)
    return DemoData(tables=tables, truth=truth, start=cal.start, end=cal.end)


# --- contract tables -----------------------------------------------------------------------
def _timestamps(t: np.ndarray, cal: Calendar) -> np.ndarray:
    """Fractional day offsets as naive UTC timestamps (microseconds)."""
    micros = np.floor(np.asarray(t, dtype=float) * _US_PER_DAY).astype(np.int64)
    return cal.start64.astype("datetime64[us]") + micros.astype("timedelta64[us]")


def _dates(days: np.ndarray, cal: Calendar) -> pd.Series:
    dates = cal.start64 + np.asarray(days, dtype=np.int64).astype("timedelta64[D]")
    return pd.Series(dates.astype(object), dtype=object)


def _with_time(frame: pd.DataFrame, ids: np.ndarray, cal: Calendar, column: str) -> pd.DataFrame:
    out = frame.copy()
    out.insert(0, "account_id", pd.array(ids[out["pos"].to_numpy()], dtype="str"))
    out[column] = _timestamps(out["t"].to_numpy(), cal)
    return out


def _accounts_table(
    rng: np.random.Generator, acc: Accounts, ids: np.ndarray, cal: Calendar
) -> pd.DataFrame:
    n = len(acc)
    names = [f"{_NAME_A[a]} {_NAME_B[b]} {_NAME_C[c]}" for a, b, c in zip(
        rng.integers(0, len(_NAME_A), n), rng.integers(0, len(_NAME_B), n),
        rng.integers(0, len(_NAME_C), n), strict=True)]  # fmt: skip
    per_seat = np.array([PROFILES[s].employees_per_seat for s in acc.segment])
    employees = np.round(acc.seats0 * per_seat * rng.lognormal(0, 0.5, n)).astype(np.int64) + 1
    owner = np.array([CSM_ROSTER[s][rng.integers(0, len(CSM_ROSTER[s]))] for s in acc.segment],
                     dtype=object)  # fmt: skip
    created = acc.created_day + rng.uniform(0.3, 0.8, n)
    frame = pd.DataFrame({
        "account_id": pd.array(ids, dtype="str"),
        "name": pd.array(names, dtype="str"),
        "segment": pd.array(acc.segment, dtype="str"),
        "industry": pd.array(np.where(rng.random(n) < 0.06, None, acc.industry), dtype="str"),  # type: ignore[call-overload]
        "employees": pd.array(np.where(rng.random(n) < 0.1, None, employees), dtype="Int64"),
        "csm_owner": pd.array(np.where(rng.random(n) < 0.02, None, owner), dtype="str"),  # type: ignore[call-overload]
        "created_at": _timestamps(np.minimum(created, acc.first_start), cal),
    })  # fmt: skip
    return frame


def _contracts_table(contracts: pd.DataFrame, ids: np.ndarray, cal: Calendar) -> pd.DataFrame:
    c = contracts.sort_values(["pos", "start_day", "contract_id"], kind="stable")
    return pd.DataFrame({
        "account_id": pd.array(ids[c["pos"].to_numpy()], dtype="str"),
        "contract_id": pd.array(c["contract_id"].to_numpy(), dtype="str"),
        "product": pd.array(c["product"].to_numpy(), dtype="str"),
        "start_date": _dates(c["start_day"].to_numpy(), cal),
        "end_date": _dates(c["end_day"].to_numpy(), cal),
        "arr": c["arr"].to_numpy(dtype=float),
        "seats": pd.array(c["seats"].to_numpy(), dtype="Int64"),
    })  # fmt: skip


def _usage_table(
    usage: pd.DataFrame, acc: Accounts, ids: np.ndarray, cal: Calendar
) -> pd.DataFrame:
    pos, user = usage["pos"].to_numpy(), usage["user"].to_numpy()
    code = acc.number[pos].astype(np.int64) * 100_000 + user
    uniq, inverse = np.unique(code, return_inverse=True)
    labels = np.array([f"U-{c // 100_000:05d}-{c % 100_000:04d}" for c in uniq], dtype=object)
    user_id = labels[inverse]
    user_id[user < 0] = None
    kinds = np.array(demo_signals.EVENT_TYPES, dtype=object)
    return pd.DataFrame({
        "account_id": pd.array(ids[pos], dtype="str"),
        "user_id": pd.array(user_id, dtype="str"),
        "event_time": _timestamps(usage["t"].to_numpy(), cal),
        "event_type": pd.array(kinds[usage["kind"].to_numpy()], dtype="str"),
        "quantity": usage["quantity"].to_numpy(),
    })  # fmt: skip


def _tickets_table(
    tickets: pd.DataFrame, acc: Accounts, ids: np.ndarray, cal: Calendar
) -> pd.DataFrame:
    """Tickets with opened/closed stamped in each customer's local time zone (tz-aware)."""
    t = tickets.sort_values(["pos", "t"], kind="stable").reset_index(drop=True)
    pos = t["pos"].to_numpy()
    seq = t.groupby("pos").cumcount().to_numpy() + 1
    ticket_id = [f"TK-{a:05d}-{s:04d}" for a, s in zip(acc.number[pos], seq, strict=True)]
    return pd.DataFrame({
        "account_id": pd.array(ids[pos], dtype="str"),
        "ticket_id": pd.array(ticket_id, dtype="str"),
        "opened_at": _local(_timestamps(t["t"].to_numpy(), cal), acc.timezone[pos]),
        "closed_at": _local(_timestamps(t["closed_t"].fillna(0).to_numpy(), cal),
                            acc.timezone[pos], missing=t["closed_t"].isna().to_numpy()),
        "priority": pd.array(t["priority"].to_numpy(), dtype="str"),
        "category": pd.array(t["category"].to_numpy(), dtype="str"),
        "csat": t["csat"].to_numpy(),
        "escalated": t["escalated"].array,
    })  # fmt: skip


def _local(utc: np.ndarray, zones: np.ndarray, *, missing: np.ndarray | None = None) -> pd.Series:
    """UTC instants as an object column of tz-aware timestamps, each in its account's zone."""
    out = np.empty(len(utc), dtype=object)
    stamps = pd.DatetimeIndex(utc).tz_localize("UTC")
    for zone in np.unique(zones):
        mask = zones == zone
        out[mask] = stamps[mask].tz_convert(str(zone)).astype(object).to_numpy()
    if missing is not None:
        out[missing] = None
    return pd.Series(out, dtype=object)


def _reasons_table(reasons: pd.DataFrame, ids: np.ndarray, cal: Calendar) -> pd.DataFrame:
    out = _with_time(reasons, ids, cal, "recorded_at")
    return pd.DataFrame({
        "account_id": out["account_id"],
        "recorded_at": out["recorded_at"],
        "reason_category": pd.array(out["reason_category"].to_numpy(), dtype="str"),
        "reason_text": pd.array(out["reason_text"].to_numpy(), dtype="str"),
    })  # fmt: skip


def _health_table(health: pd.DataFrame, ids: np.ndarray, cal: Calendar) -> pd.DataFrame:
    score = health["score"].to_numpy()
    return pd.DataFrame({
        "account_id": pd.array(ids[health["pos"].to_numpy()], dtype="str"),
        "scored_at": _timestamps(health["t"].to_numpy(), cal),
        "score": score,
        "color": pd.array(demo_health.color_of(score), dtype="str"),
    })  # fmt: skip


# --- ground truth --------------------------------------------------------------------------
def _truth_accounts(
    acc: Accounts, lat: Latent, book: ContractBook, pan: Panels, ids: np.ndarray, cal: Calendar
) -> pd.DataFrame:
    live_weeks = pan.live.sum(axis=1)
    mean_value = np.where(pan.live, lat.value, 0).sum(axis=1) / np.maximum(live_weeks, 1)
    churned = book.last_day < cal.horizon
    cut = acc.budget_cut_week < cal.n_weeks
    return pd.DataFrame({
        "account_id": pd.array(ids, dtype="str"),
        "segment": acc.segment,
        "industry": acc.industry,
        "timezone": acc.timezone,
        "fit": np.round(acc.fit, 4),
        "mandated_usage": acc.mandated,
        "no_usage_tracking": acc.no_usage_tracking,
        "budget_cut": cut,
        "budget_cut_at": np.where(cut, _timestamps(np.minimum(acc.budget_cut_week, cal.n_weeks)
                                                   * 7.0, cal), np.datetime64("NaT")),
        "is_new_logo": acc.is_new_logo,
        "value_realised": np.round(lat.value[:, -1], 4),
        "value_realised_mean": np.round(mean_value, 4),
        "champion_strength": np.round(lat.champion[:, -1], 4),
        "customer_weeks": live_weeks,
        "churned": churned,
        "churned_on": np.where(churned, _dates(book.last_day, cal), None),
    })  # fmt: skip


def _truth_renewals(
    renewals: pd.DataFrame, acc: Accounts, exported: np.ndarray, ids: np.ndarray, cal: Calendar
) -> pd.DataFrame:
    r = renewals.copy()
    pos = r.pop("pos").to_numpy()
    score, color = demo_health.color_before(exported, pos, r["end_day"].to_numpy() - 60.0)
    start = r.pop("renewal_start_day").to_numpy()
    r.insert(0, "account_id", pd.array(ids[pos], dtype="str"))
    r.insert(1, "segment", acc.segment[pos])
    r.insert(3, "end_date", _dates(r.pop("end_day").to_numpy(), cal))
    r["renewal_start_date"] = np.where(start >= 0, _dates(np.maximum(start, 0), cal), None)
    r["renewal_observed"] = (start >= 0) & (start <= cal.horizon)
    r["health_score_60d"] = score
    r["health_color_60d"] = color
    return r


def _truth_latent(
    acc: Accounts, lat: Latent, pan: Panels, ids: np.ndarray, cal: Calendar
) -> pd.DataFrame:
    pos, week = np.nonzero(pan.live)
    return pd.DataFrame({
        "account_id": pd.array(ids[pos], dtype="str"),
        "week_start": _timestamps(week * 7.0, cal),
        "value_realised": np.round(lat.value[pos, week], 4),
        "champion_strength": np.round(lat.champion[pos, week], 4),
        "exec_sponsor_present": lat.exec_present[pos, week],
        "budget_cut": week >= acc.budget_cut_week[pos],
        "active_users": pan.active_users[pos, week],
        "seats": pan.seats[pos, week],
    })  # fmt: skip


def summarise(tables: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame], cal: Calendar
              ) -> pd.DataFrame:  # fmt: skip
    """Measured rates of the generated data: yearly logo churn by segment, green-churn share."""
    acc, ren = truth["accounts"], truth["renewals"]
    rows: list[tuple[str, str, float]] = []
    years_by_seg = acc.groupby("segment")["customer_weeks"].sum() / 52.18
    churns = ren[ren["decision"] == "churn"]
    for seg, years in years_by_seg.items():
        n_churn = int((churns["segment"] == seg).sum())
        rows.append(("logo_churn_per_year", str(seg), n_churn / max(years, 1e-9)))
    rows.append(("logo_churn_per_year", "all", len(churns) / max(years_by_seg.sum(), 1e-9)))
    scored = churns[churns["health_color_60d"].notna()]
    green_arr = scored.loc[scored["health_color_60d"] == "green", "arr_before"].sum()
    rows.append(("green_churn_arr_share", "all", green_arr / max(scored["arr_before"].sum(), 1e-9)))
    rows.append(
        (
            "green_churn_logo_share",
            "all",
            float((scored["health_color_60d"] == "green").mean()) if len(scored) else 0.0,
        )
    )
    for decision, count in ren["decision"].value_counts().items():
        rows.append(("renewal_decisions", str(decision), float(count)))
    for driver, count in churns["primary_driver"].value_counts().items():
        rows.append(("churn_primary_driver", str(driver), float(count)))
    for name, frame in tables.items():
        rows.append(("rows", name, float(len(frame))))
    return pd.DataFrame(rows, columns=["metric", "key", "value"])


def green_churn_share(data: DemoData) -> float:
    """Share of churned ARR whose account was green 60 days before its contract ended."""
    s = data.truth["summary"]
    return float(s.loc[s["metric"] == "green_churn_arr_share", "value"].iloc[0])


# --- writing -------------------------------------------------------------------------------
def tz_columns_to_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Mixed-zone timestamp columns become one tz-aware UTC column (TIMESTAMPTZ)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object and isinstance(_first(out[col]), pd.Timestamp):
            out[col] = pd.to_datetime(out[col], utc=True)
    return out


def _first(series: pd.Series) -> object:
    valid = series.dropna()
    return valid.iloc[0] if len(valid) else None


DEMO_MARKER = "churnlens_demo"  # a table in the truth schema naming the demo's source schema


class DemoTargetError(ValueError):
    """``demo-data`` was pointed at a warehouse (or truth schema) that is not the demo's."""


def write_demo(
    wh: Warehouse, data: DemoData, *, schema: str | None = None, truth_schema: str = "demo_truth"
) -> dict[str, int]:
    """Replace the contract tables in ``schema`` and the truth tables in ``truth_schema``.

    Everything happens in one transaction. Returns table -> rows written (truth tables are
    reported as ``<truth_schema>.<name>``). Refuses (:class:`DemoTargetError`) to replace
    contract tables that an earlier ``write_demo`` did not write, or a truth schema that holds
    another demo's truth: on a shared warehouse, demo data never overwrite anybody's tables.
    """
    written: dict[str, int] = {}
    quote_ident(truth_schema, what="truth schema name")
    _check_demo_target(wh, schema, truth_schema)
    with wh.transaction():
        if schema:
            wh.create_schema(schema)
        wh.create_schema(truth_schema)
        for name, frame in data.tables.items():
            wh.create_table_from_frame(tz_columns_to_utc(frame), name, schema)
            written[name] = len(frame)
        for name, frame in data.truth.items():
            wh.create_table_from_frame(tz_columns_to_utc(frame), name, truth_schema)
            written[f"{truth_schema}.{name}"] = len(frame)
        marker = pd.DataFrame({"source_schema": [schema or ""]})
        wh.create_table_from_frame(marker, DEMO_MARKER, truth_schema)
    return written


def _check_demo_target(wh: Warehouse, schema: str | None, truth_schema: str) -> None:
    where = f"schema {schema}" if schema else "the default schema"
    owner = None
    if wh.table_exists(DEMO_MARKER, truth_schema):
        rows = wh.query(f"SELECT source_schema FROM {_qualified(truth_schema)}")
        owner = str(rows["source_schema"].iloc[0] or "") if len(rows) else ""
        if owner != (schema or ""):
            raise DemoTargetError(
                f"the truth schema {truth_schema} belongs to the demo in "
                f"{'schema ' + owner if owner else 'the default schema'}, not {where}: set "
                "demo.truth_schema to a schema of your own"
            )
    # a demo written before the marker existed still has its truth tables beside it
    ours = owner is not None or wh.table_exists("summary", truth_schema)
    foreign = [t for t in CONTRACT if wh.table_exists(t, schema)]
    if foreign and not ours:
        raise DemoTargetError(
            f"{where} already holds contract tables ({', '.join(foreign)}) that churnlens "
            "demo-data did not write: demo data never replace a real warehouse. Point data_dir "
            "or warehouse.duckdb_path at a new file (or warehouse.source_schema at an empty "
            "schema)"
        )


def _qualified(truth_schema: str) -> str:
    return f"{quote_ident(truth_schema)}.{quote_ident(DEMO_MARKER)}"


def write_demo_parquet(data: DemoData, directory: Path) -> dict[str, Path]:
    """One Parquet file per contract table in ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in data.tables.items():
        path = directory / f"{name}.parquet"
        tz_columns_to_utc(frame).to_parquet(path, index=False)
        paths[name] = path
    return paths
