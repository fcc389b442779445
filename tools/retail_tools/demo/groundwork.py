"""The demo's groundwork steps: the cluster and its real node, the AWS stand-in, ECR, the two
images built, pushed and scanned, a trained model in S3; and the teardown that undoes them.

Each step runs what a team would run (``retailctl …``, ``podman …``, ``kubectl …``) and leaves
what the later steps need in the ``Demo`` context.
"""

from __future__ import annotations

import subprocess

from retail_tools import processes
from retail_tools.cluster.config import ClusterConfig
from retail_tools.demo import gitops
from retail_tools.demo.context import BUCKET, MODEL_KEY, NAMESPACE, Demo, DemoError, console
from retail_tools.images import registry
from retail_tools.images.build import TARGETS
from retail_tools.images.podman import podman_env
from retail_tools.onnode import OPERATOR_NAMESPACE, REGISTRY_CONFIG, STANDIN_CONFIG, OnNode
from retail_tools.standin import REGION

IMAGES = ("serving", "operator")


def control_plane_up(demo: Demo) -> None:
    was_up = (
        subprocess.run(
            [demo.retailctl, "cluster", "status"], env=demo.env, capture_output=True, check=False
        ).returncode
        == 0
    )
    demo.cluster_started = not was_up  # before `up`: a failed start is cleaned up too
    demo.run("retailctl", "cluster", "up")
    demo.env["KUBECONFIG"] = demo.run("retailctl", "cluster", "kubeconfig", show=False).strip()
    demo.kubectl("get", "nodes", "-o", "wide", "-L", "retailmodel.io/node")


def aws_stand_in_up(demo: Demo) -> None:
    demo.aws = OnNode.standin_for(demo.cluster).start()
    demo.on_node = OnNode(demo.cluster, demo.aws, demo.workdir / "on-node")
    demo.env.update(demo.aws.env())
    console.print(
        f"ECR, S3 and STS at {demo.aws.endpoint} (region {REGION}): on the node's bridge, "
        "so the operator and the predictor pods reach it as they would reach AWS"
    )
    demo.on_node.trust_cluster()
    console.print(
        "IRSA as on EKS: the stand-in's STS trusts the cluster's ServiceAccount token issuer "
        "(its /openid/v1/jwks) and each role deploy/irsa names trusts its ServiceAccount; "
        "pods get credentials only by AssumeRoleWithWebIdentity"
    )


def ecr_bootstrap(demo: Demo) -> None:
    demo.run("retailctl", "ecr", "bootstrap")
    console.print("[dim]a second run changes nothing:")
    demo.run("retailctl", "ecr", "bootstrap")


def images_built(demo: Demo) -> None:
    demo.env.update(podman_env(demo.images))  # the podman settings this VM needs
    for name in IMAGES:
        reference = demo.run("retailctl", "image", "build", name).strip().splitlines()[-1]
        demo.tags[name] = reference.rpartition(":")[2]
    demo.run("podman", "images", "--filter", "reference=localhost/retail-*")


def images_pushed_and_scanned(demo: Demo) -> None:
    demo.registry_started = registry.status(demo.images).pid is None
    demo.run("retailctl", "image", "registry", "up")
    for name in IMAGES:
        push(demo, name, demo.tags[name], findings=[])
    demo.run("retailctl", "ecr", "usage")


def push(demo: Demo, name: str, tag: str, findings: list[tuple[str, str]]) -> str:
    """``retailctl image push``, then the scan ECR runs on push (told to the stand-in: no
    scanner runs here), shown as ``retailctl ecr findings`` reports it; the digest."""
    repository = TARGETS[name].ecr_repository
    digest = demo.run("retailctl", "image", "push", name, "--tag", tag).strip().splitlines()[-1]
    demo.digests[f"{name}:{tag}"] = digest
    demo.stand_in.set_scan(repository, digest, "COMPLETE", findings)
    found = ", ".join(f"{cve} {severity}" for cve, severity in findings) or "no findings"
    console.print(f"[dim]ECR's scan of {digest[:19]}… (the stand-in's answer): {found}")
    demo.run("retailctl", "ecr", "findings", "--repository", repository, "--tag", tag)
    return digest


def model_published(demo: Demo) -> None:
    demo.stand_in.ensure_bucket(BUCKET)
    console.print(f"bucket {BUCKET} created, versioned")
    demo.model_uri = f"s3://{BUCKET}/{MODEL_KEY}"
    train_and_push(demo, "model-v1.ubj", seed=1)


def train_and_push(demo: Demo, model: str, seed: int) -> str:
    """Train and upload to the model URI; the model's version."""
    out = str(demo.workdir / model)
    trained = demo.run("retailctl", "train", "--out", out, "--rows", "20000", "--seed", str(seed))
    demo.run("retailctl", "model", "push", out, demo.model_uri)
    for line in trained.splitlines():
        if line.startswith("model version:"):
            return line.partition(":")[2].strip()
    raise DemoError("retailctl train printed no model version")


def shut_down(demo: Demo) -> None:
    """Delete what the demo applied (newest first), stop what it started, and leave the
    cluster as it found it. The Application goes first, so Argo CD recreates nothing."""
    gitops.remove_application(demo)
    if demo.argocd_started:
        demo.run("retailctl", "argocd", "down", check=False)
    if demo.on_node is not None:
        for kind_name, namespace in reversed(demo.applied):
            demo.kubectl(
                "delete", kind_name, "-n", namespace, "--ignore-not-found", "--wait=true",
                "--timeout=120s", check=False,
            )  # fmt: skip
        for namespace in (NAMESPACE, OPERATOR_NAMESPACE):
            demo.kubectl(
                "delete", "configmap", STANDIN_CONFIG, "-n", namespace, "--ignore-not-found",
                check=False,
            )  # fmt: skip
        demo.kubectl(
            "delete", "configmap", REGISTRY_CONFIG, "-n", OPERATOR_NAMESPACE,
            "--ignore-not-found", check=False,
        )  # fmt: skip
    if demo.aws is not None:
        console.print("stopping the AWS stand-in")
        demo.aws.stop()
    if demo.registry_started:
        demo.run("retailctl", "image", "registry", "down", check=False)
    if not demo.cluster_started:
        console.print("the cluster was running before the demo: left up")
    elif sessions := live_test_sessions(demo.cluster):
        console.print(f"{sessions} test session(s) joined the cluster meanwhile: left up for them")
    else:
        demo.run("retailctl", "cluster", "down", check=False)
        demo.run("retailctl", "cluster", "leftovers", check=False)


def live_test_sessions(config: ClusterConfig) -> int:
    """How many pytest sessions use the cluster now: each registers ``<pid>.session`` in the
    run folder (tests/support/cluster.py) and would lose its cluster to a ``down``."""
    folder = config.run_dir / "test-sessions"
    return sum(processes.alive(int(session.stem)) for session in folder.glob("*.session"))
