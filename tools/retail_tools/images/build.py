"""``podman build`` of the two Dockerfiles on this machine, on the locally made base.

The Dockerfiles keep their pinned production base as the default ``PYTHON_IMAGE``; here the
base made by :mod:`retail_tools.images.base` is passed instead. ``--format docker`` keeps the
HEALTHCHECK (the OCI image format has no field for it). The build reaches PyPI through the
machine's network and CA bundle: the bundle is mounted over the base's, and a uv setting,
mounted only while building, makes uv trust it (uv otherwise uses its own roots). podman's
layer cache makes a rebuild of unchanged sources take seconds.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from retail_tools.ecr.tags import image_tag
from retail_tools.images.base import ensure_base
from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import ImageError, LineCallback, podman, podman_env, run_logged

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UV_BUILD_SETTINGS = "system-certs = true\n"
# What every image is built from besides its own package (see .dockerignore).
COMMON_SOURCES = (
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "contract/retail_contract",
    "provenance/retail_provenance",
)
_STEP = re.compile(r"^(?:\[\d+/\d+\] )?STEP (\d+)/(\d+): (.*)")


@dataclass(frozen=True)
class ImageTarget:
    """One image: its Dockerfile, the local name it gets and its ECR repository."""

    name: str
    dockerfile: str
    local_repository: str
    ecr_repository: str
    package: str

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.dockerfile, *COMMON_SOURCES, self.package)

    def reference(self, tag: str) -> str:
        return f"{self.local_repository}:{tag}"


# The ECR repository names are those of deploy/ecr/repositories.yaml.
TARGETS = {
    "serving": ImageTarget(
        "serving",
        "Dockerfile.serving",
        "localhost/retail-api",
        "mlops/retail-api",
        "serving/retail_serving",
    ),
    "operator": ImageTarget(
        "operator",
        "Dockerfile.operator",
        "localhost/retail-operator",
        "mlops/retail-operator",
        "operator/retail_operator",
    ),
}


def target_named(name: str) -> ImageTarget:
    try:
        return TARGETS[name]
    except KeyError:
        raise ImageError(f"no image {name!r}; use one of {', '.join(TARGETS)}") from None


def default_tag(target: ImageTarget, context: Path) -> str:
    """The tag for a build of the checked-out commit (``retailctl image tag``'s naming), with
    ``-dirty`` when the image's own sources differ from that commit."""
    branch = _git(context, "rev-parse", "--abbrev-ref", "HEAD")
    sha = _git(context, "rev-parse", "HEAD")
    tag = image_tag(branch, sha, datetime.now(UTC).date())
    changed = _git(context, "status", "--porcelain", "--", *target.sources)
    return f"{tag}-dirty" if changed else tag


def build_image(
    config: ImagesConfig, target: ImageTarget, tag: str, context: Path, on_step: LineCallback
) -> str:
    """Build ``target`` from ``context`` as ``<local repository>:<tag>``; its reference."""
    dockerfile = context / target.dockerfile
    if not dockerfile.is_file():
        raise ImageError(f"no {target.dockerfile} in {context}; run from the repository root")
    base = ensure_base(config, on_step)
    reference = target.reference(tag)
    log = config.log_dir / f"build-{target.name}.log"
    log.unlink(missing_ok=True)
    on_step(f"building {reference} from {target.dockerfile} on {base} (log: {log})")
    started = time.monotonic()
    steps = _StepReporter(on_step)
    run_logged(
        [
            "podman",
            "build",
            "--format",
            "docker",
            "--network",
            "host",
            *_build_mounts(config),
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "--file",
            str(dockerfile),
            "--tag",
            reference,
            str(context),
        ],
        f"podman build of {target.dockerfile}",
        log,
        steps,
        env=podman_env(config),
    )
    on_step(
        f"built {reference} in {time.monotonic() - started:.0f}s "
        f"({steps.cached} of {steps.total} steps from cache, "
        f"{image_size(config, reference) / 1e6:.0f} MB)"
    )
    return reference


def build_release(
    config: ImagesConfig, target: ImageTarget, base_tag: str, tag: str, folder: Path
) -> str:
    """A new release of a built image, made in seconds: ``base_tag``'s layers plus one label
    (``org.retailmodel.release=<tag>``), so its bytes and digest differ, as a rebuild from
    changed sources would. ``folder`` holds its one-line Containerfile; its reference."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Containerfile").write_text(f"FROM {target.reference(base_tag)}\n")
    reference = target.reference(tag)
    podman(
        config,
        "build", "--format", "docker", "--label", f"org.retailmodel.release={tag}",
        "--tag", reference, str(folder),
    )  # fmt: skip
    return reference


def image_size(config: ImagesConfig, reference: str) -> int:
    """The image's unpacked size in bytes, as ``podman images`` shows it."""
    return int(podman(config, "image", "inspect", "--format", "{{.Size}}", reference).stdout)


def _build_mounts(config: ImagesConfig) -> list[str]:
    settings = config.images_dir / "uv-build.toml"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(UV_BUILD_SETTINGS)
    mounts = ["--volume", f"{settings}:/etc/uv/uv.toml:ro"]
    if CA_BUNDLE.is_file():
        mounts += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    return mounts


class _StepReporter:
    """podman prints every step and everything each RUN prints; report the steps only."""

    def __init__(self, on_step: LineCallback) -> None:
        self.on_step = on_step
        self.total = 0
        self.cached = 0

    def __call__(self, line: str) -> None:
        if line.startswith("--> Using cache"):
            self.cached += 1
            return
        match = _STEP.match(line)
        if match:
            self.total += 1
            number, of, text = match.groups()
            self.on_step(f"  step {number}/{of}: {_shorten(text, 90)}")


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else f"{text[: width - 1]}…"


def _git(context: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(context), *args], capture_output=True, text=True)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        raise ImageError(
            f"cannot name the image from git ({detail[-1] if detail else 'git failed'}); pass --tag"
        )
    return result.stdout.strip()
