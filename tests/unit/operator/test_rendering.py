"""Rendered children: pinned digest, restricted pods, owner references, no Argo CD labels."""

from __future__ import annotations

import json

from retail_operator.rendering import (
    APPLIED_ANNOTATION,
    Owner,
    Target,
    is_subset,
    render_children,
    render_deployment,
    source_annotation,
    stamped,
    unchanged,
)
from retail_operator.spec import ModelSpec, RetailModelSpec

REPO = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api"
OWNER = Owner("prices", "retail", "uid-1")


def spec(**extra: object) -> RetailModelSpec:
    return RetailModelSpec.from_body(
        {
            "image": {"repository": REPO, "tag": "v1"},
            "model": {"s3Uri": "s3://models/prices/model.ubj"},
            **extra,
        }
    )


def target(uri: str = "s3://models/prices/model.ubj") -> Target:
    return Target(f"{REPO}@sha256:{'b' * 64}", ModelSpec(s3_uri=uri))


def test_children_are_owned_and_labelled_without_argo_tracking_label() -> None:
    children = render_children(spec(), OWNER, target())
    assert [c["kind"] for c in children] == ["ConfigMap", "Deployment", "Service"]
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "retail"
        assert meta["ownerReferences"][0]["uid"] == "uid-1"
        assert meta["ownerReferences"][0]["controller"] is True
        assert "app.kubernetes.io/instance" not in meta["labels"]
        assert meta["labels"]["mlops.retail.io/retailmodel"] == "prices"


def test_deployment_runs_the_digest_with_a_restricted_pod() -> None:
    deployment = render_deployment(
        spec(
            replicas=3,
            resources={"limits": {"cpu": "1", "memory": "512Mi"}},
            serviceAccountName="irsa",
        ),
        OWNER,
        target(),
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].endswith("@sha256:" + "b" * 64)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,  # the images' USER, so files the image owns are readable
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # /tmp, the one writable place on the read-only root, is a pod-local emptyDir.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}
    assert pod["automountServiceAccountToken"] is False
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"}}
    assert pod["serviceAccountName"] == "irsa"


def test_a_model_change_touches_only_the_config_map() -> None:
    before = render_children(spec(), OWNER, target("s3://models/prices/v1.ubj"))
    after = render_children(spec(), OWNER, target("s3://models/prices/v2.ubj"))
    assert before[1] == after[1] and before[2] == after[2]
    assert before[0] != after[0]
    source = json.loads(after[0]["data"]["model-source.json"])
    assert source == {"uri": "s3://models/prices/v2.ubj", "versionId": "", "sha256": ""}


def test_the_source_annotation_changes_exactly_when_the_config_map_does() -> None:
    v1, v2 = target("s3://models/prices/v1.ubj"), target("s3://models/prices/v2.ubj")
    assert source_annotation(v1) == source_annotation(target("s3://models/prices/v1.ubj"))
    assert source_annotation(v1) != source_annotation(v2)
    pinned = Target(v1.image, ModelSpec(s3_uri=v1.model.s3_uri, version_id="abc"))
    assert source_annotation(pinned) != source_annotation(v1)  # a pin is a new document too
    moved = Target(f"{REPO}@sha256:{'c' * 64}", v1.model)
    assert source_annotation(moved) == source_annotation(v1)  # the image is not in it


def test_is_subset_ignores_server_defaults_but_sees_edits() -> None:
    desired = render_deployment(spec(), OWNER, target())
    live = json.loads(json.dumps(desired))
    live["metadata"]["resourceVersion"] = "42"
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    live["spec"]["progressDeadlineSeconds"] = 600
    assert is_subset(desired, live)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert not is_subset(desired, live)
    live = json.loads(json.dumps(desired))
    live["spec"]["replicas"] = 5
    assert not is_subset(desired, live)


def test_a_stamp_names_the_document_and_only_it() -> None:
    desired = render_deployment(spec(), OWNER, target())
    document = stamped(desired)
    stamp = document["metadata"]["annotations"][APPLIED_ANNOTATION]
    assert stamped(document) == document  # stamping again (a stamp in it) changes nothing
    assert "annotations" not in desired["metadata"]  # the rendered document is left as it was
    other = render_deployment(spec(replicas=3), OWNER, target())
    assert stamped(other)["metadata"]["annotations"][APPLIED_ANNOTATION] != stamp


def test_unchanged_needs_the_same_stamp_and_every_field_as_applied() -> None:
    document = stamped(render_deployment(spec(), OWNER, target()))
    live = json.loads(json.dumps(document))
    live["metadata"]["resourceVersion"] = "42"
    live["spec"]["progressDeadlineSeconds"] = 600  # a server default
    assert unchanged(document, live)
    assert not unchanged(document, None)
    edited = json.loads(json.dumps(live))
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert not unchanged(document, edited)
    # Applied from another document (one rendering a field since dropped): applied again.
    older = json.loads(json.dumps(live))
    older["metadata"]["annotations"][APPLIED_ANNOTATION] = "0" * 16
    assert not unchanged(document, older)


def test_pods_shut_down_gracefully_so_a_rollout_fails_no_request() -> None:
    pod = render_deployment(spec(), OWNER, target())["spec"]["template"]["spec"]
    container = pod["containers"][0]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep >= 3  # kube-proxy drops the endpoint before SIGTERM reaches uvicorn
    # preStop, then uvicorn's 10 s for in-flight requests, all inside the grace period.
    assert pod["terminationGracePeriodSeconds"] > sleep + 10


def test_placement_follows_the_spec_and_is_absent_by_default() -> None:
    plain = render_deployment(spec(), OWNER, target())["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain
    placed = spec(
        nodeSelector={"retailmodel.io/node": "real"},
        tolerations=[{"key": "retailmodel.io/node", "operator": "Equal", "value": "real",
                      "effect": "NoSchedule"}],
    )  # fmt: skip
    pod = render_deployment(placed, OWNER, target())["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"retailmodel.io/node": "real"}
    assert pod["tolerations"] == [
        {"key": "retailmodel.io/node", "value": "real", "effect": "NoSchedule"}
    ]


def test_env_from_reaches_the_predictor_container_as_given() -> None:
    sources = [{"secretRef": {"name": "aws-standin"}}, {"configMapRef": {"name": "proxy"}}]
    pod = render_deployment(spec(envFrom=sources), OWNER, target())["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == sources
    plain = render_deployment(spec(), OWNER, target())["spec"]["template"]["spec"]
    assert "envFrom" not in plain["containers"][0]


def kinds(**extra: object) -> dict[str, dict[str, object]]:
    return {c["kind"]: c for c in render_children(spec(**extra), OWNER, target())}


def test_a_disruption_budget_from_two_replicas_on_and_never_for_one() -> None:
    assert "PodDisruptionBudget" not in kinds(replicas=1)
    budget = kinds(replicas=2)["PodDisruptionBudget"]
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": render_deployment(spec(), OWNER, target())["spec"][
            "template"]["metadata"]["labels"]},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }  # fmt: skip
    assert budget["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "PodDisruptionBudget" not in kinds(replicas=3, disruption={"enabled": False})
    half = kinds(replicas=4, disruption={"maxUnavailable": "50%"})["PodDisruptionBudget"]
    assert half["spec"]["maxUnavailable"] == "50%"


def test_under_canary_the_stable_budget_leaves_the_canary_pods_out() -> None:
    canary = {"strategy": "Canary", "canary": {"replicas": 2}}
    budget = kinds(replicas=2, rollout=canary)["PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"]["mlops.retail.io/track"] == "stable"
    from retail_operator.rendering import render_canary

    canary_children = render_canary(spec(replicas=2, rollout=canary), OWNER, target())
    (canary_budget,) = [c for c in canary_children if c["kind"] == "PodDisruptionBudget"]
    assert canary_budget["metadata"]["name"] == "prices-canary"
    assert canary_budget["spec"]["selector"]["matchLabels"]["mlops.retail.io/track"] == "canary"


def test_autoscaling_renders_a_cpu_autoscaler_and_leaves_the_count_to_it() -> None:
    scaling = {"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 60}
    extra = {"autoscaling": scaling, "resources": {"requests": {"cpu": "500m"}}}
    children = kinds(**extra)
    autoscaler = children["HorizontalPodAutoscaler"]["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "prices"}  # fmt: skip
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (2, 6)
    assert autoscaler["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert "PodDisruptionBudget" in children  # two replicas at the least
    counted = render_children(spec(**extra), OWNER, target(), replicas=None)
    deployment = next(c for c in counted if c["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]


def test_replicas_spread_softly_across_zones_and_nodes_by_default() -> None:
    pod = render_deployment(spec(), OWNER, target())["spec"]["template"]["spec"]
    spread = pod["topologySpreadConstraints"]
    assert [(c["topologyKey"], c["whenUnsatisfiable"]) for c in spread] == [
        ("topology.kubernetes.io/zone", "ScheduleAnyway"),
        ("kubernetes.io/hostname", "ScheduleAnyway"),
    ]
    assert all(c["matchLabelKeys"] == ["pod-template-hash"] for c in spread)
    hard = render_deployment(spec(topologySpread={"zone": "Hard", "node": "Off"}), OWNER, target())
    (zone,) = hard["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert (zone["topologyKey"], zone["whenUnsatisfiable"]) == (
        "topology.kubernetes.io/zone", "DoNotSchedule")  # fmt: skip
