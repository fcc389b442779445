"""A RetailModel's health as Argo CD's own engine judges it: ``argocd admin settings
resource-overrides health`` with deploy/argocd/argocd-cm-health.yaml as argocd-cm (the gopher-lua
VM, the settings parser and the health code the application controller runs). The binary comes
from ``retailctl argocd build``. For the engine's unit tests over every known state and for the
end-to-end tests that judge the states a real RetailModel went through."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from retail_tools.argocd.build import is_built
from retail_tools.argocd.config import ArgocdConfig
from retail_tools.settings import current
from tests.unit.delivery.argocd_configmap import CONFIGMAP_FILE

Verdict = tuple[str, str]  # (STATUS, MESSAGE)


def argocd_binary() -> Path:
    config = ArgocdConfig.from_settings(current())
    assert is_built(config), "Argo CD is not built: run `retailctl argocd build`"
    return config.binary()


def assess(argocd: Path, resource: Path) -> Verdict:
    """What Argo CD prints for the object in ``resource``: ``STATUS: …`` and ``MESSAGE: …``."""
    result = subprocess.run(
        [
            str(argocd),
            "admin", "settings", "resource-overrides", "health", str(resource),
            "--argocd-cm-path", str(CONFIGMAP_FILE),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert "STATUS" in fields, f"no health from Argo CD: {result.stdout!r}"
    return fields["STATUS"], fields.get("MESSAGE", "")


def assess_object(argocd: Path, obj: dict[str, Any], folder: Path, stem: str) -> Verdict:
    resource = folder / f"{stem}.yaml"
    resource.write_text(yaml.safe_dump(obj))
    return assess(argocd, resource)
