"""Where the local control plane lives: pinned versions, cache folders, state folder and ports.

Everything the rest of ``localcluster`` needs to know about the machine is read here, once,
from the environment (``ClusterConfig.from_env``), and passed down as frozen values, so a test
can run a second, independent cluster by building a config with another folder and ports.

Environment variables (all optional):

``RETAILMODEL_CACHE``
    cache root, default ``~/.cache/retailmodel``; binaries go to
    ``<cache>/controlplane/<toolchain key>/bin``.
``RETAILMODEL_CLUSTER_DIR``
    the cluster's state folder (certificates, kubeconfigs, etcd data, pids, ``logs/``),
    default ``<cache>/cluster``.
``RETAILMODEL_CLUSTER_PORT_BASE``
    first of six consecutive loopback ports, default 16443 (the API server's port).
``RETAILMODEL_REAL_NODE``
    ``1`` (default) also runs the machine's one real node (containerd, kubelet, kube-proxy) in
    this cluster; ``0`` runs the control plane and kwok's fake nodes only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT_BASE = 16443
DEFAULT_REAL_NODE = "1"
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
class RealNode:
    """The one real node a machine can run. Its bridge, addresses, kubelet and kube-proxy ports
    and iptables chains are machine-wide, so one cluster at a time owns it."""

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
    # Off unless asked for (from_env asks by default): a second cluster, such as a test's
    # private one, leaves the node alone.
    real_node: bool = False
    node: RealNode = RealNode()

    @classmethod
    def from_env(cls) -> ClusterConfig:
        cache = Path(
            os.environ.get("RETAILMODEL_CACHE") or Path.home() / ".cache" / "retailmodel"
        ).expanduser()
        cluster = os.environ.get("RETAILMODEL_CLUSTER_DIR") or cache / "cluster"
        base = os.environ.get("RETAILMODEL_CLUSTER_PORT_BASE") or DEFAULT_PORT_BASE
        try:
            ports = Ports(int(base))
        except ValueError:
            raise ValueError(
                f"RETAILMODEL_CLUSTER_PORT_BASE must be a port number, not {base!r}"
            ) from None
        if not 1024 <= ports.base <= 65535 - 6:
            raise ValueError(f"RETAILMODEL_CLUSTER_PORT_BASE {ports.base} is out of range")
        real_node = os.environ.get("RETAILMODEL_REAL_NODE", DEFAULT_REAL_NODE)
        if real_node not in ("0", "1"):
            raise ValueError(f"RETAILMODEL_REAL_NODE must be 0 or 1, not {real_node!r}")
        return cls(
            cache_dir=cache,
            cluster_dir=Path(cluster).expanduser(),
            ports=ports,
            real_node=real_node == "1",
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
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"
