"""A group's evidence: what a pod's /metrics may say before it is believed, how readings add
up scrape by scrape, what counts against the candidate, and which pods are the group's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from retail_operator.canary.analysis import Counts
from retail_operator.canary.evidence import GroupWindow, InvalidMetrics, PodReading, PodState
from retail_operator.canary.scraping import PodMetrics

SHA = "ab" * 32
GOOD_TEXT = (
    "# TYPE retail_http_requests_total counter\n"
    'retail_http_requests_total{route="/predict",method="POST",status="200"} 10.0\n'
    "# TYPE retail_model_info gauge\n"
    f'retail_model_info{{version="m1",sha256="{SHA}"}} 1.0\n'
)


def test_the_predictors_text_is_read_with_its_model() -> None:
    reading = PodReading.parse(GOOD_TEXT)
    assert reading.counts.requests == 10 and reading.model_sha256 == SHA
    assert reading.model_version == "m1"


@pytest.mark.parametrize(
    "text",
    [
        'retail_http_requests_total{route="/predict",method="POST",status="200"} NaN\n',
        'retail_http_requests_total{route="/predict",method="POST",status="500"} -5\n',
        'retail_http_requests_total{route="/predict",method="POST",status="200"} +Inf\n',
        'retail_predictions_total{class="Low",model_version="m"} NaN\n',
        'retail_http_request_duration_seconds_bucket{route="/predict"} 3\n',
        'retail_http_request_duration_seconds_bucket{route="/predict",le="soon"} 3\n',
        'retail_http_requests_total{route="/predict",method="POST",status="500"} 5\n'
        'retail_http_requests_total{route="/predict",method="POST",status="200"} -4\n',
        "this is not prometheus text {{{\n",
        "\x00" * 64,
    ],
    ids=[
        "NaN requests",
        "negative failures",
        "infinite requests",
        "NaN class counts",
        "bucket without le",
        "bucket le not a number",
        "more failed than requests",
        "garbage",
        "NUL bytes",
    ],
)
def test_values_that_are_not_finite_and_non_negative_make_the_scrape_invalid(text: str) -> None:
    with pytest.raises(InvalidMetrics):
        PodReading.parse(text)


def state(uid: str, *, ready: bool = True, restarts: int = 0, terminating: bool = False) -> Any:
    return PodState(uid, uid, ready=ready, restarts=restarts, terminating=terminating)


def reading(requests: float, sha256: str = SHA) -> PodReading:
    rows = {"Low": requests}
    return PodReading(Counts(requests, 0.0, {float("inf"): requests}, rows), "m", sha256)


def test_a_reset_starts_a_new_segment_and_never_erases_one() -> None:
    window = GroupWindow(SHA)
    window.record([(state("a"), reading(100))])  # baseline
    window.record([(state("a"), reading(400))])  # +300
    window.record([(state("a"), reading(50))])  # restarted: a new segment of 50
    window.record([(state("a"), reading(80))])  # +30
    assert window.totals.requests == 300 + 50 + 30
    assert window.evidence().incidents == ()  # a stable pod's restart is not the candidate's


def test_a_canary_pod_that_restarts_or_stops_being_ready_is_an_incident() -> None:
    window = GroupWindow(SHA, watch_health=True)
    window.record([(state("a"), reading(10)), (state("b", ready=False), None)])
    window.record([(state("a", restarts=1), reading(20)), (state("b", ready=False), None)])
    assert window.evidence().incidents == ("pod a restarted (1 container restart(s))",)
    window = GroupWindow(SHA, watch_health=True)
    window.record([(state("a"), reading(10))])
    window.record([(state("a", ready=False), None)])
    assert window.evidence().incidents == ("pod a stopped being Ready",)
    window = GroupWindow(SHA, watch_health=True)
    window.record([(state("a"), reading(10))])
    window.record([(state("a", ready=False, terminating=True), None)])  # scaled down, evicted
    assert window.evidence().incidents == ()
    window = GroupWindow(SHA, watch_health=True)
    window.record([(state("a"), reading(100))])
    window.record([(state("a"), reading(5))])  # the counters went down: the process restarted
    assert window.evidence().incidents == ("pod a restarted its predictor",)


def test_only_readings_of_the_expected_model_count_and_only_between_two_of_them() -> None:
    window = GroupWindow(SHA)
    window.record([])
    window.record([(state("a"), reading(100, "other"))])  # a new pod, serving another model
    window.record([(state("a"), reading(150))])  # now the expected one: a baseline only
    window.record([(state("a"), reading(170))])
    assert window.totals.requests == 20
    assert window.unbound == 0


class Kube:
    """ReplicaSets and pods of one Deployment: revision 2 current, revision 1 still around,
    and a pod someone else labelled like a predictor."""

    def __init__(self) -> None:
        def owned(uid: str) -> list[dict[str, Any]]:
            return [{"uid": uid, "controller": True, "kind": "ReplicaSet"}]

        self.replica_sets = [
            {"metadata": {"uid": f"rs-{n}", "annotations": {"deployment.kubernetes.io/revision":
             str(n)}, "ownerReferences": [{"uid": "dep", "controller": True}]}}
            for n in (1, 2)
        ]  # fmt: skip
        self.pods = [
            {"metadata": {"name": name, "uid": name, "ownerReferences": refs},
             "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
            for name, refs in (("old", owned("rs-1")), ("new", owned("rs-2")), ("liar", []))
        ]  # fmt: skip

    async def list(self, api: str, kind: str, namespace: str, selector: str) -> Any:
        return self.replica_sets if kind == "ReplicaSet" else self.pods


def test_a_group_is_the_pods_of_the_deployments_current_replica_set() -> None:
    deployment = {
        "metadata": {
            "namespace": "shop",
            "uid": "dep",
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {"selector": {"matchLabels": {"mlops.retail.io/retailmodel": "prices"}}},
    }
    scrape = asyncio.run(PodMetrics(Kube()).sample(deployment))  # type: ignore[arg-type]
    assert [pod.name for pod, _ in scrape] == ["new"]
    assert asyncio.run(PodMetrics(Kube()).sample({})) == []  # type: ignore[arg-type]
