"""The image-signature gate against the real API server, moto's ECR and a real registry (crane's
on loopback): images are pushed to the registry and registered in ECR under the same digest,
and signed as ``retailctl image push --signing-key`` signs them (cosign's layout). Each test's
RetailModelPolicy selects only its own namespace.

A signed image rolls out; an unsigned one, one signed by another key, or one carrying a
signature copied from another digest is refused and the running digest kept; a registry that
is down leaves the check Unknown and rolls nothing out until it is back; a spec key the policy
does not list is a PolicyViolation; without keys nothing is checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.integration.operator.conftest import REPOSITORY, Scenario
from tests.support.signing import KeyPair

from retail_provenance import cosign, oci
from retail_tools.images import registry

pytestmark = [pytest.mark.cluster, pytest.mark.aws]

TEAM, STRANGER = KeyPair.new(), KeyPair.new()
Policy = Callable[[dict[str, Any]], str]


def trusting(*keys: KeyPair) -> dict[str, Any]:
    return {"images": {"trustedKeys": [key.public for key in keys]}}


def pinned(scenario: Scenario, digest: str) -> str:
    return f"{scenario.aws.repository_uri(REPOSITORY)}@{digest}"


def serving_signed_v1(scenario: Scenario, team_policy: Policy, tmp_path: Path) -> str:
    """v1 signed by the trusted key, rolled out and Ready; its digest."""
    team_policy(trusting(TEAM))
    digest = scenario.pushed_image("v1")
    scenario.sign(digest, TEAM.private_pem, tmp_path)
    scenario.apply(scenario.manifest("prices", "v1", scenario.model()))
    verified = scenario.wait_condition("prices", "ImageSignatureVerified", "True")
    assert verified["reason"] == "SignatureVerified"
    assert f"sha256:{TEAM.fingerprint[:12]}" in verified["message"]
    scenario.wait_condition("prices", "Ready", "True")
    assert scenario.deployment_image("prices") == pinned(scenario, digest)
    return digest


def roll_to(scenario: Scenario, tag: str) -> None:
    manifest = scenario.manifest("prices", tag, scenario.model())
    scenario.apply(manifest)


def test_an_image_signed_by_a_trusted_key_rolls_out(
    scenario: Scenario, team_policy: Policy, tmp_path: Path
) -> None:
    serving_signed_v1(scenario, team_policy, tmp_path)


def copy_signature(scenario: Scenario, source: str, target: str) -> None:
    """Put ``source``'s signature manifest (its blobs are there already) at ``target``'s tag."""
    served = oci.Registry(f"http://{scenario.registry.registry_address}")
    body = served.manifest(REPOSITORY, cosign.signature_tag(source))
    assert body is not None
    served.put_manifest(REPOSITORY, cosign.signature_tag(target), body, cosign.OCI_MANIFEST)


@pytest.mark.parametrize("refusal", ["Unsigned", "UntrustedKey", "SignatureInvalid"])
def test_an_image_no_trusted_key_signed_never_replaces_the_running_one(
    scenario: Scenario, team_policy: Policy, tmp_path: Path, refusal: str
) -> None:
    running = serving_signed_v1(scenario, team_policy, tmp_path)
    digest = scenario.pushed_image("v2")
    if refusal == "UntrustedKey":
        scenario.sign(digest, STRANGER.private_pem, tmp_path)
    elif refusal == "SignatureInvalid":
        copy_signature(scenario, running, digest)  # the trusted key's, over v1's digest
    roll_to(scenario, "v2")

    refused = scenario.wait_condition("prices", "ImageSignatureVerified", "False", refusal)
    assert refused["message"].startswith("The image is refused: ")
    ready = scenario.wait_condition("prices", "Ready", "False", refusal)
    assert "Image not rolled out" in ready["message"]
    assert f"still serving {pinned(scenario, running)}" in ready["message"]
    assert scenario.deployment_image("prices") == pinned(scenario, running)
    body = scenario.get("retailmodel", "prices")
    assert body["status"]["deployedImage"] == pinned(scenario, running)
    assert body["status"]["image"]["digest"] == digest

    if refusal == "Unsigned":  # a signature pushed later is soon found
        scenario.sign(digest, TEAM.private_pem, tmp_path)
        scenario.wait_condition("prices", "ImageSignatureVerified", "True", timeout=30)
        scenario.wait_for(
            "v2 rolled out",
            lambda: scenario.deployment_image("prices") == pinned(scenario, digest),
        )


def test_a_registry_that_is_down_rolls_nothing_out_until_it_is_back(
    scenario: Scenario, team_policy: Policy, tmp_path: Path
) -> None:
    running = serving_signed_v1(scenario, team_policy, tmp_path)
    digest = scenario.pushed_image("v2")
    registry.down(scenario.registry)
    try:
        roll_to(scenario, "v2")
        unknown = scenario.wait_condition(
            "prices", "ImageSignatureVerified", "Unknown", "RegistryUnavailable"
        )
        assert "could not be read from http://127.0.0.1:" in unknown["message"]
        ready = scenario.wait_condition("prices", "Ready", "False", "RegistryUnavailable")
        assert f"still serving {pinned(scenario, running)}" in ready["message"]
        scenario.operator.wait_reconciles(3)  # retried, and still nothing rolled out
        assert scenario.deployment_image("prices") == pinned(scenario, running)
    finally:
        registry.up(scenario.registry, lambda _line: None)
    # crane keeps blobs on disk but manifests in memory: the signature is pushed again, as a
    # registry restored from its backup would serve it.
    scenario.sign(digest, TEAM.private_pem, tmp_path)
    scenario.wait_condition("prices", "ImageSignatureVerified", "True", timeout=30)
    scenario.wait_for(
        "v2 rolled out", lambda: scenario.deployment_image("prices") == pinned(scenario, digest)
    )


def test_a_spec_key_the_policy_does_not_trust_is_a_policy_violation(
    scenario: Scenario, team_policy: Policy, tmp_path: Path
) -> None:
    name = team_policy(trusting(TEAM))
    digest = scenario.pushed_image("v1")
    scenario.sign(digest, STRANGER.private_pem, tmp_path)
    manifest = scenario.manifest("prices", "v1", scenario.model())
    manifest["spec"]["image"]["trustedKeys"] = [STRANGER.public]
    scenario.apply(manifest)
    ready = scenario.wait_condition("prices", "Ready", "False", "PolicyViolation")
    assert f"RetailModelPolicy {name}: images.trustedKeys" in ready["message"]
    assert STRANGER.fingerprint[:12] in ready["message"]
    assert scenario.get("deployment", "prices") is None


def test_without_trusted_keys_no_signature_is_asked_for(scenario: Scenario) -> None:
    digest = scenario.pushed_image("v1")  # unsigned
    scenario.apply(scenario.manifest("prices", "v1", scenario.model()))
    scenario.wait_condition("prices", "Ready", "True")
    assert scenario.deployment_image("prices") == pinned(scenario, digest)
    conditions = scenario.get("retailmodel", "prices")["status"]["conditions"]
    assert "ImageSignatureVerified" not in {c["type"] for c in conditions}
