"""MLflow as the system of record: runs, registered versions, aliases and the promotion gate.

Each target has a registered model ``<prefix>-<target>``. A new version always gets the alias
``challenger``; it becomes ``champion`` only when the gate (:func:`models.gate.promotion_decision`,
a pure function of the backtest and the champion's logged metrics; this module only reads and
writes MLflow) says so: both scored on the same latest backtest fold, calibration within
``promotion.max_ece_increase``, then PR-AUC, and on a PR-AUC tie the churned ARR captured in the
top decile; the decision names the criterion that decided (the first version becomes champion).
The registered model's description is a fixed description of the model; each version carries its
own description (data window, latest-fold metrics, gate) and its promotion history in version
tags (``churnlens.events``: a JSON list of promotions and rollbacks with UTC time and reason).
Every promotion pushes the champion it replaces onto a history (a registered-model tag holding a
JSON list), so each rollback goes one champion further back.

Each training run is an MLflow run as its users expect: opened before training (so its duration
covers it, :func:`open_training_run`), with the training frame logged as a dataset input
(``mlflow.data.from_pandas``, digest = the frame's SHA-256 fingerprint), an input example and
signature with the model, the git commit (``mlflow.source.git.commit``, when churnlens runs from
a git checkout), and a description (``mlflow.note.content``). The experiment is tagged as
classic ML (``mlflow.experimentKind = custom_model_development``), so MLflow 3 opens it in the
model-training view, not the GenAI one.

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
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

from models.bundle import (
    ArtifactIntegrityError,
    FeatureMismatchError,
    ModelBundle,
    artifact_hashes,
    current_library_versions,
)
from models.config import PromotionConfig, TrackingConfig
from models.dataset import data_fingerprint, target_spec
from models.gate import GateDecision, promotion_decision
from models.metrics import BACKTEST_ECE_BINNING, METRIC_NAMES, ece_label
from models.train import MODEL, TrainResult

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
EVENTS_TAG = TAG_PREFIX + "events"
EVENTS_LIMIT = 50  # promotion/rollback events kept per version
NOTE_TAG = "mlflow.note.content"  # run and experiment descriptions in the MLflow UI
GIT_COMMIT_TAG = "mlflow.source.git.commit"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML = "custom_model_development"  # MLflow 3: the model-training view, not GenAI's
INPUT_EXAMPLE_ROWS = 5
TARGET_DESCRIPTIONS = {
    "churn": "probability that an account's contracts lapse without renewal within the label "
    "horizon",
    "churn_inactive": "probability that an account stops using the product within the label "
    "horizon",
    "expansion": "probability that an account's ARR grows within the label horizon",
    "contraction": "probability that an account's ARR shrinks (without churning) within the "
    "label horizon",
}


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
class Tracking:
    """The MLflow tracking store as a resource: built once at the edge by
    :func:`configure_tracking` (``pipelines.runtime.tracking_store`` is its one caller in
    churnlens) and passed to every function of this module, none of which points MLflow
    anywhere. ``data_dir`` holds the store's default SQLite file, its artifacts and the cache
    bundles are downloaded into."""

    config: TrackingConfig
    data_dir: Path
    uri: str
    client: MlflowClient
    experiment_id: str

    def model_name(self, target: str) -> str:
        return self.config.model_name(target)


def configure_tracking(tracking: TrackingConfig, *, data_dir: Path) -> Tracking:
    """Build the tracking resource: point MLflow's fluent API (runs and model logging) at the
    tracking store and make sure the experiment exists with its artifacts under
    ``<data_dir>/mlartifacts``. The only place churnlens sets MLflow's tracking URI."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking.resolved_uri(data_dir)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(tracking.experiment) is None:
        artifacts = (data_dir / "mlartifacts").as_uri()
        mlflow.create_experiment(
            tracking.experiment,
            artifact_location=artifacts,
            tags={EXPERIMENT_KIND_TAG: CLASSIC_ML, NOTE_TAG: _EXPERIMENT_NOTE},
        )
    experiment = mlflow.set_experiment(tracking.experiment)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != CLASSIC_ML:
        mlflow.set_experiment_tag(EXPERIMENT_KIND_TAG, CLASSIC_ML)
    client = MlflowClient(tracking_uri=uri)
    return Tracking(tracking, data_dir, uri, client, experiment.experiment_id)


def _fluent(tracking: Tracking) -> None:
    """MLflow's fluent API (start_run, log_model) logs wherever the process points it: refuse
    to log when that is not this resource's store (a second store configured since)."""
    current = mlflow.get_tracking_uri()
    if current != tracking.uri:
        raise RegistryError(
            f"MLflow points at {current}, not at this tracking store {tracking.uri}: a second "
            "store was configured since this one was built; build the resource again "
            "(models.registry.configure_tracking) before logging to it"
        )


_EXPERIMENT_NOTE = (
    "churnlens training runs: one run per target and training date (LightGBM, calibrated, "
    "backtested against baselines on rolling-origin folds). Registered models are "
    "<prefix>-<target>; the champion alias is what weekly scoring uses."
)


def git_commit(root: Path | None = None) -> str | None:
    """The commit of the churnlens checkout (``root``: the repository holding this package),
    or None when churnlens does not run from a git checkout (an installed wheel) or git is
    missing."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if len(commit) == 40 else None


def _git_tags() -> dict[str, str]:
    commit = git_commit()
    return {} if commit is None else {GIT_COMMIT_TAG: commit}


def open_training_run(tracking: Tracking, *, name: str) -> str:
    """Start the MLflow run of one target's training before it trains (its duration then
    covers training); :func:`log_and_register` logs into it, :func:`close_training_run` ends
    it when training is skipped or fails. Returns the run id."""
    run = tracking.client.create_run(
        tracking.experiment_id,
        run_name=name,
        tags={**_git_tags(), NOTE_TAG: f"training {name} (running)"},
    )
    return run.info.run_id


def close_training_run(tracking: Tracking, run_id: str, *, status: str, note: str) -> None:
    """End a run :func:`open_training_run` started whose training did not finish (``status``
    FAILED or KILLED), saying why in its description."""
    tracking.client.set_tag(run_id, NOTE_TAG, note)
    tracking.client.set_terminated(run_id, status=status)


def bundle_signature(bundle: ModelBundle, sample: pd.DataFrame | None) -> ModelSignature:
    """Input schema from the training frame's dtypes, with categoricals as strings (never as
    pandas ``category``, which the pyfunc path mangles: mlflow#12910). All columns optional."""
    inputs: list[ColSpec | TensorSpec] = [
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
    tracking: Tracking,
    run_name: str,
    dataset_info: dict[str, Any] | None = None,
    promotion: PromotionConfig | None = None,
    run_id: str | None = None,
    training_frame: pd.DataFrame | None = None,
    report_dir: Path | None = None,
) -> RegisteredVersion:
    """Log one target's training run, register a version, alias it ``challenger`` and apply the
    promotion gate (``promotion`` defaults to ``result.config.promotion``).

    ``run_id``: the run :func:`open_training_run` opened before training (else a new run is
    started here); ``training_frame``: the rows the model was trained on, logged as the run's
    dataset input (without it, the latest-fold sample explained in the SHAP summary is);
    ``report_dir``: the folder :func:`models.evaluation.write_report` wrote, logged with the
    run under ``evaluation/`` (nothing is written here)."""
    _fluent(tracking)
    client = tracking.client
    name = tracking.model_name(result.target)
    info = result.dataset_info | (dataset_info or {})
    started = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run_name)
    with started as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(_git_tags())
        _log_run(result, info, Path(tmp), report_dir=report_dir)
        _log_dataset(result, info, training_frame)
        hashes = _log_bundle_hashes(Path(tmp) / BUNDLE_ARTIFACT)
        with _quiet_integer_hint():
            model_info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_CODE),
                artifacts={BUNDLE_ARTIFACT: str(Path(tmp) / BUNDLE_ARTIFACT)},
                signature=bundle_signature(result.bundle, result.shap_sample),
                input_example=input_example(result.bundle, result.shap_sample),
                pip_requirements=_pip_requirements(),
            )
        created = client.create_model_version(
            name=_ensure_registered(client, name, result.target),
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
            result.backtest,
            champion_version=champion,
            champion_metrics=champion_metrics,
            promotion=promotion or result.config.promotion,
        )
        client.set_model_version_tag(name, version, TAG_PREFIX + "gate", decision.reason)
        client.set_model_version_tag(
            name, version, TAG_PREFIX + "gate_criterion", decision.criterion
        )
        client.update_model_version(
            name, version, description=version_description(result, info, decision)
        )
        if decision.promote:
            _set_champion(client, name, version, reason=decision.reason, event="promoted")
        mlflow.set_tags(
            {
                TAG_PREFIX + "gate": decision.reason,
                NOTE_TAG: run_description(result, info, decision, f"{name} v{version}"),
            }
        )
    return RegisteredVersion(
        name=name,
        version=version,
        run_id=run.info.run_id,
        model_uri=f"models:/{name}/{version}",
        promoted=decision.promote,
        reason=decision.reason,
        champion_version=version if decision.promote else str(champion),
    )


def input_example(bundle: ModelBundle, sample: pd.DataFrame | None) -> pd.DataFrame | None:
    """A few raw feature rows as scoring passes them (categoricals as strings), typed as the
    signature declares them, saved with the model so MLflow users see what it takes."""
    if sample is None or sample.empty:
        return None
    rows = sample[bundle.feature_names].head(INPUT_EXAMPLE_ROWS).reset_index(drop=True)
    columns: dict[str, Any] = {}
    for name in bundle.feature_names:
        kind = _mlflow_type(name, bundle, sample)
        values = rows[name]
        if kind == "string":
            columns[name] = values.astype(object).where(values.notna(), None)
        elif kind == "long" and not values.isna().any():
            columns[name] = values.astype("int64")
        elif kind == "boolean" and not values.isna().any():
            columns[name] = values.astype(bool)
        else:
            columns[name] = pd.to_numeric(values, errors="coerce").astype(float)
    return pd.DataFrame(columns)


@contextmanager
def _quiet_integer_hint() -> Iterator[None]:
    """MLflow's schema inference (of the dataset and of the input example) hints that integer
    columns cannot hold missing values: true, and already handled (the signature declares the
    counts ``long`` and every column optional; missing counts arrive as NaN floats, which the
    bundle casts). The hint is silenced so a training run logs no warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        yield


def _log_dataset(result: TrainResult, info: dict[str, Any], frame: pd.DataFrame | None) -> None:
    """The training frame as the run's dataset input (``mlflow.log_input``, context
    ``training``), named by target and window, its digest the frame's SHA-256 fingerprint."""
    whole = frame is not None  # else only the SHAP sample travels: its digest is its own
    frame = frame if whole else result.shap_sample
    if frame is None:
        return
    label = target_spec(result.target).label
    columns = [
        c for c in ("account_id", "as_of", *result.bundle.feature_names, label) if c in frame
    ]
    fingerprint = (str(info.get("fingerprint", "")) if whole else "") or data_fingerprint(frame)
    with _quiet_integer_hint():  # the schema is inferred lazily, when the input is logged
        dataset = _pandas_dataset(frame[columns], result, info, label, fingerprint)
        tags = {TAG_PREFIX + "fingerprint": fingerprint}
        mlflow.log_input(dataset, context="training", tags=tags)


def _pandas_dataset(
    frame: pd.DataFrame, result: TrainResult, info: dict[str, Any], label: str, fingerprint: str
) -> Any:
    return from_pandas(
        frame,
        name=f"{result.target}-training-{info.get('as_of_start')}..{info.get('as_of_end')}",
        targets=label if label in frame else None,
        digest=fingerprint[:36],
    )


def _latest_line(result: TrainResult) -> str:
    row = result.latest_fold().loc[MODEL]
    return (
        f"latest fold (test from {pd.Timestamp(row['test_start']):%Y-%m-%d}): PR-AUC "
        f"{row['pr_auc']:.3f}, ROC-AUC {row['roc_auc']:.3f}, churned ARR in the top 10% "
        f"{row['arr_captured_top10']:.0%}, {ece_label(BACKTEST_ECE_BINNING)} {row['ece']:.4f}"
    )


def version_description(result: TrainResult, info: dict[str, Any], decision: GateDecision) -> str:
    """What this version is: target, data, latest-fold metrics and the gate's decision."""
    return (
        f"churnlens {result.target} model ({TARGET_DESCRIPTIONS.get(result.target, '')}), "
        f"trained on {info.get('rows', '?')} rows, as_of {info.get('as_of_start')}.."
        f"{info.get('as_of_end')}, data fingerprint {str(info.get('fingerprint', ''))[:12]}. "
        f"{_latest_line(result)}. Gate ({decision.criterion}): {decision.reason}"
    )


def run_description(
    result: TrainResult, info: dict[str, Any], decision: GateDecision, version: str
) -> str:
    """The run's description (``mlflow.note.content``, Markdown in the MLflow UI)."""
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in result.timings.items())
    return (
        f"**{result.target}** model trained on {info.get('rows', '?')} rows "
        f"({info.get('accounts', '?')} accounts), as_of {info.get('as_of_start')}.."
        f"{info.get('as_of_end')}; registered as {version}.\n\n"
        f"- {_latest_line(result)}\n- gate ({decision.criterion}): {decision.reason}\n"
        f"- time: {timings}"
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


def registered_description(name: str, target: str) -> str:
    """The registered model's fixed description (promotion history lives in version tags)."""
    what = TARGET_DESCRIPTIONS.get(target, f"the {target} model")
    return (
        f"churnlens {name}: {what}, from point-in-time account features (LightGBM, calibrated). "
        "Alias `champion` is what weekly scoring uses, `challenger` the latest version; each "
        "version's description and tags say what it was trained on, how it scored, and when "
        "and why it was promoted or rolled back (tag churnlens.events)."
    )


def _ensure_registered(client: MlflowClient, name: str, target: str) -> str:
    """Create the registered model with its fixed description; one registered by an earlier
    churnlens, whose description was an append-only log, gets the fixed description (its
    history stays in the version tags)."""
    description = registered_description(name, target)
    try:
        current = client.get_registered_model(name).description or ""
    except MlflowException:
        client.create_registered_model(name, description=description)
        return name
    if current != description and (not current or current.startswith(f"churnlens {name}")):
        client.update_registered_model(name, description=description)
    return name


def _run_id(client: MlflowClient, name: str, version: str) -> str:
    run_id = client.get_model_version(name, version).run_id
    if run_id is None:
        raise RegistryError(
            f"{name} v{version} records no training run (registered outside churnlens)"
        )
    return run_id


def _log_run(
    result: TrainResult, info: dict[str, Any], tmp: Path, *, report_dir: Path | None
) -> None:
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
    if report_dir is not None:
        mlflow.log_artifacts(str(report_dir), "evaluation")
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
    replaced = None if previous in (None, version) else previous
    _record_event(client, name, version, event=event, at=stamp, reason=reason, replaced=replaced)
    if replaced is not None:
        _record_event(
            client, name, replaced, event="replaced", at=stamp, reason=f"v{version} {event}"
        )


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


def version_events(client: MlflowClient, name: str, version: str) -> list[dict[str, Any]]:
    """The promotions, replacements and rollbacks of one version, oldest first."""
    tags = client.get_model_version(name, version).tags
    return list(json.loads(tags.get(EVENTS_TAG, "[]")))


def _record_event(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    event: str,
    at: str,
    reason: str,
    replaced: str | None = None,
) -> None:
    """Append one event to the version's ``churnlens.events`` tag (the last EVENTS_LIMIT)."""
    entry: dict[str, Any] = {"at": at, "event": event, "reason": reason}
    if replaced is not None:
        entry["replaced"] = f"v{replaced}"
    events = [*version_events(client, name, version), entry][-EVENTS_LIMIT:]
    client.set_model_version_tag(name, version, EVENTS_TAG, json.dumps(events))


def promote(*, tracking: Tracking, target: str, version: int, reason: str = "manual") -> str:
    """Make ``version`` the champion (recorded with timestamp and reason); returns the message."""
    client = tracking.client
    name = tracking.model_name(target)
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    _set_champion(
        client, name, str(version), reason=f"manual promotion: {reason}", event="promoted"
    )
    return f"{name} v{version} is now champion"


def rollback(*, tracking: Tracking, target: str, reason: str = "manual") -> str:
    """Give the champion alias back to the version that held it before the current champion,
    popping it off the history, so the next rollback goes one further back (versions deleted
    since are skipped)."""
    client = tracking.client
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
    _record_event(client, name, current, event="rolled_back", at=stamp, reason=reason)
    _record_event(
        client,
        name,
        previous,
        event="restored",
        at=stamp,
        reason=f"rollback of v{current}: {reason}",
    )
    return f"{name}: champion rolled back from v{current} to v{previous}"


def list_versions(*, tracking: Tracking, target: str | None = None) -> pd.DataFrame:
    """One row per registered version (of ``target``, or of every churnlens target): aliases,
    run, creation time, latest-fold metrics and the promotion gate's verdict."""
    client = tracking.client
    names = [tracking.model_name(target)] if target else _registered_names(client, tracking.config)
    rows = [row for name in names for row in _version_rows(client, name, target is not None)]
    if not rows:
        raise RegistryError(
            f"no registered versions of {names or tracking.model_name('*')}: train first"
        )
    return pd.DataFrame(rows).sort_values(["model", "version"]).reset_index(drop=True)


def version_metrics(*, tracking: Tracking, model: str) -> dict[str, float]:
    """Metrics logged with the version that scores name ``model`` (``churnlens-churn v3``, as
    :class:`ModelRef` prints it); empty when the registry does not hold that version."""
    name, _, version = model.rpartition(" v")
    if not name or not version.isdigit():
        return {}
    client = tracking.client
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
        metrics = client.get_run(_run_id(client, name, str(mv.version))).data.metrics
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
    tracking: Tracking,
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
    client = tracking.client
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
        run_id=_run_id(client, name, str(mv.version)),
    )
    expected = _recorded_hashes(mv.tags, ref)
    cache = tracking.data_dir / "model_cache"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f"{name}-v{mv.version}-") as tmp:
        location = _bundle_location(tracking, ref, Path(tmp))
        source = f"{ref} (bundle at {location})"
        path = _download(tracking, location, Path(tmp) / BUNDLE_ARTIFACT, source=source)
        bundle = ModelBundle.load(
            path, strict_versions=strict_versions, source=source, expected_sha256=expected
        )
    features_uri = f"runs:/{mv.run_id}/{FEATURES_ARTIFACT}"
    try:
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            logged = json.loads(
                Path(client.download_artifacts(ref.run_id, FEATURES_ARTIFACT, tmp)).read_text()
            )
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


def _bundle_location(tracking: Tracking, ref: ModelRef, tmp: Path) -> str:
    """URI of the bundle inside the registered version's model artifact, as its MLmodel
    file names it."""
    root = tracking.client.get_model_version_download_uri(ref.name, ref.version)
    source = f"{ref} (model at {root})"
    mlmodel = _download(tracking, f"{root}/MLmodel", tmp / "MLmodel", source=source)
    flavor = Model.load(mlmodel).flavors.get("python_function", {})
    relative = flavor.get("artifacts", {}).get(BUNDLE_ARTIFACT, {}).get("path")
    if not relative:
        raise ArtifactIntegrityError(
            f"{ref} (model at {root}): its MLmodel names no {BUNDLE_ARTIFACT!r} artifact"
        )
    return f"{root}/{relative}"


def _download(tracking: Tracking, uri: str, destination: Path, *, source: str) -> Path:
    """Download one artifact file or folder to ``destination``; a missing one is an
    :class:`ArtifactIntegrityError` naming ``source`` and ``uri``."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(destination.parent), tracking_uri=tracking.uri
        )
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ArtifactIntegrityError(
            f"{source}: cannot read {uri} ({first}); the artifact was deleted or moved: "
            "restore it, or retrain and promote another version"
        ) from None
    return Path(path)
