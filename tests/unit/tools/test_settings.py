"""The tooling's one settings object: every folder below one cache root, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from retail_tools.argocd.config import ArgocdConfig
from retail_tools.images.config import ImagesConfig
from retail_tools.settings import Settings

VARIABLES = (
    "RETAILMODEL_CACHE",
    "RETAILMODEL_CLUSTER_DIR",
    "RETAILMODEL_REGISTRY_DIR",
    "RETAILMODEL_REGISTRY_PORT",
    "RETAILMODEL_ARGOCD_DIR",
    "RETAILMODEL_ARGOCD_PORT_BASE",
    "KUSTOMIZE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_one_cache_root_moves_every_folder(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("RETAILMODEL_CACHE", str(tmp_path))
    settings = Settings.from_env()

    argocd = ArgocdConfig.from_settings(settings)
    images = ImagesConfig.from_settings(settings)
    assert argocd.cluster.cluster_dir == tmp_path / "cluster"
    assert argocd.state_dir == tmp_path / "argocd"
    assert argocd.kustomize == tmp_path / "tools/kustomize-v5.7.1/kustomize"
    assert images.registry_dir == tmp_path / "registry"
    assert images.tools_dir == tmp_path / "tools"
    assert argocd.cluster.registry == images.registry_address == "127.0.0.1:5000"


def test_a_folder_of_its_own_wins_over_the_cache_root(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("RETAILMODEL_CACHE", str(tmp_path / "cache"))
    clean_env.setenv("RETAILMODEL_REGISTRY_DIR", str(tmp_path / "mine"))
    clean_env.setenv("RETAILMODEL_REGISTRY_PORT", "5999")
    clean_env.setenv("KUSTOMIZE", str(tmp_path / "kustomize"))
    settings = Settings.from_env()

    assert settings.registry_dir == tmp_path / "mine"
    assert settings.registry_address == "127.0.0.1:5999"
    assert settings.kustomize == tmp_path / "kustomize"
    assert settings.argocd_dir == tmp_path / "cache/argocd"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("RETAILMODEL_REGISTRY_PORT", "80"), ("RETAILMODEL_ARGOCD_PORT_BASE", "x")],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ValueError) as refused:
        Settings.from_env()
    assert str(refused.value).startswith(f"{variable} should be")
    assert repr(value) in str(refused.value)
    assert "\n" not in str(refused.value)
