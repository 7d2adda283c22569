"""Prefect flows: ``train``, ``weekly_score`` and ``backfill``.

A flow body is a short sequence of task calls; each task is a thin wrapper over one library
function of ``features/``, ``models/`` or ``serving/``, the same functions the CLI calls. Tasks
that touch the warehouse or MLflow retry, and each opens its own warehouse connection from a
factory, so a retry after a dropped connection reconnects instead of reusing a dead one.
Tasks never cache (``NO_CACHE``): their inputs are frames and settings, not stable keys.
Flow parameters are plain values (a config path, dates) so a deployment can pass them.

No ``from __future__ import annotations`` here: a served or deployed flow is loaded in another
process, and Prefect validates its parameters from the signature, which must then hold real
types, not strings naming them.
"""

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features.build import build_features, build_model_features
from features.grid import observation_dates
from features.labels import build_labels, censoring_summary
from features.validation import ContractError, SourceReport
from features.volumes import source_volumes
from features.warehouse import Warehouse
from models.bundle import FeatureMismatchError, LibraryVersionError, ModelBundle
from models.dataset import target_spec, training_frame
from models.evaluation import EvaluationReport, report_directory, write_report
from models.metrics import BACKTEST_ECE_BINNING, ece_label
from models.monitoring import (
    WeeklyMonitoring,
    reference_for_bundle,
    weekly_monitoring,
    write_monitoring,
)
from models.registry import (
    ModelRef,
    RegisteredVersion,
    Tracking,
    close_training_run,
    load_bundle,
    log_and_register,
    open_training_run,
)
from models.train import TrainResult, train_model
from pipelines.config import ConfigError, Settings, load_settings, open_warehouse, stage_sources
from pipelines.dates import as_of_for, data_horizon, end_of
from pipelines.report.gather import realised_by_champion
from pipelines.runtime import stop_requested, tracking_store
from serving.changes import week_over_week
from serving.delivery import DeliveryReport, deliver_run
from serving.expansion_signals import add_expansion_signals, staged_products_in_force
from serving.holdout import assign_holdout
from serving.lookahead import check_lookahead
from serving.risk_list import ListOptions, RiskListPaths, write_risk_lists
from serving.score import Scored, score_accounts
from serving.writeback import read_previous, write_scores

WarehouseFactory = Callable[[], Warehouse]
"""Opens a fresh warehouse connection; each task that needs one calls it and closes it."""
LoadedModel = tuple[ModelBundle, ModelRef]
"""A registered model: its bundle and the registry version it was loaded from."""


def warehouse_factory(settings: Settings) -> WarehouseFactory:
    return partial(open_warehouse, settings)


def _interrupt_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean a person or the system stopped the work: never worth a retry."""
    import duckdb
    import psycopg
    from prefect.exceptions import CancelledRun, ExternalSignal

    return (
        KeyboardInterrupt,
        SystemExit,
        asyncio.CancelledError,
        CancelledRun,
        ExternalSignal,
        psycopg.errors.QueryCanceled,
        duckdb.InterruptException,
    )


# DuckDB 2.0 turns any exception a signal handler raises during a query (KeyboardInterrupt,
# Prefect's TerminationSignal) into this plain RuntimeError and drops the original.
_DUCKDB_INTERRUPTED = "Query interrupted"


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is an interrupt or a cancelled
    query (Ctrl-C, SIGTERM, ``pg_cancel_backend``, a statement timeout)."""
    interrupts = _interrupt_types()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, interrupts):
            return True
        if type(current) is RuntimeError and str(current) == _DUCKDB_INTERRUPTED:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O failures, never an interrupted or cancelled query, a broken contract or a
    configuration: those need a person."""
    try:
        state.result()
    except BaseException as exc:  # KeyboardInterrupt too: it must not look like an I/O error
        if stop_requested() or is_interrupt(exc):
            return False
        permanent = (ContractError, ConfigError, FeatureMismatchError, LibraryVersionError)
        # LookupError: no model under that alias (RegistryError); ValueError: bad input or
        # configuration (LookaheadError, SplitError, ...).
        return not isinstance(exc, (*permanent, LookupError, ValueError))
    return True


class _Retries(TypedDict):
    """The retry options of every I/O task (``@task(..., **_IO_RETRIES)``)."""

    retries: int
    retry_delay_seconds: float
    retry_condition_fn: Callable[[Any, Any, Any], bool]


_IO_RETRIES: _Retries = {
    "retries": 2,
    "retry_delay_seconds": 5,
    "retry_condition_fn": _is_transient,
}


def _settings(config: str | None) -> Settings:
    return load_settings([Path(config)] if config else None)


@dataclass(frozen=True)
class SkippedTarget:
    """A target the train flow could not train or calibrate, and why."""

    target: str
    reason: str


def untrainable_reason(dataset: pd.DataFrame, target: str) -> str | None:
    """Why ``dataset`` (a :func:`models.dataset.training_frame`) cannot train ``target``, or
    None: no rows with a matured label, or a label with a single class."""
    label = target_spec(target).label
    if dataset.empty:
        return f"no rows with a matured {label!r} label"
    counts = dataset[label].astype(int).value_counts()
    if len(counts) < 2:
        only = int(counts.index[0])
        kind = "positive" if only == 0 else "negative"
        return f"no {kind} {label!r} labels in {len(dataset):,} rows (every label is {only})"
    return None


# --- tasks -----------------------------------------------------------------------------------


def _log_report(report: SourceReport) -> None:
    logger = get_run_logger()
    for line in report.lines():
        logger.info(line)


def _staged(
    wh: Warehouse,
    settings: Settings,
    reference_time: datetime,
    as_of_dates: list[datetime] | None = None,
) -> SourceReport:
    # as_of_dates: check and deduplicate only what their feature windows read (issue 16)
    report = stage_sources(wh, settings, reference_time=reference_time, as_of_dates=as_of_dates)
    _log_report(report)
    return report


@task(name="validate-and-build-features", cache_policy=NO_CACHE, **_IO_RETRIES)
def features_at(
    connect: WarehouseFactory,
    settings: Settings,
    reference_time: datetime,
    dates: list[datetime],
    feature_names: list[str],
) -> tuple[SourceReport, pd.DataFrame, pd.DataFrame]:
    """Validate and stage the sources, build the one feature frame of ``dates`` with the
    columns of models whose features are ``feature_names`` (their own event types), and count
    the rows per source and week up to ``reference_time`` (a broken source shows there)."""
    with connect() as wh:
        report = _staged(wh, settings, reference_time, dates)
        frame = build_model_features(
            wh,
            dates,
            feature_names=feature_names,
            available_tables=report.available,
            config=settings.features,
        )
        volumes = source_volumes(
            wh,
            available_tables=report.available,
            end=reference_time,
            weeks=settings.monitoring.volume_weeks,
        )
    get_run_logger().info(
        "built %d feature rows x %d columns for %d observation date(s)",
        len(frame),
        frame.shape[1],
        len(dates),
    )
    return report, frame, volumes


@task(name="validate-and-build-training-data", cache_policy=NO_CACHE, **_IO_RETRIES)
def training_data(
    connect: WarehouseFactory,
    settings: Settings,
    reference_time: datetime,
    grid: list[datetime],
    data_end: datetime,
    tracking: Tracking,
) -> tuple[SourceReport, pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Validate and stage the sources, then build features and labels on the grid, and what
    earlier churn champions realised on their matured weekly scores (None before any)."""
    with connect() as wh:
        report = _staged(wh, settings, reference_time, grid)
        features = build_features(
            wh, grid, available_tables=report.available, config=settings.features
        )
        labels = build_labels(
            wh,
            grid,
            config=settings.features.labels,
            data_end=data_end,
            active=settings.features.active,
        )
        realised = realised_by_champion(wh, settings, data_end.date(), tracking=tracking)
    logger = get_run_logger()
    logger.info(
        "built %d feature rows x %d columns for %d observation date(s)",
        len(features),
        features.shape[1],
        len(grid),
    )
    summary = censoring_summary(labels)
    logger.info("labels: %s", ", ".join(f"{k}={v}" for k, v in summary.items()))
    return report, features, labels, realised


@task(name="train-model", cache_policy=NO_CACHE)
def fit(
    dataset: pd.DataFrame,
    target: str,
    settings: Settings,
    health_available: bool,
    previous: ModelBundle | None,
) -> TrainResult | SkippedTarget:
    """Train one target; a target the data cannot train or calibrate is skipped with the
    reason (the others go on). Writes nothing (the report is its own task)."""
    model = settings.model
    logger = get_run_logger()
    reason = untrainable_reason(dataset, target)
    if reason is None:
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
        try:
            result = train_model(
                dataset,
                target=target,
                config=model,
                gap_days=settings.features.labels.maturity_days,
                health_available=health_available,
                previous=previous,
            )
        except ValueError as exc:  # calibration slice with one class, folds without rows, ...
            reason = str(exc)
        else:
            for line in _training_summary(result):
                logger.info("%s", line)
            return result
    logger.warning("%s skipped: %s", target, reason)
    return SkippedTarget(target, reason)


def _training_summary(result: TrainResult) -> list[str]:
    """What a data scientist wants from the log: time spent, and the latest fold per model."""
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in result.timings.items())
    lines = [f"{result.target}: {timings}"]
    latest = result.latest_fold()
    for name, row in latest.iterrows():
        lines.append(
            f"{result.target} latest fold, {name}: PR-AUC {row['pr_auc']:.3f}, "
            f"ROC-AUC {row['roc_auc']:.3f}, ARR in top 10% {row['arr_captured_top10']:.0%}, "
            f"{ece_label(BACKTEST_ECE_BINNING)} {row['ece']:.3f}"
        )
    lines += [f"{result.target}: adapted to the data: {r}" for r in result.reductions]
    if result.verdict is not None:
        lines.append(f"{result.target} against the baselines: {result.verdict.reason}")
    return lines


@task(name="write-evaluation-report", cache_policy=NO_CACHE)
def evaluation_report(
    result: TrainResult,
    settings: Settings,
    run_date: date,
    realised: pd.DataFrame | None = None,
) -> EvaluationReport:
    """Plots and the evaluation report of one training run, kept per training date
    (``<data_dir>/evaluation/<target>/<run_date>/``); ``realised``: what earlier champions
    realised, for the report's comparison."""
    directory = report_directory(settings.data_dir, result.target, run_date)
    report = write_report(result, directory, realised=realised)
    get_run_logger().info("%s evaluation report: %s", result.target, report.html)
    return report


@task(name="log-and-register", cache_policy=NO_CACHE, **_IO_RETRIES)
def register(
    result: TrainResult,
    tracking: Tracking,
    run_name: str,
    dataset_info: dict[str, Any],
    run_id: str | None = None,
    dataset: pd.DataFrame | None = None,
    report: EvaluationReport | None = None,
) -> RegisteredVersion:
    """Log the run (``run_id``: the one opened before training, so its duration covers it)
    with its evaluation report, register a version and apply the promotion gate."""
    registered = log_and_register(
        result,
        tracking=tracking,
        run_name=run_name,
        dataset_info=dataset_info,
        run_id=run_id,
        training_frame=dataset,
        report_dir=report.directory if report is not None else None,
    )
    get_run_logger().info("%s", registered.summary())
    return registered


@task(name="load-model", cache_policy=NO_CACHE, **_IO_RETRIES)
def load_model(tracking: Tracking, target: str, alias: str) -> LoadedModel | None:
    try:
        return load_bundle(tracking=tracking, target=target, alias=alias)
    except LookupError:
        if target == "churn":
            raise
        get_run_logger().warning("no %s model with alias %r: scoring without it", target, alias)
        return None


@task(name="score-and-explain", cache_policy=NO_CACHE)
def score(
    features: pd.DataFrame,
    churn: LoadedModel,
    expansion: LoadedModel | None,
    run_date: date,
    settings: Settings,
    contraction: LoadedModel | None = None,
) -> Scored:
    refs = {"churn": str(churn[1])}
    if expansion is not None:
        refs["expansion"] = str(expansion[1])
    if contraction is not None:
        refs["contraction"] = str(contraction[1])
    return score_accounts(
        features,
        churn=churn[0],
        expansion=expansion[0] if expansion else None,
        run_date=run_date,
        config=settings.serving,
        model_refs=refs,
        contraction=contraction[0] if contraction else None,
    )


@task(name="monitor", cache_policy=NO_CACHE)
def monitor(
    features: pd.DataFrame,
    scored: Scored,
    churn: LoadedModel,
    volumes: pd.DataFrame,
    settings: Settings,
    run_date: date,
) -> WeeklyMonitoring:
    """This week's checks, none of which rebuilds anything: feature and score drift against
    the training window stored with the champion, rows per source against earlier weeks, and
    the label-free performance estimate; logged and kept under ``<report_dir>/monitoring/``."""
    result = weekly_monitoring(
        features,
        scored.predictions,
        churn[0],
        volumes,
        thresholds=settings.monitoring,
        model=str(churn[1]),
        seed=settings.model.seed,
    )
    paths = write_monitoring(result, settings.report_dir / "monitoring", run_date)
    logger = get_run_logger()
    for line in result.warnings():
        logger.warning("%s", line)
    logger.info("monitoring: %s -> %s", result.summary(), paths["summary"].parent)
    return result


@task(name="write-back", cache_policy=NO_CACHE, **_IO_RETRIES)
def write_back(
    connect: WarehouseFactory,
    scored: Scored,
    settings: Settings,
    run_meta: dict[str, Any],
    started_at: datetime | None = None,
) -> dict[str, int]:
    """Write the run under its lease; ``started_at`` is when the flow run began."""
    with connect() as wh:
        if wh.dialect == "spark":  # Parquet tables, the week's partition replaced
            from serving.spark_scoring import write_scored

            counts = write_scored(
                wh,
                scored,
                schema=settings.warehouse.output_schema,
                tables=settings.serving.tables,
                run_meta=run_meta,
                started_at=started_at,
                serving=settings.serving,
            )
        else:
            counts = write_scores(
                wh,
                scored,
                schema=settings.warehouse.output_schema,
                run_meta=run_meta,
                config=settings.serving,
                started_at=started_at,
            )
    get_run_logger().info("wrote %s", ", ".join(f"{n} rows to {t}" for t, n in counts.items()))
    return counts


@task(name="risk-lists", cache_policy=NO_CACHE, **_IO_RETRIES)
def risk_lists(
    connect: WarehouseFactory,
    scored: Scored,
    run_date: date,
    settings: Settings,
    features: pd.DataFrame | None = None,
) -> RiskListPaths:
    with connect() as wh:
        previous = read_previous(
            wh,
            schema=settings.warehouse.output_schema,
            before=run_date,
            tables=settings.serving.tables,
        )
    changes = week_over_week(
        scored.predictions, previous, config=settings.serving, bands=settings.risk_list.risk_bands
    )
    out_dir = settings.risk_list_dir / run_date.isoformat()
    options = ListOptions(
        horizon_days=settings.features.labels.horizon_days,
        tiers=settings.serving.tiers,
        config=settings.risk_list,
    )
    return write_risk_lists(
        scored,
        changes,
        out_dir=out_dir,
        run_date=run_date,
        features=features,
        options=options,
        previous=previous,
    )


@task(name="holdout-and-expansion-signals", cache_policy=NO_CACHE, **_IO_RETRIES)
def list_signals(
    connect: WarehouseFactory,
    scored: Scored,
    features: pd.DataFrame,
    run_date: date,
    settings: Settings,
) -> Scored:
    """Expansion signals (seat overage, cross-sell) and the holdout draw on the predictions:
    columns ``seat_overage``, ``cross_sell_product``, ... and ``holdout`` (serving.holdout)."""
    with connect() as wh:
        products = staged_products_in_force(
            wh,
            settings.warehouse,
            as_of=as_of_for(run_date),
            reference_time=data_horizon(run_date),
        )
    predictions = add_expansion_signals(scored.predictions, features, products)
    serving = settings.serving
    predictions = assign_holdout(
        predictions, config=serving.holdout, flagged_tiers=serving.changes.list_tiers
    )
    held = int(predictions["holdout"].sum())
    get_run_logger().info("holdout: %d flagged account(s) kept off the list", held)
    return dataclasses.replace(scored, predictions=predictions)


def deliver_week(
    connect: WarehouseFactory,
    settings: Settings,
    run_date: date,
    paths: RiskListPaths | None = None,
) -> DeliveryReport:
    """Send ``run_date``'s digests (``serving.delivery``) from what its run wrote: the
    predictions in the warehouse and the list folder (``paths`` when just written)."""
    with connect() as wh:
        return deliver_run(
            wh,
            run_date=run_date,
            config=settings.delivery,
            schema=settings.warehouse.output_schema,
            tables=settings.serving.tables,
            serving=settings.serving,
            list_dir=settings.risk_list_dir / run_date.isoformat(),
            paths=paths,
            source_schema=settings.warehouse.source_schema,
        )


@task(name="deliver-digests", cache_policy=NO_CACHE)
def deliver(
    connect: WarehouseFactory, settings: Settings, run_date: date, paths: RiskListPaths | None
) -> str:
    """After the write-back committed: e-mail and webhook digests (retried inside, with
    back-off). A failure is logged and counted in the summary, never raised: the run stands."""
    if not settings.delivery.enabled:
        return "off"
    logger = get_run_logger()
    try:
        report = deliver_week(connect, settings, run_date, paths)
    except Exception as exc:
        if stop_requested() or is_interrupt(exc):
            raise
        logger.warning("delivery failed: %s", exc)
        return f"failed: {exc}"
    for what, why in report.failed:
        logger.warning("delivery: %s failed: %s", what, why)
    for what, why in report.skipped:
        logger.warning("delivery: %s skipped: %s", what, why)
    logger.info("delivery: %s", report.summary())
    return report.summary()


# --- flows -----------------------------------------------------------------------------------


@flow(name="train", log_prints=True)
def train(run_date: date, config: str | None = None) -> dict[str, Any]:
    """Build the observation grid up to ``run_date``, train each configured target on it, log
    the models to MLflow and register them (``challenger``; ``champion`` when the gate passes).

    A target the data cannot train or calibrate is skipped and listed with its reason under
    ``skipped``; the run fails only when no target could be trained."""
    settings = _settings(config)
    tracking = tracking_store(settings)
    obs = settings.features.observation
    grid = observation_dates(
        run_date - timedelta(days=obs.history_days),
        run_date,
        frequency=obs.frequency,
        weekday=obs.weekday,
    )
    connect = warehouse_factory(settings)
    report, features, labels, realised = training_data(
        connect, settings, data_horizon(run_date), grid, end_of(run_date), tracking
    )
    health = "health_scores" in report.available
    registered: dict[str, RegisteredVersion] = {}
    skipped: dict[str, str] = {}
    for target in settings.model.targets:
        previous = _champion_or_none(tracking, target)
        dataset = training_frame(features, labels, target=target)
        earlier = realised if target == "churn" else None
        run_name = f"{target}-{run_date}"
        # the MLflow run opens before training, so its duration covers the training itself
        run_id = open_training_run(tracking, name=run_name)
        try:
            result = fit(dataset, target, settings, health, previous[0] if previous else None)
        except BaseException as exc:
            close_training_run(tracking, run_id, status="FAILED", note=f"training failed: {exc}")
            raise
        if isinstance(result, SkippedTarget):
            close_training_run(tracking, run_id, status="KILLED", note=f"skipped: {result.reason}")
            skipped[target] = result.reason
            continue
        # What the look-ahead guard compares run dates with: the model saw data up to here.
        result.bundle.params["data_end"] = run_date.isoformat()
        # What weekly drift is measured against: the training window's bins, in the bundle.
        reference = reference_for_bundle(result.bundle, dataset, bins=settings.monitoring.bins)
        result.bundle.drift_reference = reference.to_state()
        info = {
            "run_date": run_date.isoformat(),
            "as_of_first": min(grid).isoformat(),
            "as_of_last": max(grid).isoformat(),
            "rows": len(dataset),
            "sources": report.available,
        }
        evaluation = evaluation_report(result, settings, run_date, earlier)
        registered[target] = register(result, tracking, run_name, info, run_id, dataset, evaluation)
    if not registered:
        raise NothingTrainedError(run_date, skipped)
    return {
        "run_date": run_date.isoformat(),
        "registered": {k: v.summary() for k, v in registered.items()},
        "skipped": skipped,
    }


class NothingTrainedError(ValueError):
    """Every configured target was skipped; the message gives each reason."""

    def __init__(self, run_date: date, skipped: dict[str, str]) -> None:
        reasons = "; ".join(f"{target}: {reason}" for target, reason in skipped.items())
        super().__init__(f"no model trained for run date {run_date.isoformat()}: {reasons}")


def _champion_or_none(tracking: Tracking, target: str) -> LoadedModel | None:
    try:
        return load_bundle(tracking=tracking, target=target, alias="champion")
    except LookupError:
        return None


@flow(name="weekly-score", log_prints=True)
def weekly_score(
    run_date: date | None = None, config: str | None = None, allow_lookahead: bool = False
) -> dict[str, Any]:
    """Score every account active at ``run_date`` with the champion models, explain each score,
    write predictions back in one transaction (replacing that run date) and write risk lists.

    A scheduled run passes no date and scores the day it runs (UTC). A champion trained on data
    after ``run_date`` is refused (look-ahead) unless ``allow_lookahead``."""
    started_at = datetime.now(UTC)
    run_date = run_date or started_at.date()
    settings = _settings(config)
    tracking = tracking_store(settings)
    churn = load_model(tracking, "churn", "champion")
    assert churn is not None  # load_model raises for a missing churn champion
    expansion = load_model(tracking, "expansion", "champion")
    contraction = _champion_or_none(tracking, "contraction")  # optional: GRR forecast input
    for loaded in (churn, expansion, contraction):
        if loaded is not None:
            check_lookahead(loaded[0], run_date, allow=allow_lookahead)
    connect = warehouse_factory(settings)
    models = (churn, expansion, contraction)
    names = sorted({n for m in models if m is not None for n in m[0].feature_names})
    report, features, volumes = features_at(
        connect, settings, data_horizon(run_date), [as_of_for(run_date)], names
    )
    scored = score(features, churn, expansion, run_date, settings, contraction)
    scored = list_signals(connect, scored, features, run_date, settings)
    checks = monitor(features, scored, churn, volumes, settings, run_date)
    meta = {"sources": report.available, "skipped": report.skipped, **checks.run_record()}
    counts = write_back(connect, scored, settings, meta, started_at)
    paths = risk_lists(connect, scored, run_date, settings, features)
    delivered = deliver(connect, settings, run_date, paths)
    return {
        "run_date": run_date.isoformat(),
        "accounts": len(scored.predictions),
        "written": counts,
        "drift_alerts": checks.drift.alerts,
        "volume_alerts": checks.volume_alerts,
        "monitoring": checks.summary(),
        "risk_lists": str(paths),
        "delivery": delivered,
    }


@flow(name="backfill", log_prints=True)
def backfill(
    start: date,
    end: date,
    config: str | None = None,
    every_days: int = 7,
    allow_lookahead: bool = False,
) -> list[dict]:
    """Score a range of past run dates (oldest first), e.g. to backtest or seed the forecast.
    The oldest date is scored first, so a look-ahead refusal comes before anything is written."""
    results = []
    day = start
    while day <= end:
        results.append(weekly_score(day, config, allow_lookahead))
        day += timedelta(days=every_days)
    return results
