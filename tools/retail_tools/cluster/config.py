"""Where the local control plane lives: pinned versions, cache folders, state folder and ports.

``ClusterConfig.from_settings`` takes what it needs from the tooling's one settings object
(``retail_tools.settings``: ``RETAILMODEL_CACHE``, ``RETAILMODEL_CLUSTER_DIR``,
``RETAILMODEL_CLUSTER_PORT_BASE``, ``RETAILMODEL_REAL_NODE``) and the rest of ``cluster`` gets
it as frozen values, so a test can run a second, independent cluster by building a config with
another folder and ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from retail_tools.cluster.kubectl import Kubectl

if TYPE_CHECKING:
    from retail_tools.settings import Settings

FAKE_NODE_COUNT = 3
# kwok manages only the nodes carrying this annotation, so real nodes are never touched.
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# The real node carries this label and a NoSchedule taint of the same key and value: only pods
# that select the label and tolerate the taint run for real, everything else stays on kwok.
REAL_NODE_LABEL = ("retailmodel.io/node", "real")


@dataclass(frozen=True)
class Toolchain:
    """The pinned versions of everything built from the Go module proxy."""

    kubernetes: str = "v1.36.3"
    etcd: str = "v3.6.8"
    kwok: str = "v0.8.0"
    crictl: str = "v1.37.0"  # only to stop the real node's pods through the CRI at `down`
    # The resource metrics API (kubectl top, the autoscaler's CPU) for the real node's pods;
    # built and cached apart (``metrics_server_dir``), so its version never rebuilds the rest.
    metrics_server: str = "v0.8.0"

    @property
    def key(self) -> str:
        """The cache folder name: a change of any version is a different cache entry."""
        return f"k8s-{self.kubernetes}-etcd-{self.etcd}-kwok-{self.kwok}"

    @property
    def staging_version(self) -> str:
        """k8s.io/kubernetes vX.Y.Z publishes its staging modules (k8s.io/api, …) as v0.Y.Z."""
        _, minor, patch = self.kubernetes.removeprefix("v").split(".")
        return f"v0.{minor}.{patch}"


@dataclass(frozen=True)
class Ports:
    """Six consecutive loopback ports starting at ``base``."""

    base: int

    @property
    def apiserver(self) -> int:
        return self.base

    @property
    def etcd_client(self) -> int:
        return self.base + 1

    @property
    def etcd_peer(self) -> int:
        return self.base + 2

    @property
    def controller_manager(self) -> int:
        return self.base + 3

    @property
    def scheduler(self) -> int:
        return self.base + 4

    @property
    def kwok(self) -> int:
        return self.base + 5

    def all(self) -> tuple[int, ...]:
        return tuple(range(self.base, self.base + 6))


@dataclass(frozen=True)
class NodeLayout:
    """Where the one real node a machine can run keeps its things: its name, bridge, addresses
    and folders. They are machine-wide (as are its kubelet and kube-proxy ports and iptables
    chains), so one cluster at a time owns the node."""

    name: str = "real-node-0"
    bridge: str = "rmnode0"
    gateway: str = "10.244.0.1"  # the bridge's address: pods reach the API server here
    pod_cidr: str = "10.244.0.0/24"  # beside the services' 10.96.0.0/16 and kwok's 10.0.0.0/16
    root: Path = Path("/var/lib/retailmodel-node")  # containerd content, kubelet root, CNI state
    run: Path = Path("/run/retailmodel-node")  # containerd state and socket, runc, netns

    @property
    def etc(self) -> Path:
        """The generated configuration files (containerd, registry mirror, CNI, kubelet)."""
        return self.root / "etc"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd" / "containerd.sock"

    @property
    def owner_file(self) -> Path:
        """Names the cluster folder of the cluster that owns the node right now."""
        return self.run / "owner"

    @property
    def baseline_file(self) -> Path:
        """The host settings as they were before the node first changed any (restored at down).
        Under /run on purpose: a reboot resets them too."""
        return self.run / "host-baseline.json"

    @property
    def restored_file(self) -> Path:
        """The baseline after ``down`` restored it, kept so a check can compare against it."""
        return self.run.parent / "retailmodel-node-restored.json"


@dataclass(frozen=True)
class ClusterConfig:
    """One local cluster: which binaries it runs, where it keeps its state, which ports."""

    cache_dir: Path
    cluster_dir: Path
    ports: Ports
    toolchain: Toolchain = Toolchain()
    # Off unless asked for (the settings ask by default): a second cluster, such as a test's
    # private one, leaves the node alone.
    real_node: bool = False
    node: NodeLayout = NodeLayout()
    # The local registry the node's containerd pulls through (``retailctl image registry``).
    registry: str = "127.0.0.1:5000"

    @classmethod
    def from_settings(cls, settings: Settings) -> ClusterConfig:
        return cls(
            cache_dir=settings.cache,
            cluster_dir=settings.cluster_dir,
            ports=Ports(settings.cluster_port_base),
            real_node=settings.has_real_node,
            registry=settings.registry_address,
        )

    # The built binaries, shared by every cluster on the machine.
    @property
    def toolchain_dir(self) -> Path:
        return self.cache_dir / "controlplane" / self.toolchain.key

    @property
    def bin_dir(self) -> Path:
        return self.toolchain_dir / "bin"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def metrics_server_dir(self) -> Path:
        """metrics-server's own build, keyed by its version alone."""
        return self.cache_dir / f"metrics-server-{self.toolchain.metrics_server}"

    @property
    def metrics_server_binary(self) -> Path:
        return self.metrics_server_dir / "bin" / "metrics-server"

    @property
    def kwok_stages(self) -> Path:
        """kwok's standard node and pod stages, copied from its module at build time."""
        return self.toolchain_dir / "kwok-stages.yaml"

    # This cluster's own state.
    @property
    def pki_dir(self) -> Path:
        return self.cluster_dir / "pki"

    @property
    def etcd_data_dir(self) -> Path:
        return self.cluster_dir / "etcd"

    @property
    def run_dir(self) -> Path:
        return self.cluster_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.cluster_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig, for people and tests."""
        return self.cluster_dir / "kubeconfig"

    def component_kubeconfig(self, component: str) -> Path:
        return self.cluster_dir / f"{component}.kubeconfig"

    @property
    def kubectl(self) -> Kubectl:
        """The cluster's own kubectl, as its admin."""
        return Kubectl(self.binary("kubectl"), self.kubeconfig)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"
