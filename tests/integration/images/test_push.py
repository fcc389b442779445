"""``retailctl image push``: the registry serves the pushed manifest by digest, ECR's stand-in
names the same digest for the tag (so the operator resolves the bytes pods pull), ``ecr usage``
counts the image's real size, and an immutable tag never moves to other bytes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from retail_tools.ecr.bootstrap import bootstrap
from retail_tools.ecr.config import load_config
from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import podman
from retail_tools.standin import ACCOUNT, AwsStandIn
from tests.integration.images.conftest import REPO_ROOT, RETAILCTL

pytestmark = pytest.mark.images

REPOSITORY = "mlops/retail-api"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


@pytest.fixture
def ecr_stand_in(aws_env: AwsStandIn) -> AwsStandIn:
    """A clean ECR stand-in with the repositories of deploy/ecr/repositories.yaml (immutable
    tags)."""
    registry = load_config(REPO_ROOT / "deploy" / "ecr" / "repositories.yaml")
    bootstrap(aws_env.client("ecr"), registry, ACCOUNT, progress=lambda _line: None)
    return aws_env


@pytest.fixture
def fresh_tag(images: dict[str, str], images_config: ImagesConfig) -> Iterator[str]:
    """A tag of its own for the serving image (ECR's tags are immutable), untagged afterwards."""
    tag = f"push-{uuid.uuid4().hex[:8]}"
    name = f"localhost/retail-api:{tag}"
    podman(images_config, "tag", images["serving"], name)
    try:
        yield tag
    finally:
        # The name twice: without one, untag removes every name of the image.
        podman(images_config, "untag", name, name, check=False)


def push(
    registry: ImagesConfig, stand_in: AwsStandIn, name: str, tag: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **stand_in.env(),
        "RETAILMODEL_REGISTRY_DIR": str(registry.registry_dir),
        "RETAILMODEL_REGISTRY_PORT": str(registry.registry_port),
    }
    return subprocess.run(
        [RETAILCTL, "image", "push", name, "--tag", tag],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def served_manifest(registry: ImagesConfig, reference: str) -> bytes:
    request = urllib.request.Request(
        f"http://{registry.registry_address}/v2/{REPOSITORY}/manifests/{reference}",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def test_push_registers_the_registrys_manifest_in_ecr(
    private_registry: ImagesConfig, ecr_stand_in: AwsStandIn, fresh_tag: str
) -> None:
    result = push(private_registry, ecr_stand_in, "serving", fresh_tag)
    assert result.returncode == 0, result.stderr
    digest = result.stdout.strip().splitlines()[-1]
    assert digest.startswith("sha256:")

    body = served_manifest(private_registry, digest)
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    ecr = ecr_stand_in.client("ecr")
    (image,) = ecr.describe_images(  # type: ignore[attr-defined]
        repositoryName=REPOSITORY, imageIds=[{"imageTag": fresh_tag}]
    )["imageDetails"]
    assert image["imageDigest"] == digest

    # ecr usage counts the compressed layers the registry stores: the image's real size.
    layers = sum(layer["size"] for layer in json.loads(body)["layers"])
    usage = subprocess.run(
        [RETAILCTL, "ecr", "usage", "--repository", REPOSITORY, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **ecr_stand_in.env()},
        check=True,
    )
    (row,) = json.loads(usage.stdout)
    assert row["totalBytes"] == layers > 50 * 1024**2

    again = push(private_registry, ecr_stand_in, "serving", fresh_tag)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == digest


def test_an_immutable_tag_is_never_moved_to_other_bytes(
    images: dict[str, str],
    images_config: ImagesConfig,
    private_registry: ImagesConfig,
    ecr_stand_in: AwsStandIn,
    fresh_tag: str,
) -> None:
    first = push(private_registry, ecr_stand_in, "serving", fresh_tag)
    assert first.returncode == 0, first.stderr
    digest = first.stdout.strip().splitlines()[-1]
    # Other bytes under the same local name and tag: the operator image.
    podman(images_config, "tag", images["operator"], f"localhost/retail-api:{fresh_tag}")

    refused = push(private_registry, ecr_stand_in, "serving", fresh_tag)

    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"retailctl: error: {REPOSITORY}:{fresh_tag} already names {digest}")
    assert "immutable" in last
    served = served_manifest(private_registry, fresh_tag)
    assert "sha256:" + hashlib.sha256(served).hexdigest() == digest
    ecr = ecr_stand_in.client("ecr")
    (image,) = ecr.describe_images(  # type: ignore[attr-defined]
        repositoryName=REPOSITORY, imageIds=[{"imageTag": fresh_tag}]
    )["imageDetails"]
    assert image["imageDigest"] == digest
