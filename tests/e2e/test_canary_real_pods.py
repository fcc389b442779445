"""Canary model rollouts on real pods: a new model object earns its traffic, or is rolled back.

Each test runs a RetailModel with ``rollout.strategy: Canary`` on the real node (one stable pod
beside one canary pod, so the Service splits traffic about evenly), serving its own model
object, and sends a mix of baskets through the NodePort while a candidate is uploaded. The
in-cluster operator reads both groups' /metrics by pod IP and decides. The candidates come
from ``retail_tools.candidates``: the same training with another seed (promoted), a model that
answers one class for everything (rolled back by the prediction shift), one whose every
request fails (rolled back by the error rate); and with no traffic at all, nothing is promoted.
"""

from __future__ import annotations

import hashlib
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from retail_contract.metrics import METRICS_PORT
from retail_tools import candidates
from retail_tools.load import Load
from retail_tools.onnode import OPERATOR_NAMESPACE
from retail_tools.polling import wait_until
from tests.e2e.conftest import BUCKET, NAMESPACE, Stack

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

DURATION = 20
ANALYSIS = {
    "durationSeconds": DURATION,
    "minRequests": 100,
    "maxErrorRate": 0.01,
    "maxLatencyRatio": 3,
    "maxPredictionShift": 0.10,
}
STABLE_SEED = 1
VERDICT_SECONDS = 180  # upload → verdict: a canary pod to start, then DURATION of traffic
TRAFFIC = candidates.traffic()


@dataclass
class Canary:
    """A Canary RetailModel serving the stable model from its own object, and its NodePort."""

    stack: Stack
    name: str
    key: str
    port: int
    stable_version: str

    def rollout(self) -> dict[str, Any]:
        body = self.stack.kubectl.get_json("retailmodel", self.name, "-n", NAMESPACE)
        return dict(body.get("status", {}).get("rollout", {}))

    def upload(self, model: tuple[bytes, str]) -> tuple[str, float]:
        """Upload a candidate; its object version id and when it was uploaded."""
        data, _ = model
        return self.stack.on_node.aws.put_model(BUCKET, self.key, data), time.monotonic()

    def verdict(self, reason: str) -> dict[str, Any]:
        return self.stack.wait_condition(
            self.name, "ModelRolledOut", "True" if reason == "Promoted" else "False", reason,
            timeout=VERDICT_SECONDS,
        )  # fmt: skip

    def events(self, reason: str) -> list[str]:
        return [str(event["message"]) for event in self.stack.events(self.name, reason)]

    def canary_gone(self) -> bool:
        deployment = self.stack.kubectl.output(
            "get", "deployment", f"{self.name}-canary", "-n", NAMESPACE, "--ignore-not-found",
            "-o", "name",
        )  # fmt: skip
        canary_pods = [
            pod
            for pod in self.stack.on_node.pods(NAMESPACE, self.name)
            if pod["metadata"]["labels"].get("mlops.retail.io/track") == "canary"
        ]
        return not deployment.strip() and not canary_pods

    def stable_versions(self) -> set[str]:
        """The model version each stable pod reports on its own /model/info."""
        return {
            self.stack.model_info(pod["metadata"]["name"])["version"]
            for pod in self.stack.running_pods(self.name)
            if pod["metadata"]["labels"].get("mlops.retail.io/track") != "canary"
        }


@pytest.fixture
def canary(stack: Stack) -> Iterator[Canary]:
    name = f"canary-{uuid.uuid4().hex[:5]}"
    key = f"models/canary/{name}.ubj"
    data, version = candidates.retrained(STABLE_SEED)
    stack.on_node.aws.put_model(BUCKET, key, data)
    rollout = {"strategy": "Canary", "canary": {"replicas": 1, "analysis": ANALYSIS}}
    manifest = stack.on_node.retail_model(
        name, NAMESPACE, f"e2e-{stack.run}", f"s3://{BUCKET}/{key}", replicas=1, rollout=rollout
    )
    stack.on_node.apply(manifest)
    stack.wait_condition(name, "Ready", "True")
    stack.wait_condition(name, "ModelRolledOut", "True", "Stable")
    port = stack.on_node.expose(NAMESPACE, name)
    try:
        yield Canary(stack, name, key, port, version)
    finally:
        stack.on_node.remove(NAMESPACE, name, wait=True)


def report(what: str, canary: Canary, uploaded: float, decided: float, load: Load) -> None:
    figures = canary.rollout().get("figures", {})
    print(
        f"\n{what}: verdict {decided - uploaded:.1f} s after the upload; "
        f"{figures.get('summary', '')}; load {load.report.summary()}"
    )


def test_a_good_candidate_is_promoted_with_no_failed_request(canary: Canary) -> None:
    good = candidates.retrained(seed=2)
    with Load(canary.port, workers=4, max_seconds=VERDICT_SECONDS + 60, baskets=TRAFFIC) as load:
        version_id, uploaded = canary.upload(good)
        condition = canary.verdict("Promoted")
        decided = time.monotonic()
        wait_until(
            lambda: canary.stable_versions() == {good[1]},
            timeout=180,
            what=f"every stable pod serving {good[1]}",
        )
        served = time.monotonic()
        wait_until(canary.canary_gone, timeout=180, what="the canary to be gone")
    state = canary.rollout()
    assert state["phase"] == "Promoted", state
    assert state["stable"]["versionId"] == version_id
    assert state["stable"]["modelVersion"] == good[1]
    assert state["figures"]["requests"] >= ANALYSIS["minRequests"]
    assert "promoted" in condition["message"]
    assert any(version_id in message for message in canary.events("Promoted"))
    assert load.report.failed == 0, load.report.summary()
    assert load.report.models[good[1]] > 0 and load.report.models[canary.stable_version] > 0
    report("promoted", canary, uploaded, decided, load)
    print(f"the stable pods served the promoted version {served - decided:.1f} s after the verdict")


def test_a_candidate_answering_one_class_is_rolled_back_by_the_prediction_shift(
    canary: Canary,
) -> None:
    bad = candidates.one_class("High")
    with Load(canary.port, workers=4, max_seconds=VERDICT_SECONDS + 60, baskets=TRAFFIC) as load:
        version_id, uploaded = canary.upload(bad)
        condition = canary.verdict("RolledBack")
        decided = time.monotonic()
        wait_until(canary.canary_gone, timeout=180, what="the canary to be gone")
    state = canary.rollout()
    assert state["phase"] == "RolledBack" and state["rejected"][-1]["versionId"] == version_id
    assert "predictionShift rule" in condition["message"]
    assert "on High" in condition["message"]  # the class whose share moved, with the figures
    assert state["figures"]["predictionShift"] > ANALYSIS["maxPredictionShift"]
    assert any("predictionShift" in message for message in canary.events("RolledBack"))
    assert canary.stable_versions() == {canary.stable_version}
    # The canary's answers were wrong, not failed: every request of both groups succeeded.
    assert load.report.failed == 0, load.report.summary()
    assert load.report.models[bad[1]] > 0
    report("rolled back (prediction shift)", canary, uploaded, decided, load)


def test_a_candidate_failing_requests_is_rolled_back_by_the_error_rate(canary: Canary) -> None:
    bad = candidates.failing(seed=2)
    with Load(canary.port, workers=4, max_seconds=VERDICT_SECONDS + 60, baskets=TRAFFIC) as load:
        version_id, uploaded = canary.upload(bad)
        condition = canary.verdict("RolledBack")
        decided = time.monotonic()
        wait_until(canary.canary_gone, timeout=180, what="the canary to be gone")
        failed, sent = load.report.failed, load.report.sent
        wait_until(
            lambda: load.report.sent >= sent + 500,
            timeout=180,
            what="500 more requests after the rollback",
        )
        after = load.report.failed - failed
    state = canary.rollout()
    assert state["phase"] == "RolledBack" and state["rejected"][-1]["versionId"] == version_id
    assert "errorRate rule" in condition["message"]
    assert state["figures"]["errorRate"] > ANALYSIS["maxErrorRate"]
    assert canary.stable_versions() == {canary.stable_version}
    assert failed > 0 and set(load.report.failures) == {"HTTP 500"}  # the canary's, expected
    assert after == 0, load.report.summary()  # none once the canary is gone
    report("rolled back (error rate)", canary, uploaded, decided, load)


def operator_reconciles(stack: Stack) -> int:
    """Reconciles the leading operator replica has finished (its /metrics, read by pod IP on
    the node's bridge)."""
    pods = stack.kubectl.get_json("pods", "-n", OPERATOR_NAMESPACE)
    for pod in pods["items"]:
        address = pod["status"].get("podIP")
        if not address:
            continue
        with urllib.request.urlopen(f"http://{address}:8081/metrics", timeout=5) as answer:
            text = answer.read().decode()
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        if any(s.name == "retail_operator_leader" and s.value == 1 for s in samples):
            return int(
                sum(s.value for s in samples if s.name == "retail_operator_reconciles_total")
            )
    raise AssertionError("no operator replica leads")


def test_silence_never_promotes_on_real_pods(canary: Canary) -> None:
    stack = canary.stack
    candidate = candidates.retrained(seed=2)
    version_id, _ = canary.upload(candidate)
    stack.wait_condition(canary.name, "ModelRolledOut", "False", "Analyzing")
    wait_until(
        lambda: len(stack.running_pods(canary.name)) == 2, timeout=180, what="the canary pod Ready"
    )
    models = stack.kubectl.get_json("retailmodels", "-A")["items"]
    assert [m["metadata"]["name"] for m in models] == [canary.name]  # the leader's only work
    started = canary.rollout()["startedAt"]
    window_ends = datetime.fromisoformat(started) + timedelta(seconds=DURATION)
    wait_until(
        lambda: datetime.now(UTC) > window_ends,
        timeout=DURATION + 10,
        what="the analysis window to pass",
    )
    seen = operator_reconciles(stack)
    wait_until(
        lambda: operator_reconciles(stack) >= seen + 3,
        timeout=180,
        what="3 reconciles after the window",
    )
    state = canary.rollout()
    assert state["phase"] == "Analyzing" and state["startedAt"] == started
    assert state["candidate"]["versionId"] == version_id
    # The operator did read the canary pod's /metrics (it reports the candidate's version)
    # and saw no prediction request on either side.
    assert state["candidate"]["modelVersion"] == candidate[1]
    assert state["figures"]["requests"] == 0 and state["figures"]["stableRequests"] == 0
    assert not canary.canary_gone()


def canary_pods(canary: Canary) -> list[dict[str, Any]]:
    return [
        pod
        for pod in canary.stack.running_pods(canary.name)
        if pod["metadata"]["labels"].get("mlops.retail.io/track") == "canary"
    ]


def analysing_with_traffic(canary: Canary, version_id: str) -> None:
    """Until the analysis of ``version_id`` has counted canary requests."""
    wait_until(
        lambda: (
            (r := canary.rollout()).get("phase") == "Analyzing"
            and r.get("candidate", {}).get("versionId") == version_id
            and r.get("figures", {}).get("requests", 0) > 0
        ),
        timeout=VERDICT_SECONDS,
        what=f"canary requests counted for {version_id}",
    )


def test_a_same_model_canary_is_promoted(canary: Canary) -> None:
    """A/A: the stable model's own bytes, uploaded again as a new version, earn the traffic."""
    same = candidates.retrained(STABLE_SEED)
    with Load(canary.port, workers=4, max_seconds=VERDICT_SECONDS + 60, baskets=TRAFFIC) as load:
        version_id, uploaded = canary.upload(same)
        canary.verdict("Promoted")
        decided = time.monotonic()
        wait_until(canary.canary_gone, timeout=180, what="the canary to be gone")
    state = canary.rollout()
    assert state["stable"]["versionId"] == version_id
    assert state["figures"]["requests"] >= ANALYSIS["minRequests"]
    assert load.report.failed == 0, load.report.summary()
    report("promoted (A/A)", canary, uploaded, decided, load)


def test_a_canary_pod_that_restarts_mid_window_is_rolled_back(canary: Canary) -> None:
    """A candidate whose pod crashes under load lost requests no counter kept: its restart is
    evidence against it, whatever its figures say."""
    good = candidates.retrained(seed=2)
    with Load(canary.port, workers=2, max_seconds=VERDICT_SECONDS + 60, baskets=TRAFFIC):
        version_id, uploaded = canary.upload(good)
        analysing_with_traffic(canary, version_id)
        (pod,) = canary_pods(canary)
        canary.stack.kubectl(
            "exec", "-n", NAMESPACE, pod["metadata"]["name"], "--", "python3", "-c",
            "import os, signal; os.kill(1, signal.SIGTERM)",
        )  # fmt: skip
        condition = canary.verdict("RolledBack")
    assert "podHealth rule" in condition["message"]
    assert "restarted" in condition["message"]
    state = canary.rollout()
    assert state["rejected"][-1]["versionId"] == version_id
    assert canary.stable_versions() == {canary.stable_version}


def test_a_new_candidate_mid_analysis_is_judged_on_its_own_pods(canary: Canary) -> None:
    """A good candidate is being watched when a one-class model replaces it: the verdict is
    the new one's, on samples from its own pods, never a promotion on the good one's."""
    good, bad = candidates.retrained(seed=2), candidates.one_class("High")
    with Load(canary.port, workers=4, max_seconds=VERDICT_SECONDS + 90, baskets=TRAFFIC) as load:
        first, _ = canary.upload(good)
        analysing_with_traffic(canary, first)
        second, uploaded = canary.upload(bad)
        condition = canary.verdict("RolledBack")
        decided = time.monotonic()
    state = canary.rollout()
    assert "predictionShift rule" in condition["message"] and second in condition["message"]
    assert state["candidate"]["versionId"] == second
    assert state["candidate"]["modelVersion"] == bad[1]
    assert canary.events("Promoted") == []
    assert canary.stable_versions() == {canary.stable_version}
    report("rolled back (a new candidate mid-analysis)", canary, uploaded, decided, load)


def lying_pod(canary: Canary, sha256: str) -> dict[str, Any]:
    """A pod with the canary's labels (not owned by its ReplicaSet) whose /metrics says the
    candidate served a billion requests with the stable model's class mix."""
    text = "\\n".join(
        [
            "# TYPE retail_http_requests_total counter",
            'retail_http_requests_total{route="/predict",method="POST",status="200"} 1e9',
            "# TYPE retail_predictions_total counter",
            *(f'retail_predictions_total{{class="{c}",model_version="x"}} {n}'
              for c, n in (("Low", 3e8), ("Medium", 4e8), ("High", 3e8))),
            "# TYPE retail_model_info gauge",
            f'retail_model_info{{version="x",sha256="{sha256}"}} 1',
        ]
    )  # fmt: skip
    script = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        f"        body = '{text}\\n'.encode()\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
        f"http.server.ThreadingHTTPServer(('', {METRICS_PORT}), H).serve_forever()\n"
    )
    template = canary.stack.kubectl.get_json("deployment", canary.name, "-n", NAMESPACE)["spec"][
        "template"
    ]
    labels = {**template["metadata"]["labels"], "mlops.retail.io/track": "canary"}
    (container,) = template["spec"]["containers"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{canary.name}-liar", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            **{k: v for k, v in template["spec"].items() if k != "containers"},
            "containers": [
                {
                    "name": "liar",
                    "image": container["image"],
                    "command": ["python3", "-c", script],
                    "securityContext": container["securityContext"],
                    "readinessProbe": {"tcpSocket": {"port": METRICS_PORT}, "periodSeconds": 2},
                }
            ],
        },
    }


def test_a_labelled_pod_that_lies_changes_nothing(canary: Canary) -> None:
    bad = candidates.one_class("High")
    liar = lying_pod(canary, hashlib.sha256(bad[0]).hexdigest())
    try:
        canary.stack.on_node.apply(liar)
        wait_until(
            lambda: any(p["metadata"]["name"] == liar["metadata"]["name"]
                        for p in canary_pods(canary)),
            timeout=120,
            what="the lying pod Ready",
        )  # fmt: skip
        with Load(
            canary.port, workers=4, max_seconds=VERDICT_SECONDS + 60, baskets=TRAFFIC
        ) as load:
            version_id, uploaded = canary.upload(bad)
            condition = canary.verdict("RolledBack")
            decided = time.monotonic()
    finally:
        canary.stack.kubectl(
            "delete", "pod", liar["metadata"]["name"], "-n", NAMESPACE, "--ignore-not-found",
            "--wait=false",
        )  # fmt: skip
    state = canary.rollout()
    assert "predictionShift rule" in condition["message"]
    assert state["rejected"][-1]["versionId"] == version_id
    assert state["figures"]["requests"] < 1e8  # the liar's billion never counted
    assert load.report.failed == 0, load.report.summary()  # the liar serves no traffic
    report("rolled back beside a lying pod", canary, uploaded, decided, load)
