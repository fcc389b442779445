"""The tooling's settings: one pydantic-settings object, read from the environment once.

Every folder and port the local stack uses comes from here: the cache root and what lives below
it (the control plane's binaries and state, the registry, Argo CD, Go tools such as crane and
kustomize), the cluster's ports and whether it runs the real node. ``current()`` reads the
environment the first time it is asked and hands the same object to every later caller (the
commands, the demo, the test fixtures, the benchmarks); ``cluster.config``, ``images.config``
and ``argocd.config`` turn it into the values their packages pass down. A test that changes the
environment reads a fresh one with ``Settings.from_env()``.

Environment variables (all optional):

``RETAILMODEL_CACHE``
    cache root, default ``~/.cache/retailmodel``.
``RETAILMODEL_CLUSTER_DIR``
    the cluster's state folder (certificates, kubeconfigs, etcd data, pids, ``logs/``),
    default ``<cache>/cluster``.
``RETAILMODEL_CLUSTER_PORT_BASE``
    first of six consecutive loopback ports, default 16443 (the API server's port).
``RETAILMODEL_REAL_NODE``
    ``1`` (default) also runs the machine's one real node (containerd, kubelet, kube-proxy) in
    the cluster; ``0`` runs the control plane and kwok's fake nodes only.
``RETAILMODEL_REGISTRY_DIR``
    the local registry's state folder (blobs, pid, log), default ``<cache>/registry``.
``RETAILMODEL_REGISTRY_PORT``
    the local registry's loopback port, default 5000.
``RETAILMODEL_ARGOCD_DIR``
    the running Argo CD's state (pids, logs, redis data, the repo-server's work folders),
    default ``<cache>/argocd``.
``RETAILMODEL_ARGOCD_PORT_BASE``
    first of Argo CD's four consecutive loopback ports, default 16480.
``KUSTOMIZE``
    the kustomize Argo CD's repo-server and the real-node tooling run, default the one ``make``
    builds, ``<cache>/tools/kustomize-v5.7.1/kustomize``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RETAILMODEL_"
KUSTOMIZE_VERSION = "v5.7.1"  # the Makefile's
# Each port base must leave room for the ports counted from it.
CLUSTER_PORTS = 6
ARGOCD_PORTS = 4


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True)

    cache: Path
    cluster_dir: Path
    cluster_port_base: int = Field(16443, ge=1024, le=65535 - CLUSTER_PORTS)
    real_node: Literal["0", "1"] = "1"
    registry_dir: Path
    registry_port: int = Field(5000, ge=1024, le=65535)
    argocd_dir: Path
    argocd_port_base: int = Field(16480, ge=1024, le=65535 - ARGOCD_PORTS)
    kustomize: Path = Field(validation_alias="KUSTOMIZE")

    @model_validator(mode="before")
    @classmethod
    def _folders_below_the_cache(cls, data: Any) -> Any:
        """Folders left unset go below the cache root; ``~`` means the home folder."""
        if not isinstance(data, dict):
            return data
        cache = Path(data.get("cache") or Path.home() / ".cache" / "retailmodel").expanduser()
        defaults = {
            "cluster_dir": cache / "cluster",
            "registry_dir": cache / "registry",
            "argocd_dir": cache / "argocd",
            "KUSTOMIZE": cache / "tools" / f"kustomize-{KUSTOMIZE_VERSION}" / "kustomize",
        }
        given = {key: Path(value).expanduser() for key, value in data.items() if key in defaults}
        return {**data, **defaults, **given, "cache": cache}

    @classmethod
    def from_env(cls) -> Settings:
        """The settings as the environment gives them now; a bad value is one line naming the
        variable."""
        try:
            return cls()
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            variable = field if field.isupper() else ENV_PREFIX + field.upper()
            raise ValueError(
                f"{variable} {first['msg'].removeprefix('Input ')}, not {first.get('input')!r}"
            ) from None

    @property
    def has_real_node(self) -> bool:
        return self.real_node == "1"

    @property
    def registry_address(self) -> str:
        """Where the local registry standing in for ECR's endpoint listens."""
        return f"127.0.0.1:{self.registry_port}"


@functools.cache
def current() -> Settings:
    """This process's settings, read from the environment on first use."""
    return Settings.from_env()
