"""Prefect flows: ``train``, ``weekly_score`` and ``backfill``.

A flow body is a short sequence of task calls; each task is a thin wrapper over one library
function of ``features/``, ``models/`` or ``serving/``, the same functions the CLI calls. Tasks
that touch the warehouse or MLflow retry; tasks that receive a live connection never cache
(``NO_CACHE``), because a connection has no stable hash. Flow parameters are plain values (a
config path, dates) so a deployment can pass them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features.build import build_features
from features.grid import observation_dates
from features.labels import build_labels, censoring_summary
from features.validation import ContractError, SourceReport, prepare_sources
from features.warehouse import Warehouse
from models.bundle import FeatureMismatchError, LibraryVersionError, ModelBundle
from models.dataset import training_frame
from models.monitoring import ALERTING, feature_drift
from models.registry import configure_tracking, load_bundle, log_and_register
from models.train import train_model
from pipelines.config import ConfigError, Settings, load_settings, open_warehouse
from pipelines.dates import as_of_for, data_horizon, end_of
from serving.changes import week_over_week
from serving.risk_list import write_risk_lists
from serving.score import score_accounts
from serving.writeback import read_previous, write_scores


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O failures, never a broken contract or configuration: those need a person."""
    try:
        state.result()
    except (ContractError, ConfigError, FeatureMismatchError, LibraryVersionError, LookupError):
        return False  # LookupError: no model under that alias (RegistryError)
    except ValueError:
        return False
    except Exception:
        return True
    return True


_IO_RETRIES = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": _is_transient}


def _settings(config: str | None) -> Settings:
    return load_settings([Path(config)] if config else None)


# --- tasks -----------------------------------------------------------------------------------


@task(name="validate-and-stage-sources", cache_policy=NO_CACHE, **_IO_RETRIES)
def stage_sources(wh: Warehouse, settings: Settings, reference_time: datetime) -> SourceReport:
    report = prepare_sources(wh, settings.warehouse, reference_time=reference_time)
    logger = get_run_logger()
    for line in report.lines():
        logger.info(line)
    return report


@task(name="build-features", cache_policy=NO_CACHE)
def features_at(wh: Warehouse, as_of_dates: list[datetime], report: SourceReport) -> pd.DataFrame:
    frame = build_features(wh, as_of_dates, available_tables=report.available)
    get_run_logger().info(
        "built %d feature rows x %d columns for %d observation date(s)",
        len(frame),
        frame.shape[1],
        len(as_of_dates),
    )
    return frame


@task(name="build-labels", cache_policy=NO_CACHE)
def labels_at(
    wh: Warehouse, as_of_dates: list[datetime], settings: Settings, data_end: datetime
) -> pd.DataFrame:
    labels = build_labels(wh, as_of_dates, config=settings.features.labels, data_end=data_end)
    summary = censoring_summary(labels)
    get_run_logger().info("labels: %s", ", ".join(f"{k}={v}" for k, v in summary.items()))
    return labels


@task(name="train-model", cache_policy=NO_CACHE)
def fit(
    dataset: pd.DataFrame,
    target: str,
    settings: Settings,
    health_available: bool,
    previous: ModelBundle | None,
) -> Any:
    model = settings.model
    logger = get_run_logger()
    logger.info(
        "training %s on %d rows (%d as_of dates): up to %d tuning trials / %.0f s, "
        "then %d backtest folds and the final fit",
        target,
        len(dataset),
        dataset["as_of"].nunique(),
        model.tuning.trials,
        model.tuning.timeout_seconds,
        model.n_folds,
    )
    result = train_model(
        dataset,
        target=target,
        config=model,
        gap_days=settings.features.labels.maturity_days,
        health_available=health_available,
        previous=previous,
        output_dir=settings.data_dir / "evaluation" / target,
    )
    for line in _training_summary(result):
        logger.info("%s", line)
    return result


def _training_summary(result: Any) -> list[str]:
    """What a data scientist wants from the log: time spent, and the latest fold per model."""
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in result.timings.items())
    lines = [f"{result.target}: {timings}"]
    latest = result.latest_fold()
    for name, row in latest.iterrows():
        lines.append(
            f"{result.target} latest fold, {name}: PR-AUC {row['pr_auc']:.3f}, "
            f"ROC-AUC {row['roc_auc']:.3f}, ARR in top 10% {row['arr_captured_top10']:.0%}, "
            f"ECE {row['ece']:.3f}"
        )
    if result.report_path:
        lines.append(f"{result.target} evaluation report: {result.report_path}")
    return lines


@task(name="log-and-register", cache_policy=NO_CACHE, **_IO_RETRIES)
def register(result: Any, settings: Settings, run_name: str, dataset_info: dict) -> Any:
    registered = log_and_register(
        result,
        tracking=settings.tracking,
        data_dir=settings.data_dir,
        run_name=run_name,
        dataset_info=dataset_info,
    )
    get_run_logger().info("%s", registered.summary())
    return registered


@task(name="load-model", cache_policy=NO_CACHE, **_IO_RETRIES)
def load_model(settings: Settings, target: str, alias: str) -> tuple[ModelBundle, Any] | None:
    try:
        return load_bundle(
            tracking=settings.tracking, data_dir=settings.data_dir, target=target, alias=alias
        )
    except LookupError:
        if target == "churn":
            raise
        get_run_logger().warning("no %s model with alias %r: scoring without it", target, alias)
        return None


@task(name="score-and-explain", cache_policy=NO_CACHE)
def score(
    features: pd.DataFrame,
    churn: tuple[ModelBundle, Any],
    expansion: tuple[ModelBundle, Any] | None,
    run_date: date,
    settings: Settings,
) -> Any:
    refs = {"churn": str(churn[1])}
    if expansion is not None:
        refs["expansion"] = str(expansion[1])
    return score_accounts(
        features,
        churn=churn[0],
        expansion=expansion[0] if expansion else None,
        run_date=run_date,
        config=settings.serving,
        model_refs=refs,
    )


@task(name="monitor-drift", cache_policy=NO_CACHE)
def monitor(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    bundle: ModelBundle,
    settings: Settings,
    run_date: date,
) -> pd.DataFrame:
    """Compare this week's features with those at the end of the model's training window;
    warn on every feature past a threshold and keep the table as ``drift-<run_date>.csv``."""
    drift = feature_drift(
        reference, current, feature_names=bundle.feature_names, thresholds=settings.monitoring
    )
    out = settings.report_dir / "monitoring" / f"drift-{run_date.isoformat()}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    drift.to_csv(out, index=False)
    alerts = drift[drift["status"].isin(ALERTING)]
    logger = get_run_logger()
    for row in alerts.itertuples():
        logger.warning(
            "feature drift %s: %s (PSI %.2f, missing %.0f%% -> %.0f%%)",
            row.status,
            row.feature,
            row.psi,
            100 * row.missing_train,
            100 * row.missing_current,
        )
    logger.info("drift: %d of %d features past a threshold -> %s", len(alerts), len(drift), out)
    return drift


@task(name="write-back", cache_policy=NO_CACHE, **_IO_RETRIES)
def write_back(wh: Warehouse, scored: Any, settings: Settings, run_meta: dict) -> dict[str, int]:
    counts = write_scores(wh, scored, schema=settings.warehouse.output_schema, run_meta=run_meta)
    get_run_logger().info("wrote %s", ", ".join(f"{n} rows to {t}" for t, n in counts.items()))
    return counts


@task(name="risk-lists", cache_policy=NO_CACHE)
def risk_lists(wh: Warehouse, scored: Any, run_date: date, settings: Settings) -> Any:
    previous = read_previous(wh, schema=settings.warehouse.output_schema, before=run_date)
    changes = week_over_week(scored.predictions, previous, config=settings.serving)
    out_dir = settings.risk_list_dir / run_date.isoformat()
    return write_risk_lists(scored, changes, out_dir=out_dir, run_date=run_date)


# --- flows -----------------------------------------------------------------------------------


@flow(name="train", log_prints=True)
def train(run_date: date, config: str | None = None) -> dict[str, Any]:
    """Build the observation grid up to ``run_date``, train churn and expansion models on it,
    log them to MLflow and register them (``challenger``; ``champion`` when the gate passes)."""
    settings = _settings(config)
    configure_tracking(settings.tracking, data_dir=settings.data_dir)
    obs = settings.features.observation
    grid = observation_dates(
        run_date - timedelta(days=obs.history_days),
        run_date,
        frequency=obs.frequency,
        weekday=obs.weekday,
    )
    wh = open_warehouse(settings)
    try:
        report = stage_sources(wh, settings, data_horizon(run_date))
        features = features_at(wh, grid, report)
        labels = labels_at(wh, grid, settings, end_of(run_date))
    finally:
        wh.close()
    health = "health_scores" in report.available
    registered = {}
    for target in settings.model.targets:
        previous = _champion_or_none(settings, target)
        dataset = training_frame(features, labels, target=target)
        result = fit(dataset, target, settings, health, previous[0] if previous else None)
        info = {
            "run_date": run_date.isoformat(),
            "as_of_first": min(grid).isoformat(),
            "as_of_last": max(grid).isoformat(),
            "rows": len(dataset),
            "sources": report.available,
        }
        registered[target] = register(result, settings, f"{target}-{run_date}", info)
    return {
        "run_date": run_date.isoformat(),
        "registered": {k: v.summary() for k, v in registered.items()},
    }


def _champion_or_none(settings: Settings, target: str) -> tuple[ModelBundle, Any] | None:
    try:
        return load_bundle(
            tracking=settings.tracking, data_dir=settings.data_dir, target=target, alias="champion"
        )
    except LookupError:
        return None


@flow(name="weekly-score", log_prints=True)
def weekly_score(run_date: date | None = None, config: str | None = None) -> dict[str, Any]:
    """Score every account active at ``run_date`` with the champion models, explain each score,
    write predictions back in one transaction (replacing that run date) and write risk lists.

    A scheduled run passes no date and scores the day it runs (UTC)."""
    run_date = run_date or datetime.now(UTC).date()
    settings = _settings(config)
    configure_tracking(settings.tracking, data_dir=settings.data_dir)
    churn = load_model(settings, "churn", "champion")
    expansion = load_model(settings, "expansion", "champion")
    wh = open_warehouse(settings)
    try:
        report = stage_sources(wh, settings, data_horizon(run_date))
        features = features_at(wh, [as_of_for(run_date)], report)
        scored = score(features, churn, expansion, run_date, settings)
        reference = features_at(wh, [churn[0].train_window[1]], report)
        drift = monitor(reference, features, churn[0], settings, run_date)
        meta = {"sources": report.available, "skipped": report.skipped}
        counts = write_back(wh, scored, settings, meta)
        paths = risk_lists(wh, scored, run_date, settings)
    finally:
        wh.close()
    return {
        "run_date": run_date.isoformat(),
        "accounts": len(scored.predictions),
        "written": counts,
        "drift_alerts": int(drift["status"].isin(ALERTING).sum()),
        "risk_lists": str(paths),
    }


@flow(name="backfill", log_prints=True)
def backfill(start: date, end: date, config: str | None = None, every_days: int = 7) -> list[dict]:
    """Score a range of past run dates (oldest first), e.g. to backtest or seed the forecast."""
    results = []
    day = start
    while day <= end:
        results.append(weekly_score(day, config))
        day += timedelta(days=every_days)
    return results
