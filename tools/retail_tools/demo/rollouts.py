"""The demo's steps on the real pods: the operator and a RetailModel synced by Argo CD from git
onto the real node, predictions through its Service, a hot reload, a refused image (a commit),
its revert, and a rolled-out one, each under load that counts failed requests; then the events
and logs a person would read. Every spec change is a commit (``gitops.commit_spec``): with
selfHeal on, a ``kubectl patch`` would be undone by Argo CD.

Load reaches the pods through a NodePort on 127.0.0.1 (kube-proxy), never another address.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from typing import Any

import yaml

from retail_contract.metrics import METRICS_PORT
from retail_tools.demo import gitops
from retail_tools.demo.context import NAME, NAMESPACE, Demo, DemoError, console, http, wait
from retail_tools.demo.groundwork import push, train_and_push
from retail_tools.images.build import TARGETS, build_release
from retail_tools.load import BASKET, Load
from retail_tools.onnode import OPERATOR_NAMESPACE, REPO_ROOT, placement

SAMPLE = REPO_ROOT / "deploy" / "samples" / "retailmodel.yaml"
OPERATOR_PODS = "app.kubernetes.io/name=retail-operator"
PREDICTOR_PODS = f"mlops.retail.io/retailmodel={NAME}"
IMAGE_IDS = "custom-columns=POD:.metadata.name,READY:.status.containerStatuses[0].ready,IMAGE-ID:.status.containerStatuses[0].imageID"  # noqa: E501
INFO_SCRIPT = (
    "import urllib.request;"
    f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/model/info').read().decode())"
)


def synced_by_argocd(demo: Demo) -> None:
    gitops.synced_from_git(demo, retail_model(demo, demo.tags["serving"]))
    demo.applied += [
        ("deployment/retail-operator", OPERATOR_NAMESPACE),
        (f"retailmodel/{NAME}", NAMESPACE),
    ]
    demo.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide")
    demo.kubectl("logs", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_PODS, "--prefix", "--tail=4")
    wait_ready(demo, "True")
    demo.kubectl("get", "rmodel", "-n", NAMESPACE, "-o", "wide")
    demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE)
    demo.kubectl("get", "deployment,service,configmap", "-n", NAMESPACE)
    demo.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")


def predictions(demo: Demo) -> None:
    demo.applied.append((f"service/{NAME}-local", NAMESPACE))
    demo.port = demo.node.expose(NAMESPACE, NAME)
    demo.kubectl("get", "service", "-n", NAMESPACE)
    url = f"http://127.0.0.1:{demo.port}/predict"
    console.print(
        f"[bold cyan]$ curl -s {url} -H 'content-type: application/json' -d '{json.dumps(BASKET)}'",
        soft_wrap=True,
    )
    console.print_json(data=http("POST", url, BASKET))
    with Load(demo.port, workers=2, max_seconds=60) as load:
        time.sleep(10)  # ten seconds of traffic: what the pods answer at rest
    demo.measured("10 s of predictions", load.report)


def hot_reload(demo: Demo) -> None:
    pods = [pod["metadata"]["name"] for pod in ready_pods(demo)]
    before = {pod: model_info(demo, pod, show=False)["version"] for pod in pods}
    console.print(f"serving model {', '.join(sorted(set(before.values())))} in {len(pods)} pods")
    with Load(demo.port, workers=4, max_seconds=300) as load:
        version = train_and_push(demo, "model-v2.ubj", seed=2)
        if version in before.values():
            raise DemoError(f"the retrained model has the same version {version}")
        started = time.monotonic()
        wait(
            f"every pod to serve {version}",
            lambda: all(model_info(demo, pod, show=False)["version"] == version for pod in pods),
            timeout=120,
        )
        console.print(f"every pod serves {version}, {time.monotonic() - started:.1f}s after upload")
    demo.measured("the hot reload", load.report)
    console.print(f"answers by model version: {dict(load.report.models)}")
    for pod in pods:
        model_info(demo, pod, show=True)
    after = [pod["metadata"]["name"] for pod in ready_pods(demo)]
    if sorted(after) != sorted(pods):
        raise DemoError(f"the reload replaced pods: {pods} → {after}")
    console.print("the same pods, no restart")
    demo.kubectl("get", "pods", "-n", NAMESPACE, "-l", PREDICTOR_PODS)


def blocked_image_refused(demo: Demo) -> None:
    good = demo.digests[f"serving:{demo.tags['serving']}"]
    tag = release(demo, "blocked", [("CVE-2024-3094", "CRITICAL"), ("CVE-2024-6387", "HIGH")])
    commit_refused(demo, tag, "VulnerabilitiesFound", "Image blocked", "the refused rollout")
    demo.kubectl("get", "rmodel", "-n", NAMESPACE)
    demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE)
    demo.kubectl("get", "pods", "-n", NAMESPACE, "-l", PREDICTOR_PODS, "-o", IMAGE_IDS)
    if not all(image_id(pod).endswith(good) for pod in ready_pods(demo)):
        raise DemoError("a blocked image replaced the running one")
    console.print(f"every pod still runs the good digest {good[:19]}…")
    demo.kubectl(
        "get", "events", "-n", NAMESPACE, "--field-selector",
        f"type=Warning,involvedObject.name={NAME}",
    )  # fmt: skip


def reverted_in_git(demo: Demo) -> None:
    good = demo.digests[f"serving:{demo.tags['serving']}"]
    pods = sorted(pod["metadata"]["name"] for pod in ready_pods(demo))
    with Load(demo.port, workers=2, max_seconds=300) as load:
        gitops.revert(demo)
        wait_ready(demo, "True")
        gitops.wait_application(demo, "Healthy", health="Healthy")
    demo.measured("the revert", load.report)
    gitops.show_application(demo)
    after = ready_pods(demo)
    if sorted(pod["metadata"]["name"] for pod in after) != pods:
        raise DemoError("the revert replaced pods that never stopped serving the good image")
    if not all(image_id(pod).endswith(good) for pod in after):
        raise DemoError("after the revert a pod runs another image than the good one")
    console.print(f"the same pods, on the good digest {good[:19]}… all along")


def new_image_rolled_out(demo: Demo) -> None:
    tag = release(demo, "next", findings=[])
    digest = demo.digests[f"serving:{tag}"]
    trail = HealthTrail(demo)
    with Load(demo.port, workers=4, max_seconds=420) as load:
        started = time.monotonic()
        change_tag(demo, tag, watch=trail.seen)
        wait(
            f"both pods on {digest[:19]}… and the old ones gone",
            lambda: trail.seen() and rolled_out(demo, digest),
            timeout=300,
        )
        wait_ready(demo, "True")
        gitops.wait_application(demo, "Healthy", health="Healthy")
        seconds = time.monotonic() - started
    trail.seen()
    console.print(f"Argo CD's health of the RetailModel on the way: {trail}")
    if "Progressing" not in trail.states:
        raise DemoError(f"Argo CD never showed the rollout as Progressing: {trail}")
    gitops.show_application(demo)
    demo.durations.append(("rolling update (tag change → old pods gone)", seconds))
    console.print(f"rolled out in {seconds:.1f}s")
    demo.measured("the image rollout", load.report)
    demo.kubectl("get", "rmodel", "-n", NAMESPACE, "-o", "wide")
    demo.kubectl("get", "pods", "-n", NAMESPACE, "-l", PREDICTOR_PODS, "-o", IMAGE_IDS)
    demo.kubectl("rollout", "history", f"deployment/{NAME}", "-n", NAMESPACE)


def events_and_logs(demo: Demo) -> None:
    # The namespace may hold other teams' RetailModels: the demo's own objects only.
    listed = demo.kubectl(
        "get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp", show=False
    ).splitlines()  # fmt: skip
    console.print(
        f"[bold cyan]$ kubectl get events -n {NAMESPACE} --sort-by=.lastTimestamp | grep {NAME}"
    )
    events = [line for line in listed[1:] if f"/{NAME}" in line]
    if len(events) > 30:
        console.print(f"[dim](the last 30 of {len(events)})")
    demo.show("\n".join(listed[:1] + events[-30:]))
    demo.kubectl("logs", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_PODS, "--prefix", "--tail=12")
    demo.kubectl("logs", "-n", NAMESPACE, f"deployment/{NAME}", "--tail=8")


# -- helpers -----------------------------------------------------------------------------------
def retail_model(demo: Demo, tag: str) -> dict[str, Any]:
    """deploy/samples' RetailModel (its sync wave kept) with the tag just pushed, placed on the
    real node with the stand-in's environment, reloading every 5 s (the sample's 30 s,
    shortened for the demo)."""
    document: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    spec = document["spec"]
    spec["image"] = {"repository": demo.stand_in.repository_uri("mlops/retail-api"), "tag": tag}
    spec["model"] = {"s3Uri": demo.model_uri}
    spec["reloadIntervalSeconds"] = 5
    spec.update(placement())
    return document


def commit_refused(demo: Demo, tag: str, reason: str, health: str, what: str) -> None:
    """A commit of ``tag`` the operator refuses, under load: Ready False ``reason``, and Argo
    CD's Degraded with ``health`` in its message."""
    with Load(demo.port, workers=2, max_seconds=300) as load:
        change_tag(demo, tag)
        wait_ready(demo, "False", reason)
        gitops.wait_application(demo, "Degraded", health="Degraded", message=health)
    demo.measured(what, load.report)
    gitops.show_application(demo)


def change_tag(demo: Demo, tag: str, watch: Callable[[], object] = lambda: None) -> None:
    """What CI's deploy job does: a commit with the new spec.image.tag, which Argo CD syncs."""
    update = lambda spec: spec["image"].update(tag=tag)  # noqa: E731
    gitops.commit_spec(demo, f"Roll out {tag}", update, watch)


class HealthTrail:
    """The RetailModel's health in Argo CD each time it was looked at, changes only."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.states: list[str] = []

    def seen(self) -> bool:
        view = gitops.application_view(self.demo)
        model = view.resource("RetailModel", NAME) if view else None
        if model is not None and model.health and self.states[-1:] != [model.health]:
            self.states.append(model.health)
        return True

    def __str__(self) -> str:
        return " → ".join(self.states) or "(nothing seen)"


def release(demo: Demo, suffix: str, findings: list[tuple[str, str]]) -> str:
    """A new serving release (other bytes, same code) pushed and scanned; its tag."""
    base = demo.tags["serving"]
    tag = f"{base}-{suffix}"
    target = TARGETS["serving"]
    console.print(
        f"[bold cyan]$ podman build --label org.retailmodel.release={tag} "
        f"--tag {target.reference(tag)}  [/][dim](FROM {target.reference(base)})"
    )
    build_release(demo.images, target, base, tag, demo.workdir / "releases" / tag)
    push(demo, "serving", tag, findings)
    return tag


def ready(demo: Demo) -> dict[str, Any]:
    """The RetailModel's Ready condition for its current generation ({} while it has none)."""
    return demo.node.condition(NAMESPACE, NAME, "Ready")


def wait_ready(demo: Demo, status: str, reason: str | None = None) -> None:
    def reached() -> bool:
        found = ready(demo)
        return found.get("status") == status and reason in (None, found.get("reason"))

    try:
        wait(f"Ready={status}" + (f" {reason}" if reason else ""), reached)
    except DemoError:
        demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE, check=False)
        demo.kubectl("get", "pods", "-A", "-o", "wide", check=False)
        raise
    condition = ready(demo)
    console.print(f"Ready={condition['status']} {condition['reason']}: {condition['message']}")


def ready_pods(demo: Demo) -> list[dict[str, Any]]:
    return demo.node.ready_pods(NAMESPACE, NAME)


def image_id(pod: dict[str, Any]) -> str:
    return str(pod["status"]["containerStatuses"][0]["imageID"])


def rolled_out(demo: Demo, digest: str) -> bool:
    """Every pod (terminating ones too) is a Ready one on ``digest``: the update is over."""
    pods = demo.node.pods(NAMESPACE, NAME)
    current = ready_pods(demo)
    return len(pods) == len(current) == 2 and all(image_id(p).endswith(digest) for p in current)


def model_info(demo: Demo, pod: str, *, show: bool) -> dict[str, Any]:
    """A pod's own /model/info, asked from inside it with ``kubectl exec`` (shown without the
    feature list)."""
    args = ("exec", "-n", NAMESPACE, pod, "--", "python3", "-c")
    if show:
        console.print(f"[bold cyan]$ kubectl {shlex.join((*args, INFO_SCRIPT))}", soft_wrap=True)
    info: dict[str, Any] = json.loads(demo.node.kubectl.output(*args, INFO_SCRIPT))
    if show:
        console.print_json(data={k: v for k, v in info.items() if k != "features"})
    return info
