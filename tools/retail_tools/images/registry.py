"""The registry standing in for ECR's registry endpoint: go-containerregistry's
``crane registry serve`` on loopback, its blobs kept under the registry folder.

crane is built from the Go module proxy into ``<cache>/tools/crane-<version>`` (as the Makefile
builds kustomize), once per version; ``crane`` also reads and tags manifests in the registry
for ``push``. The server runs as a background process tracked by a pid file
(``retail_tools.processes``); ``up`` is idempotent and ``down`` stops only the process it
started. The registry speaks plain HTTP on 127.0.0.1, so pushes use ``--tls-verify=false``
and the node's containerd mirrors the ECR host to it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from retail_tools import processes
from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import ImageError, LineCallback, run_logged
from retail_tools.polling import Timeout, answers, wait_until

CRANE_VERSION = "v0.22.1"
CRANE_MODULE = "github.com/google/go-containerregistry/cmd/crane"
PROCESS_NAME = "registry"
START_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class RegistryStatus:
    address: str
    pid: int | None
    answering: bool


def crane_binary(config: ImagesConfig) -> Path:
    return config.tools_dir / f"crane-{CRANE_VERSION}" / "crane"


def ensure_crane(config: ImagesConfig, on_step: LineCallback) -> Path:
    """crane's path, built with ``go install`` first if this version is not there yet."""
    return ensure_go_tool(config, CRANE_MODULE, CRANE_VERSION, on_step)


def ensure_go_tool(config: ImagesConfig, module: str, version: str, on_step: LineCallback) -> Path:
    """A Go command's path in ``<tools>/<name>-<version>/<name>`` (name: the module's last
    part), built with ``go install`` first if this version is not there yet."""
    name = module.rsplit("/", 1)[-1]
    binary = config.tools_dir / f"{name}-{version}" / name
    if binary.is_file():
        return binary
    on_step(f"building {name} {version} from the Go module proxy")
    started = time.monotonic()
    run_logged(
        ["go", "install", f"{module}@{version}"],
        f"go install {name}@{version}",
        config.log_dir / f"{name}-build.log",
        lambda _line: None,
        env={**os.environ, "GOBIN": str(binary.parent)},
    )
    on_step(f"{name} built in {time.monotonic() - started:.0f}s")
    return binary


def crane(config: ImagesConfig, *args: str) -> bytes:
    """What ``crane ARGS`` prints, against the local registry (plain HTTP); a failure is one
    ImageError line with crane's own words."""
    result = subprocess.run(
        [str(crane_binary(config)), "--insecure", *args], capture_output=True, check=False
    )
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        raise ImageError(f"crane {args[0]} failed: {said[-1] if said else 'no output'}")
    return result.stdout


def up(config: ImagesConfig, on_step: LineCallback) -> RegistryStatus:
    """Start the registry unless it already runs; its status once it answers."""
    crane = ensure_crane(config, on_step)
    current = status(config)
    if current.pid is not None:
        return current
    if processes.port_listening(config.registry_port):
        raise ImageError(
            f"port {config.registry_port} is taken by another process; "
            "set RETAILMODEL_REGISTRY_PORT to a free port"
        )
    log = _log_path(config)
    data = config.registry_dir / "data"
    data.mkdir(parents=True, exist_ok=True)  # crane writes uploads there but never creates it
    pid = processes.start(
        PROCESS_NAME,
        (
            str(crane),
            "registry",
            "serve",
            "--address",
            config.registry_address,
            "--disk",
            str(data),
        ),
        _run_dir(config),
        log,
    )
    with contextlib.suppress(Timeout):
        settled = lambda: _answers(config) or processes.exit_status(pid) is not None  # noqa: E731
        wait_until(settled, timeout=START_TIMEOUT_SECONDS, interval=0.1)
    if _answers(config):
        on_step(f"registry serving on {config.registry_address} (pid {pid})")
        return RegistryStatus(config.registry_address, pid, True)
    processes.stop(PROCESS_NAME, _run_dir(config), str(crane))
    raise ImageError(f"the registry did not start on {config.registry_address}; see {log}")


def down(config: ImagesConfig) -> bool:
    """Stop the registry this project started; True if one was running. Its blobs stay."""
    return processes.stop(PROCESS_NAME, _run_dir(config), str(crane_binary(config)))


def status(config: ImagesConfig) -> RegistryStatus:
    pid = processes.running_pid(PROCESS_NAME, _run_dir(config), str(crane_binary(config)))
    return RegistryStatus(config.registry_address, pid, pid is not None and _answers(config))


def require_running(config: ImagesConfig) -> None:
    if not status(config).answering:
        raise ImageError(
            f"the local registry is not running on {config.registry_address}; "
            "start it with `retailctl image registry up`"
        )


def _answers(config: ImagesConfig) -> bool:
    return answers(f"http://{config.registry_address}/v2/")


def _run_dir(config: ImagesConfig) -> Path:
    return config.registry_dir / "run"


def _log_path(config: ImagesConfig) -> Path:
    return config.registry_dir / "registry.log"
