"""Expansion signals: usage above what was purchased, and products the account's peers buy.

Two plain signals beside the expansion model, each with the account's ARR, for the risk list's
expansion section and the report:

- **seat overage**: distinct active users in the last 28 days (``active_users_28d``) above the
  licensed seats of the contracts in force (``seats``), both from the one feature build at
  ``as_of``, so they see only data up to then. ``seat_overage`` is users - seats when positive,
  0 when within the licence, NULL when the account is not sold by seat or has no usage data;
  ``seat_overage_share`` is the overage over seats (0.25: a quarter more users than seats).
- **cross-sell**: a product the account does not hold that at least ``min_share`` of active
  accounts of its segment hold at ``as_of``, among *add-on* products: those whose holders
  nearly always (90 %) hold another product beside them (a plan, often bought alone, such as
  a monthly variant of the base plan, is not something to cross-sell). ``cross_sell_product``
  is the most held such product (NULL when none), ``cross_sell_share`` the share of the
  segment that holds it.
"""

from __future__ import annotations

from datetime import datetime
from typing import SupportsFloat

import pandas as pd

from features.config import WarehouseConfig
from features.sources import create_staging_view, locate_sources, staging_view
from features.warehouse import Warehouse, quote_ident
from serving.render import Section, Table

SIGNAL_COLUMNS = ("seat_overage", "seat_overage_share", "cross_sell_product", "cross_sell_share")
"""Columns :func:`add_expansion_signals` puts on the scored predictions."""


def seat_overage(features: pd.DataFrame) -> pd.DataFrame:
    """``account_id, seat_overage, seat_overage_share`` from the feature frame (one as_of)."""
    nothing = pd.Series(float("nan"), index=features.index)
    users = pd.to_numeric(features.get("active_users_28d", nothing), errors="coerce")
    seats = pd.to_numeric(features.get("seats", nothing), errors="coerce")
    known = users.notna() & seats.notna() & (seats > 0)
    over = (users - seats).clip(lower=0).where(known)
    return pd.DataFrame(
        {
            "account_id": features["account_id"].astype(str).to_numpy(),
            "seat_overage": over.to_numpy(dtype=float),
            "seat_overage_share": (over / seats.where(known)).to_numpy(dtype=float),
        }
    )


def products_in_force(wh: Warehouse, as_of: datetime) -> pd.DataFrame:
    """``account_id, product`` of every contract in force at ``as_of`` (``start_date <= as_of <
    end_date``, NULL end: open-ended), from the staged contracts; products NULL are left out."""
    view = quote_ident(staging_view("contracts"))
    return wh.query(
        f"SELECT DISTINCT account_id, product FROM {view} WHERE product IS NOT NULL "
        "AND CAST(start_date AS TIMESTAMP) <= ? "
        "AND (end_date IS NULL OR CAST(end_date AS TIMESTAMP) > ?) ORDER BY account_id, product",
        [as_of, as_of],
    )


def staged_products_in_force(
    wh: Warehouse, config: WarehouseConfig, *, as_of: datetime, reference_time: datetime
) -> pd.DataFrame:
    """:func:`products_in_force` on a connection of its own: stages ``contracts`` alone (with
    the run's exclusions), for a task that runs after the run validated its sources."""
    sources = locate_sources(config)
    create_staging_view(wh, sources["contracts"], sources=sources, reference_time=reference_time)
    return products_in_force(wh, as_of)


def cross_sell(
    accounts: pd.DataFrame,
    products: pd.DataFrame,
    *,
    min_share: float = 0.2,
    min_addon_share: float = 0.9,
) -> pd.DataFrame:
    """``account_id, cross_sell_product, cross_sell_share`` for ``accounts`` (``account_id,
    segment``) given ``products`` in force (``account_id, product``)."""
    held = products.assign(account_id=products["account_id"].astype(str)).drop_duplicates()
    held = held[held["account_id"].isin(accounts["account_id"].astype(str))]
    per_account = held.groupby("account_id")["product"].transform("size")
    held = held.assign(with_other=per_account > 1)
    seg = accounts[["account_id", "segment"]].astype({"account_id": str})
    held = held.merge(seg, on="account_id", how="inner")
    sizes = seg.groupby("segment", dropna=False).size().rename("n_segment")
    stats = held.groupby(["segment", "product"], dropna=False).agg(
        holders=("account_id", "nunique"), addon=("with_other", "mean")
    )
    stats = stats.join(sizes, on="segment").reset_index()
    stats["share"] = stats["holders"] / stats["n_segment"]
    candidates = stats[(stats["share"] >= min_share) & (stats["addon"] >= min_addon_share)]
    offers = seg.merge(
        candidates[["segment", "product", "share"]], on="segment", how="inner", sort=False
    )
    owned = held[["account_id", "product"]].assign(_owned=True)
    offers = offers.merge(owned, on=["account_id", "product"], how="left")
    offers = offers[offers["_owned"].isna()].sort_values(
        ["account_id", "share", "product"], ascending=[True, False, True], kind="stable"
    )
    best = offers.drop_duplicates("account_id", keep="first").set_index("account_id")
    out = pd.DataFrame({"account_id": seg["account_id"].to_numpy()})
    product = out["account_id"].map(best["product"])
    return out.assign(
        cross_sell_product=pd.Series(product.to_numpy(dtype=object), dtype=object).where(
            product.notna().to_numpy(), None
        ),
        cross_sell_share=out["account_id"].map(best["share"]).to_numpy(dtype=float),
    )


def add_expansion_signals(
    predictions: pd.DataFrame,
    features: pd.DataFrame,
    products: pd.DataFrame,
    *,
    min_share: float = 0.2,
) -> pd.DataFrame:
    """``predictions`` with :data:`SIGNAL_COLUMNS` joined on ``account_id``."""
    signals = seat_overage(features).merge(
        cross_sell(predictions, products, min_share=min_share), on="account_id", how="outer"
    )
    out = predictions.drop(columns=[c for c in SIGNAL_COLUMNS if c in predictions])
    out = out.merge(signals, on="account_id", how="left")
    out["cross_sell_product"] = out["cross_sell_product"].astype(object)
    out["cross_sell_product"] = out["cross_sell_product"].where(
        out["cross_sell_product"].notna(), None
    )
    return out


def expansion_signals_section(predictions: pd.DataFrame, *, top: int = 15) -> Section:
    """The report section: accounts with more active users than seats, then cross-sell
    candidates, largest ARR first."""
    section = Section("Expansion signals: usage above purchase, cross-sell", "expansion-signals")
    if predictions is None or "seat_overage" not in predictions:
        section.missing = "No expansion signals in this run (the weekly run adds them)."
        return section
    over = predictions[predictions["seat_overage"].fillna(0) > 0]
    over = over.sort_values(["arr", "account_id"], ascending=[False, True])
    cross = predictions[predictions["cross_sell_product"].notna()]
    cross = cross.sort_values(["arr", "account_id"], ascending=[False, True])
    section.notes.append(
        f"{len(over)} account(s) had more people active in the last 28 days than licensed "
        f"seats ({_money(over['arr'].sum())} ARR); {len(cross)} account(s) lack "
        "an add-on that many accounts of their segment buy "
        f"({_money(cross['arr'].sum())} ARR). Seat overage = active users - seats."
    )
    section.tables.append(_overage_table(over.head(top)))
    section.tables.append(_cross_sell_table(cross.head(top)))
    return section


def _text(value: object) -> str:
    return value if isinstance(value, str) and value else "-"


def _money(value: SupportsFloat | None) -> str:
    return "–" if value is None or pd.isna(value) else f"${float(value):,.0f}"


def _name(row: pd.Series) -> str:
    name = row.get("name")
    return f"{name} ({row['account_id']})" if isinstance(name, str) and name else row["account_id"]


def _overage_table(frame: pd.DataFrame) -> Table:
    rows = [
        {
            "cells": [
                _name(r),
                _text(r.get("csm_owner")),
                _money(r["arr"]),
                f"{int(r['seat_overage'])}",
                f"{r['seat_overage_share']:.0%}",
            ]
        }
        for _, r in frame.iterrows()
    ]
    columns = ["Account", "CSM", "ARR", "Users above seats", "Above seats by"]
    return Table(columns, rows, caption="More active users than licensed seats")


def _cross_sell_table(frame: pd.DataFrame) -> Table:
    rows = [
        {
            "cells": [
                _name(r),
                _text(r.get("segment")),
                _money(r["arr"]),
                r["cross_sell_product"],
                f"{r['cross_sell_share']:.0%} of the segment",
            ]
        }
        for _, r in frame.iterrows()
    ]
    columns = ["Account", "Segment", "ARR", "Product to offer", "Held by"]
    return Table(columns, rows, caption="Add-ons their segment commonly buys")
