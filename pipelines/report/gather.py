"""Gather everything the retention and monitoring report shows, and write it.

Reads the contract tables and the write-back history of earlier weekly runs from the warehouse,
then calls the analytics functions of ``features/``, ``models/`` and ``serving/``:
retention (ARR bridge, cohorts), the NDR forecast from the latest run and its backtest on
matured past runs, feature and prediction drift, realised performance and the health-score
audit. A part whose inputs do not exist yet (no matured runs, no health table) is left out and
the report says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import build_features, build_model_features
from features.labels import build_labels
from features.retention import (
    CATEGORY_COLUMN,
    account_attributes,
    arr_movements,
    churn_events,
    cohort_retention,
    detect_history_start,
    load_contracts,
    mark_history,
    prepare_contracts,
    with_industry_category,
)
from features.validation import SourceReport
from features.warehouse import Warehouse, qualified
from models.dataset import matured as matured_by
from models.forecast import backtest_forecast, forecast_level, forecast_next_period
from models.health_audit import HealthAudit, audit_health_score
from models.metrics import LEVEL_SD_METRIC, score_metrics
from models.monitoring import (
    estimate_history,
    join_matured,
    prediction_drift,
    read_monitoring,
    realised_performance,
)
from models.performance_estimate import estimate_vs_realised
from models.registry import Tracking, load_bundle, version_metrics
from pipelines.config import Settings, open_warehouse, stage_sources
from pipelines.dates import as_of_for, data_horizon, end_of
from pipelines.report.sections import MonitoringView, build_report
from pipelines.runtime import tracking_store
from serving.churn_reasons import churn_reasons_section, read_stated_reasons, review_churn_reasons
from serving.expansion_signals import (
    add_expansion_signals,
    expansion_signals_section,
    products_in_force,
)
from serving.holdout import holdout_outcomes, read_holdouts, uplift_section
from serving.render import Section


@dataclass(frozen=True)
class ScoreHistory:
    """Every earlier weekly run's predictions, as written back."""

    predictions: pd.DataFrame

    @property
    def run_dates(self) -> list[date]:
        return sorted(pd.to_datetime(self.predictions["run_date"]).dt.date.unique())

    def at(self, day: date) -> pd.DataFrame:
        days = pd.to_datetime(self.predictions["run_date"]).dt.date
        return self.predictions[days == day]


def read_score_history(wh: Warehouse, settings: Settings, *, until: date) -> ScoreHistory:
    schema = settings.warehouse.output_schema
    table = settings.serving.tables.predictions
    if not wh.table_exists(table, schema):
        return ScoreHistory(pd.DataFrame(columns=["run_date", "account_id"]))
    frame = wh.query(f"SELECT * FROM {qualified(table, schema)} WHERE run_date <= ?", [until])
    frame["run_date"] = pd.to_datetime(frame["run_date"])
    return ScoreHistory(frame)


@dataclass(frozen=True)
class RetentionFigures:
    """The retention side of the report, measured over complete contract history only."""

    contracts: pd.DataFrame  # with industry_category when a mapping is configured
    history_start: pd.Timestamp | None
    quarters: pd.DataFrame  # every quarter, with complete_history
    ttm: pd.DataFrame | None  # trailing 12 months, windows inside complete history
    by_group: pd.DataFrame | None  # latest TTM NDR/GRR per (kind, group)
    cohorts: pd.DataFrame | None
    events: pd.DataFrame


def history_start_of(settings: Settings, contracts: pd.DataFrame) -> pd.Timestamp | None:
    """``retention.history_start`` from config, else detected from the contracts."""
    configured = settings.retention.history_start
    return pd.Timestamp(configured) if configured else detect_history_start(contracts)


def _retention(wh: Warehouse, settings: Settings, run_date: date) -> RetentionFigures:
    contracts = prepare_contracts(load_contracts(wh))
    mapping = settings.retention.industry_categories
    if mapping:
        contracts = with_industry_category(contracts, mapping)
    grace = settings.features.labels.grace_days
    first = pd.Timestamp(contracts["start_date"].min()).date()
    start = history_start_of(settings, contracts)
    quarters = arr_movements(
        contracts, period="quarter", start=first, end=run_date, grace_days=grace
    )
    quarters = mark_history(quarters, start)
    begin = (start or pd.Timestamp(first)).date()
    ttm = _optional(
        lambda: arr_movements(contracts, period="ttm", start=begin, end=run_date, grace_days=grace)
    )
    groups = ["segment", *([CATEGORY_COLUMN] if mapping else [])]
    by_group = (
        _latest_by_group(contracts, groups, begin, run_date, grace) if ttm is not None else None
    )
    cohorts = _optional(
        lambda: cohort_retention(contracts, end=run_date, grace_days=grace, start=start)
    )
    events = churn_events(contracts, start=first, end=run_date, grace_days=grace)
    return RetentionFigures(contracts, start, quarters, ttm, by_group, cohorts, events)


def _optional(compute: Callable[[], pd.DataFrame]) -> pd.DataFrame | None:
    """A figure that may not exist yet (no complete 12 months, no cohort): None, not an error."""
    try:
        return compute()
    except ValueError:
        return None


def _latest_by_group(
    contracts: pd.DataFrame, groups: list[str], start: date, end: date, grace: int
) -> pd.DataFrame:
    """The latest trailing-12-month NDR/GRR per group of each attribute in ``groups``."""
    parts = []
    for kind in groups:
        ttm = arr_movements(
            contracts, period="ttm", by=[kind], start=start, end=end, grace_days=grace
        )
        latest = ttm[ttm["period_end"] == ttm["period_end"].max()]
        parts.append(latest.rename(columns={kind: "group"}).assign(kind=kind))
    parts.append(
        arr_movements(contracts, period="ttm", start=start, end=end, grace_days=grace)
        .tail(1)
        .assign(kind="all", group="all")
    )
    return pd.concat(parts, ignore_index=True)[["kind", "group", "period", "ndr", "grr"]]


def _matured_outcomes(
    wh: Warehouse, settings: Settings, history: ScoreHistory, run_date: date
) -> pd.DataFrame | None:
    """Labels of past run dates whose label window has closed by ``run_date``."""
    labels_cfg = settings.features.labels
    maturity = settings.features.labels.maturity_days
    dates = pd.Series(list(history.run_dates), dtype=object)
    known = matured_by(dates, by=pd.Timestamp(run_date), maturity_days=maturity)
    matured = [d for d, ok in zip(history.run_dates, known, strict=True) if ok]
    if not matured:
        return None
    return build_labels(
        wh,
        [as_of_for(d) for d in matured],
        config=labels_cfg,
        data_end=end_of(run_date),
        active=settings.features.active,
    )


REALISED_METRICS = ("pr_auc", "roc_auc", "arr_captured_top10", "observed_expected")


def realised_by_champion(
    wh: Warehouse, settings: Settings, run_date: date, *, tracking: Tracking
) -> pd.DataFrame | None:
    """Each earlier churn model whose weekly scores have matured by ``run_date``: the latest-fold
    metric it was registered with (``backtest``) beside the same metric on its own matured
    scores (``realised``), for the evaluation report (``models.evaluation``). The warehouse must
    be staged. None when no scores have matured."""
    history = read_score_history(wh, settings, until=run_date)
    if "churn_model" not in history.predictions or history.predictions.empty:
        return None
    outcomes = _matured_outcomes(wh, settings, history, run_date)
    if outcomes is None:
        return None
    labels = settings.features.labels
    joined = join_matured(history.predictions, outcomes, maturity_days=labels.maturity_days)
    rows = []
    for model, scored in joined.groupby("churn_model", sort=True):
        logged = version_metrics(tracking=tracking, model=model)
        y = scored["churned"].to_numpy(dtype=int)
        arr = scored["arr"].to_numpy(dtype=float) if "arr" in scored else np.ones(len(y))
        realised = score_metrics(
            y,
            scored["churn_probability"].to_numpy(dtype=float),
            value=y * arr,
            as_of=scored["run_date"].to_numpy(),
        )
        rows += [
            {
                "model": model,
                "metric": m,
                "backtest": logged[f"latest_{m}"],
                "realised": realised[m],
            }
            for m in REALISED_METRICS
            if f"latest_{m}" in logged
        ]
    return pd.DataFrame(rows) if rows else None


def _level_spreads(tracking: Tracking, history: ScoreHistory) -> dict[str, float]:
    """The forecast level spread each model in the history was trained with (a bundle metric;
    models trained before it existed have none, so their forecasts stay pure Bernoulli)."""
    names: set[str] = set()
    for column in ("churn_model", "expansion_model"):
        if column in history.predictions:
            names |= set(history.predictions[column].dropna().astype(str))
    spreads = {}
    for name in sorted(names):
        metrics = version_metrics(tracking=tracking, model=name)
        if LEVEL_SD_METRIC in metrics:
            spreads[name] = float(metrics[LEVEL_SD_METRIC])
    return spreads


def _forecast(
    settings: Settings,
    history: ScoreHistory,
    outcomes: pd.DataFrame | None,
    spreads: dict[str, float],
    contracts: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Next-period forecast from the latest run, with the level uncertainty of its models: by
    segment, and by downturn category when ``contracts`` carries ``industry_category``."""
    if not history.run_dates:
        return None, None
    day = history.run_dates[-1]
    latest = history.at(day)
    if latest.empty:
        return None, None
    level = forecast_level(
        latest,
        history.predictions,
        outcomes,
        run_date=pd.Timestamp(day),
        level_sd=spreads,
        matured_after_days=settings.features.labels.maturity_days,
    )
    by_segment = forecast_next_period(latest, seed=settings.model.seed, level=level)
    if contracts is None or CATEGORY_COLUMN not in contracts:
        return by_segment, None
    category = account_attributes(contracts)[CATEGORY_COLUMN]
    keyed = latest.assign(
        **{CATEGORY_COLUMN: latest["account_id"].astype(str).map(category).fillna("unmapped")}
    )
    by_category = forecast_next_period(
        keyed, by=CATEGORY_COLUMN, seed=settings.model.seed, level=level
    )
    return by_segment, by_category


def _stored_checks(
    settings: Settings, history: ScoreHistory, run_date: date
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None, list[str]]:
    """The latest scored week's feature drift and source-volume checks as its weekly run kept
    them (against the champion's stored training-window reference: nothing is rebuilt from
    today's warehouse, which would hide a source that broke since), every week's label-free
    estimate, and notes saying what is missing."""
    directory = settings.report_dir / "monitoring"
    dates = history.run_dates
    if not dates:
        return None, None, None, []
    kept = read_monitoring(directory, dates[-1])
    notes = []
    if kept["summary"] is None:
        notes.append(
            f"No weekly checks were kept for {dates[-1].isoformat()} (that week was scored "
            "before monitoring was stored, or its files were removed): drift not shown."
        )
    elif kept["drift"] is None:
        notes.append(
            "The champion that scored the latest week carries no training-window reference "
            "(trained before references were stored): drift is not measured until it is retrained."
        )
    return kept["drift"], kept["volumes"], estimate_history(directory, until=run_date), notes


_SCORE_MODELS = {"churn_probability": "churn_model", "expansion_probability": "expansion_model"}


def _estimated(
    estimates: pd.DataFrame | None, realised: pd.DataFrame | None
) -> pd.DataFrame | None:
    """The weekly label-free estimates, beside the realised figure where labels matured."""
    if estimates is None or realised is None or realised.empty:
        return estimates
    return estimate_vs_realised(estimates, realised)


def _score_drift(settings: Settings, history: ScoreHistory) -> pd.DataFrame | None:
    """Each score of the latest week against the first week the same model version scored:
    a new champion changes the scores on purpose, which is no drift."""
    latest = history.at(history.run_dates[-1])
    parts = []
    for score, model_column in _SCORE_MODELS.items():
        if score not in latest.columns or latest[score].isna().all():
            continue
        model = latest[model_column].iloc[0] if model_column in latest.columns else None
        same = history.predictions
        if model is not None:
            same = same[same[model_column] == model]
        first = pd.to_datetime(same["run_date"]).min().date()
        if first == history.run_dates[-1]:
            continue
        part = prediction_drift(
            history.at(first), latest, thresholds=settings.monitoring, columns=[score]
        )
        parts.append(part.assign(reference_run=first.isoformat(), model=model))
    return pd.concat(parts, ignore_index=True) if parts else None


def _audit(
    wh: Warehouse,
    settings: Settings,
    report: SourceReport,
    matured: pd.DataFrame | None,
    events: pd.DataFrame,
    feature_names: list[str],
) -> HealthAudit | None:
    if matured is None or matured.empty or "health_scores" not in report.available:
        return None
    health = wh.query("SELECT account_id, scored_at, score, color FROM stg_health_scores")
    days = sorted(pd.to_datetime(matured["run_date"]).dt.date.unique())
    features = (
        build_model_features(
            wh,
            [as_of_for(d) for d in days],
            feature_names=feature_names,
            available_tables=report.available,
            config=settings.features,
        )
        if feature_names
        else None
    )
    return audit_health_score(
        matured,
        churn_events=events,
        health_history=health,
        features=features,
        feature_names=feature_names,
    )


def _champion_features(tracking: Tracking) -> list[str]:
    try:
        bundle, _ = load_bundle(tracking=tracking, target="churn", alias="champion")
    except LookupError:
        return []
    return list(bundle.feature_names)


def _csm_loop_sections(
    wh: Warehouse,
    settings: Settings,
    report: SourceReport,
    history: ScoreHistory,
    events: pd.DataFrame,
    run_date: date,
) -> list[Section]:
    """Holdout uplift, the churn-reason loop and expansion signals (serving.holdout,
    serving.churn_reasons, serving.expansion_signals). The warehouse must be staged."""
    schema, tables = settings.warehouse.output_schema, settings.serving.tables
    holdouts = read_holdouts(wh, schema=schema, table=tables.holdouts)
    outcomes = None
    if not holdouts.empty:
        days = sorted(pd.to_datetime(holdouts["run_date"]).dt.date.unique())
        labels = build_labels(
            wh,
            [as_of_for(d) for d in days],
            config=settings.features.labels,
            data_end=end_of(run_date),
            active=settings.features.active,
        )
        outcomes = holdout_outcomes(holdouts, labels)
    horizon = settings.features.labels.horizon_days
    sections = [uplift_section(outcomes, horizon_days=horizon, seed=settings.model.seed)]
    review = None
    if history.run_dates and wh.table_exists(tables.reasons, schema):
        reasons = wh.query(
            f"SELECT run_date, account_id, target, direction, rank, category FROM "
            f"{qualified(tables.reasons, schema)} WHERE target = 'churn' AND rank = 1 "
            "AND direction = 'raises' AND run_date <= ?",
            [run_date],
        )
        stated = read_stated_reasons(wh)
        review = review_churn_reasons(events, history.predictions, reasons, stated)
    sections.append(churn_reasons_section(review))
    signals = None
    if history.run_dates:
        latest = history.run_dates[-1]
        features = build_features(
            wh,
            [as_of_for(latest)],
            available_tables=report.available,
            config=settings.features,
            event_types=[],
        )
        products = products_in_force(wh, as_of_for(latest))
        signals = add_expansion_signals(history.at(latest), features, products)
    sections.append(expansion_signals_section(signals))
    return sections


def build_run_report(settings: Settings, run_date: date) -> Path:
    """Write ``<data_dir>/reports/report-<run_date>.html`` and return its path."""
    out = settings.report_dir / f"report-{run_date.isoformat()}.html"
    tracking = tracking_store(settings)
    with open_warehouse(settings) as wh:
        report = stage_sources(wh, settings, reference_time=data_horizon(run_date))
        figures = _retention(wh, settings, run_date)
        history = read_score_history(wh, settings, until=run_date)
        outcomes = _matured_outcomes(wh, settings, history, run_date)
        drift, volumes, estimates, notes = _stored_checks(settings, history, run_date)
        score_drift = _score_drift(settings, history) if history.run_dates else None
        spreads = _level_spreads(tracking, history)
        matured = realised = backtest = None
        if outcomes is not None:
            labels_cfg = settings.features.labels
            matured = join_matured(
                history.predictions, outcomes, maturity_days=labels_cfg.maturity_days
            )
            realised = realised_performance(
                history.predictions, outcomes, maturity_days=labels_cfg.maturity_days
            )
            backtest = backtest_forecast(
                history.predictions,
                outcomes,
                seed=settings.model.seed,
                level_sd=spreads,
                matured_after_days=settings.features.labels.maturity_days,
            )
        audit = _audit(wh, settings, report, matured, figures.events, _champion_features(tracking))
        loop = _csm_loop_sections(wh, settings, report, history, figures.events, run_date)
    forecast, by_category = _forecast(settings, history, outcomes, spreads, figures.contracts)
    labels = settings.features.labels
    return build_report(
        retention=figures.quarters,
        ttm=figures.ttm,
        history_start=figures.history_start,
        retention_by_group=figures.by_group,
        cohorts=figures.cohorts,
        forecast=forecast,
        forecast_by_category=by_category,
        forecast_backtest=backtest,
        drift=None,
        realised=None,
        audit=audit,
        monitoring=MonitoringView(
            drift=drift,
            prediction_drift=score_drift,
            realised=realised,
            estimated=_estimated(estimates, realised),
            checks=volumes,
            notes=notes,
        ),
        horizon_days=labels.lead_days + labels.horizon_days,
        out_path=out,
        run_date=run_date,
        extra_sections=loop,
    )
