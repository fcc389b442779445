"""Pure parts of the local cluster: settings from the environment, the command lines, and the
objects that plug metrics-server into the API server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from retail_tools.cluster import metrics_server
from retail_tools.cluster.components import components, fake_nodes_manifest
from retail_tools.cluster.config import ClusterConfig, Ports, Toolchain
from retail_tools.cluster.pki import METRICS_SERVER, ensure_pki
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


def test_metrics_server_reads_the_real_node_over_verified_tls_and_listens_on_the_bridge(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    server = metrics_server.component(config)
    flags = [arg.removeprefix("--").partition("=") for arg in server.argv[1:]]
    args = {name: value for name, _, value in flags}
    assert server.binary == str(config.metrics_server_binary)
    assert config.metrics_server_binary.parent.parent.name == "metrics-server-v0.8.0"
    assert args["kubelet-certificate-authority"] == str(config.pki_dir / "ca.crt")
    assert not any("insecure" in arg for arg in server.argv)
    assert args["bind-address"] == config.node.gateway
    assert args["node-selector"] == "retailmodel.io/node=real"  # kwok's nodes serve no metrics
    assert server.health_url == f"https://{config.node.gateway}:{metrics_server.PORT}/livez"


def test_the_metrics_api_is_aggregated_to_the_host_process_and_verified_with_the_ca(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    pki = ensure_pki(config.pki_dir)
    documents = {
        (d["kind"], d["metadata"]["name"]): d for d in metrics_server.manifests(config, pki)
    }
    service = documents[("APIService", "v1beta1.metrics.k8s.io")]["spec"]
    assert base64.b64decode(service["caBundle"]) == pki.ca.cert.read_bytes()
    assert "insecureSkipTLSVerify" not in service
    assert service["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}
    assert "selector" not in documents[("Service", "metrics-server")]["spec"]
    endpoints = documents[("EndpointSlice", "metrics-server-host")]
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "metrics-server"
    assert endpoints["endpoints"][0]["addresses"] == [config.node.gateway]
    assert endpoints["ports"][0]["port"] == metrics_server.PORT
    # The ClusterRoles are bound to the user its client certificate names.
    users = {
        subject["name"]
        for document in documents.values()
        for subject in document.get("subjects", [])
    }
    assert users == {METRICS_SERVER.user}
    serving = x509.load_pem_x509_certificate(pki.metrics_server_serving.cert.read_bytes())
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "metrics-server.kube-system.svc" in names.get_values_for_type(x509.DNSName)


def test_the_api_server_routes_aggregated_apis_to_endpoints_only_with_the_real_node(
    tmp_path: Path,
) -> None:
    def apiserver(config: ClusterConfig) -> tuple[str, ...]:
        return {part.name: part for part in components(config)}["kube-apiserver"].argv

    without = _config(tmp_path)
    with_node = ClusterConfig(without.cache_dir, without.cluster_dir, without.ports, real_node=True)
    assert "--enable-aggregator-routing=true" in apiserver(with_node)
    assert "--enable-aggregator-routing=true" not in apiserver(without)
