"""Signed images on the real node: the in-cluster operator reads each digest's cosign
signature from the local registry, through the bridge gateway's registry port (the nat chain
RMNODE-REGISTRY; its pods cannot reach the registry's loopback address), as deploy/overlays/local
configures it. Under a RetailModelPolicy trusting a key for images, a tag pushed and signed with
that key rolls out on real pods with ImageSignatureVerified True; a tag of an unsigned digest is
then refused (Unsigned, Ready False) and the running pods are left untouched (same names, same
digest)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_tools.images.build import build_release, target_named
from retail_tools.images.push import push_image
from retail_tools.images.signing import sign_image
from tests.e2e.conftest import API, BUCKET, KEY, NAMESPACE, Stack
from tests.support.signing import KeyPair

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]


def pushed(stack: Stack, suffix: str) -> str:
    """A new serving release (the tested image with other bytes) pushed and scanned clean: its
    tag; its digest is ``stack.tags[f"serving:{tag}"]``."""
    tag = f"e2e-{stack.run}-{suffix}"
    base = f"e2e-{stack.run}"
    target = target_named("serving")
    build_release(stack.images, target, base, tag, stack.on_node.workdir / tag)
    ecr = stack.on_node.aws.client("ecr")
    manifest = push_image(stack.images, target, tag, ecr, lambda _line: None)
    stack.on_node.aws.set_scan(API, manifest.digest, "COMPLETE", [])
    stack.tags[f"serving:{tag}"] = manifest.digest
    return tag


@pytest.fixture
def images_trusting(stack: Stack) -> Iterator[KeyPair]:
    """A RetailModelPolicy over the ``retail`` namespace only, trusting a new key for images;
    deleted afterwards (it is cluster-scoped), so the other tests run under no policy."""
    team = KeyPair.new()
    name = f"signed-images-{uuid.uuid4().hex[:5]}"
    stack.on_node.apply(
        {
            "apiVersion": "mlops.retail.io/v1alpha1",
            "kind": "RetailModelPolicy",
            "metadata": {"name": name},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                "images": {"trustedKeys": [team.public]},
            },
        }
    )
    try:
        yield team
    finally:
        stack.kubectl("delete", "retailmodelpolicy", name, "--ignore-not-found")


def test_only_a_signed_image_replaces_the_running_one(
    stack: Stack, images_trusting: KeyPair, tmp_path: Path
) -> None:
    team = images_trusting
    private_key = tmp_path / "team.pem"
    private_key.write_bytes(team.private_pem)
    signed, unsigned = pushed(stack, "signed"), pushed(stack, "unsigned")
    signed_digest = stack.tags[f"serving:{signed}"]
    ecr = stack.on_node.aws.client("ecr")
    sign_image(stack.images, API, signed_digest, private_key, ecr)

    name = f"signed-image-{uuid.uuid4().hex[:5]}"
    model_uri = f"s3://{BUCKET}/{KEY}"
    stack.on_node.apply(stack.on_node.retail_model(name, NAMESPACE, signed, model_uri, replicas=1))
    try:
        verified = stack.wait_condition(name, "ImageSignatureVerified", "True")
        assert f"sha256:{team.fingerprint[:12]}" in verified["message"], verified
        stack.wait_condition(name, "Ready", "True")
        running = {
            pod["metadata"]["name"]: pod["status"]["containerStatuses"][0]["imageID"]
            for pod in stack.running_pods(name)
        }
        assert len(running) == 1
        assert all(image.endswith(signed_digest) for image in running.values()), running

        stack.on_node.apply(
            stack.on_node.retail_model(name, NAMESPACE, unsigned, model_uri, replicas=1)
        )
        refused = stack.wait_condition(name, "ImageSignatureVerified", "False", "Unsigned")
        assert refused["message"].startswith("The image is refused: "), refused
        ready = stack.wait_condition(name, "Ready", "False", "Unsigned")
        assert "Image not rolled out" in ready["message"], ready
        assert signed_digest in ready["message"], ready
        now = {
            pod["metadata"]["name"]: pod["status"]["containerStatuses"][0]["imageID"]
            for pod in stack.on_node.pods(NAMESPACE, name)
        }
        assert now == running  # the same pods, on the same digest
    finally:
        stack.on_node.remove(NAMESPACE, name)
