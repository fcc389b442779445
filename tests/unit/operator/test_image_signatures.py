"""Signed images in the reconcile, with in-process stand-ins (the signature check itself is
retail_provenance.cosign's, tested in tests/unit/provenance; against a real registry in
tests/integration/operator/test_image_signatures.py): an image no trusted key signed never
replaces a running one, exactly like a blocked scan; a registry that cannot be read rolls
nothing out; the spec may narrow the policy's keys, never widen them."""

from __future__ import annotations

import pytest

from retail_operator.errors import TemporaryError
from retail_operator.policy import Policy
from retail_provenance import verdict
from tests.support.signing import KeyPair
from tests.unit.operator.fakes import DIGESTS, World, pinned

TEAM = KeyPair.new()
ROTATED = KeyPair.new()


def policy(*keys: KeyPair) -> Policy:
    return Policy.from_body(
        {
            "metadata": {"name": "default"},
            "spec": {"images": {"trustedKeys": [key.public for key in keys]}},
        }
    )


def signed_world() -> World:
    world = World()
    world.registry.policies["default"] = policy(TEAM)
    world.signatures.signed[DIGESTS["v1"]] = verdict.verified(
        "sha256:1111… signed by trusted key sha256:abc", "abc"
    )
    return world


def running_image(world: World) -> str:
    deployment = world.store.kinds("Deployment")["prices"]
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def test_an_image_signed_by_a_trusted_key_rolls_out() -> None:
    world = signed_world()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    status, reason, message = world.condition(tracked, "ImageSignatureVerified")
    assert (status, reason) == ("True", "SignatureVerified")
    assert "sha256:abc" in message
    assert world.signatures.checked == [(DIGESTS["v1"], (TEAM.public,))]
    assert running_image(world) == pinned("v1")
    assert world.condition(tracked, "Ready")[:2] == ("True", "Ready")


@pytest.mark.parametrize(
    "refusal",
    [
        verdict.unsigned("no signature at sha256-2222….sig"),
        verdict.invalid("key sha256:abc signed sha256:1111…, not this image"),
        verdict.untrusted("1 signature(s), none by one of the 1 trusted key(s)"),
    ],
)
def test_an_image_no_trusted_key_signed_never_replaces_the_running_one(
    refusal: verdict.Verdict,
) -> None:
    world = signed_world()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    world.signatures.signed[DIGESTS["v2"]] = refusal
    tracked.body["spec"]["image"]["tag"] = "v2"
    world.reconcile(tracked)
    assert running_image(world) == pinned("v1")  # still serving the signed one
    status, reason, message = world.condition(tracked, "ImageSignatureVerified")
    assert (status, reason) == ("False", refusal.outcome.value)
    assert message == f"The image is refused: {refusal.message}"
    ready = world.condition(tracked, "Ready")
    assert ready[:2] == ("False", refusal.outcome.value)
    assert "Image not rolled out" in ready[2] and f"still serving {pinned('v1')}" in ready[2]
    assert (tracked.written or {})["deployedImage"] == pinned("v1")


def test_an_unsigned_first_image_starts_no_pods() -> None:
    world = World()
    world.registry.policies["default"] = policy(TEAM)
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    assert world.store.kinds("Deployment") == {}
    assert world.condition(tracked, "ImageSignatureVerified")[:2] == ("False", "Unsigned")


def test_a_registry_that_cannot_be_read_is_unknown_rolls_nothing_out_and_looks_again() -> None:
    world = signed_world()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    world.signatures.failure = TemporaryError(
        "registry unreachable", reason="RegistryUnavailable", retry_after=5.0
    )
    tracked.body["spec"]["image"]["tag"] = "v2"
    outcome = world.reconcile(tracked)
    assert running_image(world) == pinned("v1")
    assert world.condition(tracked, "ImageSignatureVerified")[:2] == (
        "Unknown",
        "RegistryUnavailable",
    )
    assert world.condition(tracked, "Ready")[:2] == ("False", "RegistryUnavailable")
    assert outcome.retry_after == 5.0

    world.signatures.failure = None
    world.signatures.signed[DIGESTS["v2"]] = verdict.verified("signed", "abc")
    world.reconcile(tracked)
    assert running_image(world) == pinned("v2")


def test_without_trusted_image_keys_nothing_is_checked() -> None:
    world = World()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    assert world.signatures.checked == []
    written = tracked.written or {}
    assert "ImageSignatureVerified" not in {c["type"] for c in written["conditions"]}
    assert running_image(world) == pinned("v1")


def test_the_spec_narrows_the_policys_image_keys_and_may_not_widen_them() -> None:
    world = signed_world()
    world.registry.policies["default"] = policy(TEAM, ROTATED)  # during a rotation
    image = {"repository": World().retailmodel().body["spec"]["image"]["repository"]}
    tracked = world.retailmodel("v1", image={**image, "tag": "v1", "trustedKeys": [TEAM.public]})
    world.reconcile(tracked)
    assert world.signatures.checked[-1] == (DIGESTS["v1"], (TEAM.public,))
    assert running_image(world) == pinned("v1")

    stranger = KeyPair.new()
    tracked.body["spec"]["image"]["trustedKeys"] = [stranger.public]
    tracked.body["spec"]["image"]["tag"] = "v2"
    world.signatures.signed[DIGESTS["v2"]] = verdict.verified("signed", "stranger")
    world.reconcile(tracked)
    status, reason, message = world.condition(tracked, "Ready")
    assert (status, reason) == ("False", "PolicyViolation")
    assert "images.trustedKeys" in message and stranger.fingerprint[:12] in message
    assert "spec.image.trustedKeys" in message
    assert running_image(world) == pinned("v1")


def test_an_unreadable_image_key_refuses_the_image() -> None:
    world = signed_world()
    tracked = world.retailmodel("v1")
    world.reconcile(tracked)
    world.registry.policies["default"] = Policy.from_body(
        {"metadata": {"name": "default"}, "spec": {"images": {"trustedKeys": ["garbage"]}}}
    )
    tracked.body["spec"]["image"]["tag"] = "v2"
    world.reconcile(tracked)
    assert world.condition(tracked, "ImageSignatureVerified")[:2] == (
        "False",
        "TrustedKeysInvalid",
    )
    assert running_image(world) == pinned("v1")
