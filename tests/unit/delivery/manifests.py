"""Render the kustomize overlays with the real kustomize (built by `make lint`/`make unit`)."""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("CACHE", Path.home() / ".cache" / "retailmodel"))


def kustomize_binary() -> str:
    configured = os.environ.get("KUSTOMIZE")
    if configured and Path(configured).is_file():
        return configured
    built = sorted(glob.glob(str(CACHE / "tools" / "kustomize-*" / "kustomize")))
    if not built:
        pytest.fail("kustomize is not built; run `make unit` or `make lint` to build it")
    return built[-1]


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
