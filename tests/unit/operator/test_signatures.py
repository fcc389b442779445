"""Signed models in the reconcile, with in-process stand-ins (the signature check itself is
retail_provenance's, tested in tests/unit/provenance; against moto in tests/integration):
a model no trusted key signed never replaces a running one, and the pods are told the keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from retail_operator.policy import Policy
from retail_provenance import verdict
from tests.support.signing import KeyPair
from tests.unit.operator.fakes import World

TEAM = KeyPair.new()
ROTATED = KeyPair.new()


def policy(*keys: KeyPair) -> Policy:
    return Policy.from_body(
        {
            "metadata": {"name": "default"},
            "spec": {"models": {"trustedKeys": [key.public for key in keys]}},
        }
    )


def signed_world() -> World:
    world = World()
    world.registry.policies["default"] = policy(TEAM)
    world.models.signed["v1"] = verdict.verified("signed by trusted key sha256:abc", "abc")
    return world


def deployed(world: World) -> tuple[dict[str, str], dict[str, Any]]:
    deployment = world.store.kinds("Deployment")["prices"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    document = world.store.kinds("ConfigMap")["prices-model"]["data"]["model-source.json"]
    return {e["name"]: e["value"] for e in container["env"]}, json.loads(document)


def test_a_signed_model_rolls_out_and_the_pods_are_told_to_require_signatures() -> None:
    world = signed_world()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    assert world.condition(tracked, "ModelSignatureVerified")[:2] == (
        "True",
        "SignatureVerified",
    )
    assert world.condition(tracked, "Ready")[:2] == ("True", "Ready")
    env, document = deployed(world)
    assert env["REQUIRE_MODEL_SIGNATURE"] == "true"
    assert document["trustedKeys"] == [TEAM.public]


@pytest.mark.parametrize(
    "refusal",
    [
        verdict.unsigned("no signature at s3://models/prices/model.ubj.sha256-….sig"),
        verdict.invalid("the model's bytes are not the ones key sha256:abc signed"),
        verdict.untrusted("signed with key sha256:def, which is not one of the 1 trusted"),
    ],
)
def test_a_model_no_trusted_key_signed_never_replaces_the_running_one(
    refusal: verdict.Verdict,
) -> None:
    world = signed_world()
    pinned = {"s3Uri": "s3://models/prices/model.ubj", "versionId": "v1"}
    tracked = world.retailmodel("v1", model=pinned)
    world.reconcile(tracked)
    assert deployed(world)[1]["versionId"] == "v1"
    world.models.signed["v2"] = refusal
    tracked.body["spec"]["model"]["versionId"] = "v2"
    world.reconcile(tracked)
    _, document = deployed(world)
    assert document["versionId"] == "v1"  # still serving the signed one
    status, reason, message = world.condition(tracked, "ModelSignatureVerified")
    assert (status, reason) == ("False", refusal.outcome.value)
    assert refusal.message in message
    ready = world.condition(tracked, "Ready")
    assert ready[:2] == ("False", refusal.outcome.value)
    assert "Model not rolled out" in ready[2] and "still serving" in ready[2]


def test_without_trusted_keys_nothing_is_checked_or_told() -> None:
    world = World()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    assert world.models.checked == []
    env, document = deployed(world)
    assert "REQUIRE_MODEL_SIGNATURE" not in env and "trustedKeys" not in document
    written = tracked.written or {}
    assert "ModelSignatureVerified" not in {c["type"] for c in written["conditions"]}


def test_the_spec_narrows_the_policys_keys_and_may_not_widen_them() -> None:
    world = signed_world()
    world.registry.policies["default"] = policy(TEAM, ROTATED)  # during a rotation
    tracked = world.retailmodel(
        "v1", model={"s3Uri": "s3://models/prices/model.ubj", "trustedKeys": [ROTATED.public]}
    )
    world.reconcile(tracked)
    assert world.models.checked[-1] == (ROTATED.public,)
    stranger = KeyPair.new()
    tracked.body["spec"]["model"]["trustedKeys"] = [stranger.public]
    world.reconcile(tracked)
    status, reason, message = world.condition(tracked, "Ready")
    assert (status, reason) == ("False", "PolicyViolation")
    assert "models.trustedKeys" in message and stranger.fingerprint[:12] in message


def test_an_unreadable_key_refuses_the_model_and_leaves_the_pods_keys_as_they_were() -> None:
    world = signed_world()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    world.registry.policies["default"] = Policy.from_body(
        {"metadata": {"name": "default"}, "spec": {"models": {"trustedKeys": ["garbage"]}}}
    )
    world.reconcile(tracked)
    assert world.condition(tracked, "ModelSignatureVerified")[:2] == (
        "False",
        "TrustedKeysInvalid",
    )
    env, document = deployed(world)
    assert env["REQUIRE_MODEL_SIGNATURE"] == "true"
    assert document["trustedKeys"] == [TEAM.public]
