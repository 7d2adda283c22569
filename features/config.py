"""Configuration owned by the feature stage: where the source tables are and how to observe them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.warehouse import validate_ident


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceTable(_Strict):
    """Where one contract table lives, and how its columns are named in the user's warehouse."""

    table: str | None = Field(None, description="physical table name; default: the contract name")
    schema_name: str | None = Field(None, alias="schema", description="schema; default: source")
    columns: dict[str, str] = Field(
        default_factory=dict, description="contract column -> physical column, where they differ"
    )
    parquet: str | None = Field(
        None, description="read this table from Parquet files (a path or glob; DuckDB only)"
    )

    @field_validator("table", "schema_name")
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        return None if value is None else validate_ident(value)

    @field_validator("columns")
    @classmethod
    def _cols(cls, value: dict[str, str]) -> dict[str, str]:
        for physical in value.values():
            validate_ident(physical, what="column name")
        return value


class SparkConfig(_Strict):
    """The Spark session of ``warehouse.kind: spark`` (features/spark.py, docs/spark.md)."""

    master: str = Field(
        "local[*]",
        description="local[*] / local[N], a cluster URL (spark://, yarn, k8s://) or a Spark "
        "Connect address sc://host:15002",
    )
    app_name: str = "churnlens"
    catalog: str | None = Field(None, description="catalog of the source tables (Spark 3.4+)")
    database: str | None = Field(None, description="database of the source tables")
    conf: dict[str, str] = Field(
        default_factory=dict, description="extra Spark settings (spark.executor.memory, ...)"
    )
    parquet: dict[str, str] = Field(
        default_factory=dict,
        description="contract table -> Parquet file, folder or glob, read as that table "
        "(relative paths against data_dir)",
    )
    parquet_dir: Path | None = Field(
        None,
        description="a folder with <table>.parquet (a file or a folder) per contract table; "
        "entries of parquet win",
    )
    output_dir: Path = Field(
        Path("spark-output"),
        description="Parquet folders of the output tables (predictions, reasons, runs), "
        "partitioned by run_date (relative to data_dir)",
    )

    @field_validator("catalog", "database")
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        return None if value is None else validate_ident(value)


_MEMORY = r"^\s*[0-9]+(\.[0-9]+)?\s*((K|M|G|T)i?B|B|%)\s*$"


class WarehouseConfig(_Strict):
    """Which warehouse to use. Credentials never live here: PostgreSQL reads a DSN from the
    environment variable named by ``dsn_env``."""

    kind: Literal["duckdb", "postgres", "spark"] = "duckdb"
    duckdb_path: Path = Path("warehouse.duckdb")
    dsn_env: str = "CHURNLENS_PG_DSN"
    source_schema: str | None = None
    output_schema: str = "churnlens"
    tables: dict[str, SourceTable] = Field(default_factory=dict)
    spark: SparkConfig = SparkConfig()
    duckdb_memory_limit: str | None = Field(
        None,
        pattern=_MEMORY,
        description="DuckDB's memory cap, a size (1.5GB, 800MiB) or a share of RAM (40%); past "
        "it large queries spill to disk. Default: 1 GiB, or half the RAM if smaller",
    )
    duckdb_temp_directory: Path | None = Field(
        None,
        description="where DuckDB spills (relative to data_dir); default: <duckdb_path>.tmp "
        "beside the database file",
    )
    max_unmatched_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="largest share of a table's rows whose account_id is not in accounts that "
        "is excluded and reported; above it validation fails",
    )

    @field_validator("source_schema", "output_schema")
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        return None if value is None else validate_ident(value, what="schema name")


class ObservationConfig(_Strict):
    """The grid of observation dates (``as_of``) used to build training sets."""

    frequency: Literal["weekly", "monthly"] = "weekly"
    history_days: int = Field(540, gt=0, description="how far back the first as_of may lie")
    weekday: int = Field(0, ge=0, le=6, description="weekday of weekly as_of dates (0=Monday)")


class LabelConfig(_Strict):
    """Observe, wait, label: the label window starts ``lead_days`` after as_of."""

    horizon_days: int = Field(90, gt=0, description="length of the label window")
    lead_days: int = Field(0, ge=0, description="gap between as_of and the label window")
    grace_days: int = Field(30, ge=0, description="a renewal this late still counts as renewed")
    expansion_min_ratio: float = Field(
        0.10, ge=0, description="ARR growth that counts as expansion"
    )
    expansion_min_arr: float = Field(0.0, ge=0, description="or this absolute ARR growth")
    contraction_min_ratio: float = Field(0.10, ge=0, description="ARR drop that is contraction")
    inactivity_days: int = Field(
        60,
        gt=0,
        description="churned_inactive: no usage event in the last inactivity_days of the label "
        "window (the whole window when it is shorter)",
    )
    expansion_definition: Literal["horizon", "next_renewal"] = Field(
        "horizon",
        description="expanded: ARR at the label window end vs at as_of (horizon), or ARR just "
        "after the first contract end in the label window vs at as_of (next_renewal)",
    )

    @property
    def maturity_days(self) -> int:
        """Days after ``as_of`` until its label is fully known (lead + horizon + grace): the
        purge between training and test rows, and when a past run date's outcomes have matured."""
        return self.lead_days + self.horizon_days + self.grace_days


class ActiveConfig(_Strict):
    """Which accounts are customers at ``as_of``: the rows of every feature and label frame."""

    rule: Literal["contract", "activity", "both"] = Field(
        "contract",
        description="contract: a contract in force (start_date <= as_of < end_date, end_date NULL "
        "= evergreen; any ARR >= 0); activity: a usage event in the activity_days up to as_of; "
        "both: either",
    )
    activity_days: int = Field(28, gt=0, description="the activity rule's look-back in days")

    def describe(self) -> str:
        """The rule in words, for messages."""
        contract = "a contract in force (start_date <= as_of < end_date or end_date NULL)"
        activity = f"a usage event in the {self.activity_days} days up to as_of"
        if self.rule == "contract":
            return f"features.active.rule 'contract': {contract}"
        if self.rule == "activity":
            return f"features.active.rule 'activity': {activity}"
        return f"features.active.rule 'both': {contract} or {activity}"


class EventTypeConfig(_Strict):
    """Per-event-type usage features: how many of the most frequent event types get columns."""

    top_k: int = Field(
        10,
        ge=0,
        description="event types with their own count and quantity columns: the most frequent "
        "ones up to the earliest as_of of a build (0: none)",
    )


class FeatureConfig(_Strict):
    observation: ObservationConfig = ObservationConfig()
    labels: LabelConfig = LabelConfig()
    active: ActiveConfig = ActiveConfig()
    event_types: EventTypeConfig = EventTypeConfig()
