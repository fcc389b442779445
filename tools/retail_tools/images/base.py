"""The base both images build on, made on this machine: Debian bookworm and its Python 3.11.

No container registry is reachable here, so the Dockerfiles' pinned ``python:…-slim`` base
cannot be pulled. Instead debootstrap installs a minimal bookworm from the Debian mirror apt
already uses, Debian's python3 (3.11, the version the lock is made for) goes in with apt, and
the tree is imported as an image that is passed to the builds as ``PYTHON_IMAGE``. The image is
named by a hash of this recipe, so it is made once and remade only when the recipe changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import (
    ImageError,
    LineCallback,
    image_exists,
    podman_env,
    run_logged,
)

FALLBACK_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class BaseRecipe:
    """What goes into the base image; any change here is a new image."""

    suite: str = "bookworm"
    # No python3-pip: the build stage makes a venv (python3-venv brings pip into it) for uv,
    # and pip would be dead weight in the final images.
    packages: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
    removed: tuple[str, ...] = (
        "/var/lib/apt/lists/*",
        "/var/cache/apt/*",
        "/var/log/*",
        "/usr/share/man/*",
        "/usr/share/info/*",
        "/usr/share/locale/*",  # translations: the images run with LANG=C.UTF-8
        # glibc's iconv modules for legacy charsets; Python's codecs are its own.
        "/usr/lib/x86_64-linux-gnu/gconv",
    )
    environment: tuple[str, ...] = (
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    )

    @property
    def reference(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"localhost/retailmodel-base:{self.suite}-py311-{digest[:12]}"

    def chroot_script(self) -> str:
        """Install the packages, then drop what only installing needed (docs keep copyright)."""
        return " && ".join(
            (
                "export DEBIAN_FRONTEND=noninteractive",
                "apt-get update -q",
                f"apt-get install -y -q --no-install-recommends {' '.join(self.packages)}",
                "apt-get clean",
                f"rm -rf {' '.join(self.removed)}",
                "find /usr/share/doc -type f ! -name copyright -delete",
            )
        )


def ensure_base(
    config: ImagesConfig, on_step: LineCallback, recipe: BaseRecipe = BaseRecipe()
) -> str:
    """The base image's reference, made first if this machine does not have it yet."""
    if image_exists(config, recipe.reference):
        return recipe.reference
    with _exclusive(config.images_dir / "base.lock"):
        if not image_exists(config, recipe.reference):  # another process may have made it
            _make(config, recipe, on_step)
    return recipe.reference


def debian_mirror(suite: str) -> str:
    """The Debian mirror apt on this machine uses for ``suite`` (else Debian's own)."""
    for text in _apt_source_texts():
        for uri, suites in _sources(text):
            if suite in suites:
                return uri
    return FALLBACK_MIRROR


def _make(config: ImagesConfig, recipe: BaseRecipe, on_step: LineCallback) -> None:
    root = config.images_dir / "base-rootfs"
    log = config.log_dir / "base.log"
    log.unlink(missing_ok=True)
    _remove_tree(root)
    mirror = debian_mirror(recipe.suite)
    try:
        started = time.monotonic()
        on_step(f"debootstrap {recipe.suite} from {mirror} (log: {log})")
        phases = _PhaseReporter(on_step)
        run_logged(
            ["debootstrap", "--variant=minbase", recipe.suite, str(root), mirror],
            "debootstrap",
            log,
            phases,
        )
        on_step(f"apt-get install {' '.join(recipe.packages)}")
        run_logged(
            ["chroot", str(root), "/bin/sh", "-c", recipe.chroot_script()],
            "apt-get install in the base",
            log,
            lambda _line: None,
        )
        _unmount_below(root)  # debootstrap unmounts what it mounted, unless it failed midway
        on_step(f"podman import → {recipe.reference}")
        _import(config, recipe, root, log)
        on_step(f"base image made in {time.monotonic() - started:.0f}s")
    finally:
        _remove_tree(root)


def _import(config: ImagesConfig, recipe: BaseRecipe, root: Path, log: Path) -> None:
    changes = [arg for env in recipe.environment for arg in ("--change", f"ENV {env}")]
    changes += ["--change", 'CMD ["python3"]']
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        run_logged(
            ["podman", "import", *changes, "-", recipe.reference],
            "podman import",
            log,
            lambda _line: None,
            env=podman_env(config),
            stdin=tar.stdout.fileno(),
        )
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise ImageError(f"tar of the base root {root} failed; see {log}")


class _PhaseReporter:
    """debootstrap prints lines per package (retrieving, validating, unpacking, …); report
    each of its main phases once, as it starts."""

    PHASES = {
        "Retrieving": "downloading packages",
        "Extracting": "extracting",
        "Installing": "installing the core packages",
        "Configuring": "configuring",
        "Base": "done",
    }

    def __init__(self, on_step: LineCallback) -> None:
        self.on_step = on_step
        self.seen: set[str] = set()

    def __call__(self, line: str) -> None:
        match = re.match(r"I: (\w+)", line)
        phase = self.PHASES.get(match.group(1)) if match else None
        if phase and phase not in self.seen:
            self.seen.add(phase)
            self.on_step(f"  debootstrap: {phase}")


def _apt_source_texts() -> Iterator[str]:
    for location in APT_SOURCES:
        files = sorted(location.glob("*.sources")) + sorted(location.glob("*.list"))
        for path in [location] if location.is_file() else files:
            try:
                yield path.read_text()
            except OSError:
                continue


def _sources(text: str) -> Iterator[tuple[str, set[str]]]:
    """(URI, suites) of each enabled ``deb`` source, in deb822 or one-line format."""
    for stanza in re.split(r"\n\s*\n", text):
        pairs = (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
        fields = {key.strip().lower(): value.strip() for key, _, value in pairs if value}
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            for uri in fields.get("uris", "").split():
                yield uri, set(fields.get("suites", "").split())
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], {words[2]}


def _unmount_below(root: Path) -> None:
    prefix = f"{root.resolve()}/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def _remove_tree(root: Path) -> None:
    if root.exists():
        _unmount_below(root)  # never delete through a mount into the host
        shutil.rmtree(root)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
