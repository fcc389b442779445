"""The demo's canary part: the RetailModel switched to ``rollout.strategy: Canary``, then a bad
model rolled back by itself and a good one promoted, each under load through the NodePort,
with the figures the operator measured and the time from upload to verdict.

``STEPS`` go after the rollouts (they need the operator in-cluster, the RetailModel, its
NodePort in ``demo.port`` and the model URI). The load sends a mix of baskets
(``candidates.traffic``), since a single repeated basket would make every class share 0 or 1.
"""

from __future__ import annotations

import time
from typing import Any

from retail_tools import candidates
from retail_tools.demo import gitops
from retail_tools.demo.context import (
    NAME,
    NAMESPACE,
    Demo,
    DemoError,
    Step,
    console,
    wait,
    wait_condition,
)
from retail_tools.demo.groundwork import train_and_push
from retail_tools.demo.rollouts import model_info, ready_pods
from retail_tools.load import Load

ANALYSIS = {
    "durationSeconds": 20,
    "minRequests": 100,
    "maxErrorRate": 0.01,
    "maxLatencyRatio": 3,
    "maxPredictionShift": 0.10,
}
VERDICT_SECONDS = 180


def canary_switched_on(demo: Demo) -> None:
    rollout = {"strategy": "Canary", "canary": {"replicas": 1, "analysis": ANALYSIS}}
    with Load(demo.port, workers=2, max_seconds=300) as load:
        gitops.commit_spec(
            demo, "Canary rollouts for new models", lambda s: s.update(rollout=rollout)
        )
        wait_rolled_out(demo, "True", "Stable")
    demo.measured("the switch to Canary (one rolling update: the track label)", load.report)
    demo.kubectl("get", "rmodel", NAME, "-n", NAMESPACE, "-o", "wide")


def bad_model_rolled_back(demo: Demo) -> None:
    stable = served_versions(demo)
    data, version = candidates.one_class("High")
    path = demo.workdir / "model-always-high.ubj"
    path.write_bytes(data)
    console.print(f"[dim]{path.name}: a booster trained on labels that are all High ({version})")
    with Load(
        demo.port, workers=4, max_seconds=VERDICT_SECONDS + 60, baskets=candidates.traffic()
    ) as load:
        started = time.monotonic()
        demo.run("retailctl", "model", "push", str(path), demo.model_uri)
        condition = wait_rolled_out(demo, "False", "RolledBack")
        seconds = time.monotonic() - started
        wait("the canary to be gone", lambda: not canary_pods(demo), timeout=120)
    demo.durations.append(("canary: upload → rolled back", seconds))
    console.print(f"rolled back {seconds:.1f}s after the upload: {condition['message']}")
    demo.measured("the rolled-back canary", load.report)
    console.print(f"answers by model version: {dict(load.report.models)}")
    if served_versions(demo) != stable:
        raise DemoError(f"the stable pods left {stable} after a rollback")
    console.print(f"the stable pods still serve {', '.join(sorted(stable))}")
    show_rollout(demo, "RolledBack")


def good_model_promoted(demo: Demo) -> None:
    with Load(
        demo.port, workers=4, max_seconds=VERDICT_SECONDS + 90, baskets=candidates.traffic()
    ) as load:
        started = time.monotonic()
        version = train_and_push(demo, "model-v3.ubj", seed=3)
        condition = wait_rolled_out(demo, "True", "Promoted")
        seconds = time.monotonic() - started
        wait(f"every pod to serve {version}", lambda: served_versions(demo) == {version})
        wait("the canary to be gone", lambda: not canary_pods(demo), timeout=120)
    demo.durations.append(("canary: upload → promoted (training included)", seconds))
    console.print(f"promoted {seconds:.1f}s after the upload began: {condition['message']}")
    demo.measured("the promoted canary", load.report)
    console.print(f"answers by model version: {dict(load.report.models)}")
    show_rollout(demo, "Promoted")


# -- helpers -----------------------------------------------------------------------------------
def rolled_out(demo: Demo) -> dict[str, Any]:
    """The ModelRolledOut condition for the current generation ({} while it has none)."""
    return demo.node.condition(NAMESPACE, NAME, "ModelRolledOut")


def wait_rolled_out(demo: Demo, status: str, reason: str) -> dict[str, Any]:
    return wait_condition(demo, "ModelRolledOut", status, reason, VERDICT_SECONDS)


def canary_pods(demo: Demo) -> list[dict[str, Any]]:
    return [
        pod
        for pod in demo.node.pods(NAMESPACE, NAME)
        if pod["metadata"]["labels"].get("mlops.retail.io/track") == "canary"
    ]


def served_versions(demo: Demo) -> set[str]:
    """The model version each stable pod reports on its own /model/info."""
    return {
        model_info(demo, pod["metadata"]["name"], show=False)["version"]
        for pod in ready_pods(demo)
        if pod["metadata"]["labels"].get("mlops.retail.io/track") != "canary"
    }


def show_rollout(demo: Demo, reason: str) -> None:
    """status.rollout as the operator wrote it, and the Event with the figures."""
    console.print(
        f"[bold cyan]$ kubectl get rmodel {NAME} -n {NAMESPACE} -o jsonpath='{{.status.rollout}}'"
    )
    body = demo.node.kubectl.get_json("retailmodel", NAME, "-n", NAMESPACE)
    console.print_json(data=body["status"]["rollout"])
    demo.kubectl(
        "get", "events", "-n", NAMESPACE, "--field-selector",
        f"involvedObject.name={NAME},reason={reason}",
    )  # fmt: skip


STEPS: tuple[Step, ...] = (
    Step(
        "Canary rollouts on",
        "spec.rollout.strategy: Canary. From now on a new model object is served by one canary "
        "pod beside the stable ones, which stay pinned to the S3 version they serve, until the "
        "operator has compared the two groups' /metrics and decided.",
        canary_switched_on,
    ),
    Step(
        "A bad model is rolled back by itself",
        "A model that answers High for every basket: it loads, passes its smoke test and "
        "answers 200, so hot reload would have served it everywhere. The canary's share of "
        "High moves far from the stable pods' on the same traffic: the prediction-shift rule.",
        bad_model_rolled_back,
    ),
    Step(
        "A good model earns its traffic",
        "The same training with another seed: every rule holds for the analysis window, so "
        "the stable pods are pinned to it and hot-reload it, and the canary goes away.",
        good_model_promoted,
    ),
)
