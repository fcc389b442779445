"""The demo's story, in order: ``STORY``, the list ``run_demo`` walks, each entry a ``Step``
(title, why, and a function of the shared ``Demo`` context); ``TEARDOWN`` always runs last,
even after a failure. From the Argo CD sync on, the RetailModel's spec changes only by commits
(``gitops.commit_spec``). To tell more of the story, add a step where it belongs: a step reads
what earlier ones left in the context and records what it applied in ``demo.applied`` for the
teardown.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from retail_tools.demo import canary, drift, gitops, groundwork, provenance, rollouts, scaling
from retail_tools.demo.context import Demo, Step, console

STORY: tuple[Step, ...] = (
    Step(
        "The cluster and its real node",
        "etcd, kube-apiserver, controller-manager, scheduler, kwok's fake nodes, and one real "
        "node (containerd, runc, kubelet, kube-proxy) labelled and tainted "
        "retailmodel.io/node=real; built from the Go module proxy and cached.",
        groundwork.control_plane_up,
    ),
    Step(
        "AWS stand-in",
        "moto's server plays ECR and S3 over HTTP, on the node's bridge so pods reach it.",
        groundwork.aws_stand_in_up,
    ),
    Step(
        "ECR repositories as code",
        "Immutable tags, scan on push, AES-256, lifecycle rules and pull policies from "
        "deploy/ecr/repositories.yaml.",
        groundwork.ecr_bootstrap,
    ),
    Step(
        "Build the images",
        "Dockerfile.serving and Dockerfile.operator with podman, on a Debian base made here "
        "(cached: a rebuild of unchanged sources takes seconds).",
        groundwork.images_built,
    ),
    Step(
        "Push and scan them",
        "To the local registry where ECR's endpoint would be, and the same manifest registered "
        "in ECR: the digest the operator resolves is the one the node pulls.",
        groundwork.images_pushed_and_scanned,
    ),
    Step(
        "Train and publish a model",
        "XGBoost on synthetic dunnhumby-shaped baskets; one UBJSON file with its schema "
        "inside, uploaded with its sha256 to a versioned bucket.",
        groundwork.model_published,
    ),
    Step(
        "Argo CD",
        "Built from the Go module proxy (cached) and started against this cluster: redis, the "
        "repo-server with kustomize, the application controller, and the project's health "
        "check for RetailModel in argocd-cm.",
        gitops.argocd_up,
    ),
    Step(
        "Synced from git by Argo CD",
        "A git repository holds deploy/overlays/local (the operator image pinned to the pushed "
        "digest) and the RetailModel. The Application syncs them in waves: the CRD, then the "
        "namespaces, RBAC and the operator's two replicas on the real node (one holds the "
        "leader Lease), then the RetailModel, which the operator resolves, checks and rolls "
        "out.",
        rollouts.synced_by_argocd,
    ),
    Step(
        "Predictions through the Service",
        "A NodePort on 127.0.0.1 beside the operator's Service, through kube-proxy to the pods.",
        rollouts.predictions,
    ),
    Step(
        "Hot reload a retrained model",
        "Retrain and upload to the same key under load: every pod picks it up without a "
        "restart, and no request fails.",
        rollouts.hot_reload,
    ),
    Step(
        "A blocked image is refused",
        "A commit with a new tag whose scan has a CRITICAL finding: the operator keeps the good "
        "digest running and says why; Argo CD shows Degraded with its message; the pods keep "
        "serving.",
        rollouts.blocked_image_refused,
    ),
    Step(
        "A revert in git",
        "git revert of the blocked tag: Argo CD syncs the good tag back and the RetailModel is "
        "Healthy again; the pods never changed.",
        rollouts.reverted_in_git,
    ),
    Step(
        "A new image rolled out under load",
        "A commit with a clean new tag: Argo CD shows Progressing while a readiness-gated "
        "rolling update (preStop, graceful shutdown) runs under load, then Healthy; the "
        "failed-request count is the promise (0).",
        rollouts.new_image_rolled_out,
    ),
    *canary.STEPS,
    scaling.STEP,
    *drift.STEPS,
    provenance.STEP,
    Step(
        "Events and logs",
        "What a person reads afterwards: the namespace's events, the operator's and a "
        "predictor's logs.",
        rollouts.events_and_logs,
    ),
)
TEARDOWN = Step(
    "Clean up",
    "Delete what the demo applied, stop what it started; a cluster it started goes down and "
    "leaves nothing behind.",
    groundwork.shut_down,
)


def run_demo(
    workdir: Path | None = None, story: Sequence[Step] = STORY, teardown: Step = TEARDOWN
) -> None:
    """Walk ``story`` step by step, timing each; ``teardown`` runs at the end whatever
    happened; then the figures measured on the way."""
    work = workdir or Path.cwd() / ".demo"
    work.mkdir(parents=True, exist_ok=True)
    demo = Demo(work)
    # The commands write into a pipe: their tables (`retailctl argocd app`, `cluster status`)
    # take the demo's own width, the terminal's or the log's.
    demo.env.setdefault("COLUMNS", str(console.width))
    try:
        for step in story:
            run_step(demo, step)
        console.print("\n[bold green]The whole story ran on real pods.")
    finally:
        run_step(demo, teardown)
        summary(demo)


def run_step(demo: Demo, step: Step) -> None:
    demo.step(step.title, step.why)
    started = time.monotonic()
    try:
        step.run(demo)
    finally:
        seconds = time.monotonic() - started
        demo.durations.append((f"{demo.step_number}. {step.title}", seconds))
        console.print(f"[dim]({step.title}: {seconds:.1f}s)")


def summary(demo: Demo) -> None:
    table = Table("part", "seconds", title="Measured")
    for part, seconds in demo.durations:
        table.add_row(part, f"{seconds:.1f}")
    console.print(table)
    for name, report in demo.loads.items():
        console.print(f"load during {name}: {report.summary()}")
