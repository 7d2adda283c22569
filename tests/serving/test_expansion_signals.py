"""Expansion signals: seat overage from the one feature build, cross-sell of add-ons the
segment buys, contracts read point-in-time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.config import WarehouseConfig
from features.validation import prepare_sources
from serving.expansion_signals import (
    SIGNAL_COLUMNS,
    add_expansion_signals,
    cross_sell,
    expansion_signals_section,
    products_in_force,
    seat_overage,
)
from tests.features.test_validation import REF, good_frames, load


def test_seat_overage_counts_users_above_seats_and_nothing_without_seats() -> None:
    features = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "active_users_28d": [30.0, 8.0, 5.0, np.nan],
            "seats": [20.0, 10.0, np.nan, 10.0],
        }
    )
    out = seat_overage(features)
    assert out["seat_overage"].tolist()[:2] == [10.0, 0.0]
    assert out["seat_overage"].isna().tolist() == [False, False, True, True]
    assert out["seat_overage_share"].tolist()[:2] == [0.5, 0.0]


def _accounts() -> pd.DataFrame:
    return pd.DataFrame(
        {"account_id": ["e1", "e2", "e3", "e4", "s1", "s2"], "segment": ["ent"] * 4 + ["smb"] * 2}
    )


def _products() -> pd.DataFrame:
    rows = [
        ("e1", "Core"), ("e1", "Analytics"), ("e2", "Core"), ("e2", "Analytics"),
        ("e3", "Core"), ("e4", "Core Monthly"), ("s1", "Core"), ("s2", "Core"),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["account_id", "product"])


def test_cross_sell_offers_the_add_on_the_segment_buys_never_a_plan() -> None:
    out = cross_sell(_accounts(), _products(), min_share=0.2).set_index("account_id")
    # Analytics: held by half of ent, always beside Core -> an add-on; e3 and e4 lack it
    assert out["cross_sell_product"].to_dict() == {
        "e1": None, "e2": None, "e3": "Analytics", "e4": "Analytics", "s1": None, "s2": None,
    }  # fmt: skip
    assert out.loc["e3", "cross_sell_share"] == 0.5
    # Core Monthly is a plan held alone (and Core is held by 3 of 4 without an add-on in e3):
    # neither is offered; a share threshold above Analytics' share offers nothing
    none = cross_sell(_accounts(), _products(), min_share=0.6)
    assert none["cross_sell_product"].isna().all()


def test_signals_join_onto_predictions_with_documented_names() -> None:
    predictions = pd.DataFrame(
        {
            "account_id": ["e3", "e1"],
            "segment": ["ent", "ent"],
            "arr": [50_000.0, 90_000.0],
            "name": ["Acme", "Globex"],
            "csm_owner": ["kim", None],
        }
    )
    features = pd.DataFrame(
        {"account_id": ["e1", "e3"], "active_users_28d": [12.0, 4.0], "seats": [10.0, 5.0]}
    )
    accounts = _accounts()
    out = add_expansion_signals(
        predictions, features, _products()[_products()["account_id"].isin(accounts["account_id"])]
    )
    assert list(out.columns[-4:]) == list(SIGNAL_COLUMNS)
    assert out["account_id"].tolist() == ["e3", "e1"]  # order kept
    assert out["seat_overage"].tolist() == [0.0, 2.0]
    # among the two scored accounts Analytics is held by e1 only: half of the segment
    assert out["cross_sell_product"].tolist() == ["Analytics", None]
    section = expansion_signals_section(out)
    assert "1 account(s) had more people active" in section.notes[0]
    assert "$90,000 ARR" in section.notes[0]
    assert section.tables[0].rows[0]["cells"][:2] == ["Globex (e1)", "-"]
    assert section.tables[1].rows[0]["cells"][3] == "Analytics"


def test_products_in_force_are_read_at_as_of_only(duck) -> None:
    frames = good_frames()
    c = frames["contracts"]
    extra = pd.DataFrame(
        {
            "account_id": ["a2", "a2"],
            "contract_id": ["c3", "c4"],
            "product": ["analytics", "later"],
            "start_date": [dt.date(2025, 2, 1), dt.date(2025, 6, 2)],
            "end_date": [dt.date(2025, 6, 1), None],
            "arr": [5000.0, 1000.0],
            "seats": [None, None],
        }
    )
    frames["contracts"] = pd.concat([c, extra], ignore_index=True)
    load(duck, frames)
    prepare_sources(duck, WarehouseConfig(), reference_time=REF)

    def at(day: str) -> list[tuple[str, str]]:
        frame = products_in_force(duck, pd.Timestamp(day).to_pydatetime())
        return list(zip(frame["account_id"], frame["product"], strict=True))

    # end_date is exclusive; a contract starting the day after as_of is not there yet
    assert at("2025-05-31") == [("a2", "analytics"), ("a2", "core")]
    assert at("2025-06-01") == [("a2", "core")]
    assert at("2025-06-02") == [("a2", "core"), ("a2", "later")]
    assert at("2024-12-31") == [("a1", "core"), ("a2", "core")]


@pytest.mark.parametrize("frame", [None, pd.DataFrame({"account_id": []})])
def test_section_without_signals_says_so(frame) -> None:
    assert "No expansion signals" in expansion_signals_section(frame).missing
