"""Where the image tooling keeps its files, and which port the local registry listens on.

Read once from the environment (``ImagesConfig.from_env``) and passed down, so a test can run a
private registry with its own folder and port.

Environment variables (all optional):

``RETAILMODEL_CACHE``
    cache root, default ``~/.cache/retailmodel`` (shared with the control plane); the image
    tooling writes below ``<cache>/images`` and builds crane into ``<cache>/tools``.
``RETAILMODEL_REGISTRY_DIR``
    the registry's state folder (blobs, pid, log), default ``<cache>/registry``.
``RETAILMODEL_REGISTRY_PORT``
    the registry's loopback port, default 5000.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REGISTRY_PORT = 5000


@dataclass(frozen=True)
class ImagesConfig:
    cache_dir: Path
    registry_dir: Path
    registry_port: int = DEFAULT_REGISTRY_PORT

    @classmethod
    def from_env(cls) -> ImagesConfig:
        cache = Path(
            os.environ.get("RETAILMODEL_CACHE") or Path.home() / ".cache" / "retailmodel"
        ).expanduser()
        registry = os.environ.get("RETAILMODEL_REGISTRY_DIR") or cache / "registry"
        port = os.environ.get("RETAILMODEL_REGISTRY_PORT") or DEFAULT_REGISTRY_PORT
        try:
            registry_port = int(port)
        except ValueError:
            message = f"RETAILMODEL_REGISTRY_PORT must be a port number, not {port!r}"
            raise ValueError(message) from None
        if not 1024 <= registry_port <= 65535:
            raise ValueError(f"RETAILMODEL_REGISTRY_PORT {registry_port} is out of range")
        return cls(cache, Path(registry).expanduser(), registry_port)

    @property
    def images_dir(self) -> Path:
        """podman's settings for our invocations, build logs, the base image's scratch root."""
        return self.cache_dir / "images"

    @property
    def log_dir(self) -> Path:
        return self.images_dir / "logs"

    @property
    def tools_dir(self) -> Path:
        """Go tools built from the module proxy, one folder per tool and version (as the
        Makefile builds kustomize and actionlint)."""
        return self.cache_dir / "tools"

    @property
    def registry_address(self) -> str:
        return f"127.0.0.1:{self.registry_port}"
