"""Argo CD Applications on the local instance: the local twin of the EKS one, and how they read.

``local_application`` is deploy/argocd/application.yaml (sync policy, sync options, retry,
``ignoreDifferences``) with only its source changed, so the local one cannot drift from what
EKS runs. ``view`` is what a user reads in Argo CD's UI: sync status and revision, health and
its message, the last operation, and each resource's sync and health (the controller persists
those with ``--persist-resource-health``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from retail_tools.argocd.config import NAMESPACE, ArgocdConfig
from retail_tools.argocd.stack import REPO_ROOT

EKS_APPLICATION = REPO_ROOT / "deploy" / "argocd" / "application.yaml"
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"


@dataclass(frozen=True)
class ResourceView:
    kind: str
    namespace: str
    name: str
    sync: str
    health: str
    message: str


@dataclass(frozen=True)
class ApplicationView:
    name: str
    sync: str
    revision: str
    health: str
    health_message: str
    operation: str  # the last sync's phase and message, or "" before the first
    resources: tuple[ResourceView, ...]
    refresh_pending: bool  # a refresh was asked for and the controller has not done it yet

    def resource(self, kind: str, name: str) -> ResourceView | None:
        return next((r for r in self.resources if (r.kind, r.name) == (kind, name)), None)


def local_application(
    name: str, repo_url: str, path: str, revision: str = "HEAD"
) -> dict[str, Any]:
    """The EKS Application pointed at another repository, path and revision."""
    application: dict[str, Any] = yaml.safe_load(EKS_APPLICATION.read_text())
    application["metadata"]["name"] = name
    application["metadata"]["namespace"] = NAMESPACE
    application["spec"]["source"] = {"repoURL": repo_url, "targetRevision": revision, "path": path}
    return application


def apply(config: ArgocdConfig, application: dict[str, Any]) -> None:
    config.cluster.kubectl.apply(application)


def get(config: ArgocdConfig, name: str) -> dict[str, Any] | None:
    result = config.cluster.kubectl(
        "-n", NAMESPACE, "get", "application", name, "-o", "json", check=False
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def refresh(config: ArgocdConfig, name: str, *, hard: bool = False) -> None:
    """Ask the controller to compare with git now instead of at its next poll (``hard``: also
    regenerate the manifests instead of using the repo-server's cache). The controller removes
    the annotation once it has."""
    config.cluster.kubectl(
        "-n", NAMESPACE, "annotate", "--overwrite", "application", name,
        f"{REFRESH_ANNOTATION}={'hard' if hard else 'normal'}",
    )  # fmt: skip


def view(application: dict[str, Any]) -> ApplicationView:
    status = application.get("status", {})
    health = status.get("health", {})
    operation = status.get("operationState", {})
    last = f"{operation.get('phase', '')}: {operation.get('message', '')}" if operation else ""
    resources = tuple(
        ResourceView(
            kind=item.get("kind", ""),
            namespace=item.get("namespace", ""),
            name=item.get("name", ""),
            sync=item.get("status", ""),
            health=item.get("health", {}).get("status", ""),
            message=item.get("health", {}).get("message", ""),
        )
        for item in status.get("resources", [])
    )
    return ApplicationView(
        name=application["metadata"]["name"],
        sync=status.get("sync", {}).get("status", "Unknown"),
        revision=status.get("sync", {}).get("revision", ""),
        health=health.get("status", "Unknown"),
        health_message=health.get("message", ""),
        operation=last,
        resources=resources,
        refresh_pending=REFRESH_ANNOTATION in application["metadata"].get("annotations", {}),
    )
