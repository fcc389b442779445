"""The demo's GitOps part: Argo CD, built here and started against the local cluster, syncs the
operator and the RetailModel from a local git repository, and from then on every change to the
RetailModel's spec is a commit, as a team's deploy job would make it.

The repository (``.demo/gitops``) holds this project's own manifests (``gitrepo.SYNCED_FOLDERS``)
and a ``gitops`` kustomization: ``deploy/overlays/local`` with the operator image pinned to the
digest just pushed, and the RetailModel. The Application is deploy/argocd/application.yaml with
only its source changed (automated sync with selfHeal and prune, server-side apply, the
project's health check), so Argo CD syncs in the overlay's sync waves: the CRD, then the
namespaces, RBAC and the operator, then the RetailModel once the operator's pods are Ready.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from retail_tools.argocd import apps, stack
from retail_tools.argocd.config import NAMESPACE as ARGOCD_NAMESPACE
from retail_tools.argocd.gitrepo import GitRepository
from retail_tools.demo.context import NAME, NAMESPACE, Demo, DemoError, console, wait
from retail_tools.onnode import OPERATOR_NAMESPACE

APPLICATION = "retailmodel"
MODEL_FILE = "gitops/retailmodel.yaml"
SYNC_SECONDS = 300


def argocd_up(demo: Demo) -> None:
    demo.argocd_started = not any(item.pid for item in stack.status(demo.argocd))
    demo.run("retailctl", "argocd", "up")
    demo.run("retailctl", "argocd", "status")


def synced_from_git(demo: Demo, retail_model: dict[str, Any]) -> None:
    """The repository made and committed, the Application applied, and Argo CD's sync followed
    until the Application is Synced and Healthy."""
    _start_clean(demo)
    for namespace in (OPERATOR_NAMESPACE, NAMESPACE):
        # The stand-in's endpoint (its port is this run's) is no business of git: a ConfigMap
        # made beside it. Credentials come by IRSA, from what git holds.
        demo.kubectl("create", "namespace", namespace, check=False, show=False)
        demo.node.standin_config(namespace)
    demo.node.registry_config()  # the local registry's address, for the image-signature gate
    # The cluster's part of IRSA (on EKS, the pod identity webhook) in effect before Argo CD
    # creates the operator's pods.
    demo.node.install_pod_identity()
    repo = GitRepository.create(demo.workdir / "gitops", author="demo")
    operator_image = demo.stand_in.repository_uri("mlops/retail-operator")
    digest = demo.digests[f"operator:{demo.tags['operator']}"]
    repo.write_yaml(
        "gitops/kustomization.yaml",
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["../deploy/overlays/local", "retailmodel.yaml"],
            "images": [{"name": operator_image, "digest": digest}],
        },
    )
    repo.write_yaml(MODEL_FILE, retail_model)
    demo.git = repo
    revision = repo.commit("The operator and the price-sensitivity RetailModel")
    console.print(f"[bold cyan]$ git -C {repo.work} log --oneline --stat")
    demo.show(repo.git("log", "--oneline", "--stat"))
    demo.show(yaml.safe_dump(retail_model, sort_keys=False))
    application = apps.local_application(APPLICATION, repo.url, "gitops", "main")
    demo.argocd_application = True
    console.print(
        "[bold cyan]$ kubectl apply -f deploy/argocd/application.yaml  "
        f"[/][dim](source: {repo.url}, path gitops)"
    )
    apps.apply(demo.argocd, application)
    wait_application(demo, "Synced and Healthy", revision, health="Healthy")
    show_application(demo)


def commit_spec(
    demo: Demo, message: str, change: Callable[[dict[str, Any]], None],
    watch: Callable[[], object] = lambda: None,
) -> str:  # fmt: skip
    """Change the RetailModel's spec in git, push, and ask Argo CD to compare now (it would
    by itself within its polling period); the new revision, once Argo CD has synced it
    (``watch`` is called at each look meanwhile)."""
    repo = demo.gitops_repo
    document = repo.read_yaml(MODEL_FILE)
    before = yaml.safe_dump(document["spec"], sort_keys=False)
    change(document["spec"])
    if before == yaml.safe_dump(document["spec"], sort_keys=False):
        raise DemoError(f"the commit {message!r} would change nothing")
    repo.write_yaml(MODEL_FILE, document)
    console.print(f"[bold cyan]$ git commit -am {message!r} && git push")
    revision = repo.commit(message)
    demo.show(repo.git("show", "--stat", "--format=%h %s", "HEAD"))
    refresh_and_wait_synced(demo, revision, watch)
    return revision


def revert(demo: Demo) -> str:
    console.print("[bold cyan]$ git revert --no-edit HEAD && git push")
    revision = demo.gitops_repo.revert()
    demo.show(demo.gitops_repo.git("log", "--oneline", "-3"))
    refresh_and_wait_synced(demo, revision)
    return revision


def refresh_and_wait_synced(
    demo: Demo, revision: str, watch: Callable[[], object] = lambda: None
) -> None:
    apps.refresh(demo.argocd, APPLICATION)
    wait_application(demo, f"Synced to {revision[:7]}", revision, watch=watch)


def wait_application(
    demo: Demo, what: str, revision: str | None = None, *, health: str | None = None,
    message: str = "", watch: Callable[[], object] = lambda: None,
) -> apps.ApplicationView:  # fmt: skip
    """Poll the Application until it is Synced (to ``revision``, if given) with ``health``
    (and the RetailModel's health message containing ``message``)."""

    def reached() -> apps.ApplicationView | None:
        watch()
        view = application_view(demo)
        if view is None or view.sync != "Synced" or revision not in (None, view.revision):
            return None
        if health is not None and view.health != health:
            return None
        model = view.resource("RetailModel", NAME)
        if message and (model is None or message not in model.message):
            return None
        return view

    try:
        found: apps.ApplicationView = wait(f"Argo CD: {what}", reached, SYNC_SECONDS)
    except DemoError:
        show_application(demo)
        raise
    return found


def application_view(demo: Demo) -> apps.ApplicationView | None:
    application = apps.get(demo.argocd, APPLICATION)
    return apps.view(application) if application else None


def show_application(demo: Demo) -> None:
    """What Argo CD's UI shows: the Application's sync and health, and each resource's."""
    demo.run("retailctl", "argocd", "app", APPLICATION)


def remove_application(demo: Demo) -> None:
    """The teardown's first act: the Application goes, what it synced stays for the teardown
    to delete (with the Application gone, Argo CD recreates nothing)."""
    if demo.argocd_application:
        _delete_application(demo)


def _delete_application(demo: Demo) -> None:
    """Delete the Application but not what it synced: its resources finalizer is removed
    first (else Argo CD would prune the CRD, and every RetailModel with it)."""
    demo.kubectl(
        "patch", "application", APPLICATION, "-n", ARGOCD_NAMESPACE, "--type=merge",
        "-p", '{"metadata":{"finalizers":null}}', check=False, show=False,
    )  # fmt: skip
    demo.kubectl(
        "delete", "application", APPLICATION, "-n", ARGOCD_NAMESPACE, "--ignore-not-found",
        check=False,
    )  # fmt: skip


def _start_clean(demo: Demo) -> None:
    """An earlier run's Application, operator or RetailModel would keep that run's stand-in
    address and digests: remove them (the Application first, so it recreates nothing). Its
    Events go too: a cluster stopped and started again keeps them past their hour (etcd renews
    leases on a restart), and `kubectl get events` would show them beside this run's."""
    _delete_application(demo)
    # Not waited for: a pod the kubelet keeps reporting on renews its Event as it goes.
    demo.kubectl(
        "delete", "events", "--all", "-n", NAMESPACE, "--wait=false", check=False, show=False
    )
    demo.kubectl(
        "delete", "retailmodel", NAME, "-n", NAMESPACE, "--ignore-not-found", "--wait=true",
        "--timeout=120s", show=False,
    )  # fmt: skip
    demo.kubectl(
        "delete", "deployment", "retail-operator", "-n", OPERATOR_NAMESPACE, "--ignore-not-found",
        "--wait=true", show=False,
    )  # fmt: skip
