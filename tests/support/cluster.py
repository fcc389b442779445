"""The local Kubernetes control plane for tests that need a real API server.

``local_cluster`` (session-scoped) builds or reuses the binaries, brings the cluster described
by the environment up (``RETAILMODEL_CLUSTER_DIR`` / ``RETAILMODEL_CLUSTER_PORT_BASE``, the
same one ``retailctl cluster up`` runs by default), reuses whatever already runs, and stops
what test sessions started once the last concurrent session ends. ``private_cluster_config``
describes a second, independent cluster (own folder, own free ports) for tests that must stop
theirs.

Tests reach the cluster over HTTPS like any client: with ``local_cluster.kubeconfig`` or the
``local_cluster.kubectl`` handle (the cluster's own kubectl, ``retail_tools.cluster.kubectl``).
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from retail_tools import processes
from retail_tools.cluster import build, cluster
from retail_tools.cluster.config import ClusterConfig, Ports
from retail_tools.cluster.kubectl import Kubectl
from retail_tools.ports import free_port_base
from retail_tools.settings import current

TEST_NAMESPACE_LABEL = "retailmodel.io/test-namespace"


@dataclass(frozen=True)
class LocalCluster:
    config: ClusterConfig

    @property
    def kubeconfig(self) -> Path:
        return self.config.kubeconfig

    @property
    def kubectl(self) -> Kubectl:
        """The cluster's own kubectl (as admin unless a call names another ``kubeconfig``);
        with ``check``, a non-zero exit raises ``ClusterError`` with kubectl's message."""
        return self.config.kubectl

    def token_kubeconfig(self, token: str, path: Path) -> Path:
        """A kubeconfig for the same cluster that authenticates with ``token`` only."""
        document = yaml.safe_load(self.kubeconfig.read_text())
        user = document["users"][0]
        user["user"] = {"token": token}
        path.write_text(yaml.safe_dump(document))
        return path

    def get_json(self, *args: str) -> Any:
        return self.kubectl.get_json(*args)

    def test_namespace(self, prefix: str, labels: dict[str, str] | None = None) -> str:
        """A new namespace ``<prefix>-<random>``, labelled as a test's: the next session to
        start alone deletes what a killed run left."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        metadata = {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true", **(labels or {})}}
        self.apply(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}))
        return name

    def apply(self, manifest: str, namespace: str | None = None) -> None:
        self.kubectl.apply(manifest, namespace)


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    config = ClusterConfig.from_settings(current())
    build.build(config)
    with _sessions(config) as sessions:
        alone = sessions.join(cluster.up(config))
    local = LocalCluster(config)
    if alone:
        # The cluster keeps its state between runs: namespaces a killed run could not delete
        # (and the RetailModels in them) would otherwise meet this run's operators.
        local.kubectl("delete", "namespaces", "-l", TEST_NAMESPACE_LABEL, "--wait=false")
    try:
        yield local
    finally:
        with _sessions(config) as sessions:
            if last_out := sessions.leave():
                cluster.down(config, only=last_out)


class _Sessions:
    """Test sessions sharing the default cluster (several engineers, several pytest runs).

    Each session registers its pid; components a session started are recorded as started by
    tests. The last session to leave stops those, so no session pulls the cluster from under
    another, and a cluster someone started by hand (``retailctl cluster up``) is left alone.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started_file = folder / "started-by-tests"

    def join(self, started: tuple[str, ...]) -> bool:
        """Register; True when no other session is live."""
        others = [s for s in self.folder.glob("*.session") if processes.alive(int(s.stem))]
        (self.folder / f"{os.getpid()}.session").touch()
        if started:
            known = set(self._started())
            self.started_file.write_text("\n".join(sorted(known | set(started))))
        return not others

    def leave(self) -> tuple[str, ...]:
        """Unregister; returns what to stop if this was the last live session."""
        (self.folder / f"{os.getpid()}.session").unlink(missing_ok=True)
        for session in self.folder.glob("*.session"):
            if processes.alive(int(session.stem)):
                return ()
            session.unlink()
        started = self._started()
        self.started_file.unlink(missing_ok=True)
        return started

    def _started(self) -> tuple[str, ...]:
        if not self.started_file.exists():
            return ()
        return tuple(self.started_file.read_text().split())


@contextmanager
def _sessions(config: ClusterConfig) -> Iterator[_Sessions]:
    folder = config.run_dir / "test-sessions"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield _Sessions(folder)


@pytest.fixture
def cluster_namespace(local_cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = local_cluster.test_namespace("test")
    local_cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name)
    try:
        yield name
    finally:
        local_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def private_cluster_config(tmp_path: Path) -> ClusterConfig:
    """A second cluster sharing the built binaries but nothing else (folder, ports)."""
    shared = ClusterConfig.from_settings(current())
    return ClusterConfig(
        cache_dir=shared.cache_dir,
        cluster_dir=tmp_path / "cluster",
        ports=Ports(free_port_base(6)),
        toolchain=shared.toolchain,
    )
