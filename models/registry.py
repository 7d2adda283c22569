"""MLflow as the system of record: runs, registered versions, aliases and the promotion gate.

Each target has a registered model ``<prefix>-<target>``. A new version always gets the alias
``challenger``; it becomes ``champion`` only when it beats the current champion on the latest
backtest fold by ``promotion.min_improvement`` without a worse calibration error (the first
version becomes champion). Promotions and rollbacks are recorded as version tags and in the
registered model's description, with a UTC timestamp and the reason; every promotion pushes the
champion it replaces onto a history (a registered-model tag holding a JSON list), so each
rollback goes one champion further back.

The registered MLflow model is a pyfunc wrapper around the :class:`ModelBundle` (it casts
string categoricals to the bundle's fixed levels, avoiding mlflow#12910), logged "from code"
(nothing pickled). The bundle directory is stored once, as that model's artifact ``bundle``;
the SHA-256 of each of its files is recorded in the tracking store (version tag
``churnlens.artifacts_sha256``) and logged as the run artifact ``artifacts.sha256.json``.
:func:`load_bundle` downloads the registered version's own bundle, checks it against those
hashes and loads it with :meth:`ModelBundle.load`; it never imports the logged pyfunc code.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, Schema

from models.bundle import (
    ArtifactIntegrityError,
    FeatureMismatchError,
    ModelBundle,
    artifact_hashes,
    current_library_versions,
)
from models.config import PromotionConfig, TrackingConfig
from models.gate import baseline_verdict
from models.metrics import METRIC_NAMES
from models.train import CHAMPION, MODEL, TrainResult

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
BUNDLE_ARTIFACT = "bundle"  # same name as in models/pyfunc_model.py
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
FEATURES_ARTIFACT = "features.json"
HASHES_ARTIFACT = "artifacts.sha256.json"
TAG_PREFIX = "churnlens."
HASHES_TAG = TAG_PREFIX + "artifacts_sha256"
HISTORY_TAG = TAG_PREFIX + "champion_history"
HISTORY_LIMIT = 200  # earlier champions kept for rollback; older ones are dropped


class RegistryError(LookupError):
    """A registered model, version or alias is missing, so the operation cannot be done; the
    message says which model/version and what to do."""


@dataclass(frozen=True)
class ModelRef:
    """Where a loaded bundle came from."""

    name: str
    version: str
    alias: str | None
    run_id: str

    def __str__(self) -> str:
        """How scores name their model in the warehouse and the lists: ``churnlens-churn v3``."""
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class RegisteredVersion:
    """The outcome of :func:`log_and_register` for one target."""

    name: str
    version: str
    run_id: str
    model_uri: str
    promoted: bool
    reason: str
    champion_version: str

    def summary(self) -> str:
        """One line for logs and the CLI: which version, which alias, and why."""
        alias = (
            "champion" if self.promoted else f"challenger (champion stays v{self.champion_version})"
        )
        return f"{self.name} v{self.version} -> {alias}: {self.reason}"


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def configure_tracking(tracking: TrackingConfig, *, data_dir: Path) -> str:
    """Point MLflow at the tracking store and make sure the experiment exists with its artifacts
    under ``<data_dir>/mlartifacts``. Returns the tracking URI."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking.resolved_uri(data_dir)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(tracking.experiment) is None:
        artifacts = (data_dir / "mlartifacts").as_uri()
        mlflow.create_experiment(tracking.experiment, artifact_location=artifacts)
    mlflow.set_experiment(tracking.experiment)
    return uri


def _client(tracking: TrackingConfig, data_dir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=configure_tracking(tracking, data_dir=data_dir))


def bundle_signature(bundle: ModelBundle, sample: pd.DataFrame | None) -> ModelSignature:
    """Input schema from the training frame's dtypes, with categoricals as strings (never as
    pandas ``category``, which the pyfunc path mangles: mlflow#12910). All columns optional."""
    inputs = [
        ColSpec(_mlflow_type(name, bundle, sample), name, required=False)
        for name in bundle.feature_names
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", "proba")]))


def _mlflow_type(name: str, bundle: ModelBundle, sample: pd.DataFrame | None) -> str:
    if name in bundle.categorical_levels:
        return "string"
    if sample is None or name not in sample.columns:
        return "double"
    dtype = sample[name].dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    return "double"


def promotion_decision(
    result: TrainResult,
    *,
    champion_version: str | None,
    champion_metrics: dict[str, float] | None,
    promotion: PromotionConfig,
) -> PromotionDecision:
    """Compare the new model with the champion on the latest backtest fold.

    The champion's scores come from the backtest (``previous`` passed to training) when present,
    else from the champion run's logged latest-fold metrics (a different fold, said in reason).
    """
    verdict = baseline_verdict(result.backtest, promotion.metric)
    if promotion.require_beats_baselines and not verdict.passed:
        return PromotionDecision(False, f"not promoted: {verdict.reason}")
    if champion_version is None:
        return PromotionDecision(True, "first registered version: becomes champion")
    metric = promotion.metric
    latest = result.latest_fold()
    new = latest.loc[MODEL]
    if CHAMPION in latest.index:
        old = latest.loc[CHAMPION]
        where = f"on the latest backtest fold (test from {new['test_start']:%Y-%m-%d})"
        if bool(old["champion_in_sample"]):
            where += "; the champion saw part of this window in training, so it is favoured"
        old_metric, old_ece = float(old[metric]), float(old["ece"])
    elif champion_metrics and f"latest_{metric}" in champion_metrics:
        where = "against the champion's own logged latest-fold metrics (not rescored here)"
        old_metric = champion_metrics[f"latest_{metric}"]
        old_ece = champion_metrics.get("latest_ece", float("inf"))
    else:
        return PromotionDecision(
            False, f"champion v{champion_version} has no comparable {metric}: stays champion"
        )
    gain = float(new[metric]) - old_metric
    head = (
        f"{metric} {float(new[metric]):.4f} vs champion v{champion_version} {old_metric:.4f} "
        f"(+{gain:.4f}, needed > 0 and >= {promotion.min_improvement}); ece "
        f"{float(new['ece']):.4f} vs {old_ece:.4f} (allowed +{promotion.max_ece_increase}) {where}"
    )
    if not (gain > 0 and gain >= promotion.min_improvement):
        return PromotionDecision(False, f"not promoted: {head}")
    if float(new["ece"]) > old_ece + promotion.max_ece_increase:
        return PromotionDecision(False, f"not promoted, calibration worse: {head}")
    return PromotionDecision(True, f"promoted: {head}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _current_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None


def log_and_register(
    result: TrainResult,
    *,
    tracking: TrackingConfig,
    data_dir: Path,
    run_name: str,
    dataset_info: dict[str, Any] | None = None,
    promotion: PromotionConfig | None = None,
) -> RegisteredVersion:
    """Log one target's training run, register a version, alias it ``challenger`` and apply the
    promotion gate (``promotion`` defaults to ``result.config.promotion``)."""
    client = _client(tracking, data_dir)
    name = tracking.model_name(result.target)
    info = result.dataset_info | (dataset_info or {})
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        _log_run(result, info, Path(tmp), report_dir=Path(data_dir) / "reports" / result.target)
        hashes = _log_bundle_hashes(Path(tmp) / BUNDLE_ARTIFACT)
        model_info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={BUNDLE_ARTIFACT: str(Path(tmp) / BUNDLE_ARTIFACT)},
            signature=bundle_signature(result.bundle, result.shap_sample),
            pip_requirements=_pip_requirements(),
        )
    created = client.create_model_version(
        name=_ensure_registered(client, name),
        source=model_info.model_uri,
        run_id=run.info.run_id,
        tags={HASHES_TAG: json.dumps(hashes, sort_keys=True)},
    )
    version = str(created.version)
    client.set_model_version_tag(name, version, TAG_PREFIX + "target", result.target)
    client.set_registered_model_alias(name, CHALLENGER_ALIAS, version)
    champion = _current_version(client, name, CHAMPION_ALIAS)
    champion_metrics = (
        client.get_run(_run_id(client, name, champion)).data.metrics if champion else None
    )
    decision = promotion_decision(
        result,
        champion_version=champion,
        champion_metrics=champion_metrics,
        promotion=promotion or result.config.promotion,
    )
    client.set_model_version_tag(name, version, TAG_PREFIX + "gate", decision.reason)
    if decision.promote:
        _set_champion(client, name, version, reason=decision.reason, event="promoted")
    client.set_tag(run.info.run_id, TAG_PREFIX + "gate", decision.reason)
    return RegisteredVersion(
        name=name,
        version=version,
        run_id=run.info.run_id,
        model_uri=f"models:/{name}/{version}",
        promoted=decision.promote,
        reason=decision.reason,
        champion_version=version if decision.promote else str(champion),
    )


def _log_bundle_hashes(directory: Path) -> dict[str, str]:
    """SHA-256 of every file of the saved bundle (``bundle.json`` too), logged with the run as
    a tag and as ``artifacts.sha256.json``; returns them for the version tag."""
    hashes = artifact_hashes(directory, include_meta=True)
    mlflow.log_dict({BUNDLE_ARTIFACT: hashes}, HASHES_ARTIFACT)
    mlflow.set_tag(HASHES_TAG, json.dumps(hashes, sort_keys=True))
    return hashes


def _pip_requirements() -> list[str]:
    versions = current_library_versions()
    return [
        f"lightgbm=={versions['lightgbm']}",
        f"scikit-learn=={versions['scikit-learn']}",
        f"pandas=={versions['pandas']}",
        f"numpy=={versions['numpy']}",
        f"mlflow=={mlflow.__version__}",
    ]


def _ensure_registered(client: MlflowClient, name: str) -> str:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"churnlens {name}")
    return name


def _run_id(client: MlflowClient, name: str, version: str) -> str:
    return client.get_model_version(name, version).run_id


def _log_run(result: TrainResult, info: dict[str, Any], tmp: Path, *, report_dir: Path) -> None:
    """Params, config, data window, fingerprint, features, metrics, plots and report; saves
    the bundle into ``tmp/bundle`` for the model to log."""
    mlflow.log_params({f"lgb.{k}": v for k, v in result.bundle.params.items()})
    mlflow.log_params(
        {
            "target": result.target,
            "calibration": "none"
            if result.bundle.calibrator is None
            else result.bundle.calibrator.method,
            "data.rows": info["rows"],
            "data.accounts": info["accounts"],
            "data.as_of_start": info["as_of_start"],
            "data.as_of_end": info["as_of_end"],
            "data.fingerprint": info["fingerprint"],
            "data.n_features": info["n_features"],
            "gap_days": result.gap_days,
        }
    )
    mlflow.set_tags(
        {TAG_PREFIX + "target": result.target, TAG_PREFIX + "fingerprint": info["fingerprint"]}
    )
    mlflow.log_dict(result.config.model_dump(mode="json"), "config.json")
    mlflow.log_dict(info, "dataset_info.json")
    mlflow.log_dict(
        {
            "features": result.bundle.feature_names,
            "categorical_levels": result.bundle.categorical_levels,
        },
        FEATURES_ARTIFACT,
    )
    mlflow.log_dict(result.tuning, "tuning.json")
    mlflow.log_metrics({k: float(v) for k, v in result.bundle.metrics.items() if np.isfinite(v)})
    mlflow.log_metrics({f"timing_{k}": v for k, v in result.timings.items()})
    for row in result.backtest.to_dict("records"):
        values = {f"bt_{row['model']}_{m}": row[m] for m in METRIC_NAMES if np.isfinite(row[m])}
        mlflow.log_metrics(values, step=int(row["fold"]))
    latest = result.latest_fold()
    for model, row in latest.iterrows():
        mlflow.log_metrics(
            {f"latest_{model}_{m}": float(row[m]) for m in METRIC_NAMES if np.isfinite(row[m])}
        )
    result.backtest.to_csv(tmp / "backtest.csv", index=False)
    mlflow.log_artifact(str(tmp / "backtest.csv"))
    if result.report_path is None:
        from models.evaluation import write_report

        write_report(result, report_dir)
    mlflow.log_artifacts(str(result.report_path.parent), "evaluation")
    result.bundle.save(tmp / BUNDLE_ARTIFACT)  # logged once, as the pyfunc model's artifact


def _set_champion(
    client: MlflowClient, name: str, version: str, *, reason: str, event: str
) -> None:
    """Move the champion alias, pushing the previous champion onto the rollback history."""
    previous = _current_version(client, name, CHAMPION_ALIAS)
    stamp = _now()
    if previous is not None and previous != version:
        client.set_model_version_tag(name, version, TAG_PREFIX + "previous_champion", previous)
        _write_champion_history(client, name, [*_champion_history(client, name), previous])
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    client.set_model_version_tag(name, version, TAG_PREFIX + f"{event}_at", stamp)
    client.set_model_version_tag(name, version, TAG_PREFIX + f"{event}_reason", reason)
    _append_history(client, name, f"{stamp} {event} v{version} (was v{previous}): {reason}")


def _champion_history(client: MlflowClient, name: str) -> list[str]:
    """Earlier champions, oldest first: the registered model's history tag or, for a model
    promoted before there was one, the current champion's ``previous_champion`` tag."""
    tags = client.get_registered_model(name).tags
    if HISTORY_TAG in tags:
        return [str(v) for v in json.loads(tags[HISTORY_TAG])]
    current = _current_version(client, name, CHAMPION_ALIAS)
    if current is None:
        return []
    previous = client.get_model_version(name, current).tags.get(TAG_PREFIX + "previous_champion")
    return [] if previous is None else [previous]


def _write_champion_history(client: MlflowClient, name: str, history: list[str]) -> None:
    value = json.dumps(history[-HISTORY_LIMIT:])
    client.set_registered_model_tag(name, HISTORY_TAG, value)


def _version_exists(client: MlflowClient, name: str, version: str) -> bool:
    try:
        client.get_model_version(name, version)
    except MlflowException:
        return False
    return True


def _append_history(client: MlflowClient, name: str, line: str) -> None:
    description = client.get_registered_model(name).description or ""
    client.update_registered_model(name, description=(description + "\n" + line).strip())


def promote(
    *, tracking: TrackingConfig, data_dir: Path, target: str, version: str, reason: str = "manual"
) -> str:
    """Make ``version`` the champion (recorded with timestamp and reason); returns the message."""
    client = _client(tracking, data_dir)
    name = tracking.model_name(target)
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    _set_champion(
        client, name, str(version), reason=f"manual promotion: {reason}", event="promoted"
    )
    return f"{name} v{version} is now champion"


def rollback(
    *, tracking: TrackingConfig, data_dir: Path, target: str, reason: str = "manual"
) -> str:
    """Give the champion alias back to the version that held it before the current champion,
    popping it off the history, so the next rollback goes one further back (versions deleted
    since are skipped)."""
    client = _client(tracking, data_dir)
    name = tracking.model_name(target)
    current = _current_version(client, name, CHAMPION_ALIAS)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    history = _champion_history(client, name)
    skipped = []
    while history and (history[-1] == current or not _version_exists(client, name, history[-1])):
        skipped.append(history.pop())
    if not history:
        gone = f" (deleted since: {', '.join('v' + v for v in skipped)})" if skipped else ""
        raise RegistryError(
            f"{name} v{current} records no earlier champion to roll back to{gone}: "
            "promote a version instead (churnlens models promote)"
        )
    previous = history.pop()
    stamp = _now()
    client.set_model_version_tag(name, current, TAG_PREFIX + "rolled_back_at", stamp)
    client.set_model_version_tag(name, current, TAG_PREFIX + "rolled_back_reason", reason)
    _write_champion_history(client, name, history)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, previous)
    client.set_model_version_tag(name, previous, TAG_PREFIX + "restored_at", stamp)
    _append_history(client, name, f"{stamp} rolled back v{current} -> v{previous}: {reason}")
    return f"{name}: champion rolled back from v{current} to v{previous}"


def list_versions(
    *, tracking: TrackingConfig, data_dir: Path, target: str | None = None
) -> pd.DataFrame:
    """One row per registered version (of ``target``, or of every churnlens target): aliases,
    run, creation time, latest-fold metrics and the promotion gate's verdict."""
    client = _client(tracking, data_dir)
    names = [tracking.model_name(target)] if target else _registered_names(client, tracking)
    rows = [row for name in names for row in _version_rows(client, name, target is not None)]
    if not rows:
        raise RegistryError(
            f"no registered versions of {names or tracking.model_name('*')}: train first"
        )
    return pd.DataFrame(rows).sort_values(["model", "version"]).reset_index(drop=True)


def version_metrics(*, tracking: TrackingConfig, data_dir: Path, model: str) -> dict[str, float]:
    """Metrics logged with the version that scores name ``model`` (``churnlens-churn v3``, as
    :class:`ModelRef` prints it); empty when the registry does not hold that version."""
    name, _, version = model.rpartition(" v")
    if not name or not version.isdigit():
        return {}
    client = _client(tracking, data_dir)
    try:
        return dict(client.get_run(_run_id(client, name, version)).data.metrics)
    except MlflowException:
        return {}


def _registered_names(client: MlflowClient, tracking: TrackingConfig) -> list[str]:
    """Every registered model named ``<prefix>-...``; ``_`` in the prefix is a LIKE wildcard
    (MLflow has no escape for it), so the matches are filtered by the exact prefix."""
    prefix = tracking.model_name_prefix + "-"
    names: list[str] = []
    token = None
    while True:
        page = client.search_registered_models(
            f"name LIKE {_filter_literal(prefix + '%')}", page_token=token
        )
        names += [m.name for m in page if m.name.startswith(prefix)]
        token = page.token
        if not token:
            return sorted(names)


def _filter_literal(value: str) -> str:
    """``value`` as a string literal of an MLflow filter string, which has no escape inside
    quotes: in single quotes, or double quotes when it holds a single quote."""
    for quote in ("'", '"'):
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise RegistryError(f"{value!r} holds both quote characters: MLflow cannot search for it")


def _version_rows(client: MlflowClient, name: str, required: bool) -> list[dict[str, Any]]:
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        if not required:
            return []
        raise RegistryError(f"no registered model {name}: train it first") from exc
    rows = []
    for mv in client.search_model_versions(f"name = {_filter_literal(name)}"):
        metrics = client.get_run(mv.run_id).data.metrics
        rows.append(
            {
                "model": name,
                "version": int(mv.version),
                "aliases": ",".join(
                    sorted(a for a, v in aliases.items() if str(v) == str(mv.version))
                ),
                "created": pd.Timestamp(mv.creation_timestamp, unit="ms"),
                "run_id": mv.run_id,
                "latest_pr_auc": metrics.get("latest_pr_auc"),
                "latest_arr_captured_top10": metrics.get("latest_arr_captured_top10"),
                "latest_ece": metrics.get("latest_ece"),
                "gate": mv.tags.get(TAG_PREFIX + "gate", ""),
            }
        )
    return rows


def load_bundle(
    *,
    tracking: TrackingConfig,
    data_dir: Path,
    target: str,
    alias: str = CHAMPION_ALIAS,
    version: int | None = None,
    strict_versions: bool = True,
) -> tuple[ModelBundle, ModelRef]:
    """Load the bundle behind ``<prefix>-<target>@<alias>`` (or, given ``version``, that
    registered version) from the registered version's own
    model artifact, after checking its files against the SHA-256 recorded in the tracking
    store (plus everything :meth:`ModelBundle.load` checks); its feature list must match the
    run's logged one. Problems with the files raise :class:`ArtifactIntegrityError` naming the
    model, version and artifact location."""
    client = _client(tracking, data_dir)
    name = tracking.model_name(target)
    try:
        if version is None:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        if version is not None:
            raise RegistryError(
                f"{name} has no version {version}: see `churnlens models list`"
            ) from exc
        raise RegistryError(
            f"no version of {name} has the alias {alias!r}: train first, or promote a version "
            "(churnlens models list / promote)"
        ) from exc
    ref = ModelRef(
        name=name,
        version=str(mv.version),
        alias=alias if version is None else None,
        run_id=mv.run_id,
    )
    expected = _recorded_hashes(mv.tags, ref)
    cache = Path(data_dir).resolve() / "model_cache"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f"{name}-v{mv.version}-") as tmp:
        location = _bundle_location(client, ref, Path(tmp))
        source = f"{ref} (bundle at {location})"
        path = _download(location, Path(tmp) / BUNDLE_ARTIFACT, source=source)
        bundle = ModelBundle.load(
            path, strict_versions=strict_versions, source=source, expected_sha256=expected
        )
    features_uri = f"runs:/{mv.run_id}/{FEATURES_ARTIFACT}"
    try:
        logged = mlflow.artifacts.load_dict(features_uri)
    except (MlflowException, OSError, ValueError) as exc:
        raise ArtifactIntegrityError(
            f"{ref}: cannot read the run's feature list {features_uri} ({exc})"
        ) from None
    if logged["features"] != bundle.feature_names:
        raise FeatureMismatchError(
            f"{ref}: bundle features differ from the run's logged feature list"
        )
    return bundle, ref


def _recorded_hashes(tags: dict[str, str], ref: ModelRef) -> dict[str, str]:
    if HASHES_TAG not in tags:
        raise ArtifactIntegrityError(
            f"{ref} records no SHA-256 of its bundle files (tag {HASHES_TAG}; registered by an "
            "older churnlens), so they cannot be checked and it was not loaded: retrain "
            "(churnlens train) or promote a version registered since"
        )
    return dict(json.loads(tags[HASHES_TAG]))


def _bundle_location(client: MlflowClient, ref: ModelRef, tmp: Path) -> str:
    """URI of the bundle inside the registered version's model artifact, as its MLmodel
    file names it."""
    root = client.get_model_version_download_uri(ref.name, ref.version)
    mlmodel = _download(f"{root}/MLmodel", tmp / "MLmodel", source=f"{ref} (model at {root})")
    flavor = Model.load(mlmodel).flavors.get("python_function", {})
    relative = flavor.get("artifacts", {}).get(BUNDLE_ARTIFACT, {}).get("path")
    if not relative:
        raise ArtifactIntegrityError(
            f"{ref} (model at {root}): its MLmodel names no {BUNDLE_ARTIFACT!r} artifact"
        )
    return f"{root}/{relative}"


def _download(uri: str, destination: Path, *, source: str) -> Path:
    """Download one artifact file or folder to ``destination``; a missing one is an
    :class:`ArtifactIntegrityError` naming ``source`` and ``uri``."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(destination.parent)
        )
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ArtifactIntegrityError(
            f"{source}: cannot read {uri} ({first}); the artifact was deleted or moved: "
            "restore it, or retrain and promote another version"
        ) from None
    return Path(path)
