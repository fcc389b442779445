"""The local cluster's lifecycle: ``up`` (idempotent), ``down`` (nothing left behind), ``status``.

``up`` starts whichever components are not running yet, in dependency order, waiting for each
to answer its health endpoint before starting the next; then it registers the fake nodes kwok
plays and waits until they are Ready and the ``default`` namespace has its ServiceAccount (the
moment pods can be created). If start-up fails, what this call started is stopped again, and
the error names the component and its log.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from retail_tools.cluster import processes
from retail_tools.cluster.build import is_built
from retail_tools.cluster.components import (
    Component,
    Probe,
    components,
    fake_nodes_manifest,
    log_path,
    write_component_files,
)
from retail_tools.cluster.config import FAKE_NODE_COUNT, ClusterConfig
from retail_tools.cluster.pki import ADMIN, Pki, ensure_pki

START_TIMEOUT_SECONDS = 120.0
PORTS_FREE_TIMEOUT_SECONDS = 10.0


class ClusterError(RuntimeError):
    """The cluster could not be brought to the asked state; the message says why and where."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    port: int
    healthy: bool
    log: Path


Notify = Callable[[str], None]


def up(config: ClusterConfig, notify: Notify = lambda _: None) -> tuple[str, ...]:
    """Bring every component up; returns the names of those this call started."""
    if not is_built(config):
        raise ClusterError(
            "the control-plane binaries are not built: run `retailctl cluster build`"
        )
    for folder in (config.cluster_dir, config.run_dir, config.log_dir, config.etcd_data_dir):
        folder.mkdir(parents=True, exist_ok=True)
    config.etcd_data_dir.chmod(0o700)  # etcd refuses a data dir others can read
    write_component_files(config, ensure_pki(config.pki_dir))
    started: list[str] = []
    try:
        for component in components(config):
            if processes.running_pid(component.name, config.run_dir, component.binary):
                _wait_healthy(config, component)
                continue
            if processes.port_listening(component.port):
                raise ClusterError(
                    f"port {component.port} (for {component.name}) is in use by another "
                    "process; pick other ports with RETAILMODEL_CLUSTER_PORT_BASE"
                )
            started_at = time.monotonic()
            processes.start(
                component.name, component.argv, config.run_dir, log_path(config, component)
            )
            started.append(component.name)
            _wait_healthy(config, component)
            notify(f"{component.name} is up ({time.monotonic() - started_at:.1f}s)")
        _ensure_nodes(config)
        notify(f"{FAKE_NODE_COUNT} kwok nodes are Ready")
    except BaseException:
        down(config, only=started)
        raise
    return tuple(started)


def down(config: ClusterConfig, only: Iterable[str] | None = None) -> tuple[str, ...]:
    """Stop the cluster's processes (or just ``only``); returns the names that were running."""
    wanted = set(only) if only is not None else None
    stopped = [
        component.name
        for component in reversed(components(config))
        if (wanted is None or component.name in wanted)
        and processes.stop(component.name, config.run_dir, component.binary)
    ]
    if wanted is None:
        _wait_ports_free(config)
    return tuple(stopped)


def status(config: ClusterConfig) -> tuple[ComponentStatus, ...]:
    return tuple(
        ComponentStatus(
            name=component.name,
            pid=(pid := processes.running_pid(component.name, config.run_dir, component.binary)),
            port=component.port,
            healthy=pid is not None and _probe(config, component),
            log=log_path(config, component),
        )
        for component in components(config)
    )


def kubectl(
    config: ClusterConfig,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    kubeconfig: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the cluster's own kubectl against it (as admin unless another ``kubeconfig`` is
    given); with ``check``, a failure raises."""
    credentials = kubeconfig or config.kubeconfig
    result = subprocess.run(
        [str(config.binary("kubectl")), f"--kubeconfig={credentials}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def ready_nodes(config: ClusterConfig) -> tuple[str, ...]:
    """Names of the nodes whose Ready condition is True."""
    listing = json.loads(kubectl(config, "get", "nodes", "-o", "json").stdout)
    return tuple(
        node["metadata"]["name"]
        for node in listing["items"]
        if any(
            condition["type"] == "Ready" and condition["status"] == "True"
            for condition in node.get("status", {}).get("conditions", [])
        )
    )


def _ensure_nodes(config: ClusterConfig) -> None:
    kubectl(config, "apply", "-f", "-", stdin=fake_nodes_manifest(FAKE_NODE_COUNT))
    deadline = f"--timeout={int(START_TIMEOUT_SECONDS)}s"
    kubectl(config, "wait", "--for=condition=Ready", "node", "-l", "type=kwok", deadline)
    # Pods can only be admitted once the namespace's ServiceAccount exists.
    _poll(
        lambda: kubectl(config, "get", "serviceaccount", "default", check=False).returncode == 0,
        "the controller manager did not create the default ServiceAccount",
        config.log_dir / "kube-controller-manager.log",
    )


def _wait_healthy(config: ClusterConfig, component: Component) -> None:
    log = log_path(config, component)

    def healthy() -> bool:
        pid = processes.running_pid(component.name, config.run_dir, component.binary)
        if pid is None:
            lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
            last = lines[-1] if lines else "no output"
            raise ClusterError(f"{component.name} exited while starting ({last}); see {log}")
        return _probe(config, component)

    _poll(healthy, f"{component.name} did not become healthy", log)


def _poll(check: Callable[[], bool], failure: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise ClusterError(f"{failure} within {START_TIMEOUT_SECONDS:.0f}s; see {log}")
        time.sleep(0.25)


def _probe(config: ClusterConfig, component: Component) -> bool:
    context: ssl.SSLContext | None = None
    if component.probe is Probe.ADMIN_TLS:
        pki = Pki(config.pki_dir)
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        admin = pki.client(ADMIN)
        context.load_cert_chain(str(admin.cert), str(admin.key))
    elif component.probe is Probe.SELF_SIGNED_TLS:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the component's throwaway self-signed cert
    try:
        with urllib.request.urlopen(component.health_url, timeout=2, context=context) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ports_free(config: ClusterConfig) -> None:
    deadline = time.monotonic() + PORTS_FREE_TIMEOUT_SECONDS
    while busy := [port for port in config.ports.all() if processes.port_listening(port)]:
        if time.monotonic() > deadline:
            raise ClusterError(
                f"ports {', '.join(map(str, busy))} are still in use after stopping the cluster"
            )
        time.sleep(0.2)
