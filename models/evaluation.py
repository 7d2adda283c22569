"""Evaluation plots and a report a data scientist can read without opening MLflow.

Plots use matplotlib's object API (``Figure``) so nothing touches global pyplot state:
calibration curve, cumulative gain (accounts and ARR), SHAP summary from exact TreeSHAP
(``pred_contrib``), a metric by segment, and the backtest metrics per fold.

The report is honest about what the backtest can tell: beside the latest fold it shows the spread
over folds, whether the booster beats the baselines (the promotion gate's verdict), what small
data made training reduce, and how far earlier champions' latest-fold metric was from the metric
they realised later (a frame of realised metrics, when the caller has one).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from models.bundle import EXPECTED_VALUE_COLUMN
from models.metrics import BACKTEST_ECE_BINNING, METRIC_NAMES, ece_label, metrics_by_group

if TYPE_CHECKING:
    from models.train import TrainResult

TOP_FEATURES = 20
SPREAD_METRICS = ("pr_auc", "roc_auc", "ece", "observed_expected", "top_decile_lift")
REALISED_COLUMNS = ("model", "metric", "backtest", "realised")
_ECE_NOTE = f"ece: {ece_label(BACKTEST_ECE_BINNING)} of the predicted probability."


def calibration_figure(predictions: pd.DataFrame, *, n_bins: int = 10) -> Figure:
    """Observed event rate vs mean predicted probability in equal-count bins, per model."""
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    top = float(predictions["p"].quantile(0.995)) if len(predictions) else 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle="--", label="perfect")
    for model, part in predictions.groupby("model", sort=True):
        order = np.argsort(part["p"].to_numpy(), kind="stable")
        bins = np.array_split(order, min(n_bins, len(order)))
        mean_p = [part["p"].to_numpy()[b].mean() for b in bins]
        rate = [part["y"].to_numpy()[b].mean() for b in bins]
        ax.plot(mean_p, rate, marker="o", label=model)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration")
    ax.legend()
    return fig


def gain_figure(predictions: pd.DataFrame) -> Figure:
    """Cumulative share of events and of ARR at stake captured by the riskiest accounts."""
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    for model, part in predictions.groupby("model", sort=True):
        ranked = part.sort_values("p", ascending=False, kind="stable")
        share = np.arange(1, len(ranked) + 1) / len(ranked)
        for ax, column in zip(axes, ("y", "value"), strict=True):
            total = ranked[column].sum()
            if total > 0:
                ax.plot(share, ranked[column].cumsum() / total, label=model)
    for ax, what in zip(axes, ("events", "ARR at stake"), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="random")
        ax.axvline(0.1, color="black", linewidth=0.5)
        ax.set(xlabel="share of accounts (by risk)", ylabel=f"share of {what}", title="Gain")
        ax.legend()
    return fig


def shap_summary_figure(contributions: pd.DataFrame, matrix: pd.DataFrame) -> Figure:
    """Beeswarm of exact SHAP values for the top features (colour: feature value percentile;
    grey for categoricals and missing values) next to mean |SHAP|."""
    values = contributions.drop(columns=[EXPECTED_VALUE_COLUMN])
    importance = values.abs().mean().sort_values(ascending=False).head(TOP_FEATURES)
    names = list(importance.index[::-1])
    fig = Figure(figsize=(12, 0.35 * len(names) + 1.5))
    swarm, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    rng = np.random.default_rng(0)
    for row, name in enumerate(names):
        shap_values = values[name].to_numpy()
        colour = _percentile_colour(matrix[name])
        jitter = rng.uniform(-0.3, 0.3, len(shap_values))
        swarm.scatter(shap_values, row + jitter, c=colour, cmap="coolwarm", s=4, vmin=0, vmax=1)
    swarm.set_yticks(range(len(names)), names)
    swarm.axvline(0, color="grey", linewidth=0.5)
    swarm.set(xlabel="SHAP value (log-odds)", title="SHAP summary (red = high feature value)")
    bars.barh(range(len(names)), importance[names].to_numpy())
    bars.set_yticks(range(len(names)), [""] * len(names))
    bars.set(xlabel="mean |SHAP|")
    fig.tight_layout()
    return fig


def _percentile_colour(column: pd.Series) -> np.ndarray:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return np.full(len(column), 0.5)
    ranks = column.rank(pct=True).to_numpy(dtype=float)
    return np.where(np.isnan(ranks), 0.5, ranks)


def segment_figure(by_segment: pd.DataFrame, *, metric: str) -> Figure:
    """``metric`` per segment, one bar per model."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    table = by_segment.pivot(index="segment", columns="model", values=metric)
    width = 0.8 / max(1, len(table.columns))
    for i, model in enumerate(table.columns):
        ax.bar(np.arange(len(table)) + i * width, table[model].to_numpy(), width, label=model)
    ax.set_xticks(np.arange(len(table)) + 0.4 - width / 2, table.index)
    ax.set(ylabel=metric, title=f"{metric} by segment (all backtest folds)")
    ax.legend()
    return fig


def folds_figure(backtest: pd.DataFrame) -> Figure:
    """PR-AUC, ARR captured and ECE per fold and model."""
    fig = Figure(figsize=(12, 3.8))
    for ax, metric in zip(fig.subplots(1, 3), ("pr_auc", "arr_captured_top10", "ece"), strict=True):
        for model, part in backtest.groupby("model", sort=True):
            ax.plot(part["fold"], part[metric], marker="o", label=model)
        title = ece_label(BACKTEST_ECE_BINNING) if metric == "ece" else metric
        ax.set(xlabel="backtest fold (later ->)", title=title)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def report_directory(data_dir: Path, target: str, training_date: date | None) -> Path:
    """Where one training run's evaluation report is kept: ``<data_dir>/evaluation/<target>/
    <training date>/``, so a retrain never overwrites an earlier model's report (``latest``
    when no date is known)."""
    day = training_date.isoformat() if training_date is not None else "latest"
    return Path(data_dir) / "evaluation" / target / day


@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`write_report` wrote for one training run."""

    directory: Path
    html: Path
    markdown: Path
    figures: dict[str, Path]
    realised_comparison: pd.DataFrame | None  # earlier champions, see realised_comparison()


def write_report(
    result: TrainResult, directory: Path, *, realised: pd.DataFrame | None = None
) -> EvaluationReport:
    """Write the plots and ``<target>_report.md`` + ``<target>_report.html`` into ``directory``
    and say where. ``realised``: earlier champions' metrics, one row per (model, metric) with
    the latest-fold value it was promoted on (``backtest``) and the value measured once its
    labels matured (``realised``)."""
    directory.mkdir(parents=True, exist_ok=True)
    comparison = realised_comparison(result, realised)
    paths = {}
    for name, fig in _figures(result).items():
        paths[name] = directory / f"{result.target}_{name}.png"
        fig.savefig(paths[name], dpi=90)
    markdown = directory / f"{result.target}_report.md"
    markdown.write_text(_markdown(result, paths, comparison))
    report = directory / f"{result.target}_report.html"
    report.write_text(_html(result, paths, comparison))
    return EvaluationReport(directory, report, markdown, paths, comparison)


def _figures(result: TrainResult) -> dict[str, Figure]:
    predictions = result.predictions
    sample = result.shap_sample
    contributions = result.bundle.contributions(sample)
    by_segment = metrics_by_group(predictions, by="segment", metric="pr_auc")
    return {
        "calibration": calibration_figure(predictions),
        "gain": gain_figure(predictions),
        "shap_summary": shap_summary_figure(contributions, result.bundle.prepare(sample)),
        "pr_auc_by_segment": segment_figure(by_segment, metric="pr_auc"),
        "folds": folds_figure(result.backtest),
    }


def metrics_table(result: TrainResult) -> pd.DataFrame:
    """Backtest metrics: latest fold and mean over folds, one row per model."""
    columns = list(METRIC_NAMES)
    latest = result.latest_fold()[columns].add_prefix("latest_")
    mean = result.backtest.groupby("model")[columns].mean().add_prefix("mean_")
    return latest.join(mean).round(4)


def spread_table(result: TrainResult) -> pd.DataFrame:
    """Per model and metric: the latest fold beside the mean, sd, min and max over folds (sd is
    blank with one fold)."""
    rows = []
    latest = result.latest_fold()
    for model, part in result.backtest.groupby("model", sort=True):
        for metric in SPREAD_METRICS:
            values = part[metric].astype(float)
            rows.append(
                {
                    "model": model,
                    "metric": metric,
                    "latest": float(latest.loc[model, metric]),
                    "mean": values.mean(),
                    "sd": values.std(),
                    "min": values.min(),
                    "max": values.max(),
                    "folds": len(values),
                }
            )
    return pd.DataFrame(rows).round(4)


def realised_comparison(result: TrainResult, realised: pd.DataFrame | None) -> pd.DataFrame | None:
    """Earlier champions: latest-fold metric vs realised, the shortfall, and this model's
    latest-fold metric less the mean shortfall on that metric (what history suggests it will
    realise). None without a frame; a frame missing a column is refused by name."""
    if realised is None:
        return None
    missing = [c for c in REALISED_COLUMNS if c not in realised.columns]
    if missing:
        raise ValueError(f"realised metrics frame lacks column(s) {missing}")
    table = realised[list(REALISED_COLUMNS)].copy()
    table["shortfall"] = table["backtest"].astype(float) - table["realised"].astype(float)
    latest = result.latest_fold()
    ours = {m: float(latest.loc["lightgbm", m]) for m in table["metric"] if m in latest.columns}
    mean_shortfall = table.groupby("metric")["shortfall"].transform("mean")
    table["this_model_latest"] = table["metric"].map(ours)
    table["this_model_expected"] = table["this_model_latest"] - mean_shortfall
    return table.round(4)


def _honesty_lines(result: TrainResult, comparison: pd.DataFrame | None) -> list[str]:
    verdict = result.verdict
    lines = ["## Baselines (promotion gate)", ""]
    if verdict is None:
        lines.append("- no baseline verdict was computed")
    else:
        lines.append(f"- {'PASSED' if verdict.passed else 'REFUSED'}: {verdict.reason}")
    lines += ["", "## Reduced for the data size", ""]
    lines += [f"- {r}" for r in result.reductions] or ["- nothing: the configured plan fitted"]
    lines += ["", "## Latest fold vs what earlier champions realised", ""]
    if comparison is None:
        lines.append(
            "- no realised metrics of earlier champions were provided, so the latest-fold "
            "metric cannot be checked against history; read it with the spread over folds above"
        )
    else:
        lines.append(_markdown_table(comparison, index=False))
    return [*lines, ""]


def _markdown(result: TrainResult, paths: dict[str, Path], comparison: pd.DataFrame | None) -> str:
    info = result.dataset_info
    lines = [
        f"# churnlens evaluation: {result.target}",
        "",
        f"- data: {info['rows']} rows, {info['accounts']} accounts, {info['as_of_dates']} as_of "
        f"dates {info['as_of_start']}..{info['as_of_end']}, positive rate "
        f"{info['positive_rate']:.3f}, fingerprint `{info['fingerprint'][:16]}`",
        f"- features: {info['n_features']}; label gap (purge): {result.gap_days} days",
        f"- calibration: {_calibration_name(result)}; trees: "
        f"{result.bundle.params.get('num_boost_round')}; tuning: {result.tuning}",
        "",
        "## Backtest (rolling origin)",
        "",
        _markdown_table(pd.DataFrame(info["folds"]), index=False),
        "",
        "## Metrics by model (latest fold and mean over folds)",
        "",
        _ECE_NOTE,
        "",
        _markdown_table(metrics_table(result), index=True),
        "",
        "## Spread over backtest folds",
        "",
        _markdown_table(spread_table(result), index=False),
        "",
        *_honesty_lines(result, comparison),
    ]
    lines += [f"![{name}]({path.name})\n" for name, path in paths.items()]
    return "\n".join(lines)


def _markdown_table(table: pd.DataFrame, *, index: bool) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs tabulate)."""
    if index:
        table = table.reset_index()
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _calibration_name(result: TrainResult) -> str:
    calibrator = result.bundle.calibrator
    return "none" if calibrator is None else calibrator.method


def _html(result: TrainResult, paths: dict[str, Path], comparison: pd.DataFrame | None) -> str:
    info = result.dataset_info
    images = "".join(
        f'<h3>{html.escape(n)}</h3><img src="{html.escape(p.name)}" style="max-width:100%">'
        for n, p in paths.items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>churnlens {result.target}"
        "</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}</style>"
        f"</head><body><h1>churnlens evaluation: {html.escape(result.target)}</h1>"
        f"<p>{info['rows']} rows, {info['accounts']} accounts, as_of {info['as_of_start']}.."
        f"{info['as_of_end']}; positive rate {info['positive_rate']:.3f}; "
        f"{info['n_features']} features; label gap {result.gap_days} days; calibration "
        f"{_calibration_name(result)}; fingerprint <code>{info['fingerprint'][:16]}</code></p>"
        f"<h2>Backtest folds</h2>{pd.DataFrame(info['folds']).to_html(index=False)}"
        f"<h2>Metrics by model</h2><p>{html.escape(_ECE_NOTE)}</p>{metrics_table(result).to_html()}"
        f"<h2>Spread over backtest folds</h2>{spread_table(result).to_html(index=False)}"
        f"{_honesty_html(result, comparison)}{images}</body></html>"
    )


def _honesty_html(result: TrainResult, comparison: pd.DataFrame | None) -> str:
    verdict = result.verdict
    gate = "no baseline verdict was computed"
    if verdict is not None:
        gate = f"{'PASSED' if verdict.passed else 'REFUSED'}: {verdict.reason}"
    reductions = result.reductions or ["nothing: the configured plan fitted"]
    realised = (
        "<p>No realised metrics of earlier champions were provided.</p>"
        if comparison is None
        else comparison.to_html(index=False)
    )
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reductions)
    return (
        f"<h2>Baselines (promotion gate)</h2><p>{html.escape(gate)}</p>"
        f"<h2>Reduced for the data size</h2><ul>{items}</ul>"
        f"<h2>Latest fold vs what earlier champions realised</h2>{realised}"
    )
