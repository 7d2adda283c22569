"""Configuration owned by the model stage: how to train, validate, calibrate, promote and track."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TARGETS = ("churn", "churn_inactive", "expansion", "contraction")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TuningConfig(_Strict):
    """Optuna search over LightGBM parameters, on data before the first backtest test window."""

    trials: int = Field(
        default=8, ge=0, description="maximum number of trials; 0 disables the search"
    )
    timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="wall-time budget per target; with a tight budget the number of "
        "finished trials (hence the model) can vary between runs",
    )


class PromotionConfig(_Strict):
    """When a newly trained version may replace the champion (models.gate.champion_decision):
    both are scored on the same latest backtest fold; calibration first, then the ranking
    metric, and on a tie the churned ARR captured in the top decile."""

    metric: Literal["pr_auc", "roc_auc", "arr_captured_top10", "top_decile_lift"] = "pr_auc"
    secondary_metric: Literal["arr_captured_top10", "pr_auc", "roc_auc", "top_decile_lift"] = Field(
        default="arr_captured_top10",
        description="decides a tie on `metric`; a win on `metric` that loses more than "
        "max_secondary_decrease of it is refused",
    )
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        description="the challenger must beat the champion's metric by at least this",
    )
    tie_tolerance: float = Field(
        default=0.005,
        ge=0,
        description="differences in `metric` up to this are a tie, decided by "
        "secondary_metric (one fold of a few hundred churners moves PR-AUC by about 0.01)",
    )
    max_ece_increase: float = Field(
        default=0.005,
        ge=0,
        description="allowed increase of expected calibration error over the "
        "champion (0 would refuse a better ranker for noise in the fourth decimal)",
    )
    max_secondary_decrease: float = Field(
        default=0.05,
        ge=0,
        description="a win on `metric` is refused when secondary_metric falls by "
        "more than this (e.g. 5 points less churned ARR captured in the top decile)",
    )
    require_beats_baselines: bool = Field(
        default=True,
        description="refuse a version (even the first) whose booster does not beat the "
        "logistic, recency/RFM and health-score baselines on `metric` in the latest backtest "
        "fold (models.gate); false only to ship a booster knowingly, e.g. on tiny test data",
    )


class ModelConfig(_Strict):
    """Training, backtest and calibration settings shared by all targets."""

    seed: int = 42
    num_threads: int = Field(2, ge=1, description="LightGBM threads")
    params: dict[str, Any] = Field(
        default_factory=lambda: {
            "learning_rate": 0.05,
            "num_leaves": 7,
            "feature_fraction": 0.7,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 10.0,
        },
        description="LightGBM parameters (objective, seed, threads and determinism are set by "
        "churnlens); the tuning search is centred on them. Conservative by default: weekly rows "
        "of one account are near-duplicates, so small leaves memorise accounts, and a few hundred "
        "churned accounts support shallow trees (7 leaves beat 15 on four demo seeds). "
        "min_data_in_leaf, when left out here, follows the number of rows "
        "(models.train.data_size_params): 200 on the demo and on an 18-month outside base, "
        "down to 20 on a small one",
    )
    num_boost_round: int = Field(500, gt=0, description="upper bound on trees (early stopping)")
    early_stopping_rounds: int = Field(30, gt=0)
    n_folds: int = Field(3, ge=1, description="rolling-origin backtest folds")
    fold_days: int = Field(28, gt=0, description="length of each backtest test window in days")
    validation_fraction: float = Field(
        0.2,
        gt=0,
        lt=0.6,
        description="latest share of each training window's as_of dates kept from the booster for "
        "early stopping and calibration (separated by the label gap)",
    )
    refit: bool = Field(
        True,
        description="after early stopping on the latest slice, retrain the booster with that "
        "many trees on the whole training window (the label-gap purge otherwise leaves it the "
        "oldest quarter to third of the rows); the calibrator stays fitted on the early-stopped "
        "booster's margins on the slice it never saw",
    )
    tuning: TuningConfig = TuningConfig()
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = "auto"
    promotion: PromotionConfig = PromotionConfig()
    logistic_c: float = Field(0.1, gt=0, description="inverse L2 strength of the baseline")
    monotone: dict[str, dict[str, Literal[-1, 1]]] = Field(
        default_factory=dict,
        description="per target, features whose effect must be monotone: 1 increasing, -1 "
        "decreasing (e.g. churn: {active_users_28d: -1})",
    )
    exclude_features: list[str] = Field(
        default_factory=list, description="extra columns never used as features"
    )
    targets: list[str] = Field(default_factory=lambda: ["churn", "expansion"])

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TARGETS]
        if unknown or not value:
            raise ValueError(f"model.targets: unknown {unknown}; choose from {list(TARGETS)}")
        return value

    @field_validator("monotone")
    @classmethod
    def _monotone_targets(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        unknown = [t for t in value if t not in TARGETS]
        if unknown:
            raise ValueError(f"model.monotone: unknown target(s) {unknown}; use {list(TARGETS)}")
        return value

    @field_validator("params")
    @classmethod
    def _no_reserved_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = {"objective", "is_unbalance", "scale_pos_weight", "seed", "num_threads"}
        clash = sorted(reserved & set(value))
        if clash:
            raise ValueError(
                f"model.params: {clash} are set by churnlens (seed/num_threads come from "
                "model.seed/model.num_threads; class weighting is refused because it distorts "
                "probabilities)"
            )
        return value


class TrackingConfig(_Strict):
    """Where MLflow runs and registered models live."""

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default sqlite:///<data_dir>/mlflow.db (absolute)"
    )
    experiment: str = "churnlens"
    model_name_prefix: str = Field(
        "churnlens", description="registered models are <prefix>-<target>; letters, digits, _ . -"
    )

    @field_validator("model_name_prefix")
    @classmethod
    def _safe_prefix(cls, value: str) -> str:
        # it goes into MLflow filter strings, which have no escape for quotes
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", value):
            raise ValueError(
                f"tracking.model_name_prefix {value!r}: use 1-100 letters, digits, '_', '.' or "
                "'-', starting with a letter or digit"
            )
        return value

    def resolved_uri(self, data_dir: Path) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{Path(data_dir).resolve() / 'mlflow.db'}"

    def model_name(self, target: str) -> str:
        return f"{self.model_name_prefix}-{target}"
