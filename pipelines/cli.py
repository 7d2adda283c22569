"""The ``churnlens`` command line. Every subcommand calls the same library functions (or the
same Prefect flows) as the scheduled job; run ``churnlens COMMAND --help`` for details."""

from __future__ import annotations

import os
import signal
import sys
import time as _time
from contextlib import AbstractContextManager, nullcontext
from datetime import date
from pathlib import Path
from typing import Annotated, SupportsFloat

import typer
from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Table

from pipelines.runtime import (
    NORMAL,
    QUIET,
    VERBOSE,
    shadowing_message,
    shadowing_packages,
    tracking_store,
)

# Before the imports below pick them up: a `models/` package (or models.py) in the working
# directory, on sys.path with `python -m` or PYTHONPATH=., would stand in for churnlens's own.
if _shadowed := shadowing_packages():
    sys.stderr.write(shadowing_message(_shadowed) + "\n")
    raise SystemExit(2)

from pipelines.config import (
    ConfigError,
    Settings,
    load_settings,
    open_warehouse,
    stage_sources,
)

app = typer.Typer(
    name="churnlens",
    help="Churn and expansion prediction for customer-success teams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
models_app = typer.Typer(help="Inspect and manage registered models (MLflow aliases).")
app.add_typer(models_app, name="models")

console = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (default: $CHURNLENS_CONFIG, else configs/default.yaml).",
        exists=True,
        dir_okay=False,
    ),
]
RunDate = Annotated[
    str | None,
    typer.Option("--run-date", help="Run date YYYY-MM-DD (default: today, UTC)."),
]
AllowLookahead = Annotated[
    bool,
    typer.Option(
        "--allow-lookahead",
        help="Score with a champion trained on data after the run date (its scores then see "
        "the future); refused by default.",
    ),
]


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("churnlens")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        console.print(f"churnlens {_package_version()}", highlight=False)
        raise typer.Exit()


_QUIET = {"on": False}


def _status(text: str) -> AbstractContextManager[object]:
    """A progress spinner, except with --quiet."""
    return nullcontext() if _QUIET["on"] else console.status(text)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Log errors only, no progress spinners; results still print."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show the full log: Prefect's per-task lines, rows checked per table, timings.",
        ),
    ] = False,
) -> None:
    """Churn and expansion prediction for customer-success teams."""
    from pipelines.runtime import quiet_prefect_defaults, set_verbosity

    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose contradict each other: give one")
    _QUIET["on"] = quiet
    set_verbosity(QUIET if quiet else VERBOSE if verbose else NORMAL)
    quiet_prefect_defaults()


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings([config] if config else None, overrides=overrides or None)
    except ConfigError as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(2) from None


def _date(value: str | None, *, default: date | None = None) -> date:
    if value is None:
        return default or date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from None


def _outputs_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # paths wrap onto the next line, never cut with "…"
    for name, value in rows:
        table.add_row(name, value)
    return table


# --- data -------------------------------------------------------------------------------------


@app.command("demo-data")
def demo_data(
    config: ConfigOption = None,
    accounts: Annotated[int | None, typer.Option(help="Number of accounts.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    end: Annotated[str | None, typer.Option(help="Last day of history (default: today).")] = None,
    years: Annotated[float | None, typer.Option(help="Years of history.")] = None,
) -> None:
    """Generate the demo warehouse (all contract tables, plus ground truth kept apart)."""
    from pipelines.demo.data import generate_demo, write_demo

    settings = _settings(config)
    demo = settings.demo
    end_date = _date(end, default=demo.end)
    started = _time.perf_counter()
    with _status("generating demo data"):
        data = generate_demo(
            n_accounts=accounts or demo.n_accounts,
            seed=demo.seed if seed is None else seed,
            end=end_date,
            years=years or demo.years,
        )
    with _status("writing demo warehouse"), open_warehouse(settings, create=True) as wh:
        counts = write_demo(
            wh, data, schema=settings.warehouse.source_schema, truth_schema=demo.truth_schema
        )
    rows = [(table, f"{n:,} rows") for table, n in counts.items()]
    console.print(_outputs_table(f"Demo warehouse {_where(settings)}", rows))
    console.print(f"history {data.start} .. {data.end}, {_time.perf_counter() - started:.1f} s")


@app.command("export-parquet")
def export_parquet(
    config: ConfigOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for <table>.parquet (default: warehouse.spark.parquet_dir)."),
    ] = None,
) -> None:
    """Copy the DuckDB warehouse (warehouse.duckdb_path) to Parquet files for Spark."""
    from features.spark import export_parquet as export

    settings = _settings(config)
    folder = out or settings.warehouse.spark.parquet_dir or Path("parquet")
    folder = folder if folder.is_absolute() else settings.data_dir / folder
    with console.status("writing Parquet"):
        counts = export(settings.duckdb_path, folder, schema=settings.warehouse.source_schema)
    rows = [(table, f"{n:,} rows") for table, n in counts.items()]
    console.print(_outputs_table(f"Parquet copy of {settings.duckdb_path} in {folder}", rows))


def _where(settings: Settings) -> str:
    if settings.warehouse.kind == "duckdb":
        return str(settings.duckdb_path)
    return f"PostgreSQL (${settings.warehouse.dsn_env})"


@app.command()
def validate(config: ConfigOption = None, run_date: RunDate = None) -> None:
    """Check the warehouse against the input contract and report what is usable."""
    from features.validation import ContractError
    from pipelines.dates import data_horizon

    settings = _settings(config)
    with open_warehouse(settings) as wh:
        try:
            report = stage_sources(wh, settings, reference_time=data_horizon(_date(run_date)))
        except ContractError as exc:
            console.print(str(exc), style="red", markup=False, highlight=False)
            raise typer.Exit(1) from None
    for line in report.lines():
        console.print(line)


@app.command()
def features(
    config: ConfigOption = None,
    run_date: RunDate = None,
    out: Annotated[
        Path, typer.Option(help="Where to write the features (.parquet or .csv).")
    ] = Path("features.parquet"),
    print_sql: Annotated[
        str | None,
        typer.Option(
            "--print-sql",
            metavar="AS_OF,...",
            help="Print the usage SQL a build of these as_of dates (YYYY-MM-DD, comma-separated) "
            "runs, with its parameters, and exit without opening the warehouse.",
        ),
    ] = None,
    event_types: Annotated[
        str | None,
        typer.Option(
            help="With --print-sql: the event types (comma-separated) of per-type columns."
        ),
    ] = None,
) -> None:
    """Build the point-in-time feature table for one run date and write it to a file."""
    from features.build import build_features
    from pipelines.dates import as_of_for, data_horizon

    if print_sql is not None:
        from features.usage import render_usage_sql

        dates = sorted({as_of_for(_date(d.strip())) for d in print_sql.split(",") if d.strip()})
        types = [t.strip() for t in (event_types or "").split(",") if t.strip()]
        typer.echo(render_usage_sql(dates, types), nl=False)
        return
    settings = _settings(config)
    day = _date(run_date)
    with open_warehouse(settings) as wh:
        report = stage_sources(wh, settings, reference_time=data_horizon(day))
        frame = build_features(
            wh, [as_of_for(day)], available_tables=report.available, config=settings.features
        )
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    console.print(f"{len(frame):,} accounts x {frame.shape[1]} columns -> {out}")


# --- flows ------------------------------------------------------------------------------------


@app.command()
def train(config: ConfigOption = None, run_date: RunDate = None) -> None:
    """Train churn and expansion models up to the run date, log and register them in MLflow."""
    from pipelines.flows import train as train_flow
    from pipelines.runtime import prefect_session

    day = _date(run_date)
    with prefect_session():
        result = train_flow(day, str(config) if config else None)
    _print_train(result)


def _print_train(result: dict) -> None:
    rows = [(target, text) for target, text in result["registered"].items()]
    rows += [(target, f"skipped: {why}") for target, why in result.get("skipped", {}).items()]
    console.print(_outputs_table(f"Models trained for {result['run_date']}", rows))


@app.command()
def score(
    config: ConfigOption = None, run_date: RunDate = None, allow_lookahead: AllowLookahead = False
) -> None:
    """The weekly job: score active accounts, explain, write back, write risk lists."""
    from pipelines.flows import weekly_score
    from pipelines.runtime import prefect_session

    day = _date(run_date)
    with prefect_session():
        result = weekly_score(day, str(config) if config else None, allow_lookahead)
    _print_score(result)


def _print_score(result: dict) -> None:
    rows = [
        ("accounts scored", f"{result['accounts']:,}"),
        *((f"rows in {t}", f"{n:,}") for t, n in result["written"].items()),
        ("drift alerts", str(result["drift_alerts"])),
        ("risk lists", result["risk_lists"]),
        *((("delivery", result["delivery"]),) if "delivery" in result else ()),
    ]
    console.print(_outputs_table(f"Weekly scoring {result['run_date']}", rows))


@app.command()
def deliver(config: ConfigOption = None, run_date: RunDate = None) -> None:
    """Send a run date's digests again (e-mail per CSM, webhook), as configured under
    ``delivery``, from the predictions and lists that run wrote. Exits 1 if any failed."""
    from pipelines.flows import deliver_week, warehouse_factory
    from serving.delivery import DeliveryError

    settings = _settings(config)
    if not settings.delivery.enabled:
        console.print(
            "delivery is off: set delivery.email.enabled and/or delivery.webhook.enabled",
            style="red",
        )
        raise typer.Exit(2)
    day = _date(run_date)
    try:
        with _status(f"delivering the digests of {day}"):
            report = deliver_week(warehouse_factory(settings), settings, day)
    except (DeliveryError, ValueError) as exc:
        console.print(f"{type(exc).__name__}: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    for line in report.lines():
        console.print(line, markup=False, highlight=False)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First run date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last run date, YYYY-MM-DD.")],
    config: ConfigOption = None,
    every_days: Annotated[int, typer.Option(help="Days between run dates.")] = 7,
    allow_lookahead: AllowLookahead = False,
) -> None:
    """Score a range of past run dates (each replaces its own rows)."""
    from pipelines.flows import backfill as backfill_flow
    from pipelines.runtime import prefect_session

    with prefect_session():
        results = backfill_flow(
            _date(start), _date(end), str(config) if config else None, every_days, allow_lookahead
        )
    for result in results:
        _print_score(result)


@app.command()
def serve(
    config: ConfigOption = None,
    cron: Annotated[str, typer.Option(help="Cron schedule (UTC).")] = "0 6 * * 1",
) -> None:
    """Serve ``weekly_score`` on a schedule; needs a running Prefect server (PREFECT_API_URL).

    Runs until stopped: Ctrl-C or SIGTERM stops it within a few seconds (exit 130)."""
    import os

    from pipelines.flows import weekly_score

    if not os.environ.get("PREFECT_API_URL"):
        console.print(
            "[red]schedules need a Prefect server: run `prefect server start` and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api[/red]"
        )
        raise typer.Exit(2)
    try:
        weekly_score.serve(
            name="churnlens-weekly",
            cron=cron,
            parameters={"config": str(config) if config else None},
        )
    except SystemExit as exc:  # Prefect's runner answers SIGTERM with exit(0)
        if exc.code not in (0, None):
            raise
    # serve returns only when a signal stopped it (Prefect swallows the KeyboardInterrupt)
    raise KeyboardInterrupt


@app.command()
def predict(
    rows: Annotated[
        Path, typer.Option(help="(account_id, as_of) rows to score (.parquet or .csv).")
    ],
    out: Annotated[Path, typer.Option(help="Scores file to write (.parquet or .csv).")] = Path(
        "scores.parquet"
    ),
    config: ConfigOption = None,
    target: Annotated[str, typer.Option(help="Which model: churn, expansion, ...")] = "churn",
    model_version: Annotated[
        int | None, typer.Option(help="Registered version to score with (default: the alias).")
    ] = None,
    alias: Annotated[str, typer.Option(help="Alias to score with.")] = "champion",
    allow_lookahead: Annotated[
        bool,
        typer.Option(
            "--allow-lookahead",
            help="Score as_of dates before the end of the model's training data anyway.",
        ),
    ] = False,
) -> None:
    """Score given (account_id, as_of) rows with one model version, through the training
    feature path (one batched build); rows not active at their as_of get a status, no score."""
    from features.validation import ContractError
    from models.registry import load_bundle
    from pipelines.dates import data_horizon
    from serving.lookahead import LookaheadError
    from serving.predict import (
        RowsFileError,
        predict_rows,
        read_rows,
        status_counts,
        write_scores,
    )

    settings = _settings(config)
    try:
        wanted = read_rows(rows)
        bundle, ref = load_bundle(
            tracking=tracking_store(settings), target=target, alias=alias, version=model_version
        )
        last = wanted["as_of"].max().date()
        with open_warehouse(settings) as wh:
            report = stage_sources(wh, settings, reference_time=data_horizon(last))
            with _status(f"scoring {len(wanted):,} rows with {ref}"):
                scores = predict_rows(
                    wh,
                    wanted,
                    [(bundle, str(ref))],
                    available_tables=report.available,
                    allow_lookahead=allow_lookahead,
                    config=settings.features,
                )
    except (RowsFileError, LookaheadError, ContractError) as exc:
        console.print(f"{type(exc).__name__}: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    write_scores(scores, out)
    counts = ", ".join(f"{n:,} {status}" for status, n in status_counts(scores).items())
    dates = wanted["as_of"].nunique()
    console.print(f"{len(scores):,} rows ({counts}) at {dates:,} as_of date(s) with {ref} -> {out}")


# --- demo -------------------------------------------------------------------------------------


@app.command()
def demo(
    config: ConfigOption = None,
    accounts: Annotated[int | None, typer.Option(help="Number of demo accounts.")] = None,
    end: Annotated[str | None, typer.Option(help="Demo run date (default: today).")] = None,
    history: Annotated[
        bool,
        typer.Option(
            help="Also replay last year (train a year ago, score monthly since) so the report "
            "has matured outcomes for the forecast backtest and realised performance."
        ),
    ] = True,
) -> None:
    """The whole weekly path on demo data: generate, train, score, write back, report.

    With --history (the default) the demo first lives through last year: it trains a model as
    of a year ago and scores the following months with it, so that by today those scores have
    matured outcomes, and scores last week with that year's champion. Then it retrains today
    (the promotion gate decides whether the new version becomes champion) and scores this week.
    """
    from datetime import timedelta

    from pipelines.flows import backfill as backfill_flow
    from pipelines.flows import train as train_flow
    from pipelines.flows import weekly_score
    from pipelines.runtime import prefect_session

    started = _time.perf_counter()
    settings = _settings(config)
    run_date = _date(end, default=settings.demo.end)
    demo_data(config=config, accounts=accounts, seed=None, end=run_date.isoformat(), years=None)
    cfg = str(config) if config else None
    labels = settings.features.labels
    matured_by = run_date - timedelta(days=labels.maturity_days)
    with prefect_session():
        if history:
            year_ago = run_date - timedelta(weeks=52)
            console.rule(f"Last year: train as of {year_ago}, score every 4 weeks to {matured_by}")
            _print_train(train_flow(year_ago, cfg))
            for result in backfill_flow(year_ago, matured_by, cfg, every_days=28):
                console.print(
                    f"scored {result['run_date']}: {result['accounts']:,} accounts", style="dim"
                )
            # Last week's job ran with last week's champion: a model trained today has seen
            # data after last week (the look-ahead guard would refuse it).
            weekly_score(run_date - timedelta(days=7), cfg)
        console.rule(f"This week: train as of {run_date}, score {run_date}")
        _print_train(train_flow(run_date, cfg))
        result = weekly_score(run_date, cfg)
    _print_score(result)
    report_path = _report(settings, run_date)
    console.print(
        _outputs_table(
            "Where everything went",
            [
                ("warehouse", f"{_where(settings)} (schema {settings.warehouse.output_schema})"),
                ("MLflow", f"{settings.data_dir / 'mlflow.db'}; UI: make mlflow-ui"),
                ("evaluation", str(settings.data_dir / "evaluation")),
                ("risk lists", result["risk_lists"]),
                ("report", str(report_path)),
            ],
        )
    )
    console.print(f"demo finished in {_time.perf_counter() - started:.0f} s")


# --- models -----------------------------------------------------------------------------------


@models_app.command("list")
def models_list(config: ConfigOption = None) -> None:
    """Registered model versions with their aliases and headline metrics."""
    from models.registry import list_versions

    settings = _settings(config)
    frame = list_versions(tracking=tracking_store(settings))
    prefix = settings.tracking.model_name_prefix + "-"
    frame["model"] = frame["model"].str.removeprefix(prefix)
    title = f"Registered models ({prefix}<target>)"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column, header in _VERSION_COLUMNS.items():
        justify: JustifyMethod = "right" if column in ("version", *_METRICS) else "left"
        table.add_column(header, justify=justify, no_wrap=True, min_width=len(header))
    records = frame.to_dict("records")
    for row in records:
        table.add_row(*(_cell(column, row.get(column)) for column in _VERSION_COLUMNS))
    table.caption = "latest backtest fold; ARR@10%: share of the target's ARR in the top 10%"
    console.print(table)
    console.print("Promotion gate (latest backtest fold):", style="bold")
    for row in records:
        console.print(f"  {prefix}{row['model']} v{row['version']}: {row.get('gate') or '-'}")
    console.print("Browse runs, metrics and plots with `make mlflow-ui`.", style="dim")


_METRICS = ("latest_pr_auc", "latest_arr_captured_top10", "latest_ece")
_VERSION_COLUMNS = {
    "model": "target",
    "version": "v",
    "aliases": "aliases",
    "created": "created",
    "latest_pr_auc": "PR-AUC",
    "latest_arr_captured_top10": "ARR@10%",
    "latest_ece": "ECE (equal-count bins)",  # models.metrics.BACKTEST_ECE_BINNING
}


def _cell(column: str, value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if column in _METRICS and isinstance(value, SupportsFloat):
        return f"{float(value):.3f}"
    if column == "created":
        return str(value)[:10]
    return str(value)


@models_app.command()
def promote(
    target: Annotated[str, typer.Argument(help="churn or expansion")],
    version: Annotated[int, typer.Argument(help="Model version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why, recorded with the promotion.")] = "manual",
    config: ConfigOption = None,
) -> None:
    """Make a version the champion (recorded with the reason)."""
    from models.registry import promote as promote_version

    settings = _settings(config)
    tracking = tracking_store(settings)
    console.print(promote_version(tracking=tracking, target=target, version=version, reason=reason))


@models_app.command()
def rollback(
    target: Annotated[str, typer.Argument(help="churn or expansion")],
    reason: Annotated[str, typer.Option(help="Why, recorded with the rollback.")] = "manual",
    config: ConfigOption = None,
) -> None:
    """Give the champion alias back to the previous champion (recorded with the reason)."""
    from models.registry import rollback as rollback_version

    settings = _settings(config)
    console.print(rollback_version(tracking=tracking_store(settings), target=target, reason=reason))


# --- report -----------------------------------------------------------------------------------


@app.command()
def report(config: ConfigOption = None, run_date: RunDate = None) -> None:
    """Retention, forecast and monitoring report (HTML) from the warehouse and past scores."""
    settings = _settings(config)
    path = _report(settings, _date(run_date))
    console.print(f"report -> {path}")


def _report(settings: Settings, run_date: date) -> Path:
    from pipelines.report.gather import build_run_report

    with _status("building the retention and monitoring report"):
        return build_run_report(settings, run_date)


def _user_error(exc: BaseException) -> bool:
    """Errors whose message says what to fix: printed alone, without a traceback."""
    from features.build import NoActiveAccountsError
    from features.validation import ContractError
    from features.warehouse import WarehouseError
    from models.backtest import SplitError
    from models.bundle import FeatureMismatchError, LibraryVersionError
    from models.registry import RegistryError
    from pipelines.demo.data import DemoTargetError
    from pipelines.flows import NothingTrainedError
    from serving.lookahead import LookaheadError

    known = (
        ConfigError,
        DemoTargetError,
        NoActiveAccountsError,
        LookaheadError,
        NothingTrainedError,
        ContractError,
        WarehouseError,
        SplitError,
        FeatureMismatchError,
        LibraryVersionError,
        RegistryError,
    )
    return isinstance(exc, known)


INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT


def _raise_interrupt(signum: int, frame: object) -> None:
    from pipelines.runtime import request_stop

    request_stop()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    """Console entry point: a known user error exits 1 with its message, anything else keeps
    its traceback (that is a bug to report). Ctrl-C and SIGTERM stop the command the same way
    (transactions roll back, nothing is retried): one line ``interrupted``, exit 130."""
    # What churnlens writes (warehouse file, MLflow store, risk lists, reports) holds customer
    # data: readable by its owner only, whatever umask the scheduler or shell left.
    os.umask(0o077)
    # SIGINT too: a shell that starts a command in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        app()
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as exc:
        # Typer turns a KeyboardInterrupt raised inside a command into exit code 130.
        if exc.code == INTERRUPTED:
            _interrupted()
        raise
    except Exception as exc:
        if _was_interrupted(exc):
            _interrupted()
        if not _user_error(exc):
            raise
        console.print(f"{type(exc).__name__}: {exc}", style="red", markup=False, highlight=False)
        raise SystemExit(1) from None


def _was_interrupted(exc: BaseException) -> bool:
    """A failure caused by a stop request: DuckDB, for one, reports an interrupted query as a
    plain ``RuntimeError`` and drops the KeyboardInterrupt."""
    from pipelines.flows import is_interrupt
    from pipelines.runtime import stop_requested

    return stop_requested() or is_interrupt(exc)


def _interrupted() -> None:
    console.print("interrupted", style="red", highlight=False)
    raise SystemExit(INTERRUPTED) from None
