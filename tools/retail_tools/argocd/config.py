"""Where the local Argo CD lives: its pinned version, cache folder, state folder and ports.

``ArgocdConfig.from_settings`` takes them from the tooling's one settings object
(``retail_tools.settings``: ``RETAILMODEL_CACHE``, ``RETAILMODEL_ARGOCD_DIR``,
``RETAILMODEL_ARGOCD_PORT_BASE``, ``KUSTOMIZE``) with the cluster it syncs. The binary goes to
``<cache>/argocd-<version>/bin``; the running instance keeps its pids, logs, redis data and the
repo-server's work folders in its state folder, and listens on four consecutive loopback ports
(redis, repo-server, and the two metrics ports).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from retail_tools.cluster.config import ClusterConfig

if TYPE_CHECKING:
    from retail_tools.settings import Settings

# v3.2.12 does not compile from its module zip (undefined: settings.ValidateExternalURL), and
# v3.3+ zips lack the ./gitops-engine folder their go.mod replaces.
VERSION = "v3.2.11"
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
    def from_settings(cls, settings: Settings) -> ArgocdConfig:
        return cls(
            cache_dir=settings.cache,
            state_dir=settings.argocd_dir,
            port_base=settings.argocd_port_base,
            cluster=ClusterConfig.from_settings(settings),
            kustomize=settings.kustomize,
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
