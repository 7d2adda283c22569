"""The demo warehouse: contract-shaped, deterministic, past-only, and behaving like a business."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

import pipelines.demo.data as demo
from features.contract import CONTRACT
from pipelines.demo.data import DemoData, generate_demo, green_churn_share, write_demo
from pipelines.demo.world import Calendar

END = date(2026, 11, 16)


@pytest.fixture(scope="module")
def data() -> DemoData:
    """One block of accounts over two years: big enough for rates, ~2 s to generate."""
    return generate_demo(n_accounts=500, seed=11, end=END, years=2.0)


@pytest.fixture(scope="module")
def tiny() -> DemoData:
    return generate_demo(n_accounts=40, seed=3, end=END, years=1.0)


def _utc(series: pd.Series) -> pd.Series:
    """Any timestamp column (naive UTC or tz-aware in mixed zones) as naive UTC."""
    if series.dtype == object:
        return pd.to_datetime(series, utc=True).dt.tz_localize(None)
    return series


def _metric(data: DemoData, metric: str, key: str) -> float:
    s = data.truth["summary"]
    return float(s.loc[(s["metric"] == metric) & (s["key"] == key), "value"].iloc[0])


def test_same_seed_same_data_other_seed_other_data(tiny: DemoData) -> None:
    again = generate_demo(n_accounts=40, seed=3, end=END, years=1.0)
    other = generate_demo(n_accounts=40, seed=4, end=END, years=1.0)
    for name in CONTRACT:
        pd.testing.assert_frame_equal(tiny.tables[name], again.tables[name])
    pd.testing.assert_frame_equal(tiny.truth["renewals"], again.truth["renewals"])
    assert len(other.tables["usage_events"]) != len(tiny.tables["usage_events"])


def test_a_block_is_the_same_whatever_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streaming by blocks gives the accounts the in-memory demo gives for the same seed."""
    monkeypatch.setattr(demo, "BLOCK_SIZE", 20)
    short = generate_demo(n_accounts=20, seed=5, end=END, years=1.0)
    longer = generate_demo(n_accounts=35, seed=5, end=END, years=1.0)
    for name in ("accounts", "contracts", "usage_events", "health_scores"):
        first = longer.tables[name]
        first = first[first["account_id"].isin(short.tables["accounts"]["account_id"])]
        pd.testing.assert_frame_equal(short.tables[name], first.reset_index(drop=True))


def test_usage_density_changes_usage_only(tiny: DemoData) -> None:
    """The benchmark generator's denser usage leaves every other table as the demo has it."""
    cal = Calendar.for_years(END, 1.0)
    (dense,) = demo.iter_demo_blocks(n_accounts=40, seed=3, cal=cal, events_scale=1.5)
    assert len(dense.tables["usage_events"]) > 1.3 * len(tiny.tables["usage_events"])
    for name in set(CONTRACT) - {"usage_events"}:
        pd.testing.assert_frame_equal(dense.tables[name], tiny.tables[name])


def test_every_contract_table_with_contract_columns(data: DemoData) -> None:
    assert set(data.tables) == set(CONTRACT)
    for name, spec in CONTRACT.items():
        frame = data.tables[name]
        assert list(frame.columns) == [c.name for c in spec.columns], name
        assert len(frame) > 0, name
        for col in spec.columns:
            if not col.nullable:
                assert frame[col.name].notna().all(), f"{name}.{col.name} has nulls"


def test_nothing_is_dated_after_the_run_date(data: DemoData) -> None:
    run = pd.Timestamp(END)
    for name, spec in CONTRACT.items():
        for col in spec.event_time_columns:
            stamps = _utc(data.tables[name][col]).dropna()
            assert stamps.max() < run, f"{name}.{col}"
    contracts = data.tables["contracts"]
    assert pd.to_datetime(contracts["start_date"]).max() <= run
    assert pd.to_datetime(data.tables["health_scores"]["scored_at"]).min() >= pd.Timestamp(
        data.start
    )


def test_keys_unique_and_commercial_values_valid(data: DemoData) -> None:
    for name, spec in CONTRACT.items():
        if spec.key:
            dupes = data.tables[name].duplicated(list(spec.key))
            assert not dupes.any(), f"{name} duplicate key {spec.key}"
    c = data.tables["contracts"]
    assert (pd.to_datetime(c["end_date"]) > pd.to_datetime(c["start_date"])).all()
    assert (c["arr"] >= 0).all()
    assert set(c["account_id"]) <= set(data.tables["accounts"]["account_id"])
    scores = data.tables["health_scores"]["score"]
    assert scores.between(0, 100).all()


def test_renewals_follow_their_contracts(data: DemoData) -> None:
    """A renewal starts on the old end date, or a few days late within the grace period."""
    r = data.truth["renewals"]
    renewed = r[(r["decision"] != "churn") & r["renewal_observed"]]
    late = pd.to_datetime(renewed["renewal_start_date"]) - pd.to_datetime(renewed["end_date"])
    assert (late.dt.days == renewed["late_days"]).all()
    assert late.dt.days.between(0, 30).all()
    assert (late.dt.days > 0).any()
    assert set(r["decision"]) == {"churn", "contract", "flat", "expand"}
    addons = data.tables["contracts"]["product"] == "Additional Seats"
    assert addons.sum() > 0


def test_churn_is_rarer_in_bigger_segments(data: DemoData) -> None:
    ent = _metric(data, "logo_churn_per_year", "enterprise")
    mid = _metric(data, "logo_churn_per_year", "mid-market")
    smb = _metric(data, "logo_churn_per_year", "smb")
    assert ent < smb and mid < smb
    assert 0.12 < smb < 0.45
    assert ent < 0.12


def test_churners_had_less_value_and_health_misses_some(data: DemoData) -> None:
    r = data.truth["renewals"]
    churned = r["decision"] == "churn"
    assert r.loc[churned, "value_realised"].mean() < r.loc[~churned, "value_realised"].mean() - 0.05
    assert r.loc[churned, "health_score_60d"].mean() < r.loc[~churned, "health_score_60d"].mean()
    assert 0.15 < green_churn_share(data) < 0.6


def test_realistic_mess(data: DemoData) -> None:
    t = data.tables
    events = t["usage_events"]
    row_hash = pd.util.hash_pandas_object(events, index=False)
    assert 0.001 < row_hash.duplicated().mean() < 0.02
    assert events["user_id"].isna().any()
    assert t["accounts"]["industry"].isna().any() and t["accounts"]["employees"].isna().any()
    assert t["support_tickets"]["csat"].isna().any()
    with_usage = events["account_id"].unique()
    assert (~t["accounts"]["account_id"].isin(with_usage)).any()
    zones = {ts.tzinfo.key for ts in t["support_tickets"]["opened_at"].head(500)}
    assert len(zones) > 1
    assert t["accounts"]["account_id"].str.match(r"^ACC-\d{5}$").all()
    assert t["accounts"]["csm_owner"].eq("Digital CS").any()


def test_write_demo_round_trips_into_duckdb(duck, tiny: DemoData) -> None:
    written = write_demo(duck, tiny)
    for name, frame in tiny.tables.items():
        assert duck.scalar(f'SELECT count(*) FROM "{name}"') == len(frame) == written[name]
    assert duck.scalar("SELECT count(*) FROM demo_truth.renewals") == len(tiny.truth["renewals"])
    assert "time zone" in duck.columns("support_tickets")["opened_at"]
    first = tiny.tables["support_tickets"]["opened_at"].iloc[0]
    stored = duck.scalar(
        "SELECT CAST(opened_at AS TIMESTAMP) FROM support_tickets WHERE ticket_id = ?",
        [tiny.tables["support_tickets"]["ticket_id"].iloc[0]],
    )
    assert pd.Timestamp(stored) == first.tz_convert("UTC").tz_localize(None)
    assert write_demo(duck, tiny) == written  # replaces, never appends


@pytest.mark.postgres
def test_write_demo_round_trips_into_postgres(pg, tiny: DemoData) -> None:
    truth_schema = f"{pg.scalar('SELECT current_schema()')}_truth"
    try:
        written = write_demo(pg, tiny, truth_schema=truth_schema)
        for name, frame in tiny.tables.items():
            assert pg.scalar(f'SELECT count(*) FROM "{name}"') == len(frame) == written[name]
        types = pg.columns("contracts")
        assert types["start_date"] == "date" and types["arr"] == "double precision"
    finally:
        pg.execute(f'DROP SCHEMA IF EXISTS "{truth_schema}" CASCADE')


def test_write_demo_refuses_a_warehouse_it_did_not_write(duck, tiny: DemoData) -> None:
    duck.execute("CREATE TABLE accounts (account_id VARCHAR)")  # somebody's real data
    with pytest.raises(demo.DemoTargetError, match=r"already holds contract tables \(accounts\)"):
        write_demo(duck, tiny)
    assert duck.scalar("SELECT count(*) FROM accounts") == 0  # untouched


def test_write_demo_refuses_another_demos_truth_schema(duck, tiny: DemoData) -> None:
    write_demo(duck, tiny)  # the demo in the default schema owns demo_truth
    with pytest.raises(demo.DemoTargetError, match="belongs to the demo in the default schema"):
        write_demo(duck, tiny, schema="other")
    written = write_demo(duck, tiny, schema="other", truth_schema="other_truth")
    assert written["other_truth.renewals"] == len(tiny.truth["renewals"])


def test_write_demo_parquet(tmp_path, tiny: DemoData) -> None:
    paths = demo.write_demo_parquet(tiny, tmp_path)
    assert set(paths) == set(CONTRACT)
    tickets = pd.read_parquet(paths["support_tickets"])
    assert len(tickets) == len(tiny.tables["support_tickets"])
    assert str(tickets["opened_at"].dt.tz) == "UTC"
    assert np.isclose(pd.read_parquet(paths["contracts"])["arr"].sum(),
                      tiny.tables["contracts"]["arr"].sum())  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_accounts": 0}, "n_accounts must be >= 1"), ({"years": 0.1}, "years must be > 0.25")],
)
def test_bad_sizes_are_refused_with_the_argument_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_demo(end=END, **{"n_accounts": 5, "years": 1.0, **kwargs})
