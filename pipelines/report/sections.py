"""The report's sections: retention, forecast and model monitoring as a board reads them.

Every input is a frame produced by ``features.retention``, ``models.forecast``,
``models.monitoring`` or ``models.health_audit``; any of them may be ``None`` (the section then
says what is missing). The page is written for a customer-success leader taking it to a board:
trailing-12-month retention first, one unit per figure (percentages for rates, $k/$M for money),
human column names, a glossary of every abbreviation, and the model's own track record in
words. :func:`build_report` writes it through ``serving.render`` (escaped text, charts as
embedded PNGs), so the file can be mailed or opened offline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter
from typing_extensions import TypeIs

from models.health_audit import HealthAudit
from models.metrics import REALISED_ECE_BINNING, ece_label
from models.monitoring import REALISED_COLUMNS, drift_warnings
from serving.render import Section, Table, image, render

_RATIO_HINTS = ("ndr", "grr", "rate", "share", "coverage", "retention", "capture", "missing")
_MONEY_HINTS = ("arr", "expansion", "contraction", "error")
_PLAIN_HINTS = ("psi", "auc", "brier", "ece", "corr", "gap", "score", "probability")
_GREY, _NDR, _GRR, _ACTUAL = "#9aa5b1", "#1f6fb2", "#2f9e6f", "#d9480f"

COLUMN_LABELS: dict[str, str] = {
    "period": "Period",
    "segment": "Segment",
    "industry_category": "Downturn category",
    "group": "Group",
    "starting_arr": "ARR at start",
    "expansion": "Expansion",
    "contraction": "Contraction",
    "churned_arr": "Churned ARR",
    "new_arr": "New-logo ARR",
    "ending_arr": "ARR at end",
    "ndr": "NDR",
    "grr": "GRR",
    "logos_start": "Customers at start",
    "logos_churned": "Customers lost",
    "logo_churn_rate": "Logo churn",
    "accounts": "Accounts",
    "cohort": "Signup quarter",
    "run_date": "Run date",
    "run_dates": "Dates",
    "quantity": "Quantity",
    "coverage": "Interval held the actual",
    "mean_error": "Mean error (actual − forecast)",
    "mean_abs_error": "Mean absolute error",
    "with_level_uncertainty": "With level uncertainty",
    "churners": "Churned",
    "auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "brier": "Brier score",
    "ece": ece_label(REALISED_ECE_BINNING),
    "mean_probability": "Predicted churn rate",
    "observed_rate": "Observed churn rate",
    "green_churned_arr": "Churned ARR that was green",
    "green_churn_capture": "Of it, flagged green churn",
    "feature": "Feature",
    "description": "What it measures",
    "kind": "Kind",
    "psi": "PSI",
    "missing_train": "Missing (training)",
    "missing_current": "Missing (now)",
    "status": "Status",
    "score": "Score",
    "mean_reference": "Mean before",
    "mean_current": "Mean now",
    "reference_run": "Compared with run",
    "model": "Model",
    "days_before": "Days before churn",
    "churn_events": "Churn events",
    "green_share": "Green",
    "yellow_share": "Yellow",
    "red_share": "Red",
    "unscored_share": "No score",
    "green_arr": "Green churned ARR",
    "auc_health": "ROC-AUC health score",
    "auc_model": "ROC-AUC model",
    "capture_health": "Churned ARR in riskiest 10%: health score",
    "capture_model": "Churned ARR in riskiest 10%: model",
    "corr_health": "Correlation with health score",
    "corr_model": "Correlation with model",
}
QUANTITY_LABELS = {
    "churned_arr": "Churned ARR",
    "contraction": "Contraction",
    "expansion": "Expansion",
    "logos_churned": "Customers lost",
    "ndr": "NDR",
    "grr": "GRR",
}
GLOSSARY: list[tuple[str, str]] = [
    ("ARR", "Annual recurring revenue: the yearly value of the contracts in force on a day."),
    (
        "NDR (net revenue retention)",
        "ARR today from the customers we had at the start of the period, divided by their ARR "
        "then. Counts expansion, contraction and churn; new customers are left out. Above 100% "
        "means the existing base grew on its own.",
    ),
    (
        "GRR (gross revenue retention)",
        "Like NDR but without expansion: the share of starting ARR kept after contraction and "
        "churn. It can never exceed 100%.",
    ),
    (
        "Trailing 12 months (TTM)",
        "Measured over the last full 12 months: the customers of 12 months ago against "
        "themselves today. The figure boards and investors usually mean by NDR.",
    ),
    (
        "Quarter over quarter",
        "Measured over one quarter only. A quarterly NDR of 98% is not an annual 98%.",
    ),
    ("Expansion", "ARR added by existing customers (more seats, upgrades, price increases)."),
    ("Contraction", "ARR lost by customers who stayed but pay less (fewer seats, downgrades)."),
    ("Churned ARR", "ARR of customers who left (no contract renewed within the grace period)."),
    ("Logo churn", "The share of customers (counted, not weighted by ARR) who left."),
    ("Cohort", "The customers whose first contract started in the same quarter."),
    ("Segment", "Enterprise, mid-market or SMB: the customer's size band."),
    (
        "Downturn category",
        "Industries grouped by how a downturn treats them: 1 hit hard, 2 neutral, 3 benefits "
        "(retention.industry_categories in the configuration).",
    ),
    ("CSM", "Customer success manager: the person who owns the relationship."),
    (
        "Health score",
        "The rule-based 0-100 score exported by the customer-success tool (green, yellow, red).",
    ),
    ("Green churn", "A customer the health score shows green while the model sees high risk."),
    (
        "Forecast interval",
        "The range the outcome should fall in 9 times out of 10 if the model is right.",
    ),
    (
        "Backtest",
        "The forecast re-run at past dates whose outcomes are now known, to see how it did.",
    ),
    (
        "ROC-AUC",
        "How well the model ranks churners above stayers: 0.5 is a coin toss, 1.0 perfect.",
    ),
    ("PR-AUC", "Precision-recall AUC: ranking quality that focuses on the rare churners."),
    (
        "Brier score",
        "Mean squared gap between the predicted probability and what happened; lower is better.",
    ),
    (
        "ECE (expected calibration error)",
        "How far predicted churn rates sit from observed ones, on average; 2% means a group "
        "predicted at 10% churned at about 8-12%. Realised performance groups accounts in 10 "
        "equal-width probability bins (0-10%, 10-20%, ...); the training backtest uses 10 "
        "equal-count bins.",
    ),
    (
        "PSI (population stability index)",
        "How much a feature's distribution moved since the model was trained: below 0.10 "
        "stable, 0.10-0.25 worth a look, above 0.25 a real shift.",
    ),
]


@dataclass
class MonitoringView:
    """What the model-monitoring section shows; every part is optional and rendered when given.

    ``drift``: :func:`models.monitoring.feature_drift` (``feature, kind, psi, missing_train,
    missing_current, missing_change, status``; status ``ok | warn | alert | excluded``, a
    feature that drifts by construction may carry any other non-alerting status);
    ``prediction_drift``: :func:`models.monitoring.prediction_drift`; ``realised``:
    :func:`models.monitoring.realised_performance` (``run_date, auc, brier, ece`` at least);
    ``estimated``: a label-free performance estimate, one row per run date and metric
    (``run_date, metric, estimate, lo, hi`` and optionally ``realised``); ``checks``: data
    volume/coverage checks (``check, value, expected, status``, status ``ok | warn | alert``);
    ``warnings``: alert lines to show (default: :func:`models.monitoring.drift_warnings`);
    ``notes``: sentences shown first."""

    drift: pd.DataFrame | None = None
    prediction_drift: pd.DataFrame | None = None
    realised: pd.DataFrame | None = None
    estimated: pd.DataFrame | None = None
    checks: pd.DataFrame | None = None
    warnings: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def alert_lines(self) -> list[str]:
        if self.warnings is not None:
            return list(self.warnings)
        return [] if _empty(self.drift) else drift_warnings(self.drift, self.prediction_drift)


# --- formatting ---------------------------------------------------------------------------------


def money(value: float) -> str:
    """Dollars for people: $820, $12.3k, $350k, $1.24M (a minus sign for losses)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    sign, v = ("−" if value < 0 else ""), abs(float(value))
    if v >= 1e6:
        text = f"{v / 1e6:.2f}M" if v < 1e7 else f"{v / 1e6:.1f}M"
    elif v >= 1e3:
        text = f"{v / 1e3:.1f}k" if v < 1e5 else f"{v / 1e3:.0f}k"
    else:
        text = f"{v:.0f}"
    return f"{sign}${text}"


def percent(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}%}"


def column_label(column: str) -> str:
    """A column's name for people: the glossary's term, else the words of the snake_case."""
    if column in COLUMN_LABELS:
        return COLUMN_LABELS[column]
    if column.endswith(" mo"):
        return column
    words = str(column).replace("_", " ")
    return words[:1].upper() + words[1:]


def _is_ratio(column: str) -> bool:
    c = column.lower()
    return c == "mean_probability" or (any(h in c for h in _RATIO_HINTS) and "arr" not in c)


def _is_money(column: str) -> bool:
    c = column.lower()
    return any(h in c for h in _MONEY_HINTS) and not _is_ratio(c)


def format_value(value: Any, column: str = "") -> str:
    """Cell text: rates as percentages, money as $k/$M, counts with separators, NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, pd.Timestamp | datetime | date):
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        number = float(value)
        if _is_ratio(column):
            return percent(number)
        if _is_money(column):
            return money(number)
        if any(h in column.lower() for h in _PLAIN_HINTS):
            return f"{number:.3f}"
        return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.3g}"
    return str(value)


def frame_table(
    frame: pd.DataFrame,
    *,
    caption: str = "",
    columns: Sequence[str] | None = None,
    max_rows: int = 60,
    formats: dict[str, Callable[[Any], str]] | None = None,
    muted: pd.Series | None = None,
) -> Table:
    """A frame as template rows of formatted strings (escaping happens in the template);
    headers are :func:`column_label` s, ``muted`` rows are greyed."""
    cols = [c for c in (columns or frame.columns) if c in frame.columns]
    formats = formats or {}
    rows = []
    shown = frame.head(max_rows)
    greyed = (
        muted.reindex(shown.index).fillna(False).to_numpy()
        if muted is not None
        else np.zeros(len(shown), bool)
    )
    for record, grey in zip(shown[cols].to_dict("records"), greyed, strict=True):
        cells = [formats.get(c, lambda v, c=c: format_value(v, c))(record[c]) for c in cols]
        status = "muted" if grey else str(record.get("status", "") or "")
        rows.append({"cells": cells, "status": status, "text": [_is_text(x) for x in cells]})
    return Table(columns=[column_label(str(c)) for c in cols], rows=rows, caption=caption)


def _is_text(cell: str) -> bool:
    """Words, not a figure: aligned left (figures align right)."""
    return not re.match(r"^[−+\-]?\$?[\d.,]+|^–$", cell)


def _empty(frame: pd.DataFrame | None) -> TypeIs[None]:
    """True for no frame and for a frame without rows. Typed as ``TypeIs[None]`` so a False
    answer tells mypy the frame is there; the True branches never use the frame."""
    return frame is None or (isinstance(frame, pd.DataFrame) and frame.empty)


def _group_column(frame: pd.DataFrame, known: Sequence[str]) -> str | None:
    extra = [c for c in frame.columns if c not in known]
    return extra[0] if extra else None


def _money_axis(ax: Any) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: money(v)))


def _percent_axis(ax: Any, decimals: int = 0) -> None:
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=decimals))


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e4e7eb", lw=0.8)
    ax.set_axisbelow(True)


# --- retention ----------------------------------------------------------------------------------


def retention_section(
    retention: pd.DataFrame | None,
    ttm: pd.DataFrame | None = None,
    *,
    history_start: date | datetime | None = None,
) -> Section:
    """Quarterly ARR bridge beside the trailing-12-month NDR/GRR; quarters that start before
    ``history_start`` (or flagged ``complete_history`` False) are greyed."""
    section = Section("Net and gross revenue retention", "retention")
    if _empty(retention):
        section.missing = "No retention figures: no complete period in the contracts table."
        return section
    from features.retention import MOVEMENT_COLUMNS

    known = [*MOVEMENT_COLUMNS, "ndr_rolling", "grr_rolling", "complete_history"]
    group = _group_column(retention, known)
    complete = _complete(retention, history_start)
    if group is None:
        section.images.append(_retention_chart(retention, ttm, complete, history_start))
    # The movement columns a reader needs, in their order: no period bounds or logo counts.
    hidden = {"period_start", "period_end", "logos_start", "logos_churned", "logos_new"}
    cols = [*([group] if group else []), *(c for c in MOVEMENT_COLUMNS if c not in hidden)]
    ordered = retention.assign(_complete=complete).sort_values(
        [c for c in (group, "period_start") if c]
    )
    latest = ordered.groupby(group).tail(8) if group else ordered.tail(8)
    section.tables.append(
        frame_table(
            latest,
            columns=cols,
            caption="Quarter over quarter: the ARR bridge of the latest quarters",
            muted=~latest["_complete"],
        )
    )
    section.notes.append(
        "Existing customers only: new logos are shown as new-logo ARR and kept out of NDR and "
        "GRR. Quarterly figures are quarter over quarter, not annual."
    )
    if not complete.all():
        first = pd.Timestamp(history_start).date() if history_start is not None else None
        section.notes.append(
            "Greyed: quarters that start before the contract history is complete"
            + (f" ({first:%d %b %Y})" if first else "")
            + ". The data hold only the customers who survived into it, so those quarters "
            "would show no losses by construction; they are left out of every headline."
        )
    return section


def _complete(frame: pd.DataFrame, history_start: date | datetime | None) -> pd.Series:
    if "complete_history" in frame:
        return frame["complete_history"].astype(bool)
    if history_start is None:
        return pd.Series(True, index=frame.index)
    return frame["period_start"] >= pd.Timestamp(history_start)


def _retention_chart(
    quarters: pd.DataFrame,
    ttm: pd.DataFrame | None,
    complete: pd.Series,
    history_start: date | datetime | None,
) -> dict[str, str]:
    fig = Figure(figsize=(10, 3.8))
    ax = fig.add_subplot()
    _style(ax)
    ends = pd.to_datetime(quarters["period_end"])
    for key, color, marker in (("ndr", _NDR, "o"), ("grr", _GRR, "s")):
        ok = complete.to_numpy()
        ax.plot(
            ends[ok],
            quarters.loc[ok, key],
            marker=marker,
            ls="none",
            color=color,
            alpha=0.55,
            ms=5,
            label=f"{key.upper()} quarter over quarter",
        )
        if (~ok).any():
            ax.plot(ends[~ok], quarters.loc[~ok, key], marker=marker, ls="none", color=_GREY, ms=5)
        if not _empty(ttm):
            ax.plot(
                pd.to_datetime(ttm["period_end"]),
                ttm[key],
                color=color,
                lw=2.2,
                label=f"{key.upper()} trailing 12 months",
            )
    if history_start is not None and not complete.all():
        lo = pd.to_datetime(quarters["period_start"]).min()
        ax.axvspan(lo, pd.Timestamp(history_start), color="#eef0f3", zorder=0)
        ax.text(
            lo,
            ax.get_ylim()[1],
            " before complete history",
            va="top",
            fontsize=8,
            color="#616e7c",
        )
    ax.axhline(1.0, color=_GREY, lw=0.8, ls="--")
    _percent_axis(ax)
    ax.set_ylabel("share of starting ARR")
    ax.legend(fontsize=8, ncol=2, loc="lower left", frameon=False)
    fig.autofmt_xdate()
    return image(fig, "NDR and GRR: trailing 12 months and quarter over quarter")


def cohort_section(
    cohorts: pd.DataFrame | None, *, history_start: date | datetime | None = None
) -> Section:
    section = Section("Cohort ARR retention", "cohorts")
    if _empty(cohorts):
        section.missing = "No cohort table: no cohort has a complete observation yet."
        return section
    grid = cohorts.pivot(index="cohort", columns="months_since_start", values="arr_retention")
    sizes = cohorts.groupby("cohort")["accounts"].first().reindex(grid.index)
    values = grid.to_numpy(dtype=float)
    fig = Figure(figsize=(10, 0.42 * len(grid) + 1.4))
    ax = fig.add_subplot()
    heatmap = ax.imshow(values, aspect="auto", cmap="RdYlGn", vmin=0.5, vmax=1.3)
    labels = [f"{c}  ({n:,} accounts)" for c, n in zip(grid.index, sizes, strict=True)]
    ax.set_yticks(range(len(grid)), labels=labels, fontsize=8)
    ax.set_xticks(range(len(grid.columns)), labels=[str(c) for c in grid.columns], fontsize=8)
    ax.set_xlabel("months since the cohort's first contract")
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7)
    bar = fig.colorbar(heatmap, ax=ax, label="ARR retained", format=PercentFormatter(1.0))
    bar.ax.tick_params(labelsize=8)
    section.images.append(image(fig, "cohort ARR retention heatmap"))
    if history_start is not None:
        section.notes.append(
            f"Only customers who signed on or after {pd.Timestamp(history_start):%d %b %Y}, "
            "when the contract history becomes complete: earlier cohorts are in the data only "
            "through their survivors. ARR retention counts expansion (it can exceed 100%)."
        )
    logos = cohorts.pivot(index="cohort", columns="months_since_start", values="logo_retention")
    logos = logos[[c for c in logos.columns if c % 6 == 0]]
    logos.columns = [f"{c} mo" for c in logos.columns]
    section.tables.append(
        frame_table(
            logos.reset_index(),
            caption="Customers still with us, by signup quarter (every 6 months)",
            formats={c: lambda v: format_value(v, "retention") for c in logos.columns},
        )
    )
    return section


# --- forecast -----------------------------------------------------------------------------------


def bias_sentence(
    backtest: pd.DataFrame, quantity: str = "churned_arr", *, interval: float | None = None
) -> str:
    """The forecast's track record on ``quantity`` in words, e.g. "Actual churned ARR exceeded
    the forecast on 7 of 9 past dates, by $41.0k on average; the 90% interval held it on 6 of
    9." Money quantities in $, NDR/GRR in percentage points."""
    rows = backtest[backtest["quantity"] == quantity]
    if rows.empty:
        return ""
    what = QUANTITY_LABELS.get(quantity, quantity).replace("Churned ARR", "churned ARR")
    ratio = quantity in ("ndr", "grr")
    amount: Callable[[float], str] = (
        (lambda v: f"{100 * v:.1f} percentage points") if ratio else money
    )
    error = (rows["actual"] - rows["expected"]).to_numpy(dtype=float)
    n, over, under = len(rows), int((error > 0).sum()), int((error < 0).sum())
    if over > under:
        text = (
            f"Actual {what} exceeded the forecast on {over} of {n} past dates, "
            f"by {amount(float(error[error > 0].mean()))} on average"
        )
    elif under > over:
        text = (
            f"Actual {what} fell short of the forecast on {under} of {n} past dates, "
            f"by {amount(float(-error[error < 0].mean()))} on average"
        )
    else:
        text = (
            f"Actual {what} was above the forecast on {over} and below it on {under} of {n} "
            f"past dates (mean error {amount(float(error.mean()))})"
        )
    if "covered" in rows:
        width = "" if interval is None else f"{interval:.0%} "
        text += f"; the {width}interval held it on {int(rows['covered'].sum())} of {n}"
    return text + "."


def _with_interval(frame: pd.DataFrame, key: str, fmt: Callable[[float], str]) -> list[str]:
    bounds = zip(frame[f"expected_{key}"], frame[f"{key}_lo"], frame[f"{key}_hi"], strict=True)
    # word joiners: a narrow column breaks before the interval, never inside it
    return [f"{fmt(m)} ({fmt(lo)}\u2060–\u2060{fmt(hi)})" for m, lo, hi in bounds]


def forecast_section(
    forecast: pd.DataFrame | None,
    *,
    by_category: pd.DataFrame | None = None,
    actual_by_group: pd.DataFrame | None = None,
    horizon_days: int = 90,
) -> Section:
    """The next-``horizon_days`` forecast by segment (and downturn category), each beside the
    group's trailing-12-month actuals."""
    section = Section(f"Forecast: the next {horizon_days} days", "forecast")
    if _empty(forecast):
        section.missing = "No forecast: no scored accounts for this run date."
    else:
        parts = [forecast] + ([] if _empty(by_category) else [by_category])
        table = _forecast_rows(parts, actual_by_group)
        section.images.append(_forecast_chart(table, float(forecast["interval"].iloc[0])))
        table["ndr_text"] = _with_interval(table, "ndr", percent)
        table["grr_text"] = _with_interval(table, "grr", percent)
        table["churn_text"] = _with_interval(table, "churned_arr", money)
        section.tables.append(
            frame_table(
                table,
                columns=[
                    "label",
                    "accounts",
                    "starting_arr",
                    "ttm_ndr",
                    "ttm_grr",
                    "churn_text",
                    "expected_contraction",
                    "expected_expansion",
                    "ndr_text",
                    "grr_text",
                ],
                caption=f"By segment and downturn category: the last 12 months beside the "
                f"next {horizon_days} days (forecast with its interval)",
            )
        )
        section.tables[-1].columns = [
            "Group",
            "Accounts",
            "ARR today",
            "NDR last 12 months",
            "GRR last 12 months",
            f"Churned ARR next {horizon_days} d",
            "Contraction",
            "Expansion",
            f"NDR next {horizon_days} d",
            f"GRR next {horizon_days} d",
        ]
        section.notes.append(
            f"The forecast adds up each customer's calibrated probabilities of churning, "
            f"contracting and expanding over the next {horizon_days} days; it is not "
            "annualised, so compare it with the quarter-over-quarter figures."
        )
    return section


def backtest_section(backtest: pd.DataFrame | None, *, interval: float | None = None) -> Section:
    """The forecast re-run at past dates whose outcomes are known: its bias in words first."""
    section = Section("How the forecast did at past dates", "backtest")
    if _empty(backtest):
        section.missing = "Backtest: no past run date has matured outcomes yet."
        return section
    _add_backtest(section, backtest, interval)
    return section


def _forecast_rows(parts: list[pd.DataFrame], actual: pd.DataFrame | None) -> pd.DataFrame:
    """One frame of forecast rows (segments, then categories; the total once, last) with the
    group's trailing-12-month NDR/GRR joined on (kind, group) when given."""
    from models.forecast import TOTAL

    rows = []
    for frame in parts:
        kind = frame.columns[0]
        body = frame[frame[kind] != TOTAL].rename(columns={kind: "group"}).assign(kind=kind)
        rows.append(body)
    total = parts[0][parts[0].iloc[:, 0] == TOTAL].rename(columns={parts[0].columns[0]: "group"})
    rows.append(total.assign(kind="all"))
    table = pd.concat(rows, ignore_index=True)
    prefix = {"industry_category": "Category "}
    table["label"] = [
        "All customers"
        if k == "all"
        else ("Industry not mapped" if g == "unmapped" else f"{prefix.get(k, '')}{g}")
        for k, g in zip(table["kind"], table["group"], strict=True)
    ]
    table["ttm_ndr"] = table["ttm_grr"] = np.nan
    if not _empty(actual):
        keyed = actual.set_index(["kind", "group"])
        for col in ("ndr", "grr"):
            table[f"ttm_{col}"] = [
                keyed[col].get((k, g), np.nan)
                for k, g in zip(table["kind"], table["group"], strict=True)
            ]
    return table


def _forecast_chart(table: pd.DataFrame, interval: float) -> dict[str, str]:
    fig = Figure(figsize=(10, 3.4))
    ax = fig.add_subplot()
    _style(ax)
    x = np.arange(len(table))
    for offset, key, color in ((-0.12, "ndr", _NDR), (0.12, "grr", _GRR)):
        mid = table[f"expected_{key}"].to_numpy(dtype=float)
        # the interval is simulated, the mid its expectation: on a few accounts a skewed draw
        # can leave the mid outside it; matplotlib refuses negative bars, so draw none there
        lo, hi = table[f"{key}_lo"].to_numpy(float), table[f"{key}_hi"].to_numpy(float)
        err = [np.clip(mid - lo, 0, None), np.clip(hi - mid, 0, None)]
        ax.errorbar(x + offset, mid, yerr=err, fmt="o", capsize=4, color=color, label=key.upper())
    ax.set_xticks(x, labels=list(table["label"]), fontsize=8)
    for label in ax.get_xticklabels():
        label.set_rotation(20)
        label.set_horizontalalignment("right")
    ax.axhline(1.0, color=_GREY, lw=0.8, ls="--")
    _percent_axis(ax)
    ax.set_title(f"Expected retention with its {interval:.0%} interval", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    return image(fig, "forecast NDR and GRR by group with intervals")


def _add_backtest(section: Section, backtest: pd.DataFrame, interval: float | None) -> None:
    from models.forecast import backtest_summary

    churn = backtest[backtest["quantity"] == "churned_arr"].sort_values("run_date")
    grr = backtest[backtest["quantity"] == "grr"].sort_values("run_date")
    fig = Figure(figsize=(10, 3.2))
    panels = [(fig.add_subplot(1, 2, 1), churn, "Churned ARR over the horizon", _money_axis)]
    if not grr.empty:
        panels.append(
            (fig.add_subplot(1, 2, 2), grr, "GRR over the horizon", lambda ax: _percent_axis(ax, 1))
        )
    for ax, part, title, axis in panels:
        _style(ax)
        ax.fill_between(part["run_date"], part["lo"], part["hi"], alpha=0.25, label="interval")
        ax.plot(part["run_date"], part["expected"], color=_NDR, label="forecast")
        ax.plot(part["run_date"], part["actual"], "o", ms=4, color=_ACTUAL, label="actual")
        ax.set_title(title, fontsize=9)
        axis(ax)
        ax.legend(fontsize=7, frameon=False)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.tight_layout()
    section.images.append(image(fig, "forecast backtest: churned ARR and GRR"))
    for quantity in ("churned_arr", "grr"):
        sentence = bias_sentence(backtest, quantity, interval=interval)
        if sentence:
            section.callouts.append(sentence)
    summary = backtest_summary(backtest)
    ratio = summary["quantity"].isin(["ndr", "grr"]).to_numpy()
    count = (summary["quantity"] == "logos_churned").to_numpy()
    for col in ("mean_error", "mean_abs_error"):
        summary[col] = [
            _error_text(v, ratio=r, count=c, signed=col == "mean_error")
            for v, r, c in zip(summary[col], ratio, count, strict=True)
        ]
    summary["coverage"] = [
        f"{round(c * n):.0f} of {n} ({c:.0%})"
        for c, n in zip(summary["coverage"], summary["run_dates"], strict=True)
    ]
    summary["quantity"] = summary["quantity"].map(lambda q: QUANTITY_LABELS.get(q, q))
    section.tables.append(
        frame_table(
            summary,
            columns=["quantity", "run_dates", "coverage", "mean_error", "mean_abs_error"],
            caption="Per quantity: how often the interval held the actual, and the mean errors",
        )
    )


def _error_text(value: float, *, ratio: bool, count: bool, signed: bool) -> str:
    if ratio:
        return f"{100 * value:+.1f} pts" if signed else f"{100 * value:.1f} pts"
    if count:
        return f"{value:+.1f}" if signed else f"{value:.1f}"
    return money(value)


# --- monitoring ---------------------------------------------------------------------------------


def monitoring_section(
    drift: pd.DataFrame | None = None,
    prediction: pd.DataFrame | None = None,
    *,
    view: MonitoringView | None = None,
) -> Section:
    """Data and drift checks for the data scientist; alerts are listed here, not at the top."""
    view = view or MonitoringView(drift=drift, prediction_drift=prediction)
    section = Section("Model monitoring: data and drift", "drift")
    section.notes += view.notes
    lines = view.alert_lines()
    if lines:
        section.callouts, section.alert = lines, True
    if not _empty(view.checks):
        section.tables.append(frame_table(view.checks, caption="Data volume and coverage"))
    if _empty(view.drift):
        section.missing = "No drift table for this run."
        return section
    drift = _described(view.drift)
    counts = drift["status"].value_counts()
    others = {s: n for s, n in counts.items() if s not in ("alert", "warn", "ok")}
    section.notes.append(
        f"{counts.get('alert', 0)} alert(s), {counts.get('warn', 0)} warning(s), "
        f"{counts.get('ok', 0)} stable feature(s)"
        + "".join(f", {n} {s}" for s, n in others.items())
        + ". PSI compares each feature now with the end of the model's training window."
    )
    if not _empty(view.prediction_drift):
        section.tables.append(
            frame_table(view.prediction_drift, caption="Have the scores themselves moved?")
        )
    shown = drift[drift["status"] != "ok"].head(15)
    if shown.empty:
        shown = drift.head(5)
    columns = ["feature", "description", "psi", "missing_train", "missing_current", "status"]
    hidden = len(drift) - len(shown)
    section.tables.append(
        frame_table(
            shown,
            columns=columns,
            caption="Features that moved (worst first)"
            + (f"; {hidden} stable feature(s) not shown" if hidden else ""),
        )
    )
    return section


def _described(drift: pd.DataFrame) -> pd.DataFrame:
    """``drift`` with a plain-words ``description`` from the feature catalog (blank if none)."""
    from features.catalog import FEATURES

    text = [
        getattr(FEATURES.get(str(f)), "description", "") or "" for f in drift["feature"].tolist()
    ]
    return drift.assign(description=text)


def realised_section(
    realised: pd.DataFrame | None, estimated: pd.DataFrame | None = None
) -> Section:
    section = Section("Model monitoring: realised performance", "realised")
    if not _empty(estimated):
        section.tables.append(
            frame_table(estimated, caption="Estimated performance (before labels mature)")
        )
    if _empty(realised):
        section.missing = "No matured run date yet: past scores need a complete label window."
        return section
    fig = Figure(figsize=(10, 3.0))
    ax = fig.add_subplot(1, 2, 1)
    _style(ax)
    ax.plot(realised["run_date"], realised["auc"], marker="o", color=_NDR)
    ax.set_title("ROC-AUC (higher is better; 0.5 is a coin toss)", fontsize=9)
    ax.set_ylim(0.5, 1.0)
    ax2 = fig.add_subplot(1, 2, 2)
    _style(ax2)
    ax2.plot(realised["run_date"], realised["brier"], marker="s", color=_GRR, label="Brier score")
    ax2.plot(
        realised["run_date"],
        realised["ece"],
        marker="^",
        color=_ACTUAL,
        label=ece_label(REALISED_ECE_BINNING),
    )
    ax2.set_title("Probability errors (lower is better)", fontsize=9)
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=7, frameon=False)
    for a in (ax, ax2):
        a.tick_params(axis="x", labelsize=7, rotation=30)
    fig.tight_layout()
    section.images.append(image(fig, "realised ROC-AUC, Brier score and ECE over time"))
    columns = [c for c in REALISED_COLUMNS if c in realised.columns]
    section.tables.append(frame_table(realised, columns=columns, caption="Per run date"))
    return section


def audit_section(audit: HealthAudit | None) -> Section:
    section = Section("Health score audit", "health-audit")
    if audit is None:
        section.missing = "No health score audit: the warehouse has no health_scores table."
        return section
    if not audit.ranking.empty:
        section.tables.append(
            frame_table(
                audit.ranking,
                caption="Who ranks churners better: ROC-AUC, and churned ARR caught in the "
                "riskiest 10%",
            )
        )
    if not audit.green_before_churn.empty:
        g = audit.green_before_churn
        fig = Figure(figsize=(7, 2.8))
        ax = fig.add_subplot()
        _style(ax)
        bottom = np.zeros(len(g))
        for color, shade in (
            ("green", "#3f9142"),
            ("yellow", "#e5b83b"),
            ("red", "#c0392b"),
            ("unscored", "#bbbbbb"),
        ):
            if f"{color}_share" not in g:
                continue
            values = g[f"{color}_share"].to_numpy(dtype=float)
            ax.bar(
                g["days_before"].astype(str) + " days before",
                values,
                bottom=bottom,
                color=shade,
                label=color,
            )
            bottom += np.nan_to_num(values)
        ax.set_ylabel("share of churned ARR")
        _percent_axis(ax)
        ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1, 1), loc="upper left")
        section.images.append(image(fig, "health color before churn"))
        section.tables.append(
            frame_table(g, caption="Churned ARR by the health color it showed before churning")
        )
    if not audit.disagreement.empty:
        section.tables.append(
            frame_table(
                audit.disagreement,
                max_rows=10,
                caption="Where the model and the health score disagree "
                "(Spearman correlation with healthiness; positive = healthier)",
            )
        )
    return section


# --- the report ---------------------------------------------------------------------------------


def _latest_complete(frame: pd.DataFrame | None, history_start: Any) -> pd.Series | None:
    if _empty(frame) or frame.columns[0] != "period":
        return None
    complete = frame[_complete(frame, history_start)]
    if complete.empty:
        return None
    return complete.sort_values("period_start").iloc[-1]


def _span(row: pd.Series) -> str:
    start = pd.Timestamp(row["period_start"])
    last = pd.Timestamp(row["period_end"]) - pd.Timedelta(days=1)
    return f"{start:%b %Y} – {last:%b %Y}"


def _kpis(
    retention: pd.DataFrame | None,
    forecast: pd.DataFrame | None,
    *,
    ttm: pd.DataFrame | None = None,
    history_start: Any = None,
    horizon_days: int = 90,
) -> list[dict]:
    kpis: list[dict] = []
    year = _latest_complete(ttm, None)
    if year is not None:
        kpis += [
            {
                "label": "Net revenue retention",
                "value": percent(year["ndr"]),
                "sub": f"trailing 12 months, {_span(year)}",
                "main": True,
            },
            {
                "label": "Gross revenue retention",
                "value": percent(year["grr"]),
                "sub": f"trailing 12 months, {_span(year)}",
                "main": True,
            },
        ]
    quarter = _latest_complete(retention, history_start)
    if quarter is not None:
        kpis += [
            {
                "label": f"NDR {quarter['period']}",
                "value": percent(quarter["ndr"]),
                "sub": "quarter over quarter",
            },
            {
                "label": f"GRR {quarter['period']}",
                "value": percent(quarter["grr"]),
                "sub": "quarter over quarter",
            },
        ]
    if not _empty(forecast):
        total = forecast.iloc[-1]
        for key in ("ndr", "grr"):
            kpis.append(
                {
                    "label": f"Forecast {key.upper()}, next {horizon_days} days",
                    "value": percent(total[f"expected_{key}"]),
                    "sub": f"{total['interval']:.0%} interval {percent(total[f'{key}_lo'])}"
                    f"–{percent(total[f'{key}_hi'])}",
                }
            )
        kpis.append(
            {
                "label": f"Churned ARR expected, next {horizon_days} days",
                "value": money(total["expected_churned_arr"]),
                "sub": f"of {money(total['starting_arr'])} ARR today",
            }
        )
    return kpis


def glossary_section() -> Section:
    section = Section("Glossary", "glossary")
    section.tables.append(
        Table(
            columns=["Term", "Meaning"], rows=[{"cells": [t, m], "status": ""} for t, m in GLOSSARY]
        )
    )
    return section


def build_report(
    *,
    retention: pd.DataFrame | None,
    cohorts: pd.DataFrame | None,
    forecast: pd.DataFrame | None,
    forecast_backtest: pd.DataFrame | None,
    drift: pd.DataFrame | None,
    realised: pd.DataFrame | None,
    audit: HealthAudit | None,
    out_path: Path,
    run_date: date,
    prediction_drift: pd.DataFrame | None = None,
    ttm: pd.DataFrame | None = None,
    history_start: date | datetime | None = None,
    forecast_by_category: pd.DataFrame | None = None,
    retention_by_group: pd.DataFrame | None = None,
    horizon_days: int = 90,
    monitoring: MonitoringView | None = None,
    title: str = "Revenue retention and churn outlook",
    extra_sections: Sequence[Section] = (),
) -> Path:
    """Write the self-contained HTML report to ``out_path`` (parents created) and return it.

    ``retention``: quarterly :func:`features.retention.arr_movements` (optionally with
    ``complete_history``); ``ttm``: the same with ``period="ttm"`` over complete history only;
    ``retention_by_group``: latest trailing-12-month NDR/GRR per ``kind`` (``segment``,
    ``industry_category``) and ``group``; ``forecast`` by segment and ``forecast_by_category``
    from :func:`models.forecast.forecast_next_period`; ``monitoring`` overrides ``drift``,
    ``prediction_drift`` and ``realised``."""
    view = monitoring or MonitoringView(
        drift=drift, prediction_drift=prediction_drift, realised=realised
    )
    sections = [
        retention_section(retention, ttm, history_start=history_start),
        forecast_section(
            forecast,
            by_category=forecast_by_category,
            actual_by_group=retention_by_group,
            horizon_days=horizon_days,
        ),
        backtest_section(
            forecast_backtest,
            interval=None if _empty(forecast) else float(forecast["interval"].iloc[0]),
        ),
        cohort_section(cohorts, history_start=history_start),
        monitoring_section(view=view),
        realised_section(view.realised, view.estimated),
        audit_section(audit),
        *extra_sections,  # holdout uplift, churn reasons, expansion signals (report.gather)
        glossary_section(),
    ]
    alerts = view.alert_lines()
    html = render(
        "report.html.j2",
        {
            "title": title,
            "run_date": format_value(pd.Timestamp(run_date)),
            "sections": sections,
            "alerts": alerts,
            "kpis": _kpis(
                retention,
                forecast,
                ttm=ttm,
                history_start=history_start,
                horizon_days=horizon_days,
            ),
        },
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
