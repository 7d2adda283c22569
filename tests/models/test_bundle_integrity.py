"""A saved bundle is refused, with a message naming it and the file, before anything in it is
parsed or unpickled: changed, missing or extra files, pickles, a truncated booster file, a
library version its objects cannot cross."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from models.bundle import (
    CALIBRATOR_FILE,
    MANIFEST_KEY,
    META_FILE,
    MODEL_FILE,
    ArtifactIntegrityError,
    LibraryVersionError,
    ModelBundle,
    artifact_hashes,
    check_model_file,
    current_library_versions,
    file_sha256,
)

ROOT = Path(__file__).resolve().parents[2]


class _RunsCodeWhenUnpickled:
    """Unpickling this creates the file at ``marker``: what a replaced artifact could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def saved(tiny_bundle, tmp_path) -> Path:
    return tiny_bundle.save(tmp_path / "bundle")


def _meta(directory: Path) -> dict:
    return json.loads((directory / META_FILE).read_text())


def _write_meta(directory: Path, meta: dict) -> None:
    (directory / META_FILE).write_text(json.dumps(meta))


def _rehash(directory: Path) -> None:
    """Record the folder's current hashes, as a save that wrote damaged files would have."""
    meta = _meta(directory)
    meta[MANIFEST_KEY] = artifact_hashes(directory)
    _write_meta(directory, meta)


def test_save_records_the_sha256_of_every_other_file(saved):
    manifest = _meta(saved)[MANIFEST_KEY]
    assert set(manifest) == {MODEL_FILE, CALIBRATOR_FILE}
    assert manifest[MODEL_FILE] == file_sha256(saved / MODEL_FILE)
    assert check_model_file(saved / MODEL_FILE, source="b") == 20


def test_a_changed_model_file_is_refused_naming_the_file(saved):
    text = (saved / MODEL_FILE).read_text()
    leaf = text.index("leaf_value=") + len("leaf_value=")
    (saved / MODEL_FILE).write_text(text[:leaf] + "9" + text[leaf + 1 :])
    with pytest.raises(ArtifactIntegrityError, match=r"t-churn v3 at .*: .*model\.txt changed"):
        ModelBundle.load(saved, source=f"t-churn v3 at {saved}")


def test_a_replaced_calibrator_is_refused_before_it_is_unpickled(saved, tmp_path):
    marker = tmp_path / "code-ran"
    (saved / CALIBRATOR_FILE).write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    with pytest.raises(ArtifactIntegrityError, match=f"{CALIBRATOR_FILE} changed"):
        ModelBundle.load(saved)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["extra.pkl", "values.joblib", "sub/state.pickle"])
def test_a_pickle_outside_the_format_is_refused_with_retrain(saved, name):
    (saved / name).parent.mkdir(exist_ok=True)
    (saved / name).write_bytes(b"\x80\x04N.")
    with pytest.raises(ArtifactIntegrityError, match=rf"pickle file\(s\) \['{name}'\].*retrained"):
        ModelBundle.load(saved)


def test_a_legacy_pickled_calibrator_is_refused(saved):
    (saved / "calibrator.joblib").write_bytes(b"\x80\x04N.")
    with pytest.raises(ArtifactIntegrityError, match=r"calibrator\.joblib.*retrained"):
        ModelBundle.load(saved)


def test_an_added_or_deleted_file_is_refused(saved):
    (saved / "notes.txt").write_text("hello")
    with pytest.raises(ArtifactIntegrityError, match=r"notes\.txt was not part of it"):
        ModelBundle.load(saved)
    (saved / "notes.txt").unlink()
    (saved / CALIBRATOR_FILE).unlink()
    with pytest.raises(ArtifactIntegrityError, match=f"{CALIBRATOR_FILE} is missing"):
        ModelBundle.load(saved)


def test_a_bundle_without_hashes_is_refused(saved):
    meta = _meta(saved)
    del meta[MANIFEST_KEY]
    _write_meta(saved, meta)
    with pytest.raises(ArtifactIntegrityError, match=r"records no SHA-256.*retrain"):
        ModelBundle.load(saved)


def test_hashes_recorded_elsewhere_catch_a_rewritten_manifest(saved):
    recorded = artifact_hashes(saved, include_meta=True)
    (saved / MODEL_FILE).write_text(
        (saved / MODEL_FILE).read_text().replace("shrinkage=0.1", "shrinkage=0.2")
    )
    _rehash(saved)
    ModelBundle.load(saved)  # consistent with its own manifest
    with pytest.raises(ArtifactIntegrityError, match=r"bundle\.json changed.*model\.txt changed"):
        ModelBundle.load(saved, expected_sha256=recorded)


def test_a_missing_folder_names_the_model_and_path(tmp_path):
    gone = tmp_path / "gone"
    with pytest.raises(ArtifactIntegrityError, match=f"t-churn v2: the bundle folder {gone}"):
        ModelBundle.load(gone, source="t-churn v2")


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.3, 0.5, 0.9, 0.999])
def test_a_truncated_model_file_is_caught_before_lightgbm_parses_it(saved, keep):
    data = (saved / MODEL_FILE).read_bytes()
    (saved / MODEL_FILE).write_bytes(data[: int(len(data) * keep)])
    _rehash(saved)
    with pytest.raises(
        ArtifactIntegrityError, match=r"model\.txt is not a complete LightGBM model"
    ):
        ModelBundle.load(saved)


def test_a_model_file_with_a_tree_too_many_is_refused(saved):
    text = (saved / MODEL_FILE).read_text()
    start, end = text.index("Tree=19\n"), text.index("end of trees")
    (saved / MODEL_FILE).write_text(
        text[:end] + text[start:end].replace("Tree=19", "Tree=20") + text[end:]
    )
    with pytest.raises(
        ArtifactIntegrityError, match="no end of trees right after the 20 trees its header lists"
    ):
        check_model_file(saved / MODEL_FILE, source="b")


def test_a_truncated_model_file_ends_in_a_message_not_a_crash(saved):
    """LightGBM aborts or segfaults on a truncated model file; loading in a child process
    proves the whole load exits with the error instead."""
    data = (saved / MODEL_FILE).read_bytes()
    (saved / MODEL_FILE).write_bytes(data[: len(data) * 2 // 3])
    _rehash(saved)
    code = f"from models.bundle import ModelBundle; ModelBundle.load({str(saved)!r})"
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 1, child.stderr
    assert "ArtifactIntegrityError" in child.stderr
    assert "model.txt is not a complete LightGBM model file" in child.stderr


def _record_version(directory: Path, library: str, version: str) -> None:
    meta = _meta(directory)
    meta["library_versions"][library] = version
    _write_meta(directory, meta)


def test_a_lightgbm_minor_change_is_refused(saved):
    installed = current_library_versions()["lightgbm"]
    _record_version(saved, "lightgbm", "3.3.5")
    with pytest.raises(
        LibraryVersionError,
        match=rf"t-churn v3 at {saved}: saved with lightgbm 3\.3\.5, but {installed} is "
        r"installed.*install lightgbm 3\.3\.x",
    ):
        ModelBundle.load(saved, source=f"t-churn v3 at {saved}")
    with pytest.warns(UserWarning, match="lightgbm 3.3.5"):
        ModelBundle.load(saved, strict_versions=False)


def test_a_library_whose_objects_are_not_loaded_only_warns(saved):
    # The calibrator is plain numbers in JSON: no scikit-learn or pandas object is rebuilt.
    _record_version(saved, "scikit-learn", "0.24.2")
    _record_version(saved, "pandas", "1.5.3")
    with pytest.warns(UserWarning) as caught:
        loaded = ModelBundle.load(saved)
    assert loaded.calibrator is not None
    messages = sorted(str(w.message) for w in caught)
    assert any("pandas 1.5.3" in m for m in messages)
    assert any("scikit-learn 0.24.2" in m for m in messages)


def test_a_loaded_library_with_no_recorded_version_is_refused(saved):
    meta = _meta(saved)
    del meta["library_versions"]["lightgbm"]
    _write_meta(saved, meta)
    with pytest.raises(LibraryVersionError, match="records no lightgbm version"):
        ModelBundle.load(saved)


def test_a_refused_bundle_is_a_one_line_cli_error_and_never_retried():
    from pipelines.cli import _user_error
    from pipelines.flows import _is_transient

    class _Failed:
        def result(self) -> None:
            raise ArtifactIntegrityError("t-churn v1: model.txt changed")

    assert _user_error(ArtifactIntegrityError("t-churn v1: model.txt changed"))
    assert not _is_transient(None, None, _Failed())
