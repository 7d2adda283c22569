from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from models.bundle import CALIBRATOR_FILE, ArtifactIntegrityError, artifact_hashes
from models.config import ModelConfig, PromotionConfig, TrackingConfig, TuningConfig
from models.gate import promotion_decision
from models.metrics import LEVEL_SD_METRIC
from models.registry import (
    HASHES_ARTIFACT,
    HASHES_TAG,
    RegistryError,
    Tracking,
    _filter_literal,
    _registered_names,
    configure_tracking,
    list_versions,
    load_bundle,
    log_and_register,
    promote,
    registered_description,
    rollback,
    version_events,
    version_metrics,
)
from models.train import CHAMPION, MODEL, TrainResult, train_model
from tests.models.conftest import make_panel
from tests.models.test_bundle_integrity import _RunsCodeWhenUnpickled

GAP = 28
TRACKING = TrackingConfig(experiment="test-churnlens", model_name_prefix="t")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One MLflow SQLite store for the module (creating one costs seconds of migrations);
    tests keep apart by model-name prefix."""
    return tmp_path_factory.mktemp("mlflow")


def _tracking(prefix: str) -> TrackingConfig:
    return TrackingConfig(experiment="test-churnlens", model_name_prefix=prefix)


def _store(prefix: str, store: Path) -> Tracking:
    """The tracking resource of the module's store for models named ``<prefix>-<target>``."""
    return configure_tracking(_tracking(prefix), data_dir=store)


@pytest.fixture(autouse=True)
def _restore_tracking_uri():
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


def _fake_result(new: dict[str, float], champion: dict[str, float] | None) -> TrainResult:
    rows = [{"fold": 2, "model": MODEL, "test_start": pd.Timestamp("2025-06-02"), **new}]
    if champion is not None:
        rows.append(
            {
                "fold": 2,
                "model": CHAMPION,
                "test_start": pd.Timestamp("2025-06-02"),
                "champion_in_sample": False,
                **champion,
            }
        )
    return TrainResult(
        target="churn",
        bundle=None,
        backtest=pd.DataFrame(rows),
        predictions=pd.DataFrame(),
        tuning={},
        dataset_info={},
        gap_days=GAP,
        config=ModelConfig(),
    )


@pytest.mark.parametrize(
    ("new", "old", "gate", "promoted", "why"),
    [
        (
            {"pr_auc": 0.60, "ece": 0.02},
            {"pr_auc": 0.50, "ece": 0.03},
            {},
            True,
            "promoted on pr_auc",
        ),
        (
            {"pr_auc": 0.55, "ece": 0.02},
            {"pr_auc": 0.50, "ece": 0.03},
            {"min_improvement": 0.1},
            False,
            "not promoted on pr_auc",
        ),
        ({"pr_auc": 0.50, "ece": 0.02}, {"pr_auc": 0.50, "ece": 0.03}, {}, False, "not promoted"),
        (
            {"pr_auc": 0.60, "ece": 0.05},
            {"pr_auc": 0.50, "ece": 0.03},
            {},
            False,
            "not promoted on ece (calibration worse)",
        ),
        (
            {"pr_auc": 0.60, "ece": 0.05},
            {"pr_auc": 0.50, "ece": 0.03},
            {"max_ece_increase": 0.03},
            True,
            "promoted",
        ),
    ],
)
def test_promotion_gate_on_the_latest_fold(new, old, gate, promoted, why):
    decision = promotion_decision(
        _fake_result(new, old).backtest,
        champion_version="3",
        champion_metrics=None,
        promotion=PromotionConfig(**gate),
    )
    assert decision.promote is promoted
    assert decision.reason.startswith(why)
    assert "champion v3" in decision.reason


def test_gate_falls_back_to_the_champions_logged_metrics():
    decision = promotion_decision(
        _fake_result({"pr_auc": 0.6, "ece": 0.02}, None).backtest,
        champion_version="1",
        champion_metrics={"latest_pr_auc": 0.7, "latest_ece": 0.01},
        promotion=PromotionConfig(),
    )
    assert not decision.promote
    assert "logged latest-fold metrics" in decision.reason


def test_first_version_becomes_champion():
    decision = promotion_decision(
        _fake_result({"pr_auc": 0.1, "ece": 0.5}, None).backtest,
        champion_version=None,
        champion_metrics=None,
        promotion=PromotionConfig(),
    )
    assert decision.promote and "first" in decision.reason


def test_configure_tracking_puts_store_and_artifacts_under_data_dir(store):
    uri = configure_tracking(TRACKING, data_dir=store).uri
    assert uri == f"sqlite:///{store.resolve() / 'mlflow.db'}"
    experiment = mlflow.get_experiment_by_name(TRACKING.experiment)
    assert experiment.artifact_location == (store.resolve() / "mlartifacts").as_uri()


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    panel = make_panel(n_accounts=100, n_dates=22, seed=4, horizon_days=GAP)
    return panel.dropna(subset=["churned"]).astype({"churned": int})


def _train(dataset, previous=None, **promotion) -> TrainResult:
    config = ModelConfig(
        seed=1,
        num_threads=1,
        num_boost_round=40,
        n_folds=1,
        fold_days=14,
        tuning=TuningConfig(trials=0),
        params={"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20},
        # a linear synthetic signal, which the logistic baseline fits best: the gate's
        # baseline rule is tested in test_gate.py
        promotion=PromotionConfig(**({"require_beats_baselines": False} | promotion)),
    )
    return train_model(dataset, target="churn", config=config, gap_days=GAP, previous=previous)


def test_register_gate_promote_rollback_and_load_by_alias(dataset, store: Path):
    tracking = _store("t", store)
    trained = _train(dataset)
    first = log_and_register(trained, tracking=tracking, run_name="v1", dataset_info={})
    assert (first.version, first.promoted, first.champion_version) == ("1", True, "1")
    champion, ref = load_bundle(tracking=tracking, target="churn")
    assert (ref.name, ref.version, ref.alias) == ("t-churn", "1", "champion")
    # what the forecast reads for the model its scores name ("t-churn v1")
    metrics = version_metrics(tracking=tracking, model=str(ref))
    assert metrics[LEVEL_SD_METRIC] == trained.bundle.metrics[LEVEL_SD_METRIC]
    assert version_metrics(tracking=tracking, model="t-churn v9") == {}

    blocked = _train(dataset, previous=champion, min_improvement=1.0)
    second = log_and_register(blocked, tracking=tracking, run_name="v2", dataset_info={})
    assert (second.version, second.promoted, second.champion_version) == ("2", False, "1")
    assert "not promoted" in second.reason
    challenger, ref = load_bundle(tracking=tracking, target="churn", alias="challenger")
    assert ref.version == "2"
    np.testing.assert_array_equal(
        challenger.predict_proba(dataset), blocked.bundle.predict_proba(dataset)
    )

    versions = list_versions(tracking=tracking, target="churn")
    assert versions[["version", "aliases"]].values.tolist() == [[1, "champion"], [2, "challenger"]]
    everything = list_versions(tracking=tracking)
    assert everything["model"].tolist() == ["t-churn", "t-churn"]

    promote(tracking=tracking, target="churn", version=2, reason="review")
    assert load_bundle(tracking=tracking, target="churn")[1].version == "2"
    rollback(tracking=tracking, target="churn", reason="bad week")
    assert load_bundle(tracking=tracking, target="churn")[1].version == "1"
    client = mlflow.MlflowClient()
    description = client.get_registered_model("t-churn").description
    assert description == registered_description("t-churn", "churn")  # a description, no log
    events = version_events(client, "t-churn", "2")
    assert [(e["event"], e.get("replaced")) for e in events] == [
        ("promoted", "v1"),
        ("rolled_back", None),
    ]
    assert events[0]["reason"] == "manual promotion: review"
    assert events[1]["reason"] == "bad week"
    first_events = [e["event"] for e in version_events(client, "t-churn", "1")]
    assert first_events == ["promoted", "replaced", "restored"]
    assert "was vNone" not in json.dumps(version_events(client, "t-churn", "1"))
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(tracking=tracking, target="churn")


def test_pyfunc_model_scores_string_categoricals_like_the_bundle(dataset, store: Path):
    tracking = _store("pyfunc", store)
    result = _train(dataset)
    registered = log_and_register(result, tracking=tracking, run_name="v1", dataset_info={})
    model = mlflow.pyfunc.load_model(registered.model_uri)
    frame = dataset.head(20)[result.bundle.feature_names]
    np.testing.assert_allclose(model.predict(frame), result.bundle.predict_proba(frame))


def test_missing_alias_is_a_clear_error(store: Path):
    with pytest.raises(RegistryError, match="alias 'champion'"):
        load_bundle(tracking=_store("none", store), target="churn")


# --- integrity of the registered artifacts, rollback history, filter strings -----------------


@pytest.fixture(scope="module")
def trained(dataset) -> TrainResult:
    return _train(dataset)


def _register(trained: TrainResult, store: Path, prefix: str) -> str:
    registered = log_and_register(
        trained, tracking=_store(prefix, store), run_name=prefix, dataset_info={}
    )
    return registered.version


def _bundle_dir(store: Path, prefix: str, version: str = "1") -> Path:
    configure_tracking(_tracking(prefix), data_dir=store)
    root = mlflow.MlflowClient().get_model_version_download_uri(f"{prefix}-churn", version)
    return Path(urlparse(root).path) / "artifacts" / "bundle"


def test_each_file_is_hashed_in_the_tracking_store_and_the_bundle_stored_once(trained, store):
    _register(trained, store, "hashed")
    client = mlflow.MlflowClient()
    mv = client.get_model_version("hashed-churn", "1")
    recorded = json.loads(mv.tags[HASHES_TAG])
    directory = _bundle_dir(store, "hashed")
    assert recorded == artifact_hashes(directory, include_meta=True)
    assert set(recorded) == {"bundle.json", "model.txt", CALIBRATOR_FILE}
    # (a bundle trained by the flow also holds drift_reference.json: tests/pipelines)
    run_artifacts = {a.path for a in client.list_artifacts(mv.run_id)}
    assert HASHES_ARTIFACT in run_artifacts
    assert "bundle" not in run_artifacts
    logged = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{HASHES_ARTIFACT}")
    assert logged == {"bundle": recorded}


def test_a_bundle_tampered_in_the_store_is_refused_even_with_a_rewritten_manifest(
    trained, store, tmp_path
):
    _register(trained, store, "tampered")
    directory = _bundle_dir(store, "tampered")
    marker = tmp_path / "code-ran"
    (directory / CALIBRATOR_FILE).write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    meta = json.loads((directory / "bundle.json").read_text())
    meta["artifacts_sha256"] = artifact_hashes(directory)
    (directory / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactIntegrityError) as caught:
        load_bundle(tracking=_store("tampered", store), target="churn")
    message = str(caught.value)
    assert message.startswith(f"tampered-churn v1 (bundle at {directory.as_uri()})")
    assert "bundle.json changed" in message and f"{CALIBRATOR_FILE} changed" in message
    assert not marker.exists()


def test_a_deleted_artifact_folder_names_model_version_and_path(trained, store):
    _register(trained, store, "deleted")
    directory = _bundle_dir(store, "deleted")
    shutil.rmtree(directory)
    with pytest.raises(ArtifactIntegrityError) as caught:
        load_bundle(tracking=_store("deleted", store), target="churn")
    message = str(caught.value)
    assert message.startswith("deleted-churn v1 (bundle at ")
    assert f"cannot read {directory.as_uri()}" in message
    assert "deleted or moved" in message


def test_serving_never_runs_the_logged_pyfunc_code(trained, store, tmp_path):
    _register(trained, store, "code")
    logged_code = _bundle_dir(store, "code").parents[1] / "pyfunc_model.py"
    marker = tmp_path / "code-ran"
    logged_code.write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    bundle, ref = load_bundle(tracking=_store("code", store), target="churn")
    assert (str(ref), bundle.target) == ("code-churn v1", "churn")
    assert not marker.exists()


def test_a_version_registered_without_hashes_is_refused(trained, store):
    _register(trained, store, "old")
    mlflow.MlflowClient().delete_model_version_tag("old-churn", "1", HASHES_TAG)
    with pytest.raises(ArtifactIntegrityError, match=r"old-churn v1 records no SHA-256.*retrain"):
        load_bundle(tracking=_store("old", store), target="churn")


def test_rollback_walks_back_through_every_earlier_champion(trained, store):
    tracking = _store("stack", store)
    for _ in range(3):
        _register(trained, store, "stack")  # v1 champion; v2 and v3 do not beat it
    for version in (2, 3):
        promote(tracking=tracking, target="churn", version=version)

    def champion() -> str:
        return load_bundle(tracking=tracking, target="churn")[1].version

    assert champion() == "3"
    assert "v3 to v2" in rollback(tracking=tracking, target="churn")
    assert champion() == "2"
    assert "v2 to v1" in rollback(tracking=tracking, target="churn")
    assert champion() == "1"
    with pytest.raises(RegistryError, match="stack-churn v1 records no earlier champion"):
        rollback(tracking=tracking, target="churn")

    for version in (2, 3):  # history [1, 2]; v2 is then deleted and skipped
        promote(tracking=tracking, target="churn", version=version)
    mlflow.MlflowClient().delete_model_version("stack-churn", "2")
    assert "v3 to v1" in rollback(tracking=tracking, target="churn")
    assert champion() == "1"
    client = mlflow.MlflowClient()
    # v3 was rolled back twice (to v2, later to v1); v2, rolled back once, is deleted
    events = {v: [e["event"] for e in version_events(client, "stack-churn", v)] for v in "13"}
    assert events["3"].count("rolled_back") == 2
    assert events["1"].count("restored") == 2


@pytest.mark.parametrize("prefix", ["t'x", 't"x', "a b", "x%", "", "-x", "x;drop"])
def test_a_model_name_prefix_outside_the_safe_pattern_is_refused(prefix):
    with pytest.raises(ValidationError, match=r"tracking\.model_name_prefix"):
        TrackingConfig(model_name_prefix=prefix)


def test_filter_literals_are_quoted_and_like_wildcards_do_not_leak(store):
    assert _filter_literal("a-b") == "'a-b'"
    assert _filter_literal("a'b") == '"a\'b"'
    with pytest.raises(RegistryError, match="both quote characters"):
        _filter_literal("a'b\"c")
    client = configure_tracking(_tracking("u_x"), data_dir=store).client
    for name in ("u_x-churn", "uax-churn"):
        client.create_registered_model(name)
    assert _registered_names(client, _tracking("u_x")) == ["u_x-churn"]


# --- MLflow as its users expect --------------------------------------------------------------


def test_a_training_run_carries_dataset_example_commit_descriptions_and_its_duration(
    dataset, store, recwarn
):
    from models.evaluation import write_report
    from models.registry import (
        CLASSIC_ML,
        EXPERIMENT_KIND_TAG,
        GIT_COMMIT_TAG,
        NOTE_TAG,
        git_commit,
        open_training_run,
    )

    tracking = _store("mlflowux", store)
    run_id = open_training_run(tracking, name="churn-2025-06-02")
    result = _train(dataset)  # inside the run: its duration covers training
    evaluation = write_report(result, store / "evaluation" / "churn" / "2025-06-02")
    registered = log_and_register(
        result,
        tracking=tracking,
        run_name="ignored",
        dataset_info={"run_date": "2025-06-02"},
        run_id=run_id,
        training_frame=dataset,
        report_dir=evaluation.directory,
    )
    assert not [w for w in recwarn if "input example" in str(w.message).lower()]
    assert not [w for w in recwarn if "Inferred schema contains integer" in str(w.message)]
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert registered.run_id == run_id and run.info.status == "FINISHED"
    assert (run.info.end_time - run.info.start_time) / 1000 >= result.timings["total_s"]
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest == result.dataset_info["fingerprint"][:36]
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    assert json.loads(inputs[0].dataset.profile)["num_rows"] == len(dataset)
    commit = git_commit()
    assert commit is None or run.data.tags[GIT_COMMIT_TAG] == commit  # absent outside git
    assert run.data.tags[NOTE_TAG].startswith("**churn** model trained on")
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == CLASSIC_ML
    model_dir = Path(urlparse(client.get_model_version_download_uri("mlflowux-churn", "1")).path)
    example = json.loads((model_dir / "input_example.json").read_text())
    assert example["columns"] == result.bundle.feature_names and len(example["data"]) == 5
    version = client.get_model_version("mlflowux-churn", "1")
    assert version.description.startswith("churnlens churn model (probability that")
    assert "Gate (first)" in version.description
    assert evaluation.html.exists()
    assert "evaluation/churn_report.html" in {
        a.path for a in client.list_artifacts(run_id, "evaluation")
    }


def test_git_commit_is_absent_outside_a_checkout(tmp_path):
    from models.registry import git_commit

    assert git_commit(tmp_path) is None
