from pathlib import Path

import pytest

from pipelines.config import DEFAULT_CONFIG, ConfigError, load_settings, open_warehouse


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_resolves_data_dir(tmp_path: Path) -> None:
    settings = load_settings([DEFAULT_CONFIG], cwd=tmp_path)
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert settings.duckdb_path.parent == settings.data_dir


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("warehous: {}\n", "warehous"),
        ("warehouse: {kindd: duckdb}\n", "warehouse.kindd"),
        ("features: {labels: {horizon: 30}}\n", "features.labels.horizon"),
    ],
)
def test_unknown_keys_are_rejected_by_name(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        load_settings([_write(tmp_path, text)])


def test_bad_value_names_key_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"features\.labels\.horizon_days.*-5"):
        load_settings([_write(tmp_path, "features: {labels: {horizon_days: -5}}\n")])


def test_later_files_and_overrides_win(tmp_path: Path) -> None:
    other = tmp_path / "o.yaml"
    other.write_text("features: {labels: {horizon_days: 60}}\n")
    settings = load_settings([DEFAULT_CONFIG, other], overrides={"demo": {"seed": 99}})
    assert settings.features.labels.horizon_days == 60
    assert settings.demo.seed == 99


def test_postgres_credentials_come_only_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "warehouse: {kind: postgres, dsn_env: MY_DSN}\n")
    monkeypatch.delenv("MY_DSN", raising=False)
    with pytest.raises(ConfigError, match="MY_DSN is not set"):
        open_warehouse(load_settings([path]))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml does not exist"):
        load_settings([tmp_path / "nope.yaml"])


def test_label_maturity_is_lead_plus_horizon_plus_grace():
    from features.config import LabelConfig

    assert LabelConfig(lead_days=14, horizon_days=90, grace_days=30).maturity_days == 134
