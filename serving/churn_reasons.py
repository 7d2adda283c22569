"""The churn-reason loop: what churned customers said, beside what the model said before.

For every churned account (``features.retention.churn_events``) this takes the last weekly
score at least ``notice_days`` before the churn date (a warning later than that leaves no time
to act) and its top churn driver's category (``prediction_reasons``: target churn, direction
raises, rank 1), and the reason the customer stated (``churn_reasons``, the latest one recorded
for the account). Two views for the report:

- the **agreement matrix**: stated reason (rows) against the model's top driver category
  (columns), in accounts; the *agreement rate* is the share of churns whose stated reason has a
  model counterpart (:data:`MODEL_CATEGORY_OF`) and whose top driver is exactly it;
- the **escaped** list: churned accounts the model scored low (tier in ``escaped_tiers``) with
  what they said: the causes the model misses, to look for in the data.

The stated reasons are read only here, never by features or training: they are known only after
the churn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from features.contract import CONTRACT
from features.sources import staging_view
from features.warehouse import Warehouse, quote_ident
from serving.config import REASON_CATEGORIES
from serving.render import Section, Table

STATED_CATEGORIES: tuple[str, ...] = CONTRACT["churn_reasons"].column("reason_category").allowed
"""The taxonomy of stated reasons (docs/data-contract.md, ``churn_reasons``)."""
MODEL_CATEGORY_OF: dict[str, str] = {
    "adoption": "adoption",
    "relationship": "relationship",
    "support": "support",
    "budget": "commercial",
}
"""The model reason category each stated reason corresponds to; the others have none."""
NOT_RECORDED = "(not recorded)"
NO_DRIVER = "(no driver)"


@dataclass(frozen=True)
class ChurnReasonReview:
    """One row per churned account that was scored in time (``churns``), the agreement matrix
    and rate, and the escaped accounts."""

    churns: pd.DataFrame
    matrix: pd.DataFrame
    agreement_rate: float
    comparable: int
    escaped: pd.DataFrame
    notice_days: int


def read_stated_reasons(wh: Warehouse) -> pd.DataFrame:
    """``account_id, recorded_at, reason_category, reason_text`` from the staged table (empty
    when the optional table is absent: its staging view is empty)."""
    view = quote_ident(staging_view("churn_reasons"))
    return wh.query(
        "SELECT account_id, recorded_at, reason_category, reason_text "
        f"FROM {view} ORDER BY account_id, recorded_at"
    )


def scores_before_churn(
    events: pd.DataFrame, predictions: pd.DataFrame, *, notice_days: int = 30
) -> pd.DataFrame:
    """Each churn event (``account_id, churn_date, churned_arr``) with the account's last
    prediction dated at least ``notice_days`` before ``churn_date``; events never scored that
    early are left out."""
    cols = ["run_date", "account_id", "churn_probability", "churn_tier"]
    cols += [c for c in ("name", "csm_owner", "segment") if c in predictions]
    scores = predictions[cols].assign(
        account_id=predictions["account_id"].astype(str),
        run_date=pd.to_datetime(predictions["run_date"]).astype("datetime64[ns]"),
    )
    ev = events.assign(
        account_id=events["account_id"].astype(str),
        churn_date=pd.to_datetime(events["churn_date"]).astype("datetime64[ns]"),
    )
    ev["cutoff"] = ev["churn_date"] - timedelta(days=notice_days)
    joined = pd.merge_asof(
        ev.sort_values("cutoff"),
        scores.sort_values("run_date"),
        left_on="cutoff",
        right_on="run_date",
        by="account_id",
        direction="backward",
    )
    joined = joined[joined["run_date"].notna()].drop(columns="cutoff")
    return joined.sort_values(["churn_date", "account_id"], ignore_index=True)


def top_driver_category(scored: pd.DataFrame, reasons: pd.DataFrame) -> pd.Series:
    """The category of each row's top churn-raising reason at its ``run_date`` (NA: none)."""
    top = reasons[
        (reasons["target"] == "churn") & (reasons["direction"] == "raises") & (reasons["rank"] == 1)
    ]
    top = top.assign(
        account_id=top["account_id"].astype(str),
        run_date=pd.to_datetime(top["run_date"]).astype("datetime64[ns]"),
    )[["run_date", "account_id", "category"]].drop_duplicates(["run_date", "account_id"])
    merged = scored[["run_date", "account_id"]].merge(
        top, on=["run_date", "account_id"], how="left"
    )
    return pd.Series(merged["category"].to_numpy(dtype=object), index=scored.index)


def latest_stated(stated: pd.DataFrame) -> pd.DataFrame:
    """The latest stated reason per account."""
    ordered = stated.assign(account_id=stated["account_id"].astype(str)).sort_values(
        ["account_id", "recorded_at"], kind="stable"
    )
    return ordered.drop_duplicates("account_id", keep="last")[
        ["account_id", "reason_category", "reason_text"]
    ]


def agreement_matrix(churns: pd.DataFrame) -> pd.DataFrame:
    """Accounts by stated reason (rows: the taxonomy, then not recorded) and the model's top
    driver category (columns: the reason taxonomy, then no driver); absent levels are 0."""
    stated = churns["reason_category"].astype(object).where(churns["reason_category"].notna())
    stated = stated.fillna(NOT_RECORDED)
    model = churns["model_category"].astype(object).where(churns["model_category"].notna())
    model = model.fillna(NO_DRIVER)
    rows = [*STATED_CATEGORIES, NOT_RECORDED]
    extra = sorted(set(model) - set(REASON_CATEGORIES) - {NO_DRIVER})
    cols = [*REASON_CATEGORIES, *extra, NO_DRIVER]
    counts = pd.crosstab(stated, model)
    return counts.reindex(index=rows, columns=cols, fill_value=0).rename_axis(
        index="stated", columns="model"
    )


def agreement_rate(churns: pd.DataFrame) -> tuple[float, int]:
    """Share of comparable churns (stated reason with a model counterpart) whose top driver is
    that counterpart, and how many were comparable (NaN rate when none)."""
    expected = churns["reason_category"].map(MODEL_CATEGORY_OF)
    comparable = expected.notna()
    n = int(comparable.sum())
    if n == 0:
        return float("nan"), 0
    agree = (churns.loc[comparable, "model_category"] == expected[comparable]).sum()
    return float(agree) / n, n


def review_churn_reasons(
    events: pd.DataFrame,
    predictions: pd.DataFrame,
    reasons: pd.DataFrame,
    stated: pd.DataFrame,
    *,
    notice_days: int = 30,
    escaped_tiers: Sequence[str] = ("low",),
) -> ChurnReasonReview:
    """The churn-reason loop over churn ``events`` given the prediction and reason history and
    the stated reasons (see the module docstring)."""
    churns = scores_before_churn(events, predictions, notice_days=notice_days)
    churns["model_category"] = top_driver_category(churns, reasons)
    churns = churns.merge(latest_stated(stated), on="account_id", how="left")
    rate, comparable = agreement_rate(churns)
    escaped = churns[churns["churn_tier"].isin(list(escaped_tiers))]
    escaped = escaped.sort_values(["churned_arr", "account_id"], ascending=[False, True])
    return ChurnReasonReview(
        churns=churns,
        matrix=agreement_matrix(churns),
        agreement_rate=rate,
        comparable=comparable,
        escaped=escaped.reset_index(drop=True),
        notice_days=notice_days,
    )


def churn_reasons_section(review: ChurnReasonReview | None, *, top: int = 20) -> Section:
    """The report section: the agreement matrix and the escaped churns with their reasons."""
    section = Section("Why customers left: stated reasons vs the model", "churn-reasons")
    if review is None or review.churns.empty:
        section.missing = (
            "No churned account was scored early enough yet (or no churn_reasons table): the "
            "comparison needs weekly scores from before the churns."
        )
        return section
    n, stated = len(review.churns), int(review.churns["reason_category"].notna().sum())
    rate = "–" if review.comparable == 0 else f"{review.agreement_rate:.0%}"
    section.notes.append(
        f"{n} churned account(s) had a weekly score at least {review.notice_days} days before "
        f"they churned; {stated} gave a reason. Where the stated reason is one the model can "
        f"see ({', '.join(MODEL_CATEGORY_OF)}: {review.comparable} account(s)), the model's top "
        f"driver named the same thing for {rate}. Rows: what the customer said; columns: the "
        "model's biggest risk driver at that score (budget is the model's 'commercial')."
    )
    section.tables.append(_matrix_table(review.matrix))
    section.tables.append(_escaped_table(review.escaped.head(top), review.notice_days))
    return section


def _matrix_table(matrix: pd.DataFrame) -> Table:
    cols = list(matrix.columns)
    rows = [
        {"cells": [str(stated), *[str(int(v)) for v in matrix.loc[stated]]]}
        for stated in matrix.index
        if matrix.loc[stated].sum() > 0
    ]
    return Table(["Stated reason", *cols], rows, caption="Agreement matrix (accounts)")


def _risk(p: float) -> str:
    """A probability as people read it: never a bare 0 % or 100 %."""
    return "<1%" if p < 0.01 else ">99%" if p > 0.99 else f"{p:.0%}"


def _escaped_table(escaped: pd.DataFrame, notice_days: int) -> Table:
    rows = []
    for _, r in escaped.iterrows():
        name = r.get("name")
        label = f"{name} ({r['account_id']})" if isinstance(name, str) else r["account_id"]
        stated = r.get("reason_category")
        rows.append(
            {
                "cells": [
                    label,
                    f"{pd.Timestamp(r['churn_date']):%Y-%m-%d}",
                    f"${float(r['churned_arr']):,.0f}",
                    _risk(float(r["churn_probability"])),
                    str(stated) if isinstance(stated, str) else NOT_RECORDED,
                    str(r["reason_text"]) if isinstance(r.get("reason_text"), str) else "",
                ]
            }
        )
    columns = ["Account", "Churned on", "Churned ARR", "Risk shown", "Stated reason", "Note"]
    caption = f"Escaped: churned while scored low risk {notice_days}+ days before"
    return Table(columns, rows, caption=caption)
