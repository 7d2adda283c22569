from pathlib import Path

import pytest

from pipelines import config as config_module
from pipelines.config import (
    DEFAULT_CONFIG,
    PROJECT_ROOT,
    ConfigError,
    load_settings,
    open_warehouse,
)


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


def test_extends_default_layers_a_file_over_the_packaged_default(tmp_path: Path) -> None:
    path = _write(tmp_path, "extends: default\nwarehouse: {output_schema: out}\ndemo: {seed: 3}\n")
    settings = load_settings([path], cwd=tmp_path)
    default = load_settings([DEFAULT_CONFIG], cwd=tmp_path)
    assert settings.warehouse.output_schema == "out"
    assert settings.demo.seed == 3
    # the rest of each section comes from the default, key by key
    assert settings.warehouse.duckdb_path == default.warehouse.duckdb_path
    assert settings.demo.n_accounts == default.demo.n_accounts
    assert settings.model == default.model


def test_extends_a_relative_path_chains_and_a_loop_is_named(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "b.yaml").write_text("extends: default\ndemo: {seed: 5, years: 2.0}\n")
    top = _write(tmp_path, "extends: base/b.yaml\ndemo: {years: 1.5}\n")
    demo = load_settings([top]).demo
    assert (demo.seed, demo.years) == (5, 1.5)
    (tmp_path / "base" / "b.yaml").write_text("extends: ../c.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_settings([top])


def test_extends_default_follows_the_packaged_default_wherever_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed churnlens has no configs/ folder around it: ``default`` is the file
    DEFAULT_CONFIG found (the wheel's pipelines/configs/default.yaml), not a path from cwd."""
    packaged = tmp_path / "site-packages" / "pipelines" / "configs" / "default.yaml"
    packaged.parent.mkdir(parents=True)
    packaged.write_text(DEFAULT_CONFIG.read_text().replace("seed: 7", "seed: 11"))
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG", packaged)
    elsewhere = tmp_path / "project"
    elsewhere.mkdir()
    path = elsewhere / "mine.yaml"
    path.write_text("extends: default\nwarehouse: {kind: spark}\n")
    settings = load_settings([path], cwd=elsewhere)
    assert settings.demo.seed == 11
    assert settings.warehouse.kind == "spark"


def test_spark_config_differs_from_the_default_only_in_the_warehouse(tmp_path: Path) -> None:
    spark = load_settings([PROJECT_ROOT / "configs" / "spark.yaml"], cwd=tmp_path)
    default = load_settings([DEFAULT_CONFIG], cwd=tmp_path)
    assert spark.warehouse.kind == "spark"
    changed = {k for k, v in spark.model_dump().items() if v != default.model_dump()[k]}
    assert changed == {"data_dir", "warehouse"}
