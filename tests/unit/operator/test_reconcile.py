"""The reconcile's promises about what it applies, with in-process stand-ins: the status is
output only, a name someone else holds is left alone, what runs is kept only if it passes the
gate now, and every admitted spec gets a status (tests/integration/operator does the same
against the real API server)."""

from __future__ import annotations

from typing import Any

import pytest

from retail_operator.facts import Finding, ModelObject
from retail_operator.rendering import KIND
from tests.unit.operator.fakes import DIGESTS, World, pinned, scrape

CRITICAL = (Finding("CVE-2026-0001", "CRITICAL"),)


def images_applied(world: World) -> list[str]:
    return [
        m["spec"]["template"]["spec"]["containers"][0]["image"]
        for m in world.store.applied
        if m["kind"] == "Deployment"
    ]


def test_a_clean_image_is_rolled_out_and_owned() -> None:
    world = World()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    assert images_applied(world) == [pinned("v1")]
    assert world.condition(tracked, "Ready")[:2] == ("True", "Ready")
    service = world.store.kinds("Service")["prices"]
    assert service["metadata"]["ownerReferences"][0]["uid"] == "rm-uid"


def test_the_status_is_never_applied() -> None:
    """A status naming another image (someone wrote the status subresource) rolls nothing out
    when the spec's image is refused."""
    world = World()
    world.images.findings[DIGESTS["v2"]] = CRITICAL
    forged = "999999999999.dkr.ecr.us-east-1.amazonaws.com/evil@sha256:" + "f" * 64
    status = {
        "deployedImage": forged,
        "deployedModel": {"s3Uri": "s3://models/prices/model.ubj", "versionId": "", "sha256": ""},
    }
    tracked = world.retailmodel("v2", status=status)
    world.reconcile(tracked)
    assert images_applied(world) == []
    assert world.store.kinds("Deployment") == {}
    status_, reason, message = world.condition(tracked, "Ready")
    assert (status_, reason) == ("False", "VulnerabilitiesFound")
    assert forged not in message and "still serving" not in message


def test_a_refused_image_keeps_the_owned_live_deployment_running() -> None:
    world = World()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    world.images.findings[DIGESTS["v2"]] = CRITICAL
    tracked.body["spec"]["image"]["tag"] = "v2"
    tracked.reset()  # as after a restart: nothing remembered, only the live objects
    world.reconcile(tracked)
    # v1 kept, and not applied again: the live Deployment is the document it would apply
    assert images_applied(world) == [pinned("v1")]
    _, reason, message = world.condition(tracked, "Ready")
    assert reason == "VulnerabilitiesFound" and f"still serving {pinned('v1')}" in message


def test_what_runs_is_kept_only_if_it_passes_the_gate_now() -> None:
    world = World()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    world.images.findings[DIGESTS["v1"]] = CRITICAL  # published after the rollout
    world.images.findings[DIGESTS["v2"]] = CRITICAL
    tracked.body["spec"]["image"]["tag"] = "v2"
    world.reconcile(tracked)
    assert images_applied(world) == [pinned("v1")]  # not applied again, not removed either
    assert world.store.kinds("Deployment")["prices"]  # still there, still serving
    assert world.condition(tracked, "RunningImageCompliant")[:2] == (
        "False",
        "NewVulnerabilities",
    )


def foreign(kind: str, name: str, **extra: Any) -> dict[str, Any]:
    api = {"Deployment": "apps/v1"}.get(kind, "v1")
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "shop", "labels": {"team": "theirs"}},
        **extra,
    }


@pytest.mark.parametrize("kind", ["Service", "ConfigMap", "Deployment"])
def test_a_child_name_someone_else_holds_is_left_alone_and_reported(kind: str) -> None:
    world = World()
    name = "prices-model" if kind == "ConfigMap" else "prices"
    theirs = world.store.put(foreign(kind, name, spec={"selector": {"app": "theirs"}}))
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    assert world.store.applied == []  # none of the three: nothing half rolled out
    assert world.store.kinds(kind)[name] == theirs  # untouched
    assert world.store.deleted == []
    status, reason, message = world.condition(tracked, "Ready")
    assert (status, reason) == ("False", "NameConflict")
    assert f"{kind} {name} already exists" in message
    assert ("Warning", "NameConflict") in [(e[0], e[1]) for e in world.events]


def test_an_object_owned_by_a_deleted_retailmodel_of_the_same_name_is_not_adopted() -> None:
    world = World()
    reference = {"kind": KIND, "name": "prices", "uid": "old-uid", "controller": True}
    world.store.put(foreign("Service", "prices") | {"metadata": {
        "name": "prices", "namespace": "shop", "ownerReferences": [reference]}})  # fmt: skip
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    assert world.condition(tracked, "Ready")[1] == "NameConflict"


def test_crash_recovery_trusts_only_a_deployment_this_retailmodel_owns() -> None:
    world = World()
    world.store.put(
        foreign(
            "Deployment",
            "prices",
            spec={"template": {"spec": {"containers": [{"image": pinned("v1")}]}}},
        )
    )
    world.images.findings[DIGESTS["v2"]] = CRITICAL
    tracked = world.retailmodel("v2")
    world.reconcile(tracked)
    assert world.store.applied == []
    assert "still serving" not in world.condition(tracked, "Ready")[2]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"scanPolicy": {"exceptions": [{"id": "CVE-1", "reason": "ok", "expires": "x"}]}},
            "spec.scanPolicy.exceptions.0.expires",
        ),
        (
            {
                "scanPolicy": {
                    "exceptions": [
                        {"id": "CVE-1", "reason": "ok", "expires": "2030-01-01T00:00:00+99:00"}
                    ]
                }
            },
            "spec.scanPolicy.exceptions.0.expires",
        ),
    ],
    ids=["not a date", "an offset of 99 hours"],
)
def test_a_spec_that_cannot_be_read_gets_a_status_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    world = World()
    tracked = world.retailmodel("v1", **spec)
    world.reconcile(tracked)
    status, reason, message = world.condition(tracked, "Ready")
    assert (status, reason) == ("False", "SpecInvalid")
    assert message.startswith(field)
    assert ("Warning", "SpecInvalid") in [(e[0], e[1]) for e in world.events]
    assert world.store.applied == []


def test_a_child_the_api_server_refuses_is_spec_invalid() -> None:
    from retail_operator.errors import SpecInvalid

    world = World()
    refused = SpecInvalid(
        'the API server refused it: Deployment.apps "prices" is invalid: '
        'spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: "-1"'
    )

    async def apply(manifest: dict[str, Any]) -> dict[str, Any]:
        raise refused

    world.store.apply = apply  # type: ignore[method-assign]
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    status, reason, message = world.condition(tracked, "Ready")
    assert (status, reason) == ("False", "SpecInvalid")
    assert "resources.requests[cpu]" in message


CANARY = {
    "strategy": "Canary",
    "canary": {"analysis": {"durationSeconds": 10, "maxDurationSeconds": 600, "minRequests": 100}},
}
GOOD = {"Low": 0.3, "Medium": 0.5, "High": 0.2}
ONE_CLASS = {"High": 1.0}


def growing_traffic(world: World, canary_shares: dict[str, float]) -> None:
    """Each scrape, every pod has answered 1,000 more rows, with the model it is pinned to."""
    scrapes = {"prices": 0, "prices-canary": 0}

    def answer(deployment: dict[str, Any]) -> Any:
        name = deployment["metadata"]["name"]
        scrapes[name] += 1
        total = 1000.0 * scrapes[name]
        source = deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
        pinned_sha = world.store.kinds("ConfigMap")[source]["data"]["model-source.json"]
        sha = pinned_sha.split('"sha256": "')[1].split('"')[0]
        shares = canary_shares if name.endswith("-canary") else GOOD
        rows = {label: total * share for label, share in shares.items()}
        return scrape(total, rows, sha, uid=name)

    world.pods.answer = answer


def test_a_rolled_back_version_stays_rejected_when_the_status_is_lost() -> None:
    world = World()
    tracked = world.retailmodel("v1", rollout=CANARY)
    world.reconcile(tracked)  # v1 becomes stable
    world.models.latest = ModelObject("etag", "v2", "sha-v2")
    growing_traffic(world, ONE_CLASS)
    for _ in range(3):
        world.reconcile(tracked)
    assert world.condition(tracked, "ModelRolledOut")[:2] == ("False", "RolledBack")
    assert "prices-canary" not in world.store.kinds("Deployment")

    tracked.status = {}  # an Argo CD replace, a restore without status…
    tracked.reset()  # …and a new leader that remembers nothing
    applied = len(world.store.applied)
    world.reconcile(tracked)
    assert world.condition(tracked, "ModelRolledOut")[:2] == ("False", "RolledBack")
    assert tracked.written is not None
    assert tracked.written["rollout"]["rejected"][-1]["versionId"] == "v2"
    canaries = [
        m for m in world.store.applied[applied:] if m["metadata"]["name"].endswith("-canary")
    ]
    assert canaries == []  # not analysed again: no canary, no traffic
    config = world.store.kinds("ConfigMap")["prices-model"]
    assert '"versionId": "v1"' in config["data"]["model-source.json"]


def test_a_good_candidate_is_promoted_through_the_reconcile() -> None:
    world = World()
    tracked = world.retailmodel("v1", rollout=CANARY)
    world.reconcile(tracked)
    world.models.latest = ModelObject("etag", "v2", "sha-v2")
    growing_traffic(world, GOOD)
    ticks = iter(range(0, 1000, 30))
    world.reconciler.clock = lambda: float(next(ticks))  # 30 s pass between looks
    reasons = []
    for _ in range(4):
        world.reconcile(tracked)
        reasons.append(world.condition(tracked, "ModelRolledOut")[1])
    assert reasons[0] == "Analyzing" and reasons[-1] == "Promoted"
    config = world.store.kinds("ConfigMap")["prices-model"]
    assert '"versionId": "v2"' in config["data"]["model-source.json"]
    assert "prices-canary" not in world.store.kinds("Deployment")


def test_a_leftover_canary_it_owns_is_removed_and_a_foreign_one_is_not() -> None:
    world = World()
    tracked = world.retailmodel("v1", rollout=CANARY)
    world.reconcile(tracked)
    reference = {"kind": KIND, "name": "prices", "uid": "rm-uid", "controller": True}
    world.store.put(foreign("Deployment", "prices-canary") | {"metadata": {
        "name": "prices-canary", "namespace": "shop", "ownerReferences": [reference]}})  # fmt: skip
    world.store.put(foreign("ConfigMap", "prices-model-canary"))  # someone else's
    world.reconcile(tracked)
    assert ("Deployment", "prices-canary") in world.store.deleted
    assert "prices-model-canary" in world.store.kinds("ConfigMap")


def test_a_spec_outside_the_policy_is_refused_and_what_runs_keeps_running() -> None:
    from retail_operator.policy import Policy

    world = World()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    world.registry.policies["default"] = Policy.from_body(
        {"metadata": {"name": "default"}, "spec": {"scanning": {"maxBlockSeverity": "HIGH"}}}
    )
    tracked.body["spec"]["image"]["tag"] = "v2"
    tracked.body["spec"]["scanPolicy"] = {"blockSeverity": "NONE"}
    world.reconcile(tracked)
    assert images_applied(world) == [pinned("v1")]  # v2 never applied, v1 left as it is
    status, reason, message = world.condition(tracked, "Ready")
    assert (status, reason) == ("False", "PolicyViolation")
    assert message.startswith("RetailModelPolicy default: scanning.maxBlockSeverity")
    assert f"still serving {pinned('v1')}" in message
    assert world.registry.violating == {"default": {tracked.key}}
    tracked.body["spec"]["scanPolicy"] = {"blockSeverity": "HIGH"}  # back within it
    world.reconcile(tracked)
    assert images_applied(world)[-1] == pinned("v2")
    assert world.condition(tracked, "Ready")[:2] == ("True", "Ready")
    assert world.registry.violating == {"default": set()}


def test_turning_autoscaling_on_hands_the_count_over_before_leaving_it_out() -> None:
    """Leaving replicas out of an apply while the operator alone owns them would reset the
    Deployment to one replica: the count is first written by another manager."""
    world = World()
    tracked = world.retailmodel("v1", replicas=3, resources={"requests": {"cpu": "1"}})
    world.reconcile(tracked)
    tracked.body["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 8}
    world.reconcile(tracked)
    assert world.store.handed_off == [3]
    last = [m for m in world.store.applied if m["kind"] == "Deployment"][-1]
    assert "replicas" not in last["spec"]
    assert world.store.kinds("Deployment")["prices"]["spec"]["replicas"] == 3
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= {
        m["kind"] for m in world.store.applied
    }
    world.reconcile(tracked)
    assert world.store.handed_off == [3]  # once: the operator no longer owns the count
    del tracked.body["spec"]["autoscaling"]
    tracked.body["spec"]["replicas"] = 1
    world.reconcile(tracked)
    assert ("HorizontalPodAutoscaler", "prices") in world.store.deleted
    assert ("PodDisruptionBudget", "prices") in world.store.deleted


def test_the_policy_tells_the_pods_the_bucket_owner_and_the_largest_model() -> None:
    from retail_operator.policy import Policy

    world = World()
    world.registry.policies["default"] = Policy.from_body(
        {
            "metadata": {"name": "default"},
            "spec": {"models": {"bucketOwner": "123456789012", "maxBytes": 50_000_000}},
        }
    )
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    source = world.store.kinds("ConfigMap")["prices-model"]["data"]["model-source.json"]
    assert '"bucketOwner": "123456789012"' in source
    deployment = world.store.kinds("Deployment")["prices"]
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MAX_MODEL_BYTES"] == "50000000"


def test_a_retail_model_on_its_way_out_applies_nothing_says_so_and_drops_its_gauges() -> None:
    """deletionTimestamp set: Ready says it is being deleted (for the deletion's generation,
    so it is not looked at as a change again and again), nothing is applied, what the status
    said is kept, and its gauges and policy violations go at once."""
    from retail_operator import metrics
    from retail_operator.policy import Policy

    world = World()
    world.registry.policies["default"] = Policy.from_body(
        {"metadata": {"name": "default"}, "spec": {"scanning": {"maxBlockSeverity": "HIGH"}}}
    )
    tracked = world.retailmodel("v1", scanPolicy={"blockSeverity": "NONE"})
    world.reconcile(tracked)
    assert world.registry.violating == {"default": {tracked.key}}
    assert tracked.key in metrics.blocked_images and tracked.key in metrics.expiring_exceptions
    image = tracked.written and tracked.written["image"]
    applied = len(world.store.applied)
    tracked.body["metadata"] |= {
        "deletionTimestamp": "2026-12-07T12:00:00Z",
        "finalizers": ["foregroundDeletion"],
        "generation": 2,
    }
    world.reconcile(tracked)
    assert len(world.store.applied) == applied
    status, reason, message = world.condition(tracked, "Ready")
    assert (status, reason) == ("False", "Deleting")
    assert message == "Being deleted: nothing is applied; waiting for foregroundDeletion"
    assert tracked.written and tracked.written["observedGeneration"] == 2
    assert tracked.written["image"] == image  # the rest kept as it was
    assert world.registry.violating == {"default": set()}
    assert tracked.key not in metrics.blocked_images
    assert tracked.key not in metrics.expiring_exceptions
