"""The local cluster's lifecycle: ``up`` (idempotent), ``down`` (nothing left behind), ``status``.

``up`` starts whichever components are not running yet (and restarts one whose command line
changed), in dependency order, waiting for each to answer its health endpoint before starting
the next; then it registers the fake nodes kwok plays and waits until they are Ready and the
``default`` namespace has its ServiceAccount (the moment pods can be created). With the real
node (``ClusterConfig.real_node``), the host is prepared first (``network``) and containerd,
the pause image, the kubelet and kube-proxy follow, until the node is Ready; then
metrics-server, until the API server serves the metrics API. If start-up fails, what this call
started is stopped again, and the error names the component and its log.

``down`` unregisters the metrics API, stops metrics-server and the node's pods through the CRI,
then every process, then removes what the node left on the host and restores the host's
settings (``leftovers`` checks that nothing remains).
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from retail_tools import processes
from retail_tools.cluster import metrics_server, network, node, node_images, sandboxes
from retail_tools.cluster.build import is_built
from retail_tools.cluster.components import (
    Component,
    Probe,
    components,
    fake_nodes_manifest,
    log_path,
    write_component_files,
)
from retail_tools.cluster.config import FAKE_NODE_COUNT, REAL_NODE_LABEL, ClusterConfig
from retail_tools.cluster.errors import ClusterError
from retail_tools.cluster.pki import ADMIN, Pki, ensure_pki
from retail_tools.polling import Timeout, answers, wait_until

START_TIMEOUT_SECONDS = 120.0
PORTS_FREE_TIMEOUT_SECONDS = 10.0


Notify = Callable[[str], None]


def up(config: ClusterConfig, notify: Notify = lambda _: None) -> tuple[str, ...]:
    """Bring every component up; returns the names of those this call started."""
    if not is_built(config):
        raise ClusterError(
            "the control-plane binaries are not built: run `retailctl cluster build`"
        )
    config = _with_node(config)
    if config.real_node:
        _claim_node(config)
    for folder in (config.cluster_dir, config.run_dir, config.log_dir, config.etcd_data_dir):
        folder.mkdir(parents=True, exist_ok=True)
    config.etcd_data_dir.chmod(0o700)  # etcd refuses a data dir others can read
    pki = ensure_pki(config.pki_dir)
    write_component_files(config, pki)
    started: list[str] = []
    try:
        if config.real_node:
            network.prepare(config)  # the bridge address the API server advertises
            node.write_node_files(config, pki, config.registry)
            metrics_server.write_files(config, pki)
        _start(config, components(config), started, notify)
        _ensure_nodes(config)
        notify(f"{FAKE_NODE_COUNT} kwok nodes are Ready")
        if config.real_node:
            _node_up(config, started, notify)
            _metrics_up(config, pki, started, notify)
        else:
            # A metrics API left registered with nothing behind it would fail every discovery
            # (and with it namespace deletion).
            _forget_metrics_api(config)
    except BaseException:
        down(config, only=started)
        raise
    return tuple(started)


def _start(
    config: ClusterConfig, wanted: Iterable[Component], started: list[str], notify: Notify
) -> None:
    for component in wanted:
        if pid := processes.running_pid(component.name, config.run_dir, component.binary):
            if processes.command_line(pid) == component.argv:
                _wait_healthy(config, component)
                continue
            notify(f"{component.name}: its command line changed, restarting it")
            processes.stop(component.name, config.run_dir, component.binary)
        if component.port is not None and processes.port_listening(component.port):
            raise ClusterError(
                f"port {component.port} (for {component.name}) is in use by another "
                "process; pick other ports with RETAILMODEL_CLUSTER_PORT_BASE"
            )
        started_at = time.monotonic()
        processes.start(component.name, component.argv, config.run_dir, log_path(config, component))
        started.append(component.name)
        _wait_healthy(config, component)
        notify(f"{component.name} is up ({time.monotonic() - started_at:.1f}s)")


def _node_up(config: ClusterConfig, started: list[str], notify: Notify) -> None:
    containerd, *agents = node.node_components(config)
    started_at = time.monotonic()
    _start(config, (containerd,), started, notify)
    if node_images.ensure_pause_image(config, config.registry):
        notify("pause image imported into containerd")
    config.kubectl("apply", "-f", "-", stdin=node.kubelet_api_binding())
    _start(config, agents, started, notify)
    name = config.node.name
    _poll(
        lambda: name in ready_nodes(config),
        f"the real node {name} did not become Ready",
        log_path(config, agents[0]),
    )
    # The kubelet taints only at registration: a node object kept from an earlier run is
    # brought back to the scheme here.
    config.kubectl("taint", "node", name, node.taint(), "--overwrite")
    config.kubectl("label", "node", name, "=".join(REAL_NODE_LABEL), "--overwrite")
    notify(f"real node {name} is Ready ({time.monotonic() - started_at:.1f}s)")


def _metrics_up(config: ClusterConfig, pki: Pki, started: list[str], notify: Notify) -> None:
    config.kubectl.apply(metrics_server.manifests(config, pki))
    _start(config, (metrics_server.component(config),), started, notify)
    _poll(
        lambda: _api_service_available(config),
        f"the API server did not serve {metrics_server.API_SERVICE}",
        log_path(config, metrics_server.component(config)),
    )
    notify(f"the metrics API ({metrics_server.API_SERVICE}) is available")


def _api_service_available(config: ClusterConfig) -> bool:
    service = config.kubectl.get_json("apiservice", metrics_server.API_SERVICE)
    conditions = service.get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def _forget_metrics_api(config: ClusterConfig) -> None:
    config.kubectl(
        "delete", "apiservice", metrics_server.API_SERVICE, "--ignore-not-found", check=False
    )


def _with_node(config: ClusterConfig) -> ClusterConfig:
    """The config with ``real_node`` on if this cluster owns the machine's node right now
    (started with the node, asked about without it)."""
    owner = config.node.owner_file
    if config.real_node or not owner.exists() or Path(owner.read_text()) != config.cluster_dir:
        return config
    return dataclasses.replace(config, real_node=True)


def _claim_node(config: ClusterConfig) -> None:
    owner_file = config.node.owner_file
    if owner_file.exists() and (owner := Path(owner_file.read_text())) != config.cluster_dir:
        if any(
            processes.running_pid(part.name, owner / "run", part.binary)
            for part in node.node_components(config)
        ):
            raise ClusterError(
                f"the machine's real node runs for the cluster in {owner}; stop that one "
                "or set RETAILMODEL_REAL_NODE=0"
            )
    if missing := node.missing_host_tools():
        raise ClusterError(
            f"the real node needs {', '.join(missing)}: run `make host-packages` "
            "(or set RETAILMODEL_REAL_NODE=0)"
        )
    owner_file.parent.mkdir(parents=True, exist_ok=True)
    owner_file.write_text(str(config.cluster_dir))


def down(config: ClusterConfig, only: Iterable[str] | None = None) -> tuple[str, ...]:
    """Stop the cluster's processes (or just ``only``); returns the names that were running.

    A whole ``down`` of the cluster owning the real node also removes the node's pods and
    what it left on the host, and restores the host's settings."""
    config = _with_node(config)
    wanted = set(only) if only is not None else None
    stopped: list[str] = []
    if config.real_node:
        stopped += _node_down(config, wanted)
    stopped += [
        component.name
        for component in reversed(components(config))
        if (wanted is None or component.name in wanted)
        and processes.stop(component.name, config.run_dir, component.binary)
    ]
    if wanted is None:
        _wait_ports_free(config)
    return tuple(stopped)


def _node_down(config: ClusterConfig, wanted: set[str] | None) -> list[str]:
    containerd, kubelet, kube_proxy = parts = node.node_components(config)
    metrics = metrics_server.component(config)
    if wanted is not None and not wanted & {part.name for part in (*parts, metrics)}:
        return []
    stopped = []
    apiserver = next(part for part in components(config) if part.name == "kube-apiserver")
    if processes.running_pid(apiserver.name, config.run_dir, apiserver.binary):
        _forget_metrics_api(config)
    if processes.stop(metrics.name, config.run_dir, metrics.binary):
        stopped.append(metrics.name)
    # The kubelet first, so nothing restarts the pods stopped next.
    if processes.stop(kubelet.name, config.run_dir, kubelet.binary):
        stopped.append(kubelet.name)
    if processes.running_pid(containerd.name, config.run_dir, containerd.binary):
        sandboxes.remove_pods(config)
    for part in (kube_proxy, containerd):
        if processes.stop(part.name, config.run_dir, part.binary):
            stopped.append(part.name)
    sandboxes.kill_strays(config.node)
    network.clean_up(config.node, podman_running=podman_runs_containers())
    config.node.owner_file.unlink(missing_ok=True)
    return stopped


def podman_runs_containers() -> bool:
    """True while podman runs a container here (its CNI networks share the ``CNI-*`` chains)."""
    try:
        listing = subprocess.run(
            ["podman", "ps", "-q"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return False
    return bool(listing.stdout.strip())


def status(config: ClusterConfig) -> tuple[processes.Status, ...]:
    config = _with_node(config)
    with_node = (*node.node_components(config), metrics_server.component(config))
    every = components(config) + (with_node if config.real_node else ())
    return tuple(
        processes.Status(
            name=component.name,
            pid=(pid := processes.running_pid(component.name, config.run_dir, component.binary)),
            port=component.port,
            healthy=pid is not None and _probe(config, component),
            log=log_path(config, component),
        )
        for component in every
    )


def ready_nodes(config: ClusterConfig) -> tuple[str, ...]:
    """Names of the nodes whose Ready condition is True."""
    listing = config.kubectl.get_json("nodes")
    return tuple(
        node["metadata"]["name"]
        for node in listing["items"]
        if any(
            condition["type"] == "Ready" and condition["status"] == "True"
            for condition in node.get("status", {}).get("conditions", [])
        )
    )


def _ensure_nodes(config: ClusterConfig) -> None:
    config.kubectl("apply", "-f", "-", stdin=fake_nodes_manifest(FAKE_NODE_COUNT))
    deadline = f"--timeout={int(START_TIMEOUT_SECONDS)}s"
    config.kubectl("wait", "--for=condition=Ready", "node", "-l", "type=kwok", deadline)
    # Pods can only be admitted once the namespace's ServiceAccount exists.
    _poll(
        lambda: config.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
        "the controller manager did not create the default ServiceAccount",
        config.log_dir / "kube-controller-manager.log",
    )


def _wait_healthy(config: ClusterConfig, component: Component) -> None:
    log = log_path(config, component)

    def healthy() -> bool:
        pid = processes.running_pid(component.name, config.run_dir, component.binary)
        if pid is None:
            last = processes.last_line(log)
            raise ClusterError(f"{component.name} exited while starting ({last}); see {log}")
        return _probe(config, component)

    _poll(healthy, f"{component.name} did not become healthy", log)


def _poll(check: Callable[[], bool], failure: str, log: Path) -> None:
    try:
        wait_until(check, timeout=START_TIMEOUT_SECONDS)
    except Timeout:
        raise ClusterError(f"{failure} within {START_TIMEOUT_SECONDS:.0f}s; see {log}") from None


def _probe(config: ClusterConfig, component: Component) -> bool:
    if component.probe is Probe.UNIX_SOCKET:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(2)
            return connection.connect_ex(component.health_url) == 0
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
    return answers(component.health_url, context=context)


def _wait_ports_free(config: ClusterConfig) -> None:
    def busy() -> list[int]:
        return [port for port in config.ports.all() if processes.port_listening(port)]

    try:
        wait_until(lambda: not busy(), timeout=PORTS_FREE_TIMEOUT_SECONDS, interval=0.2)
    except Timeout:
        in_use = ", ".join(map(str, busy()))
        raise ClusterError(f"ports {in_use} are still in use after stopping the cluster") from None
