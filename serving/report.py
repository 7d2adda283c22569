"""The retention, forecast and monitoring report: one self-contained HTML file.

Every input is a frame produced by ``features.retention``, ``models.forecast``,
``models.monitoring`` or ``models.health_audit``; any of them may be ``None`` (the section then
says what is missing). Text is escaped by jinja2's autoescape; plots are PNGs drawn with
matplotlib's object API (no pyplot, no GUI backend) and embedded as base64, so the file can be
mailed or opened offline.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.figure import Figure

from models.health_audit import HealthAudit
from models.monitoring import drift_warnings

_TEMPLATES = Path(__file__).parent / "templates"
_RATIO_HINTS = ("ndr", "grr", "rate", "share", "coverage", "retention", "capture", "missing")


@dataclass
class Table:
    columns: list[str]
    rows: list[dict[str, Any]]
    caption: str = ""


@dataclass
class Section:
    title: str
    anchor: str
    images: list[dict[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str = ""


# --- formatting ---------------------------------------------------------------------------------


def _is_ratio(column: str) -> bool:
    return any(h in column.lower() for h in _RATIO_HINTS) and "arr" not in column.lower()


def format_value(value: Any, column: str = "") -> str:
    """Cell text: ratios as percentages, money with thousands separators, NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, pd.Timestamp | datetime | date):
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if _is_ratio(column):
            return f"{value:.1%}"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def frame_table(
    frame: pd.DataFrame,
    *,
    caption: str = "",
    columns: Sequence[str] | None = None,
    max_rows: int = 60,
    formats: dict[str, Callable[[Any], str]] | None = None,
) -> Table:
    """A frame as template rows of formatted strings (escaping happens in the template)."""
    cols = [c for c in (columns or frame.columns) if c in frame.columns]
    formats = formats or {}
    rows = []
    for record in frame[cols].head(max_rows).to_dict("records"):
        cells = [formats.get(c, lambda v, c=c: format_value(v, c))(record[c]) for c in cols]
        rows.append({"cells": cells, "status": record.get("status", "")})
    return Table(columns=[str(c) for c in cols], rows=rows, caption=caption)


def figure_png(fig: Figure) -> str:
    """Base64 PNG of a matplotlib figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(fig: Figure, alt: str) -> dict[str, str]:
    return {"data": figure_png(fig), "alt": alt}


def _empty(frame: Any) -> bool:
    return frame is None or (isinstance(frame, pd.DataFrame) and frame.empty)


def _group_column(frame: pd.DataFrame, known: Sequence[str]) -> str | None:
    extra = [c for c in frame.columns if c not in known]
    return extra[0] if extra else None


# --- sections -----------------------------------------------------------------------------------


def retention_section(retention: pd.DataFrame | None) -> Section:
    section = Section("Net and gross revenue retention", "retention")
    if _empty(retention):
        section.missing = "No retention figures: no complete period in the contracts table."
        return section
    from features.retention import MOVEMENT_COLUMNS

    group = _group_column(retention, [*MOVEMENT_COLUMNS, "ndr_rolling", "grr_rolling"])
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot()
    series = retention.groupby(group, sort=True) if group else [("all", retention)]
    for name, part in series:
        ax.plot(
            part["period_start"], part["ndr"], marker="o", label=f"NDR {name}" if group else "NDR"
        )
        if not group:
            ax.plot(part["period_start"], part["grr"], marker="s", label="GRR")
            if "ndr_rolling" in part:
                ax.plot(part["period_start"], part["ndr_rolling"], ls=":", label="NDR rolling mean")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("retention (ratio of starting ARR)")
    ax.legend(fontsize=8, ncol=3)
    fig.autofmt_xdate()
    section.images.append(_image(fig, "NDR over time"))
    cols = [
        c
        for c in [
            group,
            "period",
            "starting_arr",
            "expansion",
            "contraction",
            "churned_arr",
            "new_arr",
            "ending_arr",
            "ndr",
            "grr",
            "ndr_rolling",
            "logo_churn_rate",
        ]
        if c
    ]
    ordered = retention.sort_values([c for c in (group, "period_start") if c])
    latest = ordered.groupby(group).tail(8) if group else ordered.tail(8)
    section.tables.append(frame_table(latest, columns=cols, caption="ARR bridge (latest periods)"))
    section.notes.append(
        "Existing customers only: new logos are shown as new ARR and kept out of NDR and GRR."
    )
    return section


def cohort_section(cohorts: pd.DataFrame | None) -> Section:
    section = Section("Cohort ARR retention", "cohorts")
    if _empty(cohorts):
        section.missing = "No cohort table: no cohort has a complete observation yet."
        return section
    grid = cohorts.pivot(index="cohort", columns="months_since_start", values="arr_retention")
    fig = Figure(figsize=(9, 0.35 * len(grid) + 1.6))
    ax = fig.add_subplot()
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="RdYlGn", vmin=0.5, vmax=1.3)
    ax.set_yticks(range(len(grid)), labels=[str(c) for c in grid.index], fontsize=8)
    ax.set_xticks(range(len(grid.columns)), labels=[str(c) for c in grid.columns], fontsize=8)
    ax.set_xlabel("months since first contract")
    for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, label="ARR retained")
    section.images.append(_image(fig, "cohort retention heatmap"))
    logos = cohorts.pivot(index="cohort", columns="months_since_start", values="logo_retention")
    logos.columns = [f"{c} mo" for c in logos.columns]
    section.tables.append(
        frame_table(
            logos.reset_index(),
            caption="Logo retention by cohort",
            formats={c: lambda v: format_value(v, "retention") for c in logos.columns},
        )
    )
    return section


def forecast_section(forecast: pd.DataFrame | None, backtest: pd.DataFrame | None) -> Section:
    section = Section("Next-period forecast", "forecast")
    if _empty(forecast):
        section.missing = "No forecast: no scored accounts for this run date."
    else:
        group = forecast.columns[0]
        fig = Figure(figsize=(8, 3.2))
        ax = fig.add_subplot()
        x = np.arange(len(forecast))
        for offset, key in ((-0.15, "ndr"), (0.15, "grr")):
            mid = forecast[f"expected_{key}"].to_numpy(dtype=float)
            err = [mid - forecast[f"{key}_lo"], forecast[f"{key}_hi"] - mid]
            ax.errorbar(x + offset, mid, yerr=err, fmt="o", capsize=4, label=key.upper())
        ax.set_xticks(x, labels=[str(v) for v in forecast[group]])
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        interval = float(forecast["interval"].iloc[0])
        ax.set_title(f"expected retention with {interval:.0%} prediction interval", fontsize=9)
        ax.legend(fontsize=8)
        section.images.append(_image(fig, "forecast NDR and GRR with intervals"))
        cols = [
            group,
            "accounts",
            "starting_arr",
            "expected_churned_arr",
            "churned_arr_lo",
            "churned_arr_hi",
            "expected_expansion",
            "expected_ndr",
            "ndr_lo",
            "ndr_hi",
            "expected_grr",
            "grr_lo",
            "grr_hi",
        ]
        section.tables.append(frame_table(forecast, columns=cols, caption="Forecast by group"))
    if _empty(backtest):
        section.notes.append("Backtest: no past run date has matured outcomes yet.")
        return section
    _add_backtest(section, backtest)
    return section


def _add_backtest(section: Section, backtest: pd.DataFrame) -> None:
    from models.forecast import backtest_summary

    churn = backtest[backtest["quantity"] == "churned_arr"].sort_values("run_date")
    fig = Figure(figsize=(9, 3.2))
    ax = fig.add_subplot()
    ax.fill_between(churn["run_date"], churn["lo"], churn["hi"], alpha=0.3, label="interval")
    ax.plot(churn["run_date"], churn["expected"], label="expected")
    ax.plot(churn["run_date"], churn["actual"], "o", ms=3, label="actual")
    ax.set_ylabel("churned ARR over the horizon")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    section.images.append(_image(fig, "forecast backtest: churned ARR"))
    summary = backtest_summary(backtest)
    ratio = summary["quantity"].isin(["ndr", "grr"])
    summary["mean_error"] = [
        format_value(v, "ndr" if r else "")
        for v, r in zip(summary["mean_error"], ratio, strict=True)
    ]
    summary["mean_abs_error"] = [
        format_value(v, "ndr" if r else "")
        for v, r in zip(summary["mean_abs_error"], ratio, strict=True)
    ]
    section.tables.append(frame_table(summary, caption="Backtest: error and interval coverage"))


def monitoring_section(drift: pd.DataFrame | None, prediction: pd.DataFrame | None) -> Section:
    section = Section("Drift since the training window", "drift")
    if _empty(drift):
        section.missing = "No drift table for this run."
        return section
    counts = drift["status"].value_counts()
    section.notes.append(
        f"{counts.get('alert', 0)} alert(s), {counts.get('warn', 0)} warning(s), "
        f"{counts.get('ok', 0)} stable feature(s)."
        + (
            f" {counts['excluded']} excluded from alerts by monitoring.exclude_features."
            if counts.get("excluded")
            else ""
        )
    )
    if not _empty(prediction):
        section.tables.append(frame_table(prediction, caption="Prediction drift"))
    section.tables.append(frame_table(drift, caption="Feature drift (worst first)", max_rows=40))
    return section


def realised_section(realised: pd.DataFrame | None) -> Section:
    section = Section("Realised performance (matured labels)", "realised")
    if _empty(realised):
        section.missing = "No matured run date yet: past scores need a complete label window."
        return section
    fig = Figure(figsize=(9, 3.2))
    ax = fig.add_subplot()
    ax.plot(realised["run_date"], realised["auc"], marker="o", label="AUC")
    ax.plot(realised["run_date"], realised["brier"], marker="s", label="Brier")
    ax.plot(realised["run_date"], realised["ece"], marker="^", label="ECE")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    section.images.append(_image(fig, "realised AUC over time"))
    section.tables.append(frame_table(realised, caption="Per run date"))
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
                caption="Ranking churners: AUC, and churned ARR captured in the riskiest 10%",
            )
        )
    if not audit.green_before_churn.empty:
        g = audit.green_before_churn
        fig = Figure(figsize=(6, 2.8))
        ax = fig.add_subplot()
        bottom = np.zeros(len(g))
        for color, shade in (
            ("green", "#3f9142"),
            ("yellow", "#e5b83b"),
            ("red", "#c0392b"),
            ("unscored", "#bbbbbb"),
        ):
            values = g[f"{color}_share"].to_numpy(dtype=float)
            ax.bar(
                g["days_before"].astype(str) + " d", values, bottom=bottom, color=shade, label=color
            )
            bottom += np.nan_to_num(values)
        ax.set_ylabel("share of churned ARR")
        ax.legend(fontsize=7)
        section.images.append(_image(fig, "health color before churn"))
        section.tables.append(frame_table(g, caption="Churned ARR by health color before churn"))
    if not audit.disagreement.empty:
        section.tables.append(
            frame_table(
                audit.disagreement,
                max_rows=15,
                caption="Where the model and the health score disagree "
                "(Spearman correlation with healthiness; positive = healthier)",
            )
        )
    return section


# --- the report ---------------------------------------------------------------------------------


def _kpis(retention: pd.DataFrame | None, forecast: pd.DataFrame | None) -> list[dict]:
    kpis = []
    if not _empty(retention) and retention.columns[0] == "period":
        last = retention.sort_values("period_start").iloc[-1]
        kpis += [
            {"label": f"NDR {last['period']}", "value": format_value(last["ndr"], "ndr")},
            {"label": f"GRR {last['period']}", "value": format_value(last["grr"], "grr")},
        ]
    if not _empty(forecast):
        total = forecast.iloc[-1]
        kpis.append(
            {
                "label": "forecast NDR (next period)",
                "value": f"{format_value(total['expected_ndr'], 'ndr')} "
                f"[{format_value(total['ndr_lo'], 'ndr')}–{format_value(total['ndr_hi'], 'ndr')}]",
            }
        )
    return kpis


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
    title: str = "churnlens retention & monitoring report",
    extra_sections: Sequence[Section] = (),
) -> Path:
    """Write the self-contained HTML report to ``out_path`` (parents created) and return it."""
    sections = [
        retention_section(retention),
        cohort_section(cohorts),
        forecast_section(forecast, forecast_backtest),
        monitoring_section(drift, prediction_drift),
        realised_section(realised),
        audit_section(audit),
        *extra_sections,  # holdout uplift, churn reasons, expansion signals (pipelines.reporting)
    ]
    warnings = [] if _empty(drift) else drift_warnings(drift, prediction_drift)
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html", "j2"], default=True),
    )
    html = env.get_template("report.html.j2").render(
        title=title,
        run_date=format_value(pd.Timestamp(run_date)),
        sections=sections,
        warnings=warnings,
        kpis=_kpis(retention, forecast),
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
