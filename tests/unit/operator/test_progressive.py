"""The canary state machine with a fake metrics reader and a recording Kubernetes stand-in:
which versions the two groups run, what the status says, what is applied and deleted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from retail_operator.canary.analysis import Counts
from retail_operator.canary.evidence import PodReading, PodState
from retail_operator.facts import ModelObject
from retail_operator.podmetrics import Scrape
from retail_operator.progressive import CanaryRollout, Step
from retail_operator.rendering import Owner, Target
from retail_operator.spec import ModelSpec, RetailModelSpec

OWNER = Owner("prices", "shop", "uid-1")
BODY = {"metadata": {"name": "prices", "namespace": "shop", "uid": "uid-1"}}
REPO = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api"
TARGET = Target(f"{REPO}@sha256:{'b' * 64}", ModelSpec(s3_uri="s3://models/prices/model.ubj"))
SPEC = RetailModelSpec.from_body(
    {
        "image": {"repository": REPO, "tag": "v1"},
        "model": {"s3Uri": "s3://models/prices/model.ubj"},
        "rollout": {
            "strategy": "Canary",
            "canary": {
                "analysis": {"durationSeconds": 0, "maxDurationSeconds": 600, "minRequests": 100}
            },
        },
    }
)
GOOD = {"Low": 30.0, "Medium": 50.0, "High": 20.0}
ONE_CLASS = {"Low": 0.0, "Medium": 0.0, "High": 100.0}


def pod(
    requests: float, predictions: dict[str, float], version: str = "", sha256: str = ""
) -> Scrape:
    """One ready pod's scrape, serving the model with ``sha256`` (version ``version``)."""
    latency = {0.005: requests, float("inf"): requests}
    reading = PodReading(Counts(requests, 0.0, latency, predictions), version, sha256)
    return [(PodState("pod", "uid", ready=True, restarts=0), reading)]


@dataclass
class FakeKube:
    applied: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(manifest)
        return manifest

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.deleted.append((kind, name))


@dataclass
class FakeReader:
    """Each group's scrapes, answered in order (the last one repeats)."""

    stable: list[Scrape]
    canary: list[Scrape]

    async def sample(self, namespace: str, selector: str) -> Scrape:
        scrapes = self.canary if "track=canary" in selector else self.stable
        return scrapes.pop(0) if len(scrapes) > 1 else scrapes[0]


@dataclass
class World:
    kube: FakeKube
    reader: FakeReader
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def rollout(self) -> CanaryRollout:
        def emit(body: Any, type_: str, reason: str, message: str) -> None:
            self.events.append((type_, reason, message))

        return CanaryRollout(self.kube, self.reader, emit)  # type: ignore[arg-type]


def world(stable: list[Scrape], canary: list[Scrape]) -> World:
    return World(FakeKube(), FakeReader(stable, canary))


def step(
    rollout: CanaryRollout, version_id: str, status: dict[str, Any], generation: int = 1
) -> Step:
    found = ModelObject(etag="e", version_id=version_id, sha256=f"sha-{version_id}")
    return asyncio.run(rollout.step(BODY, OWNER, generation, SPEC, TARGET, found, status))


def written(result: Step) -> dict[str, Any]:
    """The status the reconcile would write, as the next step reads it."""
    condition = {"type": "ModelRolledOut", "reason": result.verdict.reason}
    return {"rollout": result.status, "conditions": [condition]}


def test_the_first_version_seen_becomes_stable_and_is_pinned() -> None:
    subject = world([[]], [[]])
    result = step(subject.rollout(), "v1", {})
    assert result.status["phase"] == "Stable"
    assert result.status["stable"] == {"versionId": "v1", "sha256": "sha-v1", "modelVersion": ""}
    assert result.stable.model.version_id == "v1"
    assert (result.verdict.status, result.verdict.reason) == ("True", "Stable")
    assert subject.kube.applied == []


def test_a_new_version_runs_on_a_canary_while_the_stable_pods_keep_theirs() -> None:
    subject = world([[]], [[]])
    rollout = subject.rollout()
    result = step(rollout, "v2", written(step(rollout, "v1", {})))
    assert result.status["phase"] == "Analyzing"
    assert result.stable.model.version_id == "v1"
    config_map, deployment = subject.kube.applied
    assert config_map["metadata"]["name"] == "prices-model-canary"
    assert '"versionId": "v2"' in config_map["data"]["model-source.json"]
    assert deployment["metadata"]["name"] == "prices-canary"
    assert (result.verdict.status, result.verdict.reason) == ("False", "Analyzing")
    assert result.retry_after is not None
    assert [e[1] for e in subject.events] == ["Analyzing"]


def test_a_good_candidate_is_promoted_and_the_stable_pods_pinned_to_it() -> None:
    subject = world(
        [pod(0, {}, "m1", "sha-v1"), pod(200, GOOD, "m1", "sha-v1")],
        [pod(0, {}, "m2", "sha-v2"), pod(100, GOOD, "m2", "sha-v2")],
    )
    rollout = subject.rollout()
    result = step(rollout, "v2", written(step(rollout, "v1", {})))
    assert result.status["phase"] == "Promoted"
    assert result.stable.model.version_id == "v2"
    assert result.status["stable"] == {"versionId": "v2", "sha256": "sha-v2", "modelVersion": "m2"}
    assert ("Deployment", "prices-canary") in subject.kube.deleted
    assert ("ConfigMap", "prices-model-canary") in subject.kube.deleted
    assert result.status["figures"]["requests"] == 100
    assert subject.events[-1][:2] == ("Normal", "Promoted")
    assert "100 candidate / 200 stable requests" in subject.events[-1][2]


def test_a_one_class_candidate_is_rolled_back_and_not_retried() -> None:
    subject = world(
        [pod(0, {}, sha256="sha-v1"), pod(200, GOOD, sha256="sha-v1")],
        [pod(0, {}, sha256="sha-v2"), pod(100, ONE_CLASS, sha256="sha-v2")],
    )
    rollout = subject.rollout()
    result = step(rollout, "v2", written(step(rollout, "v1", {})))
    assert result.status["phase"] == "RolledBack"
    assert result.status["rejectedVersionId"] == "v2"
    assert result.stable.model.version_id == "v1"
    assert ("Deployment", "prices-canary") in subject.kube.deleted
    assert subject.events[-1][:2] == ("Warning", "RolledBack")
    assert "predictionShift rule" in subject.events[-1][2]
    assert result.status["figures"]["predictionShift"] == 0.8

    applied = len(subject.kube.applied)
    again = step(rollout, "v2", written(result))
    assert (again.verdict.status, again.verdict.reason) == ("False", "RolledBack")
    assert again.stable.model.version_id == "v1"
    assert len(subject.kube.applied) == applied  # no canary for a rejected version

    acknowledged = step(rollout, "v2", written(again), generation=2)  # the spec changed
    assert (acknowledged.verdict.status, acknowledged.verdict.reason) == ("True", "Stable")
    assert acknowledged.status["phase"] == "Stable"
    assert acknowledged.status["rejectedVersionId"] == "v2"
    assert acknowledged.stable.model.version_id == "v1"

    fixed = step(rollout, "v3", written(acknowledged), generation=2)  # the object changed
    assert fixed.status["phase"] == "Analyzing"
    assert fixed.status["candidate"]["versionId"] == "v3"


def test_silence_keeps_analysing() -> None:
    subject = world([[]], [[]])
    rollout = subject.rollout()
    status = written(step(rollout, "v1", {}))
    for _ in range(3):
        result = step(rollout, "v2", status)
        status = written(result)
        assert result.status["phase"] == "Analyzing"
        assert "Waiting for traffic" in result.verdict.message


def test_an_unversioned_bucket_is_said_once_and_pins_nothing() -> None:
    subject = world([[]], [[]])
    rollout = subject.rollout()
    result = step(rollout, "null", {})
    assert (result.verdict.status, result.verdict.reason) == ("False", "VersioningRequired")
    assert "S3 bucket models is not versioned" in result.verdict.message
    assert result.stable == TARGET  # follows the latest object
    step(rollout, "", written(result))
    assert [e[1] for e in subject.events] == ["VersioningRequired"]
