"""A registry of a test session's own: crane's (``retail_tools.images.registry``, crane from
the shared cache) in its own folder on a free loopback port, stopped at the end; and small
images pushed to it and registered in the ECR stand-in under the same digest, as
``retailctl image push`` leaves a real one."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retail_provenance import cosign, oci
from retail_tools.images import registry
from retail_tools.images.config import ImagesConfig
from retail_tools.ports import free_port
from retail_tools.settings import current
from retail_tools.standin import AwsStandIn


@contextmanager
def private_registry(folder: Path) -> Iterator[ImagesConfig]:
    shared = ImagesConfig.from_settings(current())
    config = ImagesConfig(shared.cache_dir, folder, free_port())
    registry.up(config, lambda _line: None)
    try:
        yield config
    finally:
        registry.down(config)


def push_small_image(config: ImagesConfig, aws: AwsStandIn, repository: str, tag: str) -> str:
    """A small image in the registry under ``tag`` (``put_small_image``) and in ECR under the
    same tag and digest; its digest."""
    digest, manifest = put_small_image(config, repository, tag)
    aws.ensure_repository(repository)
    aws.client("ecr").put_image(
        repositoryName=repository,
        imageManifest=manifest.decode(),
        imageManifestMediaType=cosign.OCI_MANIFEST,
        imageTag=tag,
        imageDigest=digest,
    )
    return digest


def put_small_image(config: ImagesConfig, repository: str, tag: str) -> tuple[str, bytes]:
    """A small image (one unique layer; no container could run it, none needs to) in the
    registry under ``tag``: its digest and manifest."""
    served = oci.Registry(f"http://{config.registry_address}")
    layer = uuid.uuid4().bytes * 8
    image_config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
    document = {
        "schemaVersion": 2,
        "mediaType": cosign.OCI_MANIFEST,
        "config": {
            "mediaType": cosign.OCI_CONFIG,
            "size": len(image_config),
            "digest": served.put_blob(repository, image_config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "size": len(layer),
                "digest": served.put_blob(repository, layer),
            }
        ],
    }
    manifest = json.dumps(document, separators=(",", ":")).encode()
    digest = served.put_manifest(repository, tag, manifest, cosign.OCI_MANIFEST)
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    return digest, manifest
