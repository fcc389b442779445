"""What the real node changes on the host, made and undone: the pod bridge, two firewall
chains of our own, and the sysctls that the kubelet, kube-proxy and CNI change.

``prepare`` records the host settings once (before anything changes them), creates the bridge
with its fixed gateway address (so the API server can advertise it before any pod exists) and
the firewall: ``RMNODE-EGRESS`` drops whatever a pod sends out of another interface (pods reach
this machine and each other, nothing else), ``RMNODE-INPUT`` lets only loopback and the bridge
reach the API server's port (it binds every interface so that pods can reach it), and
``RMNODE-REGISTRY`` (nat) sends what pods send to the gateway's registry port to the local
registry on loopback (with ``route_localnet`` on the bridge alone), so that a pod such as the
in-cluster operator reads the registry the node's containerd pulls from, which listens on
loopback only.
``clean_up`` removes everything the node's processes leave once they are stopped (mounts,
veths, the bridge, ``KUBE-*``/``CNI-*``/``RMNODE-*`` chains in both IP families, kubepods
cgroups, the kubelet's fixed-path files, CNI's cache) and restores the recorded settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import TypedDict

from retail_tools.cluster.config import ClusterConfig, NodeLayout
from retail_tools.cluster.node import CNI_NETWORK

# The kubelet (protectKernelDefaults off) sets vm.overcommit_memory, kernel.panic and
# kernel.panic_on_oops; kube-proxy's localhost NodePorts set route_localnet; the CNI bridge
# plugin (and podman) set ip_forward.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# Folders the kubelet and CNI create at fixed paths whatever their configuration says.
FIXED_PATHS = (Path("/var/lib/kubelet"), Path("/var/log/containers"))
CNI_CACHE = Path("/var/lib/cni/results")
EGRESS_CHAIN = "RMNODE-EGRESS"
INPUT_CHAIN = "RMNODE-INPUT"
REGISTRY_CHAIN = "RMNODE-REGISTRY"
# Chains made by kube-proxy and the kubelet (KUBE-), the CNI plugins (CNI-) and us (RMNODE-).
NODE_CHAINS = re.compile(r"^(KUBE-|CNI-|RMNODE-)")
OUR_CHAINS_ONLY = re.compile(r"^(KUBE-|RMNODE-)")
TABLES = ("filter", "nat", "mangle", "raw")
IPTABLES = ("iptables", "ip6tables")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class HostError(RuntimeError):
    """A host command failed; the message names it and what it printed."""


class Baseline(TypedDict, total=False):
    sysctls: dict[str, str]
    absent_paths: list[str]  # fixed paths that did not exist (removed again if left empty)


def prepare(config: ClusterConfig) -> None:
    node = config.node
    node.run.mkdir(parents=True, exist_ok=True)
    if not node.baseline_file.exists():
        baseline: Baseline = {
            "sysctls": {key: value for key in SYSCTLS if (value := read_sysctl(key)) is not None},
            "absent_paths": [str(path) for path in FIXED_PATHS if not path.exists()],
        }
        node.baseline_file.write_text(json.dumps(baseline, indent=2))
        node.restored_file.unlink(missing_ok=True)
    if run("ip", "link", "show", node.bridge, check=False).returncode != 0:
        run("ip", "link", "add", node.bridge, "type", "bridge")
    if f"inet {node.gateway}/" not in run("ip", "-4", "addr", "show", "dev", node.bridge).stdout:
        prefix = node.pod_cidr.split("/")[1]
        run("ip", "addr", "add", f"{node.gateway}/{prefix}", "dev", node.bridge)
    run("ip", "link", "set", node.bridge, "up")
    # Lets the bridge route to 127.0.0.1 (the registry's DNAT below). Set on the bridge alone,
    # so it goes with the bridge; kube-proxy sets net.ipv4.conf.all's (in SYSCTLS).
    _sysctl_path(f"net.ipv4.conf.{node.bridge}.route_localnet").write_text("1")
    _chain("PREROUTING", REGISTRY_CHAIN, registry_rules(node, config.registry), table="nat")
    _chain(
        "FORWARD",
        EGRESS_CHAIN,
        [
            ["-i", node.bridge, "-o", node.bridge, "-j", "RETURN"],
            ["-i", node.bridge, "-j", "DROP"],
        ],
    )
    _chain(
        "INPUT",
        INPUT_CHAIN,
        [
            ["-i", "lo", "-j", "RETURN"],
            ["-i", node.bridge, "-j", "RETURN"],
            ["-p", "tcp", "--dport", str(config.ports.apiserver), "-j", "DROP"],
        ],
    )


def registry_rules(node: NodeLayout, registry: str) -> list[list[str]]:
    """The nat rule that lets pods reach the loopback registry ``registry`` (host:port) at
    ``http://<gateway>:<port>``: only what enters from the bridge, for the gateway's address
    and the registry's port; every other interface still finds nothing there."""
    host, port = registry.rsplit(":", 1)
    if host != "127.0.0.1":
        raise ValueError(f"the local registry listens on loopback, not {registry}")
    return [
        ["-i", node.bridge, "-d", node.gateway, "-p", "tcp", "--dport", port,
         "-j", "DNAT", "--to-destination", registry],
    ]  # fmt: skip


def registry_url(node: NodeLayout, registry: str) -> str:
    """Where pods reach the local registry (``registry_rules``)."""
    return f"http://{node.gateway}:{registry.rsplit(':', 1)[1]}"


def clean_up(node: NodeLayout, *, podman_running: bool) -> list[str]:
    """Remove what the stopped node left and restore the host settings; returns what it did.

    ``CNI-*`` chains are shared with podman's CNI networks, so they stay while podman runs a
    container."""
    done: list[str] = []
    for mount in _mounts_under(node):
        if run("umount", mount, check=False).returncode != 0:
            run("umount", "-l", mount, check=False)
        done.append(f"unmounted {mount}")
    for veth in _links_on(node.bridge):
        run("ip", "link", "del", veth, check=False)
        done.append(f"deleted veth {veth}")
    if run("ip", "link", "show", node.bridge, check=False).returncode == 0:
        run("ip", "link", "del", node.bridge)
        done.append(f"deleted bridge {node.bridge}")
    for stale in [*cni_cache_entries(), *kubelet_files(node)]:
        stale.unlink(missing_ok=True)
        done.append(f"deleted {stale}")
    for source_or_destination in ("-s", "-d"):
        run("conntrack", "-D", source_or_destination, node.pod_cidr, check=False)
    pattern = OUR_CHAINS_ONLY if podman_running else NODE_CHAINS
    for command in IPTABLES:
        for table in TABLES:
            done += _delete_chains(command, table, pattern)
    for cgroup in kubepods_cgroups():
        for folder in sorted(cgroup.glob("**/"), key=lambda path: len(path.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        done.append(f"removed cgroup {cgroup}")
    done += _remove_fixed_paths(node)
    done += _restore_sysctls(node)
    # Runtime state only (sockets, runc's and containerd's state, emptied mount points); the
    # content under the node's root stays as a cache.
    shutil.rmtree(node.run, ignore_errors=True)
    return done


def read_sysctl(key: str) -> str | None:
    try:
        return _sysctl_path(key).read_text().strip()
    except OSError:
        return None


def chains(command: str, table: str, pattern: re.Pattern[str]) -> list[str]:
    listing = run(command, "-t", table, "-S", check=False).stdout.splitlines()
    return [
        line.split()[1]
        for line in listing
        if line.startswith("-N ") and pattern.match(line.split()[1])
    ]


def jumps(command: str, table: str, pattern: re.Pattern[str]) -> list[str]:
    """Rules of other chains that jump to a chain matching ``pattern``, as ``-A …`` lines."""
    found = []
    for line in run(command, "-t", table, "-S", check=False).stdout.splitlines():
        words = line.split()
        if words[:1] != ["-A"] or pattern.match(words[1]):
            continue
        if "-j" in words and pattern.match(words[words.index("-j") + 1]):
            found.append(line)
    return found


def kubepods_cgroups() -> list[Path]:
    return sorted([*CGROUP_ROOT.glob("*/kubepods*"), *CGROUP_ROOT.glob("kubepods*")])


def _chain(parent: str, name: str, rules: list[list[str]], table: str = "filter") -> None:
    """(Re)write chain ``name`` in ``table`` and jump to it first from ``parent``."""
    iptables = ("iptables", "-t", table)
    run(*iptables, "-N", name, check=False)
    run(*iptables, "-F", name)
    for rule in rules:
        run(*iptables, "-A", name, *rule)
    if run(*iptables, "-C", parent, "-j", name, check=False).returncode != 0:
        run(*iptables, "-I", parent, "1", "-j", name)


def _delete_chains(command: str, table: str, pattern: re.Pattern[str]) -> list[str]:
    done = []
    for rule in jumps(command, table, pattern):
        run(command, "-t", table, "-D", *shlex.split(rule)[1:], check=False)
    ours = chains(command, table, pattern)
    for name in ours:
        run(command, "-t", table, "-F", name, check=False)
    for name in ours:
        run(command, "-t", table, "-X", name, check=False)
        done.append(f"deleted {command} -t {table} chain {name}")
    return done


def _mounts_under(node: NodeLayout) -> list[str]:
    """Mount points under the node's folders, deepest first (so each unmount can succeed)."""
    roots = (str(node.root), str(node.run))
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    ours = [p for p in points if any(p == root or p.startswith(root + "/") for root in roots)]
    return sorted(set(ours), key=lambda point: point.count("/"), reverse=True)


def _links_on(bridge: str) -> list[str]:
    listing = run("ip", "-o", "link", "show", "master", bridge, check=False).stdout
    return [line.split(": ")[1].split("@")[0] for line in listing.splitlines() if ": " in line]


def cni_cache_entries() -> list[Path]:
    # containerd's CRI sets up each pod's loopback through CNI too ("cni-loopback").
    return [*CNI_CACHE.glob(f"{CNI_NETWORK}-*"), *CNI_CACHE.glob("cni-loopback-*")]


def kubelet_files(node: NodeLayout) -> list[Path]:
    """What the kubelet writes outside its root folder: its device-plugin socket and the
    /var/log/containers links to our pods' logs."""
    found = [
        path for path in (Path("/var/lib/kubelet/device-plugins/kubelet.sock"),) if path.exists()
    ]
    logs = Path("/var/log/containers")
    if logs.is_dir():
        found += [
            link
            for link in logs.iterdir()
            if link.is_symlink() and os.readlink(link).startswith(f"{node.root}/")
        ]
    return found


def created_paths(node: NodeLayout) -> list[Path]:
    """The fixed paths that did not exist before the node first started and exist now."""
    return [
        Path(path) for path in load_baseline(node).get("absent_paths", []) if Path(path).exists()
    ]


def _remove_fixed_paths(node: NodeLayout) -> list[str]:
    done = []
    for path in created_paths(node):
        for folder in sorted(path.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: never what someone else put there
        if not path.exists():
            done.append(f"removed {path}")
    return done


def _restore_sysctls(node: NodeLayout) -> list[str]:
    if not node.baseline_file.exists():  # nothing recorded since the last restore
        return []
    baseline = load_baseline(node)
    done = []
    for key, value in baseline.get("sysctls", {}).items():
        if read_sysctl(key) != value:
            _sysctl_path(key).write_text(value)
            done.append(f"restored {key}={value}")
    node.restored_file.write_text(json.dumps(baseline, indent=2))
    node.baseline_file.unlink()
    return done


def load_baseline(node: NodeLayout) -> Baseline:
    """The recorded host settings (or, after ``down``, the ones it restored); empty if none."""
    for path in (node.baseline_file, node.restored_file):
        if path.exists():
            loaded: Baseline = json.loads(path.read_text())
            return loaded
    return {}


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def run(
    *argv: str, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a host command for its output; with ``check``, a failure raises ``HostError``."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
    if check and result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise HostError(f"`{' '.join(argv)}` failed: {detail}")
    return result
