"""HTML pieces for the monitoring part of the report, in plain language with the jargon glossed.

Each function takes what ``models.monitoring`` / ``models.performance_estimate`` return (or what
the weekly flow kept: ``models.monitoring.read_monitoring``) and gives back one self-contained
HTML fragment (escaped, no scripts), so the report can place it where it fits. Nothing here
computes a number.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import SupportsFloat

import pandas as pd

from serving.render import html_table

GLOSSARY: dict[str, str] = {
    "PSI": "population stability index: how far this week's distribution of a feature has moved "
    "from the model's training window (under 0.10 stable, 0.10-0.25 worth a look, over 0.25 "
    "a real shift)",
    "ECE": "expected calibration error: the average gap between the predicted churn risk and "
    "the share of accounts that then churned (0.02 = 2 points off)",
    "PR-AUC": "how well the riskiest accounts are ranked first (precision-recall area; the "
    "share of churners in the book is what a random list scores)",
    "ROC-AUC": "the chance that a churner is ranked above an account that stays (0.5 = random)",
    "label-free estimate": "what the model's own calibrated probabilities say this week's "
    "ranking will score once outcomes are known (churn labels arrive 90+ days later); the "
    "realised figure should land inside the range",
    "drifts by construction": "a feature that moves every week whatever customers do (tenure "
    "grows, surveys go out in waves): measured, never raised as an alert",
}

_STATUS_WORDS = {
    "alert": "needs attention",
    "warn": "worth a look",
    "ok": "fine",
    "excluded": "measured only",
}


def glossary_html(terms: list[str] | None = None) -> str:
    """A definition list of ``terms`` (all by default)."""
    items = "".join(
        f"<dt>{html.escape(t)}</dt><dd>{html.escape(GLOSSARY[t])}</dd>"
        for t in (terms or list(GLOSSARY))
    )
    return f'<dl class="glossary">{items}</dl>'


def _number(value: SupportsFloat | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):,.{digits}f}"


def _range(lower: SupportsFloat | None, upper: SupportsFloat | None, digits: int) -> str:
    return f"{_number(lower, digits)} to {_number(upper, digits)}"


def drift_html(drift: pd.DataFrame | None, note: str, *, max_rows: int = 15) -> str:
    """Feature drift in words: how many features moved, the ones that did (worst first), and
    those measured only because they drift by construction."""
    if drift is None or drift.empty:
        return f"<p>{html.escape(note)}</p>"
    counts = drift["status"].value_counts()
    moved = drift[drift["status"].isin(["alert", "warn"])]
    lead = (
        f"{len(moved)} of {len(drift)} features moved since the model's training window "
        f"({int(counts.get('alert', 0))} clearly, {int(counts.get('warn', 0))} slightly); "
        f"{int(counts.get('excluded', 0))} are measured only. Compared {html.escape(note)}."
    )
    rows = [
        [
            f"<code>{html.escape(str(r.feature))}</code>",
            _STATUS_WORDS.get(r.status, html.escape(str(r.status))),
            _number(r.psi),
            f"{_number(100 * r.missing_train, 0)}% &rarr; {_number(100 * r.missing_current, 0)}%",
        ]
        for r in moved.head(max_rows).itertuples()
    ]
    table = (
        html_table(["feature", "status", "PSI", "missing (training -> now)"], rows) if rows else ""
    )
    excluded = drift[drift["status"] == "excluded"]
    measured = ", ".join(
        f"<code>{html.escape(str(r.feature))}</code> (PSI {_number(r.psi)})"
        for r in excluded.itertuples()
    )
    tail = (
        f"<p>Measured only (drift by construction or excluded): {measured}.</p>" if measured else ""
    )
    return f"<p>{lead}</p>{table}{tail}"


def volumes_html(volumes: pd.DataFrame | None) -> str:
    """Rows per source in the last 7 days against a typical earlier week."""
    if volumes is None or volumes.empty:
        return "<p>No source volumes for this run.</p>"
    broken = volumes[volumes["status"] == "alert"]["source"].tolist()
    lead = (
        "Every source delivered its usual volume in the last 7 days."
        if not broken
        else "Probably broken (far fewer rows than in a typical week): "
        + ", ".join(f"<b>{html.escape(s)}</b>" for s in broken)
        + ". Features from a broken source read as if customers stopped; fix the feed first."
    )
    rows = [
        [
            html.escape(str(r.source)),
            _STATUS_WORDS.get(r.status, html.escape(str(r.status))),
            _number(r.rows_last_7d, 0),
            _number(r.rows_typical, 0),
            _number(r.accounts_last_7d, 0),
            html.escape(str(r.note) if isinstance(r.note, str) else ""),
        ]
        for r in volumes.itertuples()
    ]
    headers = ["source", "status", "rows, last 7 days", "rows, typical week", "accounts", "note"]
    return f"<p>{lead}</p>{html_table(headers, rows)}"


_METRIC_NAMES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "churners": "churned accounts"}


def estimate_html(estimate: pd.DataFrame | None, comparison: pd.DataFrame | None = None) -> str:
    """This week's label-free estimate (rows ``metric, expected, lower, upper``) and, for
    earlier weeks whose labels matured, the estimate beside the realised figure
    (``models.performance_estimate.estimate_vs_realised``)."""
    if estimate is None or estimate.empty:
        return "<p>No churn scores this week, so no performance estimate.</p>"
    digits: Mapping[str, int] = {"churners": 0}
    rows = [
        [
            _METRIC_NAMES.get(r.metric, html.escape(str(r.metric))),
            _number(r.expected, digits.get(r.metric, 3)),
            _range(r.lower, r.upper, digits.get(r.metric, 3)),
        ]
        for r in estimate.itertuples()
    ]
    parts = [
        "<p>Before outcomes are known, the model's own probabilities say this week's list "
        "should score:</p>",
        html_table(["measure", "expected", "likely range"], rows),
    ]
    if comparison is not None and comparison["realised"].notna().any():
        matured = comparison[comparison["realised"].notna()]
        inside = int(matured["within_interval"].astype(bool).sum())
        parts.append(
            f"<p>Of {len(matured)} estimates whose outcomes have matured, {inside} held the "
            "realised figure inside their range"
            + (
                "."
                if inside == len(matured)
                else "; the ones outside suggest the probabilities no longer fit today's book."
            )
            + "</p>"
        )
        rows = [
            [
                f"{pd.Timestamp(r.run_date):%Y-%m-%d}",
                _METRIC_NAMES.get(r.metric, html.escape(str(r.metric))),
                _number(r.expected, digits.get(r.metric, 3)),
                _range(r.lower, r.upper, digits.get(r.metric, 3)),
                _number(r.realised, digits.get(r.metric, 3)),
                "yes" if bool(r.within_interval) else "no",
            ]
            for r in matured.itertuples()
        ]
        headers = ["scored on", "measure", "estimated", "range", "realised", "inside?"]
        parts.append(html_table(headers, rows))
    return "".join(parts)
