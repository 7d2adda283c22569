"""The weekly risk lists: per CSM a CSV and a self-contained HTML page, and a portfolio summary
(HTML, Markdown and CSV) for the CS leader.

HTML is rendered by jinja2 with autoescape on, so account names and reason text always render
as text. Plots are small inline SVG charts drawn here (no external files, no network, no GUI
backend), and the table sorts with a few lines of inline JavaScript.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup, escape

from serving.reasons import format_money
from serving.score import QUADRANTS, TIERS, Scored

_TEMPLATES = Path(__file__).parent / "templates"
UNASSIGNED = "unassigned"
CSV_COLUMNS = {
    "account_id": "account_id",
    "name": "account",
    "segment": "segment",
    "arr": "arr",
    "churn_probability": "churn_risk",
    "churn_tier": "risk_tier",
    "arr_at_risk": "arr_at_risk",
    "top_reasons": "why_at_risk",
    "protective_factors": "what_helps",
    "health_color": "health_color",
    "green_churn": "green_churn",
    "green_churn_drivers": "green_churn_drivers",
    "expansion_quadrant": "expansion_quadrant",
    "expansion_probability": "expansion_probability",
    "expected_expansion_arr": "expected_expansion_arr",
    "change": "change_since_last_run",
}


@dataclass
class RiskListPaths:
    """Where one run's lists went."""

    out_dir: Path
    csm_csv: dict[str, Path] = field(default_factory=dict)
    csm_html: dict[str, Path] = field(default_factory=dict)
    summary_html: Path | None = None
    summary_md: Path | None = None
    summary_csv: Path | None = None
    movers_csv: Path | None = None

    def __str__(self) -> str:
        return f"{self.out_dir} ({len(self.csm_html)} CSM lists + summary)"


def write_risk_lists(
    scored: Scored, changes: pd.DataFrame, *, out_dir: Path, run_date: date
) -> RiskListPaths:
    """Write every CSM's CSV + HTML list (sorted by ARR at risk) and the portfolio summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = list_table(scored.predictions, changes)
    paths = RiskListPaths(out_dir=out_dir)
    env = _environment()
    page = env.get_template("risk_list.html.j2")
    records = _records(table)  # converted once; each page takes its rows by position
    positions = table.groupby("csm_owner", sort=False).indices
    csv_rows = _csv(table)
    for owner, slug, rows in _by_owner(table):
        paths.csm_csv[owner] = out_dir / f"{slug}.csv"
        csv_rows.iloc[positions[owner]].to_csv(paths.csm_csv[owner], index=False)
        paths.csm_html[owner] = out_dir / f"{slug}.html"
        mine = [records[i] for i in positions[owner]]
        paths.csm_html[owner].write_text(page.render(**_page_context(owner, rows, mine, run_date)))
    summary = portfolio_summary(table, changes)
    paths.summary_csv = out_dir / "summary_arr_at_risk.csv"
    summary["by_segment_tier"].to_csv(paths.summary_csv, index=False)
    paths.movers_csv = out_dir / "summary_movers.csv"
    summary["movers"].to_csv(paths.movers_csv, index=False)
    paths.summary_md = out_dir / "summary.md"
    paths.summary_md.write_text(summary_markdown(summary, run_date))
    paths.summary_html = out_dir / "summary.html"
    context = _summary_context(summary, table, run_date, paths)
    paths.summary_html.write_text(env.get_template("summary.html.j2").render(**context))
    return paths


# --- frames -------------------------------------------------------------------------------------


def list_table(predictions: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """Predictions with this week's change text, highest ARR at risk first."""
    change = changes.set_index("account_id")["change"] if len(changes) else pd.Series(dtype=object)
    table = predictions.assign(
        change=predictions["account_id"].map(change),
        csm_owner=predictions["csm_owner"].fillna(UNASSIGNED),
        segment=predictions["segment"].fillna("unknown segment"),
    )
    return table.sort_values(
        ["arr_at_risk", "account_id"], ascending=[False, True], kind="stable", ignore_index=True
    )


def _by_owner(table: pd.DataFrame):
    used: set[str] = set()
    for owner, rows in table.groupby("csm_owner", sort=True):
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", str(owner)).strip("_")[:60] or UNASSIGNED
        if slug.lower() in used:
            slug = f"{slug}_{hashlib.sha1(str(owner).encode()).hexdigest()[:6]}"
        used.add(slug.lower())
        yield str(owner), f"risk_list_{slug}", rows


def _csv(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows[list(CSV_COLUMNS)].rename(columns=CSV_COLUMNS)
    out["arr"] = out["arr"].round(0)
    out["arr_at_risk"] = out["arr_at_risk"].round(0)
    out["expected_expansion_arr"] = out["expected_expansion_arr"].round(0)
    out["churn_risk"] = out["churn_risk"].round(3)
    out["expansion_probability"] = out["expansion_probability"].round(3)
    return out


def portfolio_summary(table: pd.DataFrame, changes: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The CS leader's figures: ARR at risk by segment x tier, green churn, expansion, movers."""
    by = table.groupby(["segment", "churn_tier"], dropna=False)
    seg_tier = by.agg(
        accounts=("account_id", "size"), arr=("arr", "sum"), arr_at_risk=("arr_at_risk", "sum")
    ).reset_index()
    seg_tier["tier_order"] = seg_tier["churn_tier"].map({t: i for i, t in enumerate(TIERS)})
    seg_tier = seg_tier.sort_values(["segment", "tier_order"]).drop(columns="tier_order")
    green = table[table["green_churn"]]
    expand = table[table["expansion_quadrant"] == "expand"]
    totals = pd.DataFrame(
        {
            "accounts": [len(table)],
            "arr": [table["arr"].sum()],
            "arr_at_risk": [table["arr_at_risk"].sum()],
            "high_risk_accounts": [int((table["churn_tier"] == "high").sum())],
            "green_churn_accounts": [len(green)],
            "green_churn_arr": [green["arr"].sum()],
            "expansion_accounts": [len(expand)],
            "expansion_arr_base": [expand["arr"].sum()],
            "expected_expansion_arr": [expand["expected_expansion_arr"].sum()],
        }
    )
    quadrants = (
        table.groupby("expansion_quadrant")
        .agg(accounts=("account_id", "size"), arr=("arr", "sum"))
        .reindex(list(QUADRANTS), fill_value=0)
        .reset_index()
    )
    movers = changes.head(25).copy() if len(changes) else changes
    return {
        "totals": totals,
        "by_segment_tier": seg_tier,
        "quadrants": quadrants,
        "movers": movers,
        "green": green,
        "expand": expand,
    }


def summary_markdown(summary: dict[str, pd.DataFrame], run_date: date) -> str:
    """The summary as Markdown, for chat or e-mail."""
    t = summary["totals"].iloc[0]
    lines = [
        f"# Weekly churn risk summary — {run_date.isoformat()}",
        "",
        f"- Accounts scored: {int(t['accounts']):,} with {format_money(t['arr'])} ARR",
        f"- ARR at risk (probability x ARR): **{format_money(t['arr_at_risk'])}**",
        f"- High-risk accounts: {int(t['high_risk_accounts']):,}",
        f"- Green churn (health green, risk high): {int(t['green_churn_accounts']):,} accounts, "
        f"**{format_money(t['green_churn_arr'])}** ARR",
        f"- Expansion list (healthy, low penetration): {int(t['expansion_accounts']):,} accounts, "
        f"expected expansion {format_money(t['expected_expansion_arr'])}",
        "",
        "## ARR at risk by segment and tier",
        "",
        "| segment | tier | accounts | ARR | ARR at risk |",
        "|---|---|---:|---:|---:|",
    ]
    for row in summary["by_segment_tier"].itertuples(index=False):
        lines.append(
            f"| {_md(row.segment)} | {row.churn_tier} | {row.accounts:,} | "
            f"{format_money(row.arr)} | {format_money(row.arr_at_risk)} |"
        )
    lines += ["", "## The week's movers", ""]
    movers = summary["movers"]
    if movers.empty:
        lines.append("No earlier run to compare with, or nothing moved past the threshold.")
    for row in movers.itertuples(index=False):
        lines.append(f"- {_md(row.name)} ({_md(row.csm_owner)}): {_md(row.change)}")
    return "\n".join(lines) + "\n"


def _md(text: object) -> str:
    """Markdown-safe cell text (no table breaks, no raw HTML)."""
    value = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    return value.replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


# --- HTML ---------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True)
    env.filters["money"] = format_money
    env.filters["pct"] = _pct
    env.filters["sortkey"] = _sortkey
    return env


def _pct(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    number = float(value)
    if 0 < number < 0.005:
        return "<1%"  # "0%" would read as "cannot churn"
    return f"{number:.0%}"


def _sortkey(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _records(rows: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values, missing values as None (column-wise, fast)."""
    columns = {
        c: [None if v is None or v is pd.NA or v != v else v for v in rows[c].tolist()]
        for c in rows.columns
    }
    return [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]


def _page_context(owner: str, rows: pd.DataFrame, records: list[dict], run_date: date) -> dict:
    return {
        "owner": owner,
        "run_date": run_date.isoformat(),
        "totals": {
            "accounts": len(rows),
            "arr": rows["arr"].sum(),
            "arr_at_risk": rows["arr_at_risk"].sum(),
            "high": int((rows["churn_tier"] == "high").sum()),
            "green_arr": rows.loc[rows["green_churn"], "arr"].sum(),
        },
        "rows": records,
        "green": [r for r in records if r["green_churn"]],
        "expand": sorted(
            (r for r in records if r["expansion_quadrant"] == "expand"),
            key=lambda r: -(r["expected_expansion_arr"] or 0.0),
        ),
        "changes": [r for r in records if r["change"] is not None],
        "risk_chart": risk_histogram_svg(rows["churn_probability"]),
        "segment_chart": bar_chart_svg(
            rows.groupby("segment")["arr_at_risk"].sum().sort_values(ascending=False),
            title="ARR at risk by segment",
        ),
        "quadrants": QUADRANTS,
    }


def _summary_context(
    summary: dict[str, pd.DataFrame], table: pd.DataFrame, run_date: date, paths: RiskListPaths
) -> dict:
    return {
        "run_date": run_date.isoformat(),
        "totals": summary["totals"].iloc[0].to_dict(),
        "seg_tier": _records(summary["by_segment_tier"]),
        "quadrants": _records(summary["quadrants"]),
        "quadrant_labels": QUADRANTS,
        "movers": _records(summary["movers"]),
        "green": _records(summary["green"].head(50)),
        "expand": _records(
            summary["expand"].sort_values("expected_expansion_arr", ascending=False).head(50)
        ),
        "csm_links": [(owner, path.name) for owner, path in paths.csm_html.items()],
        "risk_chart": risk_histogram_svg(table["churn_probability"]),
        "segment_chart": bar_chart_svg(
            table.groupby("segment")["arr_at_risk"].sum().sort_values(ascending=False),
            title="ARR at risk by segment",
        ),
    }


def risk_histogram_svg(probabilities: pd.Series, *, bins: int = 10) -> Markup:
    """Accounts per churn-probability band (0-10%, ..., 90-100%) as an inline SVG bar chart."""
    counts, _ = np.histogram(np.clip(probabilities.to_numpy(float), 0, 1), bins=bins, range=(0, 1))
    labels = [f"{i * 100 // bins}–{(i + 1) * 100 // bins}%" for i in range(bins)]
    return _columns_svg(labels, counts.tolist(), title="Accounts by churn risk")


def bar_chart_svg(values: pd.Series, *, title: str) -> Markup:
    """Horizontal bars with money labels (e.g. ARR at risk by segment) as inline SVG."""
    width, row_h, label_w = 520, 26, 150
    top = max(values.max(), 1.0) if len(values) else 1.0
    rows = []
    for i, (label, value) in enumerate(values.items()):
        y = 28 + i * row_h
        bar = (width - label_w - 110) * float(value) / top
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(str(label))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{bar:.1f}" height="{row_h - 8}" '
            f'fill="#c0392b"/><text x="{label_w + bar + 6:.1f}" y="{y + 15}">'
            f"{escape(format_money(float(value)))}</text>"
        )
    height = 36 + row_h * max(len(values), 1)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-size="12" font-family="sans-serif">'
        f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>{"".join(rows)}</svg>'
    )


def _columns_svg(labels: list[str], counts: list[int], *, title: str) -> Markup:
    width, height, base = 520, 200, 160
    step = (width - 20) / max(len(labels), 1)
    top = max(max(counts, default=0), 1)
    bars = []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = (base - 40) * count / top
        x = 10 + i * step
        bars.append(
            f'<rect x="{x + 4:.1f}" y="{base - h:.1f}" width="{step - 8:.1f}" height="{h:.1f}" '
            f'fill="#2c7fb8"/><text x="{x + step / 2:.1f}" y="{base - h - 4:.1f}" '
            f'text-anchor="middle">{count:,}</text><text x="{x + step / 2:.1f}" y="{base + 16}" '
            f'text-anchor="middle" font-size="10">{escape(label)}</text>'
        )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-size="11" font-family="sans-serif">'
        f'<text x="0" y="16" font-weight="bold" font-size="12">{escape(title)}</text>'
        f"{''.join(bars)}</svg>"
    )
