"""Running podman the way this machine needs, and any long build command with its output logged.

This VM lacks CAP_SYS_RESOURCE and has a hybrid cgroup v1 layout: podman's defaults (crun,
systemd cgroups, journald events, the host's ulimits) fail there. Our own containers.conf,
written to the cache and named by ``CONTAINERS_CONF`` for the podman processes we start, carries
the settings that work, so nothing under /etc is changed.

``run_logged`` streams a command's output to a log file and hands each line to a callback, so
callers can show a condensed progress; a failure becomes one :class:`ImageError` line naming the
command's last words and the log.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from retail_tools.images.config import ImagesConfig

CONTAINERS_CONF = """\
# Written by retailctl (retail_tools.images.podman); used through CONTAINERS_CONF only.
[containers]
# Raising the hard limits above the host's needs CAP_SYS_RESOURCE, which this VM lacks.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun refuses the hybrid cgroup v1 layout; runc with cgroupfs works.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

LineCallback = Callable[[str], None]


class ImageError(RuntimeError):
    """Building, running or pushing an image failed; the message is one line for people."""


def podman_env(config: ImagesConfig) -> dict[str, str]:
    """The environment for a podman process: ours, with ``CONTAINERS_CONF`` set."""
    path = config.images_dir / "containers.conf"
    if not path.is_file() or path.read_text() != CONTAINERS_CONF:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(path)}


def podman(
    config: ImagesConfig, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a short podman command for its output; with ``check``, a failure is an ImageError."""
    result = subprocess.run(
        ["podman", *args], env=podman_env(config), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        detail = _last_line(result.stderr) or _last_line(result.stdout) or "no output"
        raise ImageError(f"podman {args[0]} failed: {detail}")
    return result


def image_exists(config: ImagesConfig, reference: str) -> bool:
    return podman(config, "image", "exists", reference, check=False).returncode == 0


def remove_tags(config: ImagesConfig, tag: str) -> list[str]:
    """Untag every local image whose tag starts with ``tag`` (a run's tags, and the releases
    built on them); the layers stay cached. The references removed."""
    listed = podman(config, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    ours = [name for name in listed if name.rpartition(":")[2].startswith(tag)]
    if ours:
        podman(config, "rmi", *ours)
    return ours


def run_logged(
    argv: Sequence[str],
    what: str,
    log_path: Path,
    on_line: LineCallback,
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | None = None,
) -> None:
    """Run ``argv``, appending its output to ``log_path`` and passing each line to ``on_line``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except FileNotFoundError:
            message = f"{what}: {argv[0]} is not installed (`make images` installs it)"
            raise ImageError(message) from None
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            stripped = line.strip()
            if stripped:
                last = stripped
                on_line(stripped)
        code = process.wait()
    if code != 0:
        raise ImageError(f"{what} failed ({last or f'exit {code}'}); see {log_path}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
