"""``up`` is idempotent and ``down`` leaves nothing behind, on a private cluster (own folder,
own ports) so the session's shared cluster keeps running for the other tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_tools import processes
from retail_tools.cluster import build, cluster
from retail_tools.cluster.config import ClusterConfig

pytestmark = pytest.mark.cluster


@pytest.fixture
def private_cluster(private_cluster_config: ClusterConfig) -> Iterator[ClusterConfig]:
    build.build(private_cluster_config)
    try:
        yield private_cluster_config
    finally:
        cluster.down(private_cluster_config)  # whatever the test left, never leak processes


def test_up_is_idempotent_and_down_leaves_no_process_or_port(
    private_cluster: ClusterConfig,
) -> None:
    config = private_cluster
    started = cluster.up(config)
    assert set(started) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    running = cluster.status(config)
    pids = {item.name: item.pid for item in running}
    assert all(item.healthy for item in running)
    assert len(cluster.ready_nodes(config)) == 3
    assert any(processes.port_listening(port) for port in config.ports.all())
    assert len(_processes_mentioning(str(config.cluster_dir))) == 5

    assert cluster.up(config) == ()  # a second up starts nothing
    assert {item.name: item.pid for item in cluster.status(config)} == pids

    stopped = cluster.down(config)

    assert set(stopped) == set(started)
    assert [port for port in config.ports.all() if processes.port_listening(port)] == []
    assert _processes_mentioning(str(config.cluster_dir)) == []
    assert all(item.pid is None and not item.healthy for item in cluster.status(config))
    assert cluster.down(config) == ()  # and a second down has nothing to do


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (every component names its folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # not a process, or it just exited
            continue
        if text in argv:
            found.append(argv)
    return found
