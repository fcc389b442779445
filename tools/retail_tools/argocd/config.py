"""Where the local Argo CD lives: its pinned version, cache folder, state folder and ports.

Environment variables (all optional):

``RETAILMODEL_CACHE``
    cache root, default ``~/.cache/retailmodel``; the binary goes to
    ``<cache>/argocd-<version>/bin``.
``RETAILMODEL_ARGOCD_DIR``
    the running instance's state (pids, logs, redis data, the repo-server's work folders),
    default ``<cache>/argocd``.
``RETAILMODEL_ARGOCD_PORT_BASE``
    first of four consecutive loopback ports (redis, repo-server, and the two metrics ports),
    default 16480.
``KUSTOMIZE``
    the kustomize the repo-server runs, default the one ``make`` builds,
    ``<cache>/tools/kustomize-v5.7.1/kustomize``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from retail_tools.cluster.config import ClusterConfig

# v3.2.12 does not compile from its module zip (undefined: settings.ValidateExternalURL), and
# v3.3+ zips lack the ./gitops-engine folder their go.mod replaces.
VERSION = "v3.2.11"
KUSTOMIZE_VERSION = "v5.7.1"
DEFAULT_PORT_BASE = 16480
NAMESPACE = "argocd"
# The commands of the one multi-call binary this project runs (it dispatches on argv[0]).
COMMANDS = ("argocd", "argocd-repo-server", "argocd-application-controller")


@dataclass(frozen=True)
class ArgocdConfig:
    """One local Argo CD: which binary, where its state lives, its ports, and its cluster."""

    cache_dir: Path
    state_dir: Path
    port_base: int
    cluster: ClusterConfig
    kustomize: Path
    version: str = VERSION

    @classmethod
    def from_env(cls) -> ArgocdConfig:
        cluster = ClusterConfig.from_env()
        state = os.environ.get("RETAILMODEL_ARGOCD_DIR") or cluster.cache_dir / "argocd"
        base = os.environ.get("RETAILMODEL_ARGOCD_PORT_BASE") or DEFAULT_PORT_BASE
        try:
            port_base = int(base)
        except ValueError:
            raise ValueError(
                f"RETAILMODEL_ARGOCD_PORT_BASE must be a port number, not {base!r}"
            ) from None
        default_kustomize = (
            cluster.cache_dir / "tools" / f"kustomize-{KUSTOMIZE_VERSION}" / "kustomize"
        )
        return cls(
            cache_dir=cluster.cache_dir,
            state_dir=Path(state).expanduser(),
            port_base=port_base,
            cluster=cluster,
            kustomize=Path(os.environ.get("KUSTOMIZE") or default_kustomize),
        )

    # The built binary, shared by every instance on the machine.
    @property
    def build_dir(self) -> Path:
        return self.cache_dir / f"argocd-{self.version}"

    @property
    def bin_dir(self) -> Path:
        return self.build_dir / "bin"

    def binary(self, command: str = "argocd") -> Path:
        """The multi-call binary under one of its command names (a symlink but for argocd)."""
        return self.bin_dir / command

    @property
    def crds_dir(self) -> Path:
        """Argo CD's Application and AppProject CRDs, copied from the module at build time."""
        return self.bin_dir / "crds"

    # This instance's own state.
    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def redis_port(self) -> int:
        return self.port_base

    @property
    def repo_server_port(self) -> int:
        return self.port_base + 1

    @property
    def repo_server_metrics_port(self) -> int:
        return self.port_base + 2

    @property
    def controller_metrics_port(self) -> int:
        return self.port_base + 3
