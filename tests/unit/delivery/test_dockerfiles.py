"""The two Dockerfiles: pinned base, locked install, non-root, read-only-root ready, lint clean.

There is no Docker engine here, so the images are checked as text and with hadolint.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
HADOLINT = Path(sys.executable).with_name("hadolint")
DIGEST_PINNED = re.compile(
    r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}$", re.M
)


def stages(dockerfile: str) -> list[str]:
    text = (REPO_ROOT / dockerfile).read_text(encoding="utf-8")
    parts = re.split(r"^FROM ", text, flags=re.M)
    return [f"FROM {part}" for part in parts[1:]]


@pytest.fixture(params=["Dockerfile.serving", "Dockerfile.operator"])
def dockerfile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_base_is_a_slim_python_311_pinned_by_digest(dockerfile: str) -> None:
    text = (REPO_ROOT / dockerfile).read_text(encoding="utf-8")
    assert DIGEST_PINNED.search(text)
    assert all(stage.startswith("FROM ${PYTHON_IMAGE}") for stage in stages(dockerfile))


def test_build_stage_installs_exactly_the_lock_without_dev_tools(dockerfile: str) -> None:
    build = stages(dockerfile)[0]
    assert "uv sync --locked --no-dev" in build
    assert "UV_PROJECT_ENVIRONMENT=/opt/venv" in build


@pytest.mark.parametrize(
    ("dockerfile", "extra", "package", "other"),
    [
        ("Dockerfile.serving", "serving", "serving/retail_serving", "retail_operator"),
        ("Dockerfile.operator", "operator", "operator/retail_operator", "retail_serving"),
    ],
)
def test_each_image_installs_only_its_own_extra_and_code(
    dockerfile: str, extra: str, package: str, other: str
) -> None:
    build = stages(dockerfile)[0]
    assert re.findall(r"--extra (\S+)", build) == [extra]
    copied = re.findall(r"^COPY (\S+)/ ", build, flags=re.M)
    assert copied == ["contract/retail_contract", package, "provenance/retail_provenance"]
    assert other not in build and "retail_tools" not in build


def test_final_stage_is_non_root_and_read_only_root_ready(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    users = re.findall(r"^USER (\S+)$", final, flags=re.M)
    assert users == ["10001:10001"]
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "TMPDIR=/tmp", "HOME=/tmp"):
        assert setting in final
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "COPY --from=build /opt/app /opt/app" in final
    # Nothing installed in the final stage: no package manager runs, so no compilers or curl.
    assert not re.search(r"^RUN ", final, flags=re.M)


def test_commands() -> None:
    serving = stages("Dockerfile.serving")[-1]
    operator = stages("Dockerfile.operator")[-1]
    assert re.search(r'^CMD \["python3", "-m", "retail_serving"', serving, flags=re.M)
    assert 'CMD ["python3", "-m", "retail_operator"]' in operator
    for final, path in ((serving, "/health'"), (operator, "/healthz'")):
        healthcheck = re.search(r"^HEALTHCHECK (?:.*\\\n)*.*", final, flags=re.M)
        assert healthcheck and "urllib.request" in healthcheck.group(0)
        assert path in healthcheck.group(0)


def test_hadolint_is_clean(dockerfile: str) -> None:
    result = subprocess.run(
        [str(HADOLINT), dockerfile], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_context_excludes_everything_but_the_sources() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").split("\n")
    assert "*" in ignored
    assert {line for line in ignored if line.startswith("!")} == {
        "!pyproject.toml",
        "!uv.lock",
        "!README.md",
        "!contract/retail_contract/",
        "!provenance/retail_provenance/",
        "!operator/retail_operator/",
        "!serving/retail_serving/",
    }
