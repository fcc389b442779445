"""The demo's operations part: a commit turns the autoscaler on, load scales the RetailModel up
(the CPU the metrics-server reads on the real node), and a drain's evictions meet the
disruption budget, each under load that counts failed requests.

``STEP`` goes after the rollouts (it needs the operator in-cluster, the RetailModel synced by
Argo CD and its NodePort in ``demo.port``). The scale-down afterwards is left to the autoscaler
(its window is 30 s here); the demo does not wait for it.
"""

from __future__ import annotations

import time

from retail_tools import operations
from retail_tools.demo import gitops
from retail_tools.demo.context import NAME, NAMESPACE, Demo, DemoError, Step, console
from retail_tools.demo.rollouts import HealthTrail
from retail_tools.load import Load

AUTOSCALING = {
    "minReplicas": 2,
    "maxReplicas": 3,
    "targetCPUUtilizationPercentage": 40,
    "scaleDownStabilizationSeconds": 30,
}
SCALE_UP_SECONDS = 240


def scaled_up_and_drained(demo: Demo) -> None:
    gitops.commit_spec(
        demo, "Autoscale between 2 and 3 replicas", lambda s: s.update(autoscaling=AUTOSCALING)
    )
    demo.kubectl("get", "hpa,pdb", "-n", NAMESPACE)
    trail = HealthTrail(demo)
    most = AUTOSCALING["maxReplicas"]
    with (
        operations.api_client(demo.cluster.kubeconfig) as api,
        operations.ReadyPods(api, NAMESPACE, NAME) as ready,
        Load(demo.port, workers=4, ramp_seconds=10, max_seconds=600) as load,
    ):
        started = ready.now()
        with console.status(f"load ramping up; waiting for {most} ready pods…"):
            while ready.current < most and ready.now() - started < SCALE_UP_SECONDS:
                trail.seen()
                time.sleep(2)
        if ready.current < most:
            demo.kubectl("describe", "hpa", NAME, "-n", NAMESPACE, check=False)
            raise DemoError(f"not scaled to {most} pods in {SCALE_UP_SECONDS}s")
        scaled = ready.counts[-1][0] - started
        console.print(f"{most} pods ready {scaled:.1f}s after the load began")
        demo.kubectl("get", "rmodel", NAME, "-n", NAMESPACE)
        demo.kubectl("top", "pods", "-n", NAMESPACE, "-l", operations.selector(NAME), check=False)
        demo.kubectl("get", "pdb", "-n", NAMESPACE)
        pods = [pod["metadata"]["name"] for pod in demo.node.ready_pods(NAMESPACE, NAME)]
        console.print(
            f"[bold cyan]$ kubectl drain …  [/][dim](an eviction of each of {len(pods)} pods "
            "in turn, as a node upgrade sends them)"
        )
        steady = ready.now()
        drain = operations.evict_in_turn(operations.Evictions(api), NAMESPACE, pods)
        ready.wait_for(most, timeout=180, without=pods)
        trail.seen()
        fewest = ready.fewest(since=steady)
    for attempt in drain.attempts:
        verdict = "evicted" if attempt.status == operations.EVICTED else "refused by the budget"
        console.print(f"  {attempt.at:5.1f}s  {attempt.pod}: HTTP {attempt.status} {verdict}")
    console.print(f"{drain.summary()}; never fewer than {fewest} ready pods")
    console.print(f"Argo CD's health of the RetailModel meanwhile: {trail}")
    demo.durations.append((f"autoscaler: load → {most} ready pods", scaled))
    demo.durations.append((f"drain of {len(pods)} pods within the budget", drain.seconds))
    demo.measured("the scale-up and the drain", load.report)
    if drain.refused == 0 or fewest < most - 1:
        raise DemoError(f"the budget did not hold the drain back: {drain.summary()}")
    demo.kubectl("get", "rmodel", NAME, "-n", NAMESPACE)


STEP = Step(
    "Autoscaling under load, and a drain held back by the budget",
    "A commit adds spec.autoscaling (2 to 3 replicas at 40 % of the CPU request): the operator "
    "renders a HorizontalPodAutoscaler and hands it the replica count. Load through the "
    "Service drives the pods' CPU (read by the metrics-server beside the node) up to three "
    "pods. Then every pod is evicted in turn through the Eviction API, as a node drain does: "
    "the PodDisruptionBudget refuses (HTTP 429) any eviction that would leave fewer than two "
    "ready pods.",
    scaled_up_and_drained,
)
