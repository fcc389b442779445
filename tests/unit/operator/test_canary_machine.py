"""The canary's state machine, pure: which versions the two groups run, what is remembered and
where, and when evidence may count (the reconcile that carries plans out is in
test_reconcile.py and, on the real API server, tests/integration/operator/test_canary.py)."""

from __future__ import annotations

from typing import Any

from retail_operator.canary import machine
from retail_operator.canary.analysis import Counts
from retail_operator.canary.evidence import PodReading, PodState
from retail_operator.canary.machine import Memory, ObjectVersion, Phase, Window
from retail_operator.facts import ModelObject
from retail_operator.rendering import MEMORY_ANNOTATION, Target
from retail_operator.spec import ModelSpec, RetailModelSpec

REPO = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api"
TARGET = Target(f"{REPO}@sha256:{'b' * 64}", ModelSpec(s3_uri="s3://models/prices/model.ubj"))
SPEC = RetailModelSpec.from_body(
    {
        "image": {"repository": REPO, "tag": "v1"},
        "model": {"s3Uri": "s3://models/prices/model.ubj"},
        "rollout": {
            "strategy": "Canary",
            "canary": {
                "analysis": {"durationSeconds": 10, "maxDurationSeconds": 600, "minRequests": 100}
            },
        },
    }
)
GOOD = {"Low": 300.0, "Medium": 500.0, "High": 200.0}
ONE_CLASS = {"Low": 0.0, "Medium": 0.0, "High": 1000.0}


def found(version: str, sha256: str | None = None) -> ModelObject:
    return ModelObject("etag", version, f"sha-{version}" if sha256 is None else sha256)


def plan(version: str, memory: Memory, window: Window | None = None, **kw: Any) -> machine.Plan:
    return machine.plan(
        spec=SPEC,
        generation=kw.get("generation", 1),
        target=TARGET,
        found=kw.get("object", found(version)),
        memory=memory,
        window=window,
        previous_reason=kw.get("previous_reason", ""),
    )


def scrape(requests: float, predictions: dict[str, float], sha256: str, uid: str) -> Any:
    latency = {0.005: requests, float("inf"): requests}
    reading = PodReading(Counts(requests, 0.0, latency, predictions), f"m-{sha256}", sha256)
    return [(PodState(uid, uid, ready=True, restarts=0), reading)]


STABLE = Memory(stable=ObjectVersion("v1", "sha-v1"))


def analysed(step: machine.Plan, stable_rows: dict[str, float], canary_rows: dict[str, float],
             canary_sha: str | None = None, elapsed: float = 60.0) -> machine.Plan:  # fmt: skip
    """Open the window the step asks for, record a baseline and one scrape, conclude."""
    assert step.analyse is not None and step.memory is not None and step.memory.stable
    window = Window.open(step.analyse, step.memory.stable, now=0.0, now_text="T0")
    sha = canary_sha or step.analyse.sha256
    window.stable.record(scrape(0, {}, "sha-v1", "s"))
    window.canary.record([])  # the candidate's pods start after the window opened
    total = sum(canary_rows.values())
    window.stable.record(scrape(sum(stable_rows.values()), stable_rows, "sha-v1", "s"))
    window.canary.record(scrape(total, canary_rows, sha, "c"))
    return machine.conclude(
        step, spec=SPEC, generation=1, target=TARGET, window=window, now=elapsed,
        poll_seconds=5.0,
    )  # fmt: skip


def test_the_first_version_seen_becomes_stable_and_is_pinned_to_its_bytes() -> None:
    step = plan("v1", Memory())
    assert step.rollout["phase"] == "Stable"
    assert step.stable.model.version_id == "v1" and step.stable.model.sha256 == "sha-v1"
    assert step.canary is None and step.analyse is None
    assert step.memory == STABLE
    assert (step.check.status, step.check.reason) == ("True", "Stable")


def test_a_new_version_runs_on_a_canary_pinned_to_it_while_the_stable_pods_keep_theirs() -> None:
    step = plan("v2", STABLE)
    assert step.rollout["phase"] == "Analyzing"
    assert step.stable.model.version_id == "v1"
    assert step.canary is not None
    assert (step.canary.model.version_id, step.canary.model.sha256) == ("v2", "sha-v2")
    assert step.analyse == ObjectVersion("v2", "sha-v2")
    assert [a.reason for a in step.announcements] == ["Analyzing"]
    window = Window.open(step.analyse, STABLE.stable, now=0, now_text="")  # type: ignore[arg-type]
    assert plan("v2", STABLE, window).announcements == ()  # the same candidate: said once


def test_a_good_candidate_is_promoted_and_remembered_as_stable() -> None:
    done = analysed(plan("v2", STABLE), GOOD, GOOD)
    assert done.rollout["phase"] == "Promoted"
    assert done.stable.model.version_id == "v2" and done.canary is None
    assert done.memory is not None and done.memory.promoted
    assert done.memory.stable == ObjectVersion("v2", "sha-v2", "m-sha-v2")
    assert done.rollout["stable"]["modelVersion"] == "m-sha-v2"
    assert [(a.type, a.reason) for a in done.announcements] == [("Normal", "Promoted")]


def test_a_one_class_candidate_is_rolled_back_and_remembered_by_version_and_bytes() -> None:
    done = analysed(plan("v2", STABLE), GOOD, ONE_CLASS)
    assert done.rollout["phase"] == "RolledBack" and done.canary is None
    assert done.stable.model.version_id == "v1"
    assert done.memory is not None
    assert done.memory.rejected == ({"versionId": "v2", "sha256": "sha-v2", "generation": 1},)
    assert done.rollout["rejected"] == list(done.memory.rejected)
    assert done.announcements[0].type == "Warning"
    assert "predictionShift rule" in done.check.message

    again = plan("v2", done.memory)
    assert (again.check.status, again.check.reason) == ("False", "RolledBack")
    assert again.canary is None and again.stable.model.version_id == "v1"
    acknowledged = plan("v2", done.memory, generation=2)  # the spec changed since
    assert (acknowledged.check.status, acknowledged.check.reason) == ("True", "Stable")
    assert acknowledged.canary is None

    same_bytes = plan("v3", done.memory, object=found("v3", "sha-v2"))
    assert (same_bytes.check.status, same_bytes.check.reason) == ("False", "RejectedBefore")
    assert same_bytes.canary is None and same_bytes.analyse is None
    assert "same bytes" in same_bytes.check.message and "v2" in same_bytes.check.message

    fixed = plan("v4", done.memory, object=found("v4"))  # other bytes: tried
    assert fixed.analyse == ObjectVersion("v4", "sha-v4")


def test_evidence_from_pods_serving_another_model_never_counts() -> None:
    """The canary pods still serve the last candidate (v2) when v3 is uploaded: their samples
    are not v3's, whatever they say, and silence never promotes."""
    done = analysed(plan("v3", STABLE), GOOD, GOOD, canary_sha="sha-v2")
    assert done.rollout["phase"] == "Analyzing"
    assert done.rollout["figures"]["requests"] == 0
    assert "Waiting for traffic" in done.check.message


def test_a_candidate_without_sha256_metadata_is_refused_without_traffic() -> None:
    step = plan("v2", STABLE, object=found("v2", ""))
    assert (step.check.status, step.check.reason) == ("False", "Sha256Required")
    assert step.canary is None and step.analyse is None
    assert step.memory is not None and step.memory.rejected[-1]["versionId"] == "v2"


def test_no_verdict_by_the_deadline_is_inconclusive_and_rolls_back() -> None:
    done = analysed(plan("v2", STABLE), {}, {}, elapsed=600.0)
    assert done.rollout["phase"] == "RolledBack"
    assert (done.check.status, done.check.reason) == ("False", "Inconclusive")
    assert done.announcements[0].reason == "Inconclusive"
    assert done.memory is not None and done.memory.rejected[-1]["versionId"] == "v2"


def test_the_memory_survives_on_the_config_map_and_nothing_else() -> None:
    rejected = STABLE.rejecting(ObjectVersion("v2", "sha-v2"), 3)
    config_map = {"metadata": {"annotations": {MEMORY_ANNOTATION: rejected.to_json()}}}
    assert machine.recover(config_map, MEMORY_ANNOTATION, None) == rejected
    # An unreadable memory falls back to what the ConfigMap pins the stable pods to.
    broken = {"metadata": {"annotations": {MEMORY_ANNOTATION: "{not json"}}}
    pin = Target(TARGET.image, ModelSpec(s3_uri="s3://m/k", version_id="v1", sha256="sha-v1"))
    assert machine.recover(broken, MEMORY_ANNOTATION, pin) == STABLE
    assert machine.recover(None, MEMORY_ANNOTATION, None) == Memory()


def test_the_rejected_list_is_bounded() -> None:
    memory = STABLE
    for n in range(machine.MAX_REJECTED + 5):
        memory = memory.rejecting(ObjectVersion(f"v{n}", f"sha-{n}"), 1)
    assert len(memory.rejected) == machine.MAX_REJECTED
    assert memory.rejected[-1]["versionId"] == f"v{machine.MAX_REJECTED + 4}"


def test_an_unversioned_bucket_is_said_once_and_pins_nothing() -> None:
    step = plan("null", Memory())
    assert (step.check.status, step.check.reason) == ("False", "VersioningRequired")
    assert "S3 bucket models is not versioned" in step.check.message
    assert step.stable == TARGET and step.memory is None
    assert [a.reason for a in step.announcements] == ["VersioningRequired"]
    said = plan("", Memory(), previous_reason="VersioningRequired")
    assert said.announcements == ()


def test_the_phase_after_a_promotion_stays_promoted_until_the_next_candidate() -> None:
    promoted = Memory(stable=ObjectVersion("v2", "sha-v2", "m2"), promoted=True)
    step = plan("v2", promoted)
    assert step.rollout["phase"] == Phase.PROMOTED
    assert step.rollout["stable"] == {"versionId": "v2", "sha256": "sha-v2", "modelVersion": "m2"}
