"""Upgrading the in-cluster operator restarts no serving pod (issue 26; kserve PR #5085 is what
happens otherwise).

Two RetailModels serve on the real node under a steady request loop through their Services.
The operator is then upgraded as a team upgrades it: ``deploy/overlays/local`` applied again
with a new operator image digest, so its Deployment rolls, a new replica takes the Lease, and
the new leader, with an empty memory, reconciles every RetailModel from scratch. The new image
is the tested one with one label added (``build_release``): other bytes, another digest, the
same code. That is the upgrade this test can make honestly; what a code change may alter is the
rendered pod template, which is what the test watches: every serving pod keeps its name, uid
and 0 restarts, each Deployment its generation, pod template and pod-template hash, and not one
request fails. docs/operator.md ("What rolls the serving pods") lists what does change the
template.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from retail_tools.images.build import build_release, target_named
from retail_tools.images.push import push_image
from retail_tools.load import Load
from retail_tools.onnode import OPERATOR_NAMESPACE
from retail_tools.polling import wait_until
from tests.e2e.conftest import BUCKET, KEY, NAMESPACE, Stack

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

LEASE = "retail-operator"
OPERATOR_METRICS_PORT = 8081  # the operator's default RETAIL_OPERATOR_METRICS_PORT
# After the new leader's first pass: long enough for a changed template to have started a
# rollout (the Deployment controller acts on an apply within a second or two).
SETTLE_SECONDS = 15


@dataclass(frozen=True)
class Serving:
    """What must not change across the upgrade, for one RetailModel."""

    pods: dict[str, tuple[str, int, str]]  # name → (uid, restarts, container started at)
    generation: int
    template: dict[str, Any]
    template_hashes: frozenset[str]


def serving(stack: Stack, name: str) -> Serving:
    deployment = stack.kubectl.get_json("deployment", name, "-n", NAMESPACE)
    pods = {}
    for pod in stack.on_node.pods(NAMESPACE, name):
        (status,) = pod["status"]["containerStatuses"]
        started = status.get("state", {}).get("running", {}).get("startedAt", "")
        pods[pod["metadata"]["name"]] = (pod["metadata"]["uid"], status["restartCount"], started)
    hashes = {
        pod["metadata"]["labels"]["pod-template-hash"]
        for pod in stack.on_node.pods(NAMESPACE, name)
    }
    return Serving(
        pods,
        deployment["metadata"]["generation"],
        deployment["spec"]["template"],
        frozenset(hashes),
    )


@pytest.fixture
def models(stack: Stack) -> Iterator[dict[str, int]]:
    """Two RetailModels of two replicas serving on the real node, by name, with their
    NodePorts."""
    names = [f"steady-{uuid.uuid4().hex[:5]}" for _ in range(2)]
    tag = f"e2e-{stack.run}"
    for name in names:
        manifest = stack.on_node.retail_model(
            name, NAMESPACE, tag, f"s3://{BUCKET}/{KEY}", replicas=2
        )
        stack.on_node.apply(manifest)
    try:
        for name in names:
            stack.wait_condition(name, "Ready", "True")
        yield {name: stack.on_node.expose(NAMESPACE, name) for name in names}
    finally:
        for name in names:
            stack.on_node.remove(NAMESPACE, name)


def operator_release(stack: Stack, tag: str) -> str:
    """A new operator image under ``tag`` (the tested one plus a label), pushed; its digest."""
    target = target_named("operator")
    build_release(stack.images, target, f"e2e-{stack.run}", tag, stack.on_node.workdir / tag)
    ecr = stack.on_node.aws.client("ecr")
    return push_image(stack.images, target, tag, ecr, lambda _line: None).digest


def leader(stack: Stack) -> str:
    """The pod holding the operator's Lease."""
    lease = stack.kubectl.get_json("lease", LEASE, "-n", OPERATOR_NAMESPACE)
    return str(lease["spec"].get("holderIdentity", "")).rpartition("_")[0]


def operator_pods(stack: Stack, digest: str) -> set[str]:
    """The running operator pods whose image is ``digest``."""
    listing = stack.kubectl.get_json("pods", "-n", OPERATOR_NAMESPACE)["items"]
    return {
        pod["metadata"]["name"]
        for pod in listing
        if not pod["metadata"].get("deletionTimestamp")
        and any(s.get("imageID", "").endswith(digest) and s.get("ready")
                for s in pod["status"].get("containerStatuses", []))
    }  # fmt: skip


def operator_metrics(stack: Stack, pod: str) -> dict[str, float]:
    """The operator ``pod``'s own /metrics (asked from inside it), by sample name."""
    script = (
        "import urllib.request;print(urllib.request.urlopen("
        f"'http://127.0.0.1:{OPERATOR_METRICS_PORT}/metrics').read().decode())"
    )
    text = stack.kubectl.output(
        "exec", "-n", OPERATOR_NAMESPACE, pod, "--", "python3", "-c", script
    )  # fmt: skip
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return samples


def test_upgrading_the_operator_restarts_no_serving_pod_and_fails_no_request(
    stack: Stack, models: dict[str, int]
) -> None:
    before = {name: serving(stack, name) for name in models}
    for seen in before.values():
        assert len(seen.pods) == 2 and all(r == 0 for _, r, _ in seen.pods.values()), seen
    old_leader = leader(stack)
    digest = operator_release(stack, f"e2e-{stack.run}-operator-next")
    assert digest != stack.tags[f"operator:e2e-{stack.run}"]
    every_model = len(stack.kubectl.get_json("retailmodels", "--all-namespaces")["items"])
    with ExitStack() as loads:
        running = [
            loads.enter_context(Load(port, workers=2, max_seconds=600)) for port in models.values()
        ]
        started = time.monotonic()
        stack.on_node.deploy_operator(digest)

        def new_leader() -> str:
            current = leader(stack)
            return current if current in operator_pods(stack, digest) else ""

        leading = str(wait_until(new_leader, timeout=120, what="the new operator image to lead"))

        def caught_up() -> bool:
            """The new leader reconciled every RetailModel (it makes them all due when it takes
            the Lease), and none is due and waiting."""
            samples = operator_metrics(stack, leading)
            return (
                samples.get("retail_operator_reconciles_total", 0) >= every_model
                and samples.get("retail_operator_due_backlog", 1) == 0
            )

        wait_until(caught_up, timeout=120, what=f"{leading} to reconcile {every_model} models")
        upgraded = time.monotonic() - started
        time.sleep(SETTLE_SECONDS)
        reports = [load.stop() for load in running]
    after = {name: serving(stack, name) for name in models}

    assert leading != old_leader
    for name in models:
        assert after[name].pods == before[name].pods, name  # same names, uids, 0 restarts
        assert after[name].generation == before[name].generation, name
        assert after[name].template == before[name].template, name
        assert after[name].template_hashes == before[name].template_hashes, name
    for report in reports:
        assert report.sent > 0 and report.failed == 0, report.summary()
    print(
        f"\noperator upgraded to {digest[:19]}… and every RetailModel reconciled by "
        f"{leading} in {upgraded:.0f}s; " + "; ".join(report.summary() for report in reports)
    )
