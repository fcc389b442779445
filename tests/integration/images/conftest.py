"""The two images, built once per test session with ``retailctl image build`` (seconds when
podman's layer cache holds them), and containers started from them.

Containers run with the settings of the pods the operator renders: the image's own user, a
read-only root, a tmpfs /tmp, no capabilities, no privilege escalation. Each is removed when its
test ends.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import podman, remove_tags
from retail_tools.polling import Timeout, answers, wait_until
from retail_tools.settings import current
from tests.support.registry import private_registry as running_registry

REPO_ROOT = Path(__file__).resolve().parents[3]
RETAILCTL = str(Path(sys.executable).with_name("retailctl"))
TAG = "integration-test"  # and the session's own suffix: make test runs two sessions at once
BUILD_TIMEOUT_SECONDS = 1800
START_TIMEOUT_SECONDS = 90
RESTRICTED = ("--read-only", "--tmpfs", "/tmp:rw,size=64m", "--cap-drop", "ALL")
RESTRICTED += ("--security-opt", "no-new-privileges")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "images: builds and runs the container images (make images installs podman)"
    )


@pytest.fixture(scope="session")
def images_config() -> ImagesConfig:
    return ImagesConfig.from_settings(current())


@pytest.fixture(scope="session")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImagesConfig]:
    """A registry of this session's own (own folder, free port), stopped at the end; crane
    itself comes from the shared cache."""
    with running_registry(tmp_path_factory.mktemp("registry")) as config:
        yield config


@pytest.fixture(scope="session")
def images(images_config: ImagesConfig) -> Iterator[dict[str, str]]:
    """``serving`` and ``operator`` → the local reference ``retailctl image build`` printed,
    tagged for this session alone, so each session runs the image it built (make test runs two
    sessions at once, and a shared tag moves to whichever build ended last: two builds of one
    tag side by side both succeed, their last steps not cached); the tags removed at the end,
    the layers left cached."""
    tag = f"{TAG}-{uuid.uuid4().hex[:8]}"
    references = {}
    try:
        for name in ("serving", "operator"):
            result = subprocess.run(
                [RETAILCTL, "image", "build", name, "--tag", tag, "--context", str(REPO_ROOT)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_SECONDS,
            )
            assert result.returncode == 0, f"image build {name} failed: {result.stderr[-3000:]}"
            references[name] = result.stdout.strip().splitlines()[-1]
        yield references
    finally:
        remove_tags(images_config, tag)


@contextmanager
def container(config: ImagesConfig, image: str, *options: str) -> Iterator[str]:
    """A detached container of ``image`` run with ``options``; its name."""
    name = f"retailmodel-test-{uuid.uuid4().hex[:8]}"
    podman(config, "run", "--detach", "--name", name, *RESTRICTED, *options, image)
    try:
        yield name
    finally:
        podman(config, "rm", "--force", "--time", "5", name, check=False)


def wait_for_http(config: ImagesConfig, name: str, url: str) -> None:
    """Return once ``url`` answers 200; fail with the container's log if it never does."""

    def settled() -> bool:
        """It answers, or it has stopped running (and never will)."""
        state = podman(config, "inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        return answers(url) or state != "running"

    with contextlib.suppress(Timeout):
        wait_until(settled, timeout=START_TIMEOUT_SECONDS)
    if answers(url):
        return
    logs = podman(config, "logs", name, check=False)
    output = (logs.stdout + logs.stderr)[-3000:]
    pytest.fail(f"{url} never answered 200 ({name}); its log:\n{output}")
