"""What the real node left on this machine once it is down: one line per leftover, none when
``down`` undid everything ``up`` changed.

Looks at everything the node's processes are known to touch: processes (our binaries and
metrics-server, which reads the node, anything naming the node's folders, anything in a
kubepods cgroup), the node's loopback ports, mounts
under its folders, the bridge, iptables and ip6tables chains and the rules jumping to them,
kubepods cgroups, the kubelet's and CNI's fixed-path files, conntrack entries of the pod range,
and every recorded sysctl against the value it had before the node first started.
"""

from __future__ import annotations

from pathlib import Path

from retail_tools import processes
from retail_tools.cluster import network
from retail_tools.cluster.config import ClusterConfig
from retail_tools.cluster.node import (
    KUBE_PROXY_HEALTHZ_PORT,
    KUBE_PROXY_METRICS_PORT,
    KUBELET_HEALTHZ_PORT,
)
from retail_tools.cluster.sandboxes import pod_processes, processes_naming


def leftovers(config: ClusterConfig, *, podman_running: bool) -> list[str]:
    """Every trace of the real node; ``CNI-*`` chains count only while podman runs nothing
    (podman's CNI networks share them)."""
    node = config.node
    found: list[str] = []
    pids: dict[int, str] = {}
    for text in (str(node.root), str(node.run), str(config.binary("kubelet"))):
        pids.update(processes_naming(text))
    pids.update(pod_processes())
    pids.update(_running(str(config.binary("kube-proxy"))))
    pids.update(_running(str(config.metrics_server_binary)))
    found += [f"process {pid}: {argv[:120]}" for pid, argv in sorted(pids.items())]
    for port in (KUBELET_HEALTHZ_PORT, KUBE_PROXY_METRICS_PORT, KUBE_PROXY_HEALTHZ_PORT):
        if processes.port_listening(port):
            found.append(f"a listener on 127.0.0.1:{port}")
    found += [
        f"mount {line.split()[1]}"
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith((f"{node.root}/", f"{node.run}/"))
        or line.split()[1] in (str(node.root), str(node.run))
    ]
    if network.run("ip", "link", "show", node.bridge, check=False).returncode == 0:
        found.append(f"bridge {node.bridge}")
    pattern = network.OUR_CHAINS_ONLY if podman_running else network.NODE_CHAINS
    for command in network.IPTABLES:
        for table in network.TABLES:
            found += [
                f"{command} -t {table} chain {name}"
                for name in network.chains(command, table, pattern)
            ]
            found += [
                f"{command} -t {table} rule {rule}"
                for rule in network.jumps(command, table, pattern)
            ]
    found += [f"cgroup {cgroup}" for cgroup in network.kubepods_cgroups()]
    stale = [*network.cni_cache_entries(), *network.kubelet_files(node)]
    found += [f"file {path}" for path in [*stale, *network.created_paths(node)]]
    entries = network.run("conntrack", "-L", "-s", node.pod_cidr, check=False).stdout
    if count := len(entries.splitlines()):
        found.append(f"{count} conntrack entries from {node.pod_cidr}")
    found += _changed_sysctls(config)
    return found


def _running(binary: str) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and processes.runs(int(entry.name), binary):
            found[int(entry.name)] = binary
    return found


def _changed_sysctls(config: ClusterConfig) -> list[str]:
    return [
        f"sysctl {key}={current} (was {value})"
        for key, value in network.load_baseline(config.node).get("sysctls", {}).items()
        if (current := network.read_sysctl(key)) != value
    ]
