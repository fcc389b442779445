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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT_BASE = 16443
FAKE_NODE_COUNT = 3
# kwok manages only the nodes carrying this annotation, so real nodes are never touched.
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


@dataclass(frozen=True)
class Toolchain:
    """The pinned versions of everything built from the Go module proxy."""

    kubernetes: str = "v1.36.3"
    etcd: str = "v3.6.8"
    kwok: str = "v0.8.0"

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
class ClusterConfig:
    """One local cluster: which binaries it runs, where it keeps its state, which ports."""

    cache_dir: Path
    cluster_dir: Path
    ports: Ports
    toolchain: Toolchain = Toolchain()

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
        return cls(cache_dir=cache, cluster_dir=Path(cluster).expanduser(), ports=ports)

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
