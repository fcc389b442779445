"""Upload → rollback of a broken canary, on real pods, over repeated runs.

``python -m bench.canary_rollback [--rounds N]`` (the local cluster up; run it under the real
node's lock: ``flock /tmp/realnode.lock``).

Brings up what ``bench.real_path`` brings up (registry, the AWS stand-in on the node's bridge,
both images built from this tree and pushed, the operator in-cluster), then one Canary
RetailModel (one stable pod, one canary pod, the analysis of the end-to-end tests) under
steady load through its NodePort. Each round uploads a candidate whose every request fails
(``retail_tools.candidates.failing``, another seed each time) and times, by polling the API
server every ``POLL`` seconds, when the operator has made the canary's Deployment, when the
canary pod is Ready, when the RetailModel says ``RolledBack`` for this upload's version, and
when the canary is gone again. The next round starts once it is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from bench.common import BENCH_CACHE, machine, step, write_result
from bench.real_path import NAMESPACE, RealPath, operator_running
from retail_tools import candidates
from retail_tools.load import Load
from retail_tools.polling import wait_until

WORK = BENCH_CACHE / "canary_rollback"
NAME = "canary-bench"
BUCKET = "retail-bench-models"
KEY = "models/canary/model.ubj"
POLL = 0.2
ANALYSIS = {  # as the end-to-end canary tests
    "durationSeconds": 20,
    "minRequests": 100,
    "maxErrorRate": 0.01,
    "maxLatencyRatio": 3,
    "maxPredictionShift": 0.10,
}
TARGET_P95 = 20.0


def _state(stack: RealPath) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The RetailModel and its canary Deployment (None when there is none), in one call."""
    listing = json.loads(
        stack.on_node.kubectl.output(
            "get",
            f"retailmodel/{NAME}",
            f"deployment/{NAME}-canary",
            "-n",
            NAMESPACE,
            "--ignore-not-found",
            "-o",
            "json",
        )  # fmt: skip
    )
    model, canary = {}, None
    for item in listing.get("items", []):
        if item["kind"] == "RetailModel":
            model = item
        else:
            canary = item
    return model, canary


def _rejected(model: dict[str, Any], version_id: str) -> bool:
    rollout = (model.get("status") or {}).get("rollout") or {}
    rejected = rollout.get("rejected") or []
    return rollout.get("phase") == "RolledBack" and rejected[-1].get("versionId") == version_id


def one_round(stack: RealPath, seed: int) -> dict[str, float]:
    data, _ = candidates.failing(seed)
    version_id = stack.aws.put_model(BUCKET, KEY, data)
    uploaded = time.monotonic()
    marks: dict[str, float] = {}
    while "rolled_back" not in marks or "canary_gone" not in marks:
        model, canary = _state(stack)
        now = time.monotonic() - uploaded
        if canary is not None:
            marks.setdefault("canary_created", now)
            if (canary.get("status") or {}).get("readyReplicas"):
                marks.setdefault("canary_ready", now)
        if _rejected(model, version_id):
            marks.setdefault("rolled_back", now)
            if canary is None and not _canary_pods(stack):
                marks["canary_gone"] = now
        if now > 300:
            raise TimeoutError(f"round {seed}: no rollback after 300 s: {marks}")
        time.sleep(POLL)
    step(
        "  round {}: canary created {:.1f} s, Ready {:.1f} s, rolled back {:.1f} s, "
        "gone {:.1f} s".format(
            seed,
            marks.get("canary_created", float("nan")),
            marks.get("canary_ready", float("nan")),
            marks["rolled_back"],
            marks["canary_gone"],
        )
    )
    return marks


def _canary_pods(stack: RealPath) -> list[dict[str, Any]]:
    return [
        pod
        for pod in stack.on_node.pods(NAMESPACE, NAME)
        if pod["metadata"]["labels"].get("mlops.retail.io/track") == "canary"
    ]


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[round(0.95 * (len(ordered) - 1))],
        "max": ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    if operator_running():
        raise SystemExit("an operator is already deployed in the cluster: not measuring over it")
    WORK.mkdir(parents=True, exist_ok=True)
    stack = RealPath(WORK / "on-node")
    rounds: list[dict[str, float]] = []
    try:
        stack.build_and_push()
        stack.operator_and_namespace()
        stack.aws.put_model(BUCKET, KEY, candidates.retrained(1)[0])
        rollout = {"strategy": "Canary", "canary": {"replicas": 1, "analysis": ANALYSIS}}
        stack.on_node.apply(
            stack.on_node.retail_model(
                NAME, NAMESPACE, stack.tag, f"s3://{BUCKET}/{KEY}", replicas=1, rollout=rollout
            )
        )
        wait_until(
            lambda: _state(stack)[0].get("status", {}).get("rollout", {}).get("phase") == "Stable",
            timeout=300,
            what=f"{NAME} Stable",
        )
        port = stack.on_node.expose(NAMESPACE, NAME)
        with Load(port, workers=4, max_seconds=3600, baskets=candidates.traffic()) as load:
            time.sleep(3)
            for seed in range(2, 2 + args.rounds):
                rounds.append(one_round(stack, seed))
            report = load.report
    finally:
        stack.on_node.remove(NAMESPACE, NAME, wait=True)
        stack.close()
    summary = {
        mark: _quantiles([r[mark] for r in rounds if mark in r])
        for mark in ("canary_created", "canary_ready", "rolled_back", "canary_gone")
    }
    step(
        f"upload → rollback over {len(rounds)} rounds: p50 {summary['rolled_back']['p50']:.1f} s, "
        f"p95 {summary['rolled_back']['p95']:.1f} s (target ≤ {TARGET_P95:.0f} s); "
        f"load {report.summary()}"
    )
    write_result(
        "canary_rollback",
        {
            "settings": {"rounds": args.rounds, "poll_seconds": POLL, "analysis": ANALYSIS},
            "machine": machine(),
            "rounds": rounds,
            "summary": summary,
            "load": {"requests": report.sent, "failed": report.failed},
        },
    )


if __name__ == "__main__":
    main()
