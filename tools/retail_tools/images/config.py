"""Where the image tooling keeps its files, and which port the local registry listens on.

``ImagesConfig.from_settings`` takes them from the tooling's one settings object
(``retail_tools.settings``: ``RETAILMODEL_CACHE``, ``RETAILMODEL_REGISTRY_DIR``,
``RETAILMODEL_REGISTRY_PORT``) and they are passed down, so a test can run a private registry
with its own folder and port. The image tooling writes below ``<cache>/images`` and builds
crane into ``<cache>/tools``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retail_tools.settings import Settings


@dataclass(frozen=True)
class ImagesConfig:
    cache_dir: Path
    registry_dir: Path
    registry_port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImagesConfig:
        return cls(settings.cache, settings.registry_dir, settings.registry_port)

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
