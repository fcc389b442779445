"""Render the kustomize overlays with the real kustomize (built by `make lint`/`make unit`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from retail_tools.settings import current

REPO_ROOT = Path(__file__).resolve().parents[3]


def kustomize_binary() -> str:
    built = current().kustomize
    if not built.is_file():
        pytest.fail("kustomize is not built; run `make unit` or `make lint` to build it")
    return str(built)


def render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kustomize_binary(), "build", str(REPO_ROOT / "deploy" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]
