"""The root configuration: ``configs/*.yaml`` loaded once into strict pydantic models.

Each stage owns its own section model (``features.config``, ``models.config``,
``serving.config``, ``models.monitoring``); this module only composes them, merges YAML files
and turns validation errors into messages that name the file and the key.
Credentials never live here: the warehouse DSN is read from the environment variable named by
``warehouse.dsn_env`` when the warehouse is opened.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.config import FeatureConfig, WarehouseConfig
from features.retention import RetentionConfig
from features.sources import SourceMappingError, locate_sources
from features.validation import SourceReport, feature_reads_after, prepare_sources
from features.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse, validate_ident
from models.config import ModelConfig, TrackingConfig
from models.monitoring import MonitoringConfig
from serving.config import ServingConfig
from serving.delivery import DeliveryConfig
from serving.playbook import RiskListConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PACKAGED_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
# One file: configs/default.yaml in a clone; the wheel ships that same file inside the package
# (pyproject: hatch force-include), so an installed churnlens finds it without a clone around it.
DEFAULT_CONFIG = (
    _PACKAGED_CONFIG if _PACKAGED_CONFIG.is_file() else PROJECT_ROOT / "configs" / "default.yaml"
)
CONFIG_ENV = "CHURNLENS_CONFIG"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class DemoConfig(BaseModel):
    """Size and randomness of the generated demo warehouse."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_accounts: int = Field(1500, gt=0)
    seed: int = 7
    years: float = Field(3.0, gt=0.5)
    end: date | None = Field(None, description="last day of demo history; default: last Monday")
    truth_schema: str = Field(
        "demo_truth",
        description="where demo-data keeps the generator's ground truth; on a shared warehouse "
        "give each demo its own",
    )

    @field_validator("truth_schema")
    @classmethod
    def _truth_ident(cls, value: str) -> str:
        return validate_ident(value, what="demo.truth_schema")


class Settings(BaseModel):
    """Everything a run needs. Relative paths are resolved against ``data_dir``, and a relative
    ``data_dir`` against the directory the command runs in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Path("data")
    warehouse: WarehouseConfig = WarehouseConfig()
    features: FeatureConfig = FeatureConfig()
    model: ModelConfig = ModelConfig()
    tracking: TrackingConfig = TrackingConfig()
    serving: ServingConfig = ServingConfig()
    risk_list: RiskListConfig = RiskListConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retention: RetentionConfig = RetentionConfig()
    demo: DemoConfig = DemoConfig()
    delivery: DeliveryConfig = DeliveryConfig()

    @property
    def duckdb_path(self) -> Path:
        path = self.warehouse.duckdb_path
        return path if path.is_absolute() else self.data_dir / path

    @property
    def risk_list_dir(self) -> Path:
        return self.data_dir / "risk_lists"

    @property
    def report_dir(self) -> Path:
        return self.data_dir / "reports"


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded


EXTENDS_KEY = "extends"


def _read_layered(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file merged over the file its top-level ``extends:`` names (itself layered):
    ``default`` is the packaged default config (found in a clone and in an installed wheel),
    anything else a path relative to the extending file. The file's own keys win."""
    path = Path(path).resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"{path}: '{EXTENDS_KEY}' loops back to itself ({chain})")
    raw = _read_yaml(path)
    parent = raw.pop(EXTENDS_KEY, None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"{path}: '{EXTENDS_KEY}' must name a config file or 'default'")
    base = DEFAULT_CONFIG if parent == "default" else path.parent / Path(parent).expanduser()
    return _deep_merge(_read_layered(base, (*seen, path)), raw)


def _describe(error: ValidationError, sources: str) -> str:
    lines = [f"invalid configuration ({sources}):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}': remove it or check its spelling")
        else:
            lines.append(f"  - {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def load_settings(
    paths: Sequence[Path] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Load and merge YAML files (later files win; each over the file its ``extends:`` names),
    apply ``overrides``, validate strictly.

    Without ``paths`` the file named by ``$CHURNLENS_CONFIG`` is used, else
    ``configs/default.yaml``.
    """
    if not paths:
        paths = [Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)]
    raw: dict[str, Any] = {}
    for path in paths:
        raw = _deep_merge(raw, _read_layered(Path(path)))
    raw = _deep_merge(raw, overrides or {})
    sources = ", ".join(str(p) for p in paths)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None
    _check_source_mapping(settings.warehouse, sources)
    data_dir = settings.data_dir
    if not data_dir.is_absolute():
        data_dir = (cwd or Path.cwd()) / data_dir
    return settings.model_copy(update={"data_dir": data_dir.resolve()})


def _check_source_mapping(config: WarehouseConfig, sources: str) -> None:
    """``warehouse.tables`` names only contract tables and columns, and Parquet only on DuckDB:
    checked at load, so a typo is a message naming the key rather than a failure mid-run."""
    try:
        locate_sources(config)
    except SourceMappingError as exc:
        raise ConfigError(f"invalid configuration ({sources}): {exc}") from None
    if config.kind != "duckdb":
        parquet = sorted(name for name, table in config.tables.items() if table.parquet)
        if parquet:
            raise ConfigError(
                f"invalid configuration ({sources}): warehouse.tables.{parquet[0]}.parquet: "
                "Parquet sources need the DuckDB warehouse (warehouse.kind: duckdb)"
            )


def _spill_folder(settings: Settings) -> Path | None:
    """``warehouse.duckdb_temp_directory``, relative to ``data_dir`` like ``duckdb_path``."""
    folder = settings.warehouse.duckdb_temp_directory
    return folder if folder is None or folder.is_absolute() else settings.data_dir / folder


def open_warehouse(settings: Settings, *, create: bool = False) -> Warehouse:
    """Connect to the configured warehouse; PostgreSQL credentials come from the environment.

    A DuckDB file that does not exist is an error naming the path, unless ``create`` (only the
    commands that write a new warehouse, such as ``demo-data``, pass it): a mistyped path must
    not silently become an empty warehouse. A DuckDB file held by another process (another
    churnlens job) is waited for up to ``serving.lock_timeout_seconds``.
    """
    config = settings.warehouse
    if config.kind == "duckdb":
        return DuckDBWarehouse(
            settings.duckdb_path,
            create=create,
            lock_wait_seconds=settings.serving.lock_timeout_seconds,
            memory_limit=config.duckdb_memory_limit,
            temp_directory=_spill_folder(settings),
        )
    if config.kind == "spark":
        return _open_spark(settings)
    dsn = os.environ.get(config.dsn_env)
    if not dsn:
        raise ConfigError(
            f"warehouse.kind is postgres but the environment variable {config.dsn_env} is not set; "
            "export it as a libpq connection string, e.g. postgresql://user@host:5432/db"
        )
    return PostgresWarehouse(dsn)


def _open_spark(settings: Settings) -> Warehouse:
    """``warehouse.kind: spark``: the shared SparkSession of ``warehouse.spark`` (features/spark.py)
    with its mapped Parquet sources as tables and its outputs attached."""
    from features.spark import SparkWarehouse, parquet_sources, spark_session

    spark = settings.warehouse.spark
    session = spark_session(spark, warehouse_dir=settings.data_dir / "spark-warehouse")
    wh = SparkWarehouse(
        session,
        catalog=spark.catalog,
        database=spark.database,
        parquet=parquet_sources(settings.warehouse, data_dir=settings.data_dir),
        output_dir=_under_data_dir(settings, spark.output_dir),
    )
    wh.attach_outputs(settings.warehouse.output_schema, _output_tables(settings))
    return wh


def _under_data_dir(settings: Settings, path: Path) -> Path:
    return path if path.is_absolute() else settings.data_dir / path


def _output_tables(settings: Settings) -> list[str]:
    from features.validation import SOURCE_CHECKS_TABLE

    tables = settings.serving.tables
    return [tables.predictions, tables.reasons, tables.runs, tables.holdouts, SOURCE_CHECKS_TABLE]


def stage_sources(
    wh: Warehouse,
    settings: Settings,
    *,
    reference_time: datetime,
    as_of_dates: Sequence[datetime] | None = None,
) -> SourceReport:
    """Validate the configured sources and create their staging views, as every command and
    flow needs them: rows after ``reference_time`` excluded, and accounts without a contract
    kept only when the active rule is not ``contract`` (features.validation.prepare_sources).
    With the ``as_of_dates`` the run builds features for, only what their windows read is
    checked and deduplicated (``features.validation.feature_reads_after``)."""
    return prepare_sources(
        wh,
        settings.warehouse,
        reference_time=reference_time,
        require_contract=settings.features.active.rule == "contract",
        reads_after=feature_reads_after(as_of_dates) if as_of_dates else None,
    )
