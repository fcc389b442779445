"""The real node's pods at ``down``: stopped through the CRI, then any stray shim or container.

Stopping containerd does not stop pods (their shims and containers live on, veths stay), so
every pod sandbox is stopped and removed through the CRI first (``crictl stopp``/``rmp``), which
also runs CNI's DEL (veth, IP address, port mappings). Whatever still runs after containerd
stopped (a shim of our socket, a runc container under our root) is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from retail_tools.cluster.config import ClusterConfig, NodeLayout
from retail_tools.cluster.network import run

CRI_TIMEOUT = "--timeout=30s"


def remove_pods(config: ClusterConfig) -> int:
    """Stop and remove every pod sandbox and container; returns how many pods there were."""
    socket = f"unix://{config.node.containerd_socket}"
    crictl = (str(config.binary("crictl")), CRI_TIMEOUT, "-r", socket, "-i", socket)
    pods = run(*crictl, "pods", "-q").stdout.split()
    if pods:
        run(*crictl, "stopp", *pods)
        run(*crictl, "rmp", "--force", *pods)
    for container in run(*crictl, "ps", "-a", "-q").stdout.split():
        run(*crictl, "rm", "--force", container, check=False)
    return len(pods)


def kill_strays(node: NodeLayout) -> list[str]:
    """Kill shims of our containerd socket and delete runc containers under our runc root."""
    done = []
    for pid, argv in processes_naming(str(node.containerd_socket)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        done.append(f"killed {argv[:80]} (pid {pid})")
    runc_root = node.run / "runc"
    if runc_root.is_dir():
        for container in run("runc", "--root", str(runc_root), "list", "-q").stdout.split():
            run("runc", "--root", str(runc_root), "kill", container, "KILL", check=False)
            run("runc", "--root", str(runc_root), "delete", "--force", container, check=False)
            done.append(f"deleted runc container {container}")
    return done


def processes_naming(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # it just exited
            continue
        if text in argv:
            found.append((int(entry.name), argv))
    return found


def pod_processes() -> list[tuple[int, str]]:
    """Processes in a kubepods cgroup: pod containers and pause processes, which name none of
    our folders on their command lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if "/kubepods" not in (entry / "cgroup").read_text():
                continue
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        found.append((int(entry.name), argv))
    return found
