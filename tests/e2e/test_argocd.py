"""GitOps for real: Argo CD's own controller syncs RetailModel from a git repository.

A private control plane (Argo CD would otherwise own the shared cluster's CRD, and pruning or
deleting its Application could take every RetailModel with it) runs the local Argo CD
(``retailctl argocd``'s ``stack``: redis, repo-server with kustomize, application controller).
A bare repository, served as ``file://``, holds a copy of crds/ and deploy/ and a ``gitops``
kustomization: ``deploy/overlays/local`` plus the sample RetailModel pointed at moto. The
Application is deploy/argocd/application.yaml with only its source changed (automated sync,
selfHeal, prune, server-side apply, annotation tracking and the project's health check).

The operator runs as a local process (``retailctl operator`` with the private cluster's
KUBECONFIG, as the operator's integration tests run it), so the synced operator Deployment is
scaled to zero by the ``gitops`` kustomization: its pods would need the real node.

The tests are one story and run in file order: sync in waves, a new tag (Progressing while its
scan runs, then Healthy), a blocked tag (Degraded with the operator's message, the old image
still serving), a revert (Healthy), no drift after reconciles, and a prune that
garbage-collects the RetailModel's children.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from retail_tools.argocd import apps
from retail_tools.argocd import stack as argocd_stack
from retail_tools.argocd.build import build
from retail_tools.argocd.config import ArgocdConfig
from retail_tools.argocd.gitrepo import GitRepository
from retail_tools.cluster import cluster
from retail_tools.cluster.build import build as build_cluster
from retail_tools.cluster.config import ClusterConfig, Ports
from retail_tools.polling import Timeout, wait_until
from retail_tools.ports import free_port, free_port_base
from retail_tools.settings import current
from retail_tools.standin import AwsStandIn
from tests.integration.operator.conftest import OperatorProcess
from tests.support.cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.aws]

REPO_ROOT = Path(__file__).resolve().parents[2]
APPLICATION = "retailmodel"
REPOSITORY = "mlops/retail-api"
BUCKET = "gitops-models"
MODEL = "price-sensitivity"
NAMESPACE = "retail"
CRD = "retailmodels.mlops.retail.io"
TIMEOUT = 120.0
GITOPS_KUSTOMIZATION = """\
# What Argo CD syncs in these tests: the local overlay and one RetailModel. The operator runs
# as a local process here, so its in-cluster Deployment is synced but scaled to zero.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../deploy/overlays/local
  - retailmodel.yaml
patches:
  - target:
      kind: Deployment
      name: retail-operator
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 0
"""


@dataclass
class GitOps:
    """The world of these tests: cluster, Argo CD, repository, operator and moto."""

    cluster: LocalCluster
    argocd: ArgocdConfig
    repo: GitRepository
    aws: AwsStandIn
    operator: OperatorProcess

    def set_tag(self, tag: str) -> None:
        document = self.repo.read_yaml("gitops/retailmodel.yaml")
        document["spec"]["image"]["tag"] = tag
        self.repo.write_yaml("gitops/retailmodel.yaml", document)

    def image(
        self, tag: str, findings: list[tuple[str, str]] | None = None, status: str = "COMPLETE"
    ) -> str:  # noqa: E501
        digest = self.aws.push_image(REPOSITORY, tag)
        self.aws.set_scan(REPOSITORY, digest, status, findings)
        return digest

    def view(self) -> apps.ApplicationView | None:
        application = apps.get(self.argocd, APPLICATION)
        return apps.view(application) if application else None

    def wait_for(
        self, what: str, probe: Callable[[apps.ApplicationView], bool], timeout: float = TIMEOUT
    ) -> apps.ApplicationView:
        seen: list[apps.ApplicationView | None] = [None]

        def reached() -> apps.ApplicationView | None:
            seen[0] = view = self.view()
            return view if view is not None and probe(view) else None

        try:
            return wait_until(reached, timeout=timeout, interval=0.2)
        except Timeout:
            last = seen[0]
        controller = self.argocd.log_dir / "application-controller.log"
        model = self.get("retailmodel", MODEL, "-n", NAMESPACE) or {}
        raise AssertionError(
            f"timed out waiting for {what}; last={last!r}\n--- the RetailModel ---\n"
            f"{yaml.safe_dump({k: model.get(k) for k in ('metadata', 'status')})}"
            "\n--- controller log tail ---\n"
            + controller.read_text(errors="replace")[-3000:]
            + "\n--- operator log tail ---\n"
            + self.operator.logs()[-2000:]
        )

    def retail_model(self) -> apps.ResourceView | None:
        view = self.view()
        return view.resource("RetailModel", MODEL) if view else None

    def get(self, *args: str) -> Any:
        result = self.cluster.kubectl("get", *args, "-o", "json", check=False)
        return yaml.safe_load(result.stdout) if result.returncode == 0 else None

    def children(self, owner_uid: str) -> list[str]:
        """The objects the operator made for the RetailModel (by ownerReference)."""
        listing = self.get("deployments,services,configmaps", "-n", NAMESPACE) or {"items": []}
        return [
            f"{item['kind']}/{item['metadata']['name']}"
            for item in listing["items"]
            if any(ref["uid"] == owner_uid for ref in item["metadata"].get("ownerReferences", []))
        ]

    def scanning(self, tag: str) -> bool:
        """The operator holds ``tag`` back until its scan completes (Ready says why)."""
        model = self.get("retailmodel", MODEL, "-n", NAMESPACE) or {}
        status = model.get("status", {})
        ready = {c["type"]: c for c in status.get("conditions", [])}.get("Ready", {})
        current = status.get("observedGeneration") == model["metadata"]["generation"]
        waiting = ready.get("reason") == "ScanInProgress"
        return bool(current and waiting and status.get("image", {}).get("tag") == tag)

    def predictor_image(self) -> str:
        deployment = self.get("deployment", MODEL, "-n", NAMESPACE)
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def synced_to(revision: str) -> Callable[[apps.ApplicationView], bool]:
    return lambda view: view.sync == "Synced" and view.revision == revision


def model_health(status: str, message: str = "") -> Callable[[apps.ApplicationView], bool]:
    def probe(view: apps.ApplicationView) -> bool:
        model = view.resource("RetailModel", MODEL)
        return model is not None and model.health == status and message in model.message

    return probe


@pytest.fixture(scope="package")
def gitops_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    shared = ClusterConfig.from_settings(current())
    config = ClusterConfig(
        cache_dir=shared.cache_dir,
        cluster_dir=tmp_path_factory.mktemp("gitops") / "cluster",
        ports=Ports(free_port_base(6)),
        toolchain=shared.toolchain,
    )
    build_cluster(config)
    try:
        cluster.up(config)
        yield LocalCluster(config)
    finally:
        cluster.down(config)


@pytest.fixture(scope="package")
def argocd(
    gitops_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArgocdConfig]:
    """Argo CD started once for this folder, against the private cluster."""
    config = replace(
        ArgocdConfig.from_settings(current()),
        cluster=gitops_cluster.config,
        state_dir=tmp_path_factory.mktemp("argocd"),
        port_base=free_port_base(4),
    )
    build(config)
    try:
        argocd_stack.up(config)
        yield config
    finally:
        argocd_stack.down(config)


@pytest.fixture(scope="module")
def gitops(
    gitops_cluster: LocalCluster,
    argocd: ArgocdConfig,
    aws_stand_in: AwsStandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GitOps]:
    folder = tmp_path_factory.mktemp("repository")
    repo = GitRepository.create(folder, author="e2e")
    (repo.work / "gitops").mkdir()
    (repo.work / "gitops" / "kustomization.yaml").write_text(GITOPS_KUSTOMIZATION)
    sample = yaml.safe_load((REPO_ROOT / "deploy" / "samples" / "retailmodel.yaml").read_text())
    sample["spec"]["image"] = {"repository": aws_stand_in.repository_uri(REPOSITORY), "tag": "v1"}
    model = f"s3://{BUCKET}/models/{MODEL}/model.ubj"
    aws_stand_in.put_model(BUCKET, f"models/{MODEL}/model.ubj", b"model-v1")
    sample["spec"]["model"] = {"s3Uri": model}
    (repo.work / "gitops" / "retailmodel.yaml").write_text(yaml.safe_dump(sample, sort_keys=False))

    port = free_port()
    env = {
        **os.environ,
        **aws_stand_in.env(),
        "KUBECONFIG": str(gitops_cluster.kubeconfig),
        "RETAIL_OPERATOR_RESYNC_SECONDS": "2",
        "RETAIL_OPERATOR_PENDING_SECONDS": "1",
        "RETAIL_OPERATOR_TAG_TTL_SECONDS": "0.5",
        "RETAIL_OPERATOR_SCAN_TTL_SECONDS": "0.5",
        "RETAIL_OPERATOR_MODEL_TTL_SECONDS": "0.5",
        "RETAIL_OPERATOR_LIVENESS_PORT": str(port),
        "RETAIL_OPERATOR_METRICS_PORT": str(free_port()),
    }
    operator = OperatorProcess(env, folder / "operator.log", port)
    world = GitOps(gitops_cluster, argocd, repo, aws_stand_in, operator)
    world.image("v1")
    world.repo.commit("RetailModel v1")
    apps.apply(argocd, apps.local_application(APPLICATION, repo.url, "gitops", "main"))
    # The operator starts once Argo CD has synced the CRD: it watches RetailModels.
    world.wait_for(
        "the CRD",
        lambda _: gitops_cluster.kubectl("get", f"crd/{CRD}", check=False).returncode == 0,
    )  # noqa: E501
    operator.start()
    try:
        yield world
    finally:
        operator.stop()


def test_syncs_crd_rbac_and_operator_in_wave_order_then_the_retail_model(gitops: GitOps) -> None:
    revision = gitops.repo.git("rev-parse", "HEAD")
    view = gitops.wait_for(
        "Synced and Healthy", lambda v: synced_to(revision)(v) and v.health == "Healthy"
    )  # noqa: E501
    assert view.resource("RetailModel", MODEL) is not None
    created = {
        "crd": gitops.get(f"crd/{CRD}")["metadata"]["creationTimestamp"],
        "operator": gitops.get("deployment/retail-operator", "-n", "retailmodel-system")[
            "metadata"
        ]["creationTimestamp"],
        "model": gitops.get("retailmodel", MODEL, "-n", NAMESPACE)["metadata"]["creationTimestamp"],
    }
    # Each wave waits for the previous one to be healthy, then Argo CD's 2 s wave delay: the
    # seconds-resolution timestamps must strictly increase, wave -2 → -1 → 0.
    assert created["crd"] < created["operator"] < created["model"], created


def test_a_new_tag_is_progressing_while_its_scan_runs_then_healthy(gitops: GitOps) -> None:
    digest = gitops.image("v2", status="IN_PROGRESS")
    gitops.set_tag("v2")
    revision = gitops.repo.commit("RetailModel v2")
    apps.refresh(gitops.argocd, APPLICATION)
    gitops.wait_for("v2 synced", synced_to(revision))
    # The scan is what it waits for. Argo CD shows its message only when the RetailModel's
    # health status changes or the app is compared again: v3 skips refreshes for updates that
    # change neither the manifest (status aside) nor the health status, so the message of a
    # Progressing that stays Progressing can lag by up to one reconciliation period.
    gitops.wait_for("the operator waits for the scan", lambda _: gitops.scanning("v2"))
    view = gitops.wait_for("Progressing", model_health("Progressing"))
    assert view.health == "Progressing"
    gitops.aws.set_scan(REPOSITORY, digest, "COMPLETE", [])
    gitops.wait_for("Healthy on v2", lambda v: model_health("Healthy")(v) and v.health == "Healthy")
    assert gitops.predictor_image().endswith(f"@{digest}")


def test_a_blocked_tag_is_degraded_with_the_operators_message_while_v2_serves(
    gitops: GitOps,
) -> None:
    serving = gitops.predictor_image()
    gitops.image("v3", findings=[("CVE-2026-4242", "HIGH")])
    gitops.set_tag("v3")
    revision = gitops.repo.commit("RetailModel v3 (has a HIGH finding)")
    apps.refresh(gitops.argocd, APPLICATION)
    view = gitops.wait_for(
        "Degraded",
        lambda v: synced_to(revision)(v) and model_health("Degraded", "Image blocked")(v),
    )
    model = view.resource("RetailModel", MODEL)
    assert model is not None
    assert model.message.startswith("Image blocked: VulnerabilitiesFound: ")
    assert "CVE-2026-4242" in model.message
    assert view.health == "Degraded"
    assert gitops.predictor_image() == serving


def test_a_revert_is_healthy_again(gitops: GitOps) -> None:
    serving = gitops.predictor_image()
    revision = gitops.repo.revert()
    apps.refresh(gitops.argocd, APPLICATION)
    gitops.wait_for(
        "Healthy after the revert",
        lambda v: synced_to(revision)(v) and model_health("Healthy")(v) and v.health == "Healthy",
    )
    assert gitops.predictor_image() == serving


def test_no_drift_after_reconciles(gitops: GitOps) -> None:
    before = gitops.get("application", APPLICATION, "-n", "argocd")
    started = before["status"]["operationState"]["startedAt"]
    model = gitops.get("retailmodel", MODEL, "-n", NAMESPACE)
    children = gitops.children(model["metadata"]["uid"])
    assert {"Deployment/" + MODEL, "Service/" + MODEL} <= set(children), children
    # Two hard refreshes (manifests regenerated from git, live state compared again) with the
    # operator reconciling every 2 s: each must end Synced, with nothing for selfHeal to do.
    for _ in range(2):
        apps.refresh(gitops.argocd, APPLICATION, hard=True)
        view = gitops.wait_for("the refresh done", lambda v: not v.refresh_pending)
        out_of_sync = [r for r in view.resources if r.sync != "Synced"]
        assert view.sync == "Synced" and not out_of_sync, out_of_sync
    after = gitops.get("application", APPLICATION, "-n", "argocd")
    assert after["status"]["operationState"]["startedAt"] == started, "selfHeal synced again"
    tracked = {(r.kind, r.name) for r in view.resources}
    # The operator's children are the RetailModel's, not the Application's: never tracked, so
    # never OutOfSync or pruned, and still there.
    assert not {tuple(child.split("/")) for child in children} & tracked
    assert set(gitops.children(model["metadata"]["uid"])) == set(children)


def test_pruning_a_removed_retail_model_garbage_collects_its_children(gitops: GitOps) -> None:
    model = gitops.get("retailmodel", MODEL, "-n", NAMESPACE)
    children = gitops.children(model["metadata"]["uid"])
    assert children
    kustomization = gitops.repo.work / "gitops" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("  - retailmodel.yaml\n", ""))
    revision = gitops.repo.commit("Remove the RetailModel")
    apps.refresh(gitops.argocd, APPLICATION)
    gitops.wait_for(
        "the RetailModel pruned",
        lambda v: synced_to(revision)(v) and v.resource("RetailModel", MODEL) is None,
    )
    gitops.wait_for(
        "its children garbage-collected",
        lambda _: not gitops.children(model["metadata"]["uid"]),
    )
    assert gitops.get("retailmodel", MODEL, "-n", NAMESPACE) is None
