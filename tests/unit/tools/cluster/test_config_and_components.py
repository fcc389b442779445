"""Pure parts of the local cluster: settings from the environment and the command lines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from retail_tools.cluster.components import components, fake_nodes_manifest
from retail_tools.cluster.config import ClusterConfig, Ports, Toolchain
from retail_tools.settings import Settings


def test_defaults_and_overrides_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("RETAILMODEL_CACHE", "RETAILMODEL_CLUSTER_DIR", "RETAILMODEL_CLUSTER_PORT_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    default = ClusterConfig.from_settings(Settings.from_env())
    assert default.cluster_dir == tmp_path / ".cache/retailmodel/cluster"
    assert default.ports.apiserver == 16443
    assert default.bin_dir == (
        tmp_path / ".cache/retailmodel/controlplane/k8s-v1.36.3-etcd-v3.6.8-kwok-v0.8.0/bin"
    )

    monkeypatch.setenv("RETAILMODEL_CLUSTER_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("RETAILMODEL_CLUSTER_PORT_BASE", "20000")
    custom = ClusterConfig.from_settings(Settings.from_env())
    assert custom.cluster_dir == tmp_path / "mine"
    assert custom.log_dir == tmp_path / "mine/logs"
    assert custom.ports.all() == tuple(range(20000, 20006))
    assert custom.server == "https://127.0.0.1:20000"


@pytest.mark.parametrize("value", ["http", "80", "70000"])
def test_a_bad_port_base_is_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RETAILMODEL_CLUSTER_PORT_BASE", value)
    with pytest.raises(ValueError, match="RETAILMODEL_CLUSTER_PORT_BASE"):
        ClusterConfig.from_settings(Settings.from_env())


def test_staging_modules_are_published_as_v0_of_the_same_minor_and_patch() -> None:
    assert Toolchain(kubernetes="v1.36.3").staging_version == "v0.36.3"
    assert Toolchain(kubernetes="v1.35.10").staging_version == "v0.35.10"


def _config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(
        cache_dir=tmp_path / "cache", cluster_dir=tmp_path / "c", ports=Ports(30000)
    )


def test_components_use_distinct_ports_of_their_own_cluster(tmp_path: Path) -> None:
    config = _config(tmp_path)
    parts = components(config)
    assert [part.name for part in parts] == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ]
    ports = [part.port for part in parts]
    assert len(set(ports)) == len(ports)
    assert set(ports) <= set(config.ports.all())
    for part in parts:
        assert part.binary.startswith(str(config.bin_dir))
        # `down`'s leak check and the lifecycle test find a cluster's processes by its folder.
        assert any(str(config.cluster_dir) in arg for arg in part.argv), part.name
        assert all("0.0.0.0" not in arg for arg in part.argv), part.name


def test_the_api_server_authorizes_with_rbac_and_signs_service_account_tokens(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    apiserver = {part.name: part for part in components(config)}["kube-apiserver"]
    args = dict(arg.removeprefix("--").split("=", 1) for arg in apiserver.argv[1:])
    assert args["authorization-mode"] == "Node,RBAC"
    assert "ServiceAccount" in args["enable-admission-plugins"].split(",")
    assert args["service-account-signing-key-file"] == str(config.pki_dir / "sa.key")
    assert args["etcd-servers"] == "http://127.0.0.1:30001"


def test_kwok_only_manages_the_fake_nodes_it_is_given() -> None:
    manifest = yaml.safe_load(fake_nodes_manifest(3))
    names = [node["metadata"]["name"] for node in manifest["items"]]
    assert names == ["kwok-node-0", "kwok-node-1", "kwok-node-2"]
    for node in manifest["items"]:
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
