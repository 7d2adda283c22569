"""Configuration owned by the serving stage: risk tiers, reasons, green churn, expansion 2x2,
week-over-week thresholds, the names of the tables predictions are written to and how long a
write-back waits for locks and statements.

The output *schema* lives in ``warehouse.output_schema`` (``features.config.WarehouseConfig``);
the table names live here. Every name is validated as a plain SQL identifier when loaded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.warehouse import validate_ident
from serving.holdout import HoldoutConfig

# a churn tier, as the risk list shows it
Tier = Literal["high", "medium", "low"]
_HIGH_ONLY: tuple[Tier, ...] = ("high",)

REASON_CATEGORIES: tuple[str, ...] = (
    "adoption",
    "engagement",
    "relationship",
    "support",
    "sentiment",
    "commercial",
)
"""The fixed reason taxonomy: every reason row carries exactly one of these."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierConfig(_Strict):
    """Churn probability thresholds: ``p >= high`` is high risk, ``p >= medium`` medium,
    anything lower is low risk."""

    high: float = Field(0.30, gt=0, lt=1)
    medium: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> TierConfig:
        if self.medium >= self.high:
            raise ValueError(f"tiers.medium ({self.medium}) must be below tiers.high ({self.high})")
        return self


class GreenChurnConfig(_Strict):
    """An account is "green churn" when its health color is one of ``health_colors`` while its
    churn tier is one of ``tiers``. Its listed drivers are the churn-raising reasons the health
    score does not weigh: reasons whose category is not in ``health_weighs`` or whose feature
    name contains one of ``not_weighed_features``."""

    health_colors: list[str] = Field(default_factory=lambda: ["green"])
    tiers: list[Tier] = Field(default_factory=lambda: list(_HIGH_ONLY))
    health_weighs: list[str] = Field(
        default_factory=lambda: ["adoption", "support", "sentiment", "engagement"],
        description="reason categories the exported health score is built from",
    )
    not_weighed_features: list[str] = Field(
        default_factory=lambda: ["champion", "sponsor", "breadth", "event_types", "budget"],
        description="feature-name fragments the health score ignores even inside its categories",
    )

    @field_validator("health_weighs")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(REASON_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown reason categories {unknown}; use {list(REASON_CATEGORIES)}")
        return value


class ChangesConfig(_Strict):
    """Week-over-week: a churn probability move larger than ``risk_change_threshold`` (absolute,
    in probability points: 0.10 = 10 points) is reported as risk up/down; accounts whose tier is
    in ``list_tiers`` are "on the list"."""

    risk_change_threshold: float = Field(0.10, gt=0, lt=1)
    list_tiers: list[Tier] = Field(default_factory=lambda: list(_HIGH_ONLY))


class ExpansionConfig(_Strict):
    """The expansion 2x2: ARR penetration (per employee, or seats per employee) relative to the
    segment median, against an expansion-readiness axis (expansion probability when there is an
    expansion model, else the exported health score)."""

    penetration: Literal["arr_per_employee", "seats_per_employee"] = "arr_per_employee"
    employees_column: str = "employees"
    seats_column: str = "seats"
    readiness: Literal["auto", "expansion_probability", "health_score"] = "auto"
    high_expansion_probability: float = Field(0.25, gt=0, lt=1)
    high_health_score: float = Field(70.0, ge=0, le=100)
    low_penetration_ratio: float = Field(
        1.0, gt=0, description="penetration / segment median below this is 'low penetration'"
    )
    expected_uplift: float = Field(
        0.20,
        gt=0,
        description="expansion as a share of current ARR, used only when the expansion model "
        "carries no uplift fitted on its training rows (bundles from before models.value)",
    )

    @field_validator("employees_column", "seats_column")
    @classmethod
    def _ident(cls, value: str) -> str:
        return validate_ident(value, what="column name")


class OutputTables(_Strict):
    """Names of the write-back tables inside ``warehouse.output_schema``."""

    predictions: str = "predictions"
    reasons: str = "prediction_reasons"
    runs: str = "scoring_runs"
    leases: str = Field(
        "scoring_leases",
        description="one row per run date being written; a row left behind marks a write that "
        "was interrupted (and rolled back)",
    )
    holdouts: str = Field(
        "list_holdouts",
        description="every flagged account of a run date, listed or held out (serving.holdout)",
    )

    @field_validator("predictions", "reasons", "runs", "leases", "holdouts")
    @classmethod
    def _ident(cls, value: str) -> str:
        return validate_ident(value, what="table name")

    @model_validator(mode="after")
    def _distinct(self) -> OutputTables:
        names = [self.predictions, self.reasons, self.runs, self.leases, self.holdouts]
        if len({n.lower() for n in names}) != len(names):
            raise ValueError(f"output table names must differ, got {names}")
        return self


class ServingConfig(_Strict):
    """Everything the weekly scoring run decides besides the models themselves."""

    tiers: TierConfig = TierConfig()
    top_reasons: int = Field(3, ge=1, le=10, description="reasons kept per direction and target")
    green_churn: GreenChurnConfig = GreenChurnConfig()
    changes: ChangesConfig = ChangesConfig()
    expansion: ExpansionConfig = ExpansionConfig()
    tables: OutputTables = OutputTables()
    holdout: HoldoutConfig = HoldoutConfig()
    lock_timeout_seconds: float = Field(
        300.0,
        ge=0,
        description="how long a write-back waits for another job writing the same run date, or "
        "for a table another session has locked, before it gives up with a message (0: no wait)",
    )
    statement_timeout_seconds: float | None = Field(
        900.0,
        gt=0,
        description="longest any one write-back statement may run before it is cancelled and "
        "the transaction rolled back (None: no limit)",
    )
