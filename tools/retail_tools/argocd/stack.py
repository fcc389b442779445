"""Start, stop and inspect the local Argo CD against the local control plane.

Three processes, each tracked like the cluster's own components (``processes``):
Debian's ``redis-server`` on loopback (Argo CD's cache), the repo-server (plain gRPC, no GPG,
its work folders and kustomize private to this instance) and the application controller. The
controller believes it runs in the cluster (``ARGOCD_FAKE_IN_CLUSTER``) and reads the cluster's
admin kubeconfig for ``https://kubernetes.default.svc``. There is no argocd-server (no UI, no
API), so ``up`` installs what it would: the namespace, Argo CD's CRDs, ``argocd-cm`` with the
project's health check and annotation tracking, ``argocd-secret`` and the ``default`` project.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retail_tools import processes
from retail_tools.argocd.build import is_built
from retail_tools.argocd.config import NAMESPACE, ArgocdConfig
from retail_tools.polling import Timeout, answers, wait_until

START_TIMEOUT_SECONDS = 60.0
REPO_ROOT = Path(__file__).resolve().parents[3]
ARGOCD_CM = REPO_ROOT / "deploy" / "argocd" / "argocd-cm-health.yaml"
ENV = "/usr/bin/env"  # sets a component's environment in its own command line

Notify = Callable[[str], None]


class ArgocdError(RuntimeError):
    """Argo CD could not be brought to the asked state; the message says why and where."""


@dataclass(frozen=True)
class Component:
    name: str
    binary: Path  # what /proc/<pid>/exe must be for the pid file to be trusted
    argv: tuple[str, ...]
    port: int
    health_url: str | None  # None: an open port is health enough


def components(config: ArgocdConfig) -> tuple[Component, ...]:
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    work = config.state_dir / "repo-server"
    repo_server_env = {
        "ARGOCD_GPG_ENABLED": "false",
        # Clones, kustomize builds and keyrings under this instance's folder, not /tmp or /app.
        "TMPDIR": str(work / "tmp"),
        "ARGOCD_GNUPGHOME": str(work / "gpg"),
        "ARGOCD_TLS_DATA_PATH": str(work / "tls"),
        "ARGOCD_SSH_DATA_PATH": str(work / "ssh"),
        "PATH": f"{config.kustomize.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    controller_env = {
        "ARGOCD_FAKE_IN_CLUSTER": "true",
        "KUBECONFIG": str(config.cluster.kubeconfig),
    }
    redis_address = f"127.0.0.1:{config.redis_port}"
    common = ("--redis", redis_address, "--logformat", "text")
    return (
        Component(
            "redis",
            Path(redis),
            (redis, "--bind", "127.0.0.1", "--port", str(config.redis_port), "--save", "",
             "--appendonly", "no", "--dir", str(config.state_dir / "redis")),
            config.redis_port,
            None,
        ),
        Component(
            "repo-server",
            config.binary(),
            _with_env(repo_server_env, config.binary("argocd-repo-server"),
                      "--disable-tls", "--address", "127.0.0.1",
                      "--port", str(config.repo_server_port),
                      "--metrics-address", "127.0.0.1",
                      "--metrics-port", str(config.repo_server_metrics_port), *common),
            config.repo_server_port,
            f"http://127.0.0.1:{config.repo_server_metrics_port}/healthz",
        ),
        Component(
            "application-controller",
            config.binary(),
            _with_env(controller_env, config.binary("argocd-application-controller"),
                      "--namespace", NAMESPACE,
                      "--repo-server", f"127.0.0.1:{config.repo_server_port}",
                      "--repo-server-plaintext",
                      "--metrics-port", str(config.controller_metrics_port),
                      # Each resource's health in the Application's status, where tests and
                      # `retailctl argocd app` read it.
                      "--persist-resource-health", *common),
            config.controller_metrics_port,
            f"http://127.0.0.1:{config.controller_metrics_port}/healthz",
        ),
    )  # fmt: skip


def _with_env(env: dict[str, str], binary: Path, *args: str) -> tuple[str, ...]:
    # The binary is called by its command name (a symlink): Argo CD dispatches on argv[0].
    return (ENV, *(f"{key}={value}" for key, value in env.items()), str(binary), *args)


def up(config: ArgocdConfig, notify: Notify = lambda _: None) -> tuple[str, ...]:
    """Install Argo CD's objects in the cluster and start its processes; returns the names of
    those this call started."""
    if not is_built(config):
        raise ArgocdError("Argo CD is not built: run `retailctl argocd build`")
    if not config.kustomize.is_file():
        raise ArgocdError(
            f"kustomize is missing at {config.kustomize}: run `make lint` (it builds it) or "
            "set KUSTOMIZE"
        )
    apiserver = config.cluster.ports.apiserver
    if not config.cluster.kubeconfig.is_file() or not processes.port_listening(apiserver):
        raise ArgocdError("the local cluster is not up: run `retailctl cluster up`")
    for folder in (config.run_dir, config.log_dir, config.state_dir / "redis"):
        folder.mkdir(parents=True, exist_ok=True)
    for name in ("tmp", "gpg", "tls", "ssh"):
        (config.state_dir / "repo-server" / name).mkdir(parents=True, exist_ok=True)
    install(config)
    notify("namespace, CRDs, argocd-cm and the default project installed")
    started: list[str] = []
    try:
        for component in components(config):
            if _start(config, component):
                started.append(component.name)
                notify(f"{component.name} is up")
    except BaseException:
        down(config, only=started)
        raise
    return tuple(started)


def install(config: ArgocdConfig) -> None:
    """What argocd-server's install would have created, applied server-side (the CRDs are too
    big for the last-applied annotation)."""
    apply = ("apply", "--server-side", "--force-conflicts", "--field-manager=retailctl-argocd")
    config.cluster.kubectl(*apply, "-f", "-", stdin=_namespace_manifest())
    config.cluster.kubectl(*apply, "-f", str(config.crds_dir))
    _wait_established(config, "applications.argoproj.io", "appprojects.argoproj.io")
    config.cluster.kubectl(*apply, "-f", str(ARGOCD_CM))
    config.cluster.kubectl(*apply, "-f", "-", stdin=_settings_manifest())


def _wait_established(config: ArgocdConfig, *crds: str) -> None:
    # Polled: `kubectl wait` fails outright while a new CRD has no status.conditions yet.
    def pending() -> list[str]:
        return [crd for crd in crds if not _established(config, crd)]

    try:
        wait_until(lambda: not pending(), timeout=START_TIMEOUT_SECONDS, interval=0.2)
    except Timeout:
        late = ", ".join(pending())
        message = f"CRD {late} not Established within {START_TIMEOUT_SECONDS:.0f}s"
        raise ArgocdError(message) from None


def _established(config: ArgocdConfig, crd: str) -> bool:
    body = config.cluster.kubectl.get_json(f"crd/{crd}")
    conditions = body.get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def _namespace_manifest() -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"


def _settings_manifest() -> str:
    # argocd-secret holds the server's keys; the controller only needs it to exist.
    return f"""\
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  namespace: {NAMESPACE}
  labels:
    app.kubernetes.io/name: argocd-secret
    app.kubernetes.io/part-of: argocd
type: Opaque
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: default
  namespace: {NAMESPACE}
spec:
  sourceRepos: ["*"]
  destinations:
    - server: "*"
      namespace: "*"
  clusterResourceWhitelist:
    - group: "*"
      kind: "*"
"""


def _start(config: ArgocdConfig, component: Component) -> bool:
    """Start ``component`` unless it already runs with the same command line; True if started."""
    if pid := processes.running_pid(component.name, config.run_dir, str(component.binary)):
        if processes.command_line(pid) == component.argv:
            _wait_healthy(config, component, pid)
            return False
        processes.stop(component.name, config.run_dir, str(component.binary))
    if processes.port_listening(component.port):
        raise ArgocdError(
            f"port {component.port} (for {component.name}) is in use by another process; "
            "pick other ports with RETAILMODEL_ARGOCD_PORT_BASE"
        )
    pid = processes.start(
        component.name, component.argv, config.run_dir, log_path(config, component)
    )
    _wait_healthy(config, component, pid)
    return True


def _wait_healthy(config: ArgocdConfig, component: Component, pid: int) -> None:
    log = log_path(config, component)

    def healthy() -> bool:
        if _healthy(config, component):
            return True
        # By pid, not by binary: until /usr/bin/env has exec'd the component, it runs env.
        if processes.exit_status(pid) is not None or not Path(f"/proc/{pid}").exists():
            last = processes.last_line(log)
            raise ArgocdError(f"{component.name} exited while starting ({last}); see {log}")
        return False

    try:
        wait_until(healthy, timeout=START_TIMEOUT_SECONDS)
    except Timeout:
        raise ArgocdError(
            f"{component.name} did not become healthy within {START_TIMEOUT_SECONDS:.0f}s; "
            f"see {log}"
        ) from None


def _healthy(config: ArgocdConfig, component: Component) -> bool:
    if processes.running_pid(component.name, config.run_dir, str(component.binary)) is None:
        return False
    if component.health_url is None:
        return processes.port_listening(component.port)
    return answers(component.health_url)


def log_path(config: ArgocdConfig, component: Component) -> Path:
    return config.log_dir / f"{component.name}.log"


def down(config: ArgocdConfig, only: list[str] | None = None) -> tuple[str, ...]:
    """Stop the processes (the controller first, redis last); returns those that were running.
    What ``install`` created stays in the cluster: the cluster's own ``down`` ends it."""
    stopped = []
    for component in reversed(components(config)):
        if only is not None and component.name not in only:
            continue
        if processes.stop(component.name, config.run_dir, str(component.binary)):
            stopped.append(component.name)
    return tuple(stopped)


def status(config: ArgocdConfig) -> tuple[processes.Status, ...]:
    return tuple(
        processes.Status(
            component.name,
            processes.running_pid(component.name, config.run_dir, str(component.binary)),
            component.port,
            _healthy(config, component),
            log_path(config, component),
        )
        for component in components(config)
    )
