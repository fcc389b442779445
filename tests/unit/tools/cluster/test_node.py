"""Pure parts of the real node: its configuration files, command lines and credentials, and
the API server's flags when it runs one."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from retail_tools.cluster import pki as pki_module
from retail_tools.cluster.components import components
from retail_tools.cluster.config import ClusterConfig, NodeLayout, Ports
from retail_tools.cluster.node import (
    ECR_REGISTRY_HOST,
    containerd_config,
    kubelet_config,
    node_components,
    pause_keeper,
    registry_mirror,
    write_node_files,
)
from retail_tools.cluster.node_images import oci_archive
from retail_tools.cluster.pki import (
    APISERVER_KUBELET_CLIENT,
    KUBE_PROXY,
    KUBELET,
    ensure_pki,
)
from retail_tools.settings import Settings
from retail_tools.standin import ACCOUNT, REGION

REGISTRY = "127.0.0.1:5000"


def _config(tmp_path: Path, *, real_node: bool) -> ClusterConfig:
    node = NodeLayout(root=tmp_path / "node-root", run=tmp_path / "node-run")
    return ClusterConfig(
        cache_dir=tmp_path / "cache",
        cluster_dir=tmp_path / "c",
        ports=Ports(30000),
        real_node=real_node,
        node=node,
    )


def _flags(argv: tuple[str, ...]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in argv[1:] if "=" in arg)


def test_the_real_node_is_on_by_default_and_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RETAILMODEL_REAL_NODE", raising=False)
    assert ClusterConfig.from_settings(Settings.from_env()).real_node is True
    monkeypatch.setenv("RETAILMODEL_REAL_NODE", "0")
    assert ClusterConfig.from_settings(Settings.from_env()).real_node is False
    monkeypatch.setenv("RETAILMODEL_REAL_NODE", "yes")
    with pytest.raises(ValueError, match="RETAILMODEL_REAL_NODE"):
        ClusterConfig.from_settings(Settings.from_env())


def test_with_a_real_node_pods_reach_the_api_server_on_the_bridge(tmp_path: Path) -> None:
    config = _config(tmp_path, real_node=True)
    apiserver = _flags({c.name: c for c in components(config)}["kube-apiserver"].argv)
    assert apiserver["advertise-address"] == "10.244.0.1"
    assert apiserver["endpoint-reconciler-type"] == "lease"
    assert apiserver["kubelet-preferred-address-types"] == "InternalIP,Hostname"
    assert apiserver["kubelet-certificate-authority"] == str(config.pki_dir / "ca.crt")
    assert apiserver["kubelet-client-certificate"].endswith("apiserver-kubelet-client.crt")

    without = _flags(
        {c.name: c for c in components(_config(tmp_path, real_node=False))}["kube-apiserver"].argv
    )
    assert without["bind-address"] == without["advertise-address"] == "127.0.0.1"
    assert "kubelet-client-certificate" not in without


def test_the_node_registers_labelled_and_tainted_and_binds_only_loopback_and_bridge(
    tmp_path: Path,
) -> None:
    containerd, kubelet, kube_proxy = node_components(_config(tmp_path, real_node=True))
    flags = _flags(kubelet.argv)
    assert flags["node-labels"] == "retailmodel.io/node=real"
    assert flags["register-with-taints"] == "retailmodel.io/node=real:NoSchedule"
    assert flags["node-ip"] == "10.244.0.1"
    proxy = _flags(kube_proxy.argv)
    assert proxy["nodeport-addresses"] == "127.0.0.0/8,10.244.0.0/24"
    # Zeroed: kube-proxy leaves the host's conntrack sysctls alone.
    assert proxy["conntrack-max-per-core"] == "0"
    assert proxy["healthz-bind-address"].startswith("127.0.0.1:")
    assert containerd.argv[1] == f"--config={tmp_path / 'node-root/etc/containerd.toml'}"


def test_pulls_of_the_ecr_host_go_to_the_local_registry_and_never_fall_back_to_ecr() -> None:
    assert ECR_REGISTRY_HOST == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    mirror = tomllib.loads(registry_mirror(REGISTRY))
    # `server` is where containerd goes when every host failed: the local registry too.
    assert mirror["server"] == f"http://{REGISTRY}"
    assert list(mirror["host"]) == [f"http://{REGISTRY}"]
    assert "amazonaws" not in registry_mirror(REGISTRY)


def test_containerd_keeps_to_its_own_folders_and_pins_the_local_pause_image(
    tmp_path: Path,
) -> None:
    node = NodeLayout(root=tmp_path / "root", run=tmp_path / "run")
    settings = tomllib.loads(containerd_config(node, REGISTRY))
    cri = settings["plugins"]["io.containerd.grpc.v1.cri"]
    assert settings["root"] == str(node.root / "containerd")
    assert settings["grpc"]["address"] == str(node.containerd_socket)
    assert cri["sandbox_image"] == f"{REGISTRY}/retailmodel/pause:3.10.2"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["registry"]["config_path"] == str(node.etc / "certs.d")
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False
    assert runc["Root"] == str(node.run / "runc")


def test_a_static_pod_keeps_the_sandbox_image_in_use_so_image_gc_leaves_it(
    tmp_path: Path,
) -> None:
    """containerd 1.6 does not pin its sandbox image: the kubelet's image GC leaves an image
    only while a container runs it, so a static pod runs the very image containerd names."""
    config = _config(tmp_path, real_node=True)
    write_node_files(config, ensure_pki(config.pki_dir), REGISTRY)
    kubelet = yaml.safe_load((config.node.etc / "kubelet.yaml").read_text())
    static = Path(kubelet["staticPodPath"])
    sandbox = tomllib.loads((config.node.etc / "containerd.toml").read_text())["plugins"][
        "io.containerd.grpc.v1.cri"
    ]["sandbox_image"]
    keeper = yaml.safe_load((static / "pause-keeper.yaml").read_text())
    assert keeper == pause_keeper(REGISTRY)
    (container,) = keeper["spec"]["containers"]
    assert container["image"] == sandbox
    assert container["imagePullPolicy"] == "Never"  # nothing to pull it from
    assert keeper["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_kubelet_authenticates_callers_and_serves_a_ca_signed_certificate(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, real_node=True)
    pki = ensure_pki(config.pki_dir)
    write_node_files(config, pki, REGISTRY)
    settings = yaml.safe_load((config.node.etc / "kubelet.yaml").read_text())
    assert settings == kubelet_config(config, pki)
    assert settings["authentication"]["anonymous"]["enabled"] is False
    assert settings["authorization"]["mode"] == "Webhook"
    assert settings["readOnlyPort"] == 0
    assert settings["cgroupDriver"] == "cgroupfs"
    assert settings["imageGCHighThresholdPercent"] == 95
    assert (config.node.etc / "resolv.conf").read_text().startswith("nameserver 127.0.0.1")
    for host in (ECR_REGISTRY_HOST, REGISTRY):
        assert (config.node.etc / "certs.d" / host / "hosts.toml").read_text() == (
            registry_mirror(REGISTRY)
        )
    conflist = json.loads(next((config.node.root / "cni/net.d").glob("*.conflist")).read_text())
    bridge = conflist["plugins"][0]
    assert (bridge["bridge"], bridge["ipMasq"]) == ("rmnode0", False)


def _subject(cert: x509.Certificate) -> tuple[str, list[str]]:
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    groups = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(common_name), [str(group.value) for group in groups]


def test_node_credentials_name_the_identities_the_authorizers_expect(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)

    def load(path: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificate(path.read_bytes())

    assert _subject(load(pki.client(KUBELET).cert)) == (
        "system:node:real-node-0",
        ["system:nodes"],
    )
    assert _subject(load(pki.client(KUBE_PROXY).cert)) == ("system:kube-proxy", [])
    assert _subject(load(pki.client(APISERVER_KUBELET_CLIENT).cert)) == (
        "kube-apiserver-kubelet-client",
        [],
    )
    serving = load(pki.kubelet_serving.cert)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {
        "10.244.0.1",
        "127.0.0.1",
    }
    serving.verify_directly_issued_by(load(pki.ca.cert))


def test_an_api_server_certificate_without_the_bridge_address_is_reissued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cluster made before the bridge address was among the API server's names.
    monkeypatch.setattr(pki_module, "API_SERVER_IPS", ("127.0.0.1", "10.96.0.1"))
    before = ensure_pki(tmp_path).apiserver.cert.read_bytes()
    assert ensure_pki(tmp_path).apiserver.cert.read_bytes() == before  # kept while current
    monkeypatch.undo()

    reissued = ensure_pki(tmp_path).apiserver.cert.read_bytes()
    assert reissued != before
    cert = x509.load_pem_x509_certificate(reissued)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.244.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def test_the_pause_archive_is_an_oci_layout_whose_digests_match_its_blobs() -> None:
    archive = tarfile.open(
        fileobj=io.BytesIO(
            oci_archive(
                "r/pause:1", {"pause": (b"\x7fELF-pause", 0o755)}, ["/pause"], "65535:65535"
            )
        )
    )
    files = {member.name: archive.extractfile(member).read() for member in archive.getmembers()}  # type: ignore[union-attr]
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "r/pause:1"

    def blob(descriptor: dict[str, str]) -> bytes:
        content = files[f"blobs/sha256/{descriptor['digest'].removeprefix('sha256:')}"]
        assert hashlib.sha256(content).hexdigest() == descriptor["digest"].removeprefix("sha256:")
        return content

    manifest = json.loads(blob(entry))
    image = json.loads(blob(manifest["config"]))
    layer = tarfile.open(fileobj=io.BytesIO(blob(manifest["layers"][0])))
    assert layer.extractfile("pause").read() == b"\x7fELF-pause"  # type: ignore[union-attr]
    assert image["config"] == {"User": "65535:65535", "Entrypoint": ["/pause"]}
    assert oci_archive(
        "r/pause:1", {"pause": (b"\x7fELF-pause", 0o755)}, ["/pause"], "65535:65535"
    ) == oci_archive("r/pause:1", {"pause": (b"\x7fELF-pause", 0o755)}, ["/pause"], "65535:65535")
